"""Realistic, deterministic sources for the sandbox to serve.

Every value is drawn from one ``random.Random(seed)``, source after source, so
``generate_sources(100, seed)`` is also the first 100 of ``generate_sources(500, seed)``.
Fields are filled by kind from the schema (plus the sandbox's extra fields),
so a field added to the schema is generated without touching this module.

Two options give the variety a real server has, drawn from a second generator so
that the rest of each source stays as it is without them:

- ``license_ids="int"``: license ids are whole numbers only, as NeuroIO's are, and
  about one source in ten has none (``null``); "mixed" also has text ids.
- ``unknown_fields=True``: fields the client's schema does not know, as a newer
  server sends them (:data:`~neuroio_nb.sandbox.fields.VARIETY_FIELDS`): text that
  looks like numbers or booleans (``"007"``, ``"true"``, ``"1.50"``, ``""``), and
  a number and a switch that some sources lack altogether.

Generating is linear in ``n`` (100,000 sources in a few seconds).
"""

from __future__ import annotations

import random
from typing import Any, Literal

from .. import _schema as schema
from .fields import TRICKY_TEXTS, VARIETY_FIELDS, server_fields

LicenseIds = Literal["mixed", "int"]
LICENSE_ID_KINDS: tuple[LicenseIds, ...] = ("mixed", "int")

_PLACES = (
    "Lobby entrance",
    "Main gate",
    "Parking A",
    "Parking B",
    "Reception",
    "Warehouse dock",
    "Loading bay",
    "Staff canteen",
    "Floor 3 corridor",
    "North turnstiles",
    "Visitor desk",
    "Server room",
)
_CAMERAS = ("cam", "dome cam", "turnstile cam")
_UPLOADS = ("Upload API", "Mobile app upload", "Batch import")
#: Every name :func:`_name` can draw.
_VOCABULARY = frozenset(
    [f"{u} {i}" for u in _UPLOADS for i in range(1, 13)]
    + [f"{p} kiosk {i}" for p in _PLACES for i in range(1, 7)]
    + [f"{p} {c} {i:02d}" for p in _PLACES for c in _CAMERAS for i in range(1, 41)]
)
#: Spaces are uneven: a head office and a few smaller sites.
_SPACE_WEIGHTS = (0.42, 0.27, 0.16, 0.10, 0.05)
_THRESHOLDS = (3000, 5000, 7000, 9000, 12000, 15000, 20000, 25000, 30000, 40000)
_LICENSE_NAMES = ("Standard", "Enterprise", "Trial")
_EXPIRIES = ("2026-12-31", "2027-03-01", "2027-09-30")
#: Share of settings that differ from the default.
_VARIED = 0.25
#: With integer license ids, the share of sources without a license.
_UNLICENSED = 0.1
#: With unknown fields, the share of sources that lack each field that some lack.
_LACKING = 0.2


def generate_sources(
    n: int, seed: int = 0, *, license_ids: LicenseIds = "mixed", unknown_fields: bool = False
) -> list[dict[str, Any]]:
    """``n`` sources with ids 1..n, spread unevenly over 4 or 5 spaces."""
    if license_ids not in LICENSE_ID_KINDS:
        raise ValueError(f"license_ids must be one of {LICENSE_ID_KINDS}, not {license_ids!r}")
    rng = random.Random(seed)
    variety = random.Random(f"variety-{seed}")
    spaces = range(1, rng.choice((4, 5)) + 1)
    weights = _SPACE_WEIGHTS[: len(spaces)]
    licenses = {s: _license_id(rng) for s in spaces}
    names = _Names(spaces, n)
    fields = server_fields()
    sources = []
    for source_id in range(1, n + 1):
        space = rng.choices(spaces, weights)[0]
        name = names.pick(rng, space, source_id)
        license_id = licenses[space] if rng.random() < 0.8 else _license_id(rng)
        source = _source(rng, fields, source_id, space, name, license_id)
        if license_ids == "int":
            _whole_license(variety, source)
        if unknown_fields:
            _unknown_fields(variety, source)
        sources.append(source)
    return sources


def _source(
    rng: random.Random, fields: tuple[schema.Field, ...], source_id: int, space: int, name: str, license_id: int | str
) -> dict[str, Any]:
    source: dict[str, Any] = {}
    for field in fields:
        if field.name == "id":
            source[field.name] = source_id
        elif field.kind == "id":
            source[field.name] = space
        elif field.kind == "str":
            source[field.name] = name
        elif field.kind == "license":
            source[field.name] = license_id
        elif field.kind == "object":
            if rng.random() < 0.3:
                source[field.name] = {
                    "id": license_id,
                    "name": rng.choice(_LICENSE_NAMES),
                    "expires": rng.choice(_EXPIRIES),
                }
        else:
            source[field.name] = _setting(rng, field)
    return source


