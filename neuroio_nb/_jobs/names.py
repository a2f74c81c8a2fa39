"""Names a person cannot tell apart (layer 3): ``Dock cam 1`` and ``dock cam 1``, ``Gate A``
with a non-breaking space, ``Café`` composed two ways.

Matching by name stays exact (a server may well hold both), but a row that matches no source
only because of such a difference is almost always a typo that would create a near-duplicate
source. :func:`near_duplicates` finds them, saying what differs, for the plan to warn about.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

#: Characters that show as nothing: zero-width space, non-joiner and joiner, word joiner, BOM, soft hyphen.
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
_SPACES = re.compile(r"\s+")

#: Each difference a person cannot see, mildest first: what it is, and how a name is made without it.
FOLDS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("spaces at the start or end", str.strip),
    ("an invisible character (zero-width space, soft hyphen)", lambda s: s.translate(_INVISIBLE)),
    ("a non-breaking, doubled or other unusual space", lambda s: _SPACES.sub(" ", s)),
    ("the same letters composed another way (Unicode NFC)", lambda s: unicodedata.normalize("NFC", s)),
    ("look-alike characters (Unicode NFKC: full-width letters, ligatures)", lambda s: unicodedata.normalize("NFKC", s)),
    ("upper and lower case", str.casefold),
)


@dataclass(frozen=True)
class NearDuplicate:
    """A row whose name matches no source exactly, but does once ``differences`` are taken away."""

    label: Any
    name: str
    source_id: int
    source_name: str
    differences: tuple[str, ...]


def folded(name: str) -> str:
    """``name`` with every difference of :data:`FOLDS` taken away (then ends stripped again)."""
    for _, fold in FOLDS:
        name = fold(name)
    return name.strip()


def differences(a: str, b: str) -> tuple[str, ...]:
    """What tells ``a`` from ``b``, of :data:`FOLDS`: each fold that changed one of them on the way
    to their being equal (all of them, if they never are)."""
    found = []
    for what, fold in FOLDS:
        if a == b:
            break
        folded_a, folded_b = fold(a), fold(b)
        if (folded_a, folded_b) != (a, b):
            found.append(what)
        a, b = folded_a, folded_b
    return tuple(found)


def near_duplicates(rows: Iterable[tuple[Any, Any]], sources: Iterable[dict[str, Any]]) -> list[NearDuplicate]:
    """The rows ``(label, name)`` whose name equals a source's only once :func:`folded`: each with
    the first such source (by id) and what differs."""
    by_folded: dict[str, list[dict[str, Any]]] = {}
    for source in sorted(sources, key=lambda s: s["id"]):
        if isinstance(source.get("name"), str):
            by_folded.setdefault(folded(source["name"]), []).append(source)
    found = []
    for label, name in rows:
        if not isinstance(name, str):
            continue
        look_alike = [s for s in by_folded.get(folded(name), ()) if s["name"] != name]
        if look_alike:
            source = look_alike[0]
            found.append(NearDuplicate(label, name, source["id"], source["name"], differences(name, source["name"])))
    return found
