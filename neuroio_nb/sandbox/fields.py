"""The fields the sandbox server knows, and the checks it runs on a write.

Everything comes from :mod:`neuroio_nb.schema`, plus :data:`EXTRA_FIELDS`:
fields real servers have sent that the client's schema does not know, so that
a client's handling of unknown fields is always exercised.
"""
from __future__ import annotations

from typing import Any

from .. import schema, values
from .replies import field_error

EXTRA_FIELDS: dict[str, schema.Field] = {
    "auto_check_angle_threshold": schema.Field(
        "auto_check_angle_threshold", "int", schema.GROUPS[2], "Face angle threshold",
        "Video: the largest face turn (degrees) accepted by the angle check.",
        default=30, minimum=0, maximum=90,
    ),
}


def server_fields() -> tuple[schema.Field, ...]:
    """Every field a source can carry on this server, schema order first."""
    return schema.FIELDS + tuple(EXTRA_FIELDS.values())


def server_field(name: str) -> schema.Field | None:
    return schema.BY_NAME.get(name) or EXTRA_FIELDS.get(name)


def field_problems(body: dict[str, Any], *, creating: bool) -> list[dict[str, Any]]:
    """Every problem with a create/update body, as API field errors."""
    found = [field_error(name, message)
             for name, value in body.items() if (message := _problem(name, value))]
    if creating:
        found += [field_error(f.name, values.check_value(f, None) or "is required")
                  for f in server_fields() if f.required and f.writable and f.name not in body]
    return found


def _problem(name: str, value: Any) -> str | None:
    field = server_field(name)
    if field is None:
        return "Unknown field."
    if not field.writable:
        return "This field is read-only."
    if value is None and not field.required and field.default is not None:
        return "This field may not be null."
    # check_value accepts integral floats such as 7000.0; a JSON API does not.
    if isinstance(value, float) and field.kind == "int":
        return "must be a whole number"
    if isinstance(value, float) and field.kind == "license":
        return "must be a number or text"
    return values.check_value(field, value)
