"""The value rules: one meaning each, used by every layer above.

- :func:`to_python`: a frame cell as the plain JSON value it stands for.
- :func:`whole_number`: is a value exactly a whole number, and which one.
- :func:`check_value`: why a value is not acceptable for a field of the schema.
- :func:`same`: are two values the same setting of a field.
- :func:`three_way`: what to do with my value, given the one I read and the server's now.
- :func:`shown`: a value as a person reads it in a plan, report, form or table.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import pandas as pd

from ._schema import BY_NAME, Field

#: How a missing value is shown where a blank would be lost (plans, reports, the form).
MISSING = "—"
#: The largest magnitude at which every whole number is exactly a float64. A float beyond it
#: may be the rounded neighbour of the number meant (an id that passed through a float column).
EXACT_FLOAT = 2**53
_DIGITS = re.compile(r"[+-]?[0-9]+")


def is_missing(value: Any) -> bool:
    """None, ``pd.NA``, ``pd.NaT`` or a float NaN (not an empty list or text)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, (float, np.floating)) and math.isnan(value)


def to_python(value: Any) -> Any:
    """A frame cell as a plain JSON value (NA -> None, numpy scalars -> Python, arrays -> lists)."""
    if is_missing(value):
        return None
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [to_python(v) for v in value]
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def whole_number(value: Any, *, text: bool = False) -> int | None:
    """``value`` as the whole number it exactly is, else None.

    Python and numpy integers are; so is a float that is whole and small enough
    (below 2**53) to be sure it is the number meant; booleans never are. With
    ``text``, a string of ASCII digits (an optional sign, surrounding blanks) is too.
    """
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        number = float(value)
        if math.isfinite(number) and number.is_integer() and abs(number) < EXACT_FLOAT:
            return int(number)
        return None
    if text and isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    return None


#: The largest source id: ids are unsigned 64-bit numbers, and the server numbers them from 1.
MAX_ID = 2**64 - 1
#: What a source id is, as every message about one says it.
ID_RULE = "a source id is a whole number, 1 or more"
#: What a count such as a page's ``offset`` or ``limit`` is, as messages say it.
COUNT_RULE = "must be a whole number, 0 or more"


def id_problem(value: Any, *, text: bool = False) -> str | None:
    """Why ``value`` is not a source id (None if it is). With ``text``, digit strings are too."""
    number = whole_number(value, text=text)
    if number is None or number < 1:
        return ID_RULE
    if number > MAX_ID:
        return f"a source id is at most {MAX_ID:,}"
    return None


