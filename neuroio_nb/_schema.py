"""The field registry: the one place that knows the fields of a source.

Frames, validation, CSV encoding, the sandbox and the form all read
:data:`FIELDS`. A field added here appears everywhere.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["id", "int", "bool", "str", "list", "object", "license"]

GROUPS = ("General", "Photo uploads", "Video stream", "Image storage")

#: Largest face-size threshold accepted (px area); a 4K frame is 8.3 million px.
MAX_THRESHOLD = 10_000_000


class EntryResult(str, enum.Enum):
    """Entry results a source can keep images for (``store_images_for_results``)."""

    NEW = "new"
    REINIT = "reinit"
    EXACT = "exact"
    HA = "ha"
    JUNK = "junk"
    NM = "nm"
    DET = "det"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Field:
    name: str
    kind: Kind
    group: str
    label: str
    help: str
    default: Any = None
    writable: bool = True
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] | None = None

    @property
    def dtype(self) -> str | type:
        """The pandas dtype of this field's column."""
        return {"id": "Int64", "int": "Int64", "bool": "boolean", "str": "string", "license": "string"}.get(
            self.kind, object
        )

    @property
    def is_threshold(self) -> bool:
        return self.kind == "int" and self.writable


def _threshold(name: str, group: str, label: str, help: str, default: int) -> Field:
    return Field(name, "int", group, label, help, default, minimum=0, maximum=MAX_THRESHOLD)


def _flag(name: str, group: str, label: str, help: str, default: bool) -> Field:
    return Field(name, "bool", group, label, help, default)


_G, _P, _V, _I = GROUPS

FIELDS: tuple[Field, ...] = (
    Field("id", "id", _G, "ID", "The source's id, given by the server.", writable=False),
    Field("space_id", "id", _G, "Space", "The space the source belongs to.", writable=False),
    Field("name", "str", _G, "Name", "Unique name of the source within its space.", required=True),
    Field(
        "license_id",
        "license",
        _G,
        "License id",
        "The license the source uses (ids have been both numbers and strings).",
    ),
    Field("license", "object", _G, "License", "The license object, as the server sends it.", writable=False),
    _threshold(
        "identify_facesize_threshold",
        _G,
        "Identify face size",
        "Face size (px area) needed to identify a person.",
        7000,
    ),
    _flag("use_pps_time", _G, "Use PPS time", "Use the preprocessing server's timestamps.", False),
    _threshold(
        "manual_create_facesize_threshold",
        _P,
        "Create face size",
        "Photo uploads: face size needed to create a person.",
        25000,
    ),
    _flag(
        "manual_create_on_ha",
        _P,
        "Create on HA",
        "Photo uploads: create a person on a 'high accuracy' match result.",
        False,
    ),
    _flag("manual_create_on_junk", _P, "Create on junk", "Photo uploads: create a person on a 'junk' result.", False),
    _flag("manual_identify_asm", _P, "Estimate age, sex, mood", "Photo uploads: estimate age, sex and mood.", True),
    _flag("auto_create_persons", _V, "Create persons", "Video: create persons automatically.", False),
    _threshold(
        "auto_create_facesize_threshold", _V, "Create face size", "Video: face size needed to create a person.", 25000
    ),
    _flag("auto_create_check_blur", _V, "Refuse blurred faces", "Video: refuse blurred faces.", True),
    _flag("auto_create_check_exposure", _V, "Refuse badly exposed faces", "Video: refuse badly exposed faces.", True),
    _flag("auto_create_on_ha", _V, "Create on HA", "Video: create on a 'ha' result.", False),
    _flag("auto_create_on_junk", _V, "Create on junk", "Video: create on a 'junk' result.", False),
    _flag("auto_check_face_angle", _V, "Refuse turned faces", "Video: refuse faces turned away.", True),
    _flag("auto_check_liveness", _V, "Check liveness", "Video: run the liveness check.", False),
    _flag(
        "auto_create_liveness_only",
        _V,
        "Create live faces only",
        "Video: create only faces that passed the liveness check.",
        True,
    ),
    _flag("auto_identify_asm", _V, "Estimate age, sex, mood", "Video: estimate age, sex and mood.", True),
    Field(
        "store_images_for_results",
        "list",
        _I,
        "Keep images for",
        "Which entry results keep their images.",
        default=None,
        choices=tuple(r.value for r in EntryResult),
    ),
)

BY_NAME: dict[str, Field] = {f.name: f for f in FIELDS}
#: Column order of a frame (the index ``id`` excluded).
COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.name != "id")
WRITABLE: tuple[str, ...] = tuple(f.name for f in FIELDS if f.writable)
READ_ONLY: tuple[str, ...] = tuple(f.name for f in FIELDS if not f.writable)
#: Aliases accepted on create/update, as the original SDK docs wrote them.
ALIASES: dict[str, str] = {"license": "license_id"}


def create_defaults() -> dict[str, Any]:
    """The values the SDK sends on create when a field is not given."""
    return {f.name: f.default for f in FIELDS if f.default is not None}
