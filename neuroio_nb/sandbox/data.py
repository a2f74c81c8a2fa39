"""Realistic, deterministic sources for the sandbox to serve.

Every value is drawn from one ``random.Random(seed)``, source after source, so
``generate_sources(100, seed)`` is also the first 100 of ``generate_sources(500, seed)``.
Fields are filled by kind from the schema (plus the sandbox's extra fields),
so a field added to the schema is generated without touching this module.
"""
from __future__ import annotations

import random
from typing import Any

from .. import schema
from .fields import server_fields

_PLACES = ("Lobby entrance", "Main gate", "Parking A", "Parking B", "Reception",
           "Warehouse dock", "Loading bay", "Staff canteen", "Floor 3 corridor",
           "North turnstiles", "Visitor desk", "Server room")
_CAMERAS = ("cam", "dome cam", "turnstile cam")
_UPLOADS = ("Upload API", "Mobile app upload", "Batch import")
#: Spaces are uneven: a head office and a few smaller sites.
_SPACE_WEIGHTS = (0.42, 0.27, 0.16, 0.10, 0.05)
_THRESHOLDS = (3000, 5000, 7000, 9000, 12000, 15000, 20000, 25000, 30000, 40000)
_LICENSE_NAMES = ("Standard", "Enterprise", "Trial")
_EXPIRIES = ("2026-12-31", "2027-03-01", "2027-09-30")
#: Share of settings that differ from the default.
_VARIED = 0.25


def generate_sources(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` sources with ids 1..n, spread unevenly over 4 or 5 spaces."""
    rng = random.Random(seed)
    spaces = range(1, rng.choice((4, 5)) + 1)
    weights = _SPACE_WEIGHTS[: len(spaces)]
    licenses = {s: _license_id(rng) for s in spaces}
    names: dict[int, set[str]] = {s: set() for s in spaces}
    sources = []
    for source_id in range(1, n + 1):
        space = rng.choices(spaces, weights)[0]
        name = _unique_name(rng, names, space, source_id)
        license_id = licenses[space] if rng.random() < 0.8 else _license_id(rng)
        sources.append(_source(rng, source_id, space, name, license_id))
    return sources


def _source(rng: random.Random, source_id: int, space: int, name: str,
            license_id: int | str) -> dict[str, Any]:
    source: dict[str, Any] = {}
    for field in server_fields():
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
                source[field.name] = {"id": license_id, "name": rng.choice(_LICENSE_NAMES),
                                      "expires": rng.choice(_EXPIRIES)}
        else:
            source[field.name] = _setting(rng, field)
    return source


def _setting(rng: random.Random, field: schema.Field) -> Any:
    if field.kind == "list":
        roll = rng.random()
        if roll < 0.05:
            return None
        if roll < 0.25:
            return []
        picked = set(rng.sample(field.choices or (), rng.randint(1, 4)))
        return [c for c in field.choices or () if c in picked]
    if rng.random() >= _VARIED:
        return field.default
    if field.kind == "bool":
        return not field.default
    low = field.minimum or 0
    if field.maximum is not None and field.maximum <= 1000:
        return rng.randrange(low, field.maximum + 1, 5)
    return rng.choice([t for t in _THRESHOLDS if t != field.default and t >= low])


def _license_id(rng: random.Random) -> int | str:
    if rng.random() < 0.2:
        return f"lic-{rng.getrandbits(16):04x}"
    return rng.randint(1001, 1099)


def _unique_name(rng: random.Random, names: dict[int, set[str]], space: int,
                 source_id: int) -> str:
    """A name not yet used in ``space``; now and then one used in another space."""
    taken = names[space]
    name: str | None = None
    if rng.random() < 0.03:
        elsewhere = sorted({n for s, used in names.items() if s != space for n in used} - taken)
        name = rng.choice(elsewhere) if elsewhere else None
    if name is None:
        name = next((c for c in (_name(rng) for _ in range(30)) if c not in taken),
                    f"Camera {source_id}")
    taken.add(name)
    return name


def _name(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.12:
        return f"{rng.choice(_UPLOADS)} {rng.randint(1, 12)}"
    place = rng.choice(_PLACES)
    if roll < 0.35:
        return f"{place} kiosk {rng.randint(1, 6)}"
    return f"{place} {rng.choice(_CAMERAS)} {rng.randint(1, 40):02d}"

