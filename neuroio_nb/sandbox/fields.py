"""The fields the sandbox server knows, and the checks it runs on a write.

Everything comes from :mod:`neuroio_nb._schema`, plus :data:`EXTRA_FIELDS`:
fields real servers have sent that the client's schema does not know, so that
a client's handling of unknown fields is always exercised. With
``unknown_fields=True`` a sandbox also knows :data:`VARIETY_FIELDS`, and one
seeded with records learns any other field they carry (:class:`ServerFields`).

The checks are the server's own, as strict as JSON: ``7000.0`` is not a whole
number, ``"true"`` is not a switch. They do not reuse the client's validation, so
that a mistake there is not mirrored here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .. import _schema as schema
from .replies import field_error

EXTRA_FIELDS: dict[str, schema.Field] = {
    "auto_check_angle_threshold": schema.Field(
        "auto_check_angle_threshold",
        "int",
        schema.GROUPS[2],
        "Face angle threshold",
        "Video: the largest face turn (degrees) accepted by the angle check.",
        default=30,
        minimum=0,
        maximum=90,
    ),
}

#: Fields of a newer server: text that looks like numbers or booleans, and a number
#: and a switch that some sources lack (``Sandbox(unknown_fields=True)``).
VARIETY_FIELDS: dict[str, schema.Field] = {
    "site_code": schema.Field(
        "site_code", "str", schema.GROUPS[0], "Site code", "The operator's own code for the site (text, often digits)."
    ),
    "retention_days": schema.Field(
        "retention_days",
        "int",
        schema.GROUPS[3],
        "Retention days",
        "Days images are kept; sources on older firmware lack it.",
        minimum=1,
        maximum=3650,
    ),
    "night_mode": schema.Field(
        "night_mode", "bool", schema.GROUPS[2], "Night mode", "Infrared mode; sources on older firmware lack it."
    ),
}

#: Text a CSV reader or a type-guesser is tempted to turn into something else.
TRICKY_TEXTS = (
    "007",
    "0420",
    "true",
    "False",
    "1.50",
    "",
    "1e3",
    "NaN",
    "null",
    "None",
    "-0",
    " 42",
    "TRUE",
    "N/A",
    "0x1F",
    "12,5",
    "A-17",
    "=1+2",
)

_JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
    type(None): "null",
}


def server_fields() -> tuple[schema.Field, ...]:
    """Every field a source of a plain sandbox carries, schema order first."""
    return schema.FIELDS + tuple(EXTRA_FIELDS.values())


def json_type(value: Any) -> str:
    return _JSON_TYPES.get(type(value), type(value).__name__)


class ServerFields:
    """The fields one sandbox knows and how it checks a write to them.

    ``license_ids="int"`` accepts whole-number license ids only; fields the seeded
    records carry that no registry knows are learned with the JSON types they had.
    """

    def __init__(
        self, *, license_ids: str = "mixed", unknown_fields: bool = False, seeded: Iterable[Mapping[str, Any]] = ()
    ) -> None:
        known = {f.name: f for f in server_fields()}
        if unknown_fields:
            known.update(VARIETY_FIELDS)
        self.known = known
        self.license_ids = license_ids
        self.learned: dict[str, set[str]] = {}
        for record in seeded:
            for name, value in record.items():
                if name not in known:
                    self.learned.setdefault(name, set()).add(json_type(value))

    def filled_on_create(self) -> tuple[schema.Field, ...]:
        """The fields a new source gets (from the body, or their defaults)."""
        return tuple(self.known.values())

    def problems(self, body: Mapping[str, Any], *, creating: bool) -> list[dict[str, Any]]:
        """Every problem with a create/update body, as API field errors."""
        found = [field_error(name, message) for name, value in body.items() if (message := self._problem(name, value))]
        if creating:
            found += [
                field_error(f.name, "This field is required.")
                for f in self.known.values()
                if f.required and f.writable and f.name not in body
            ]
        return found

    def _problem(self, name: str, value: Any) -> str | None:
        field = self.known.get(name)
        if field is None:
            return self._learned_problem(name, value)
        if not field.writable:
            return "This field is read-only."
        if value is None:
            return "This field may not be null." if field.required or field.default is not None else None
        return _kind_problem(field, value, whole_license_ids=self.license_ids == "int")

    def _learned_problem(self, name: str, value: Any) -> str | None:
        seen = self.learned.get(name)
        if seen is None:
            return "Unknown field."
        if seen <= {"null"} or json_type(value) in seen:
            return None
        return f"must be {' or '.join(sorted(seen))}, not {json_type(value)}"


def _kind_problem(field: schema.Field, value: Any, *, whole_license_ids: bool) -> str | None:
    """The server's check of a present value of a field it knows (the client's own rules are
    in ``neuroio_nb._values``: the sandbox checks as a real server would, in its own words)."""
    if field.kind == "license":
        return _license_problem(value, whole_license_ids=whole_license_ids)
    check = _PROBLEMS_BY_KIND.get(field.kind)
    return None if check is None else check(field, value)


def _switch_problem(field: schema.Field, value: Any) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def _number_problem(field: schema.Field, value: Any) -> str | None:
    if type(value) is not int:
        return "must be a whole number"
    if field.minimum is not None and value < field.minimum:
        return f"must be >= {field.minimum}"
    if field.maximum is not None and value > field.maximum:
        return f"must be <= {field.maximum}"
    return None


def _text_problem(field: schema.Field, value: Any) -> str | None:
    if not isinstance(value, str):
        return "must be text"
    return "must not be empty" if field.required and not value.strip() else None


def _license_problem(value: Any, *, whole_license_ids: bool) -> str | None:
    if type(value) is int:
        return None
    if whole_license_ids:
        return "must be a whole number"
    return None if isinstance(value, str) else "must be a number or text"


def _list_problem(field: schema.Field, value: Any) -> str | None:
    if not isinstance(value, list):
        return "must be a list"
    bad = [v for v in value if not isinstance(v, str) or (field.choices and v not in field.choices)]
    if bad:
        return f"unknown value(s) {bad!r}; allowed: {', '.join(field.choices or ())}"
    return None


_PROBLEMS_BY_KIND: dict[str, Callable[[schema.Field, Any], str | None]] = {
    "bool": _switch_problem,
    "int": _number_problem,
    "str": _text_problem,
    "list": _list_problem,
}