def _setting(rng: random.Random, field: schema.Field) -> Any:
    if field.kind == "list":
        return _list_setting(rng, field)
    if rng.random() >= _VARIED:
        return field.default
    if field.kind == "bool":
        return not field.default
    low = field.minimum or 0
    if field.maximum is not None and field.maximum <= 1000:
        return rng.randrange(low, field.maximum + 1, 5)
    return rng.choice([t for t in _THRESHOLDS if t != field.default and t >= low])


def _list_setting(rng: random.Random, field: schema.Field) -> list[str] | None:
    """A list setting: missing for 5% of sources, empty for 20%, else one to four of its choices."""
    roll = rng.random()
    if roll < 0.05:
        return None
    if roll < 0.25:
        return []
    picked = set(rng.sample(field.choices or (), rng.randint(1, 4)))
    return [c for c in field.choices or () if c in picked]


def _license_id(rng: random.Random) -> int | str:
    if rng.random() < 0.2:
        return f"lic-{rng.getrandbits(16):04x}"
    return rng.randint(1001, 1099)


def _whole_license(variety: random.Random, source: dict[str, Any]) -> None:
    """Make the source's license id a whole number, or no license at all."""
    if variety.random() < _UNLICENSED:
        source["license_id"] = None
        source.pop("license", None)
        return
    license_id = source["license_id"]
    if isinstance(license_id, str):
        license_id = 1100 + int(license_id.removeprefix("lic-"), 16) % 900
    source["license_id"] = license_id
    if "license" in source:
        source["license"]["id"] = license_id


def _unknown_fields(variety: random.Random, source: dict[str, Any]) -> None:
    for field in VARIETY_FIELDS.values():
        if field.kind == "str":
            roll = variety.random()
            source[field.name] = None if roll < 0.05 else variety.choice(TRICKY_TEXTS)
        elif variety.random() >= _LACKING:
            if field.kind == "bool":
                source[field.name] = variety.random() < 0.5
            else:
                source[field.name] = variety.randint(field.minimum or 0, field.maximum or 100)


class _Names:
    """The names used in each space, and a quick pick of one used elsewhere.

    "A name used in another space and not in this one" is the k-th of a sorted set;
    two Fenwick trees (names used anywhere, names used here) over every name that can
    be drawn find it in O(log n), so generating stays linear.
    """

    def __init__(self, spaces: range, n: int) -> None:
        every = sorted(_VOCABULARY | {_fallback(i) for i in range(1, n + 1)})
        self._every = every
        self._rank = {name: i for i, name in enumerate(every)}
        self._taken: dict[int, set[str]] = {s: set() for s in spaces}
        self._vocabulary_left = dict.fromkeys(spaces, len(_VOCABULARY))
        self._used: set[str] = set()
        self._anywhere = _Counts(len(every))
        self._here = {s: _Counts(len(every)) for s in spaces}

    def pick(self, rng: random.Random, space: int, source_id: int) -> str:
        """A name not yet used in ``space``; now and then one used in another space."""
        taken = self._taken[space]
        name: str | None = None
        if rng.random() < 0.03:
            elsewhere = len(self._used) - len(taken)
            if elsewhere:
                name = self._every[self._kth_elsewhere(space, rng.randrange(elsewhere))]
        if name is None and not self._vocabulary_left[space]:
            name = _fallback(source_id)  # every draw would be taken: skip them
        if name is None:
            name = next((c for c in (_name(rng) for _ in range(30)) if c not in taken), _fallback(source_id))
        self._add(space, name)
        return name

    def _add(self, space: int, name: str) -> None:
        self._taken[space].add(name)
        if name in _VOCABULARY:
            self._vocabulary_left[space] -= 1
        rank = self._rank[name]
        self._here[space].add(rank)
        if name not in self._used:
            self._used.add(name)
            self._anywhere.add(rank)

    def _kth_elsewhere(self, space: int, k: int) -> int:
        """The rank of the k-th (from 0) name used anywhere but not in ``space``."""
        anywhere, here = self._anywhere.tree, self._here[space].tree
        size, position, left = len(anywhere) - 1, 0, k + 1
        step = 1 << size.bit_length()
        while step:
            following = position + step
            if following <= size:
                between = anywhere[following] - here[following]
                if between < left:
                    position, left = following, left - between
            step >>= 1
        return position


class _Counts:
    """A Fenwick tree of 0/1 counts over ranks 0..size-1."""

    def __init__(self, size: int) -> None:
        self.tree = [0] * (size + 1)

    def add(self, rank: int) -> None:
        i = rank + 1
        while i < len(self.tree):
            self.tree[i] += 1
            i += i & -i


def _fallback(source_id: int) -> str:
    return f"Camera {source_id}"


def _name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.12:
        return f"{rng.choice(_UPLOADS)} {rng.randint(1, 12)}"
    place = rng.choice(_PLACES)
    if roll < 0.35:
        return f"{place} kiosk {rng.randint(1, 6)}"
    return f"{place} {rng.choice(_CAMERAS)} {rng.randint(1, 40):02d}"