def check_value(field: Field, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``field`` (None if it is).

    Takes plain Python values and numpy scalars alike (a cell taken from a frame);
    ``None`` means "missing".
    """
    value = to_python(value)
    if value is None:
        return "is required" if field.required else None
    check = _CHECKS_BY_KIND.get(field.kind)
    return None if check is None else check(field, value)


def _check_switch(field: Field, value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _check_number(field: Field, value: Any) -> str | None:
    number = whole_number(value)
    if number is None:
        return "must be a whole number"
    if field.minimum is not None and number < field.minimum:
        return f"must be {field.minimum:,} or more"
    if field.maximum is not None and number > field.maximum:
        return f"must be at most {field.maximum:,}"
    return None


def _check_text(field: Field, value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be text"
    if field.required and not value.strip():
        return "must not be empty"
    return None


def _check_license(field: Field, value: Any) -> str | None:
    if not isinstance(value, str) and whole_number(value) is None:
        return "must be a whole number or text"
    return None


def _check_list(field: Field, value: Any) -> str | None:
    if isinstance(value, str) and value.lstrip().startswith("["):
        return (
            "must be a list, not JSON text (plain pd.read_csv leaves it as text; "
            "neuroio_nb.read_csv reads it as a list)"
        )
    if not isinstance(value, list):
        return "must be a list"
    bad = [v for v in value if not isinstance(v, str) or (field.choices and v not in field.choices)]
    if bad:
        return f"unknown value(s) {bad!r}; allowed: {', '.join(field.choices or ())}"
    return None


#: The check of a present value, by the field's kind (kinds not here take any value).
_CHECKS_BY_KIND: dict[str, Callable[[Field, Any], str | None]] = {
    "bool": _check_switch,
    "int": _check_number,
    "id": _check_number,
    "str": _check_text,
    "license": _check_license,
    "list": _check_list,
}


def sendable(field: str, value: Any) -> Any:
    """A cell as it is sent to the server: plain JSON (see :func:`to_python`), and

    - a whole float in a number field, or in a field the schema does not know, as
      the integer it stands for (pandas makes a column float when a cell is missing);
    - a license id that is a whole number in text (:func:`license_number`: ``"204"``, or
      ``"204.0"`` as pandas and spreadsheets show a float column; a frame holds license
      ids as text) as the integer; other texts (``"lic-7"``, ``"007"``) stay text.
    """
    value = to_python(value)
    spec = BY_NAME.get(field)
    kind = spec.kind if spec is not None else None
    if isinstance(value, float) and kind in (None, "int", "id", "license"):
        number = whole_number(value)
        return value if number is None else number
    if kind == "license" and isinstance(value, str) and (number := license_number(value)) is not None:
        return number
    return value


#: A whole number as a license id's text: plain digits, or followed by a point and zeros (``204.0``).
_LICENSE_NUMBER = re.compile(r"(0|[1-9][0-9]*)(\.0+)?")


def license_number(text: str) -> int | None:
    """The one rule for a license id typed or read as text (a CSV cell, the form's box, a frame's
    cell): ``"204"`` and ``"204.0"`` (a float column as pandas and spreadsheets show it) are
    license 204; anything else (``"007"``, ``"204.5"``, ``"lic-7"``) is a text id (None here)."""
    match = _LICENSE_NUMBER.fullmatch(text)
    return int(match.group(1)) if match else None


def id_index(ids: Any, name: str = "id") -> pd.Index:
    """Whole-number source ids as an index: int64, or uint64 when one is 2**63 or more (never wrapped)."""
    numbers = ids.to_numpy() if isinstance(ids, pd.Index) and ids.dtype.kind in "iu" else [int(i) for i in ids]
    wide = len(numbers) > 0 and max(numbers) >= 2**63
    index: pd.Index = pd.Index(numbers, dtype="uint64" if wide else "int64", name=name)
    return index


def same(field: str, a: Any, b: Any) -> bool:
    """Are two values the same setting of ``field``?

    NA is None; lists of a list field compare as sets; license ids compare as
    text (``204`` is ``"204"``); True is not 1; an object field's JSON text is
    its object (as plain ``pd.read_csv`` leaves it).
    """
    a, b = to_python(a), to_python(b)
    spec = BY_NAME.get(field)
    if spec is not None and a is not None and b is not None:
        by_kind = _same_by_kind(spec.kind, a, b)
        if by_kind is not None:
            return by_kind
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _same_by_kind(kind: str, a: Any, b: Any) -> bool | None:
    """The answer of :func:`same` for two present values of a kind with its own rule, else None."""
    if kind == "list":
        try:
            return set(_json_or_text(a)) == set(_json_or_text(b))
        except TypeError:
            return False
    if kind == "license":
        return _license_text(a) == _license_text(b)
    if kind == "object" and isinstance(a, str) != isinstance(b, str):
        return bool(_json_or_text(a) == _json_or_text(b))
    return None


def _license_text(value: Any) -> str:
    number = license_number(value) if isinstance(value, str) else whole_number(value)
    return str(number) if number is not None else str(value)


def _json_or_text(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


Side = Literal["agree", "mine", "conflict"]


def three_way(field: str, base: Any, mine: Any, theirs: Any) -> Side:
    """What to do with my value of ``field``: ``base`` as I read it, ``theirs`` on the server now.

    - ``"agree"``: the server already holds mine; nothing to send.
    - ``"mine"``: the server still holds the base; mine is sent.
    - ``"conflict"``: someone changed it meanwhile to something else; mine is
      sent only if the user says to overwrite.
    """
    if same(field, theirs, mine):
        return "agree"
    if same(field, theirs, base):
        return "mine"
    return "conflict"


def shown(value: Any, *, missing: str = MISSING, json_literals: bool = False) -> str:
    """A value as a person reads it: missing as ``missing``, a list its items, an object as JSON.

    With ``json_literals`` (the command line, read beside the CSV and JSON files a
    user edits), booleans and lists are spelt as those files spell them: ``true``,
    ``["new", "ha"]``, ``[]``.
    """
    value = to_python(value)
    if value is None:
        return missing
    if json_literals and isinstance(value, (bool, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


__all__ = [
    "COUNT_RULE",
    "EXACT_FLOAT",
    "ID_RULE",
    "MAX_ID",
    "MISSING",
    "check_value",
    "id_index",
    "id_problem",
    "is_missing",
    "same",
    "sendable",
    "shown",
    "three_way",
    "to_python",
    "whole_number",
]
