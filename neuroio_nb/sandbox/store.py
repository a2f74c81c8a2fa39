"""The sandbox's state: its sources, behind one lock.

Every read hands out deep copies, so nothing outside can change the state
except through :class:`Store`'s methods, which validate like the API does.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from typing import Any

from .. import _schema as schema
from .fields import ServerFields
from .replies import ApiFailure, field_error

_DUPLICATE = "source with this name already exists in the space"


class Store:
    """Sources by id, kept in id order (new ids only ever grow)."""

    def __init__(self, sources: Iterable[dict[str, Any]], fields: ServerFields | None = None) -> None:
        self._lock = threading.Lock()
        rows = [copy.deepcopy(dict(s)) for s in sources]
        self.fields = fields or ServerFields(seeded=rows)
        next_id = max((r["id"] for r in rows if isinstance(r.get("id"), int)), default=0) + 1
        for row in rows:
            if not isinstance(row.get("id"), int):
                row["id"], next_id = next_id, next_id + 1
        self._sources = {r["id"]: r for r in sorted(rows, key=lambda r: r["id"])}
        self._next_id = next_id
        #: The ids each listing filter matches, until a write changes what matches.
        self._matches: dict[tuple[str | None, frozenset[int] | None], list[int]] = {}
        #: The ids holding each (space, name): a write's duplicate check without a scan.
        self._named: dict[tuple[Any, Any], set[int]] = {}
        for row in self._sources.values():
            self._name_index(row, add=True)
        spaces = [r["space_id"] for r in rows if isinstance(r.get("space_id"), int)]
        #: The space new sources go to: the first one.
        self.default_space = min(spaces, default=1)

    def snapshot(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            return copy.deepcopy(self._sources)

    def get(self, source_id: int) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._find(source_id))

    def page(self, q: str | None, spaces: set[int] | None, offset: int, limit: int) -> tuple[int, list[dict[str, Any]]]:
        """The total of matching sources, and copies of ``limit`` of them from ``offset``.

        Linear in ``limit``, not in the account: the matching ids are kept per filter
        until a write changes what matches, as a database's index would."""
        needle = q.casefold() if q else None
        key = (needle, None if spaces is None else frozenset(spaces))
        with self._lock:
            matching = self._matches.get(key)
            if matching is None:
                matching = self._matches[key] = [
                    s["id"]
                    for s in self._sources.values()
                    if (needle is None or needle in str(s.get("name") or "").casefold())
                    and (spaces is None or s.get("space_id") in spaces)
                ]
            return len(matching), copy.deepcopy([self._sources[i] for i in matching[offset : offset + limit]])

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._check(body, creating=True, space=self.default_space, own_id=None)
            defaults = schema.create_defaults()
            source: dict[str, Any] = {}
            for field in self.fields.filled_on_create():
                if field.name == "id":
                    source[field.name] = self._next_id
                elif field.kind == "id":
                    source[field.name] = self.default_space
                elif field.writable:
                    source[field.name] = defaults.get(field.name, field.default)
            source.update(copy.deepcopy(body))
            self._sources[self._next_id] = source
            self._next_id += 1
            self._name_index(source, add=True)
            self._matches.clear()
            return copy.deepcopy(source)

    def update(self, source_id: int, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            source = self._find(source_id)
            self._check(body, creating=False, space=source.get("space_id"), own_id=source_id)
            renamed = "name" in body
            if renamed:
                self._name_index(source, add=False)
                self._matches.clear()
            source.update(copy.deepcopy(body))
            if renamed:
                self._name_index(source, add=True)
            return copy.deepcopy(source)

    def delete(self, source_id: int) -> None:
        with self._lock:
            self._name_index(self._find(source_id), add=False)
            del self._sources[source_id]
            self._matches.clear()

    def _name_index(self, source: dict[str, Any], *, add: bool) -> None:
        key = _name_key(source.get("space_id"), source.get("name"))
        holders = self._named.setdefault(key, set())
        (holders.add if add else holders.discard)(source["id"])

    def _find(self, source_id: int) -> dict[str, Any]:
        try:
            return self._sources[source_id]
        except KeyError:
            raise ApiFailure.not_found() from None

    def _check(self, body: dict[str, Any], *, creating: bool, space: Any, own_id: int | None) -> None:
        problems = self.fields.problems(body, creating=creating)
        name = body.get("name")
        name_ok = not any(p["name"] == "name" for p in problems)
        if name_ok and "name" in body and self._named.get(_name_key(space, name), set()) - {own_id}:
            problems.append(field_error("name", _DUPLICATE))
        if problems:
            raise ApiFailure.invalid(problems)


def _name_key(space: Any, name: Any) -> tuple[Any, Any]:
    """A hashable (space, name) key, whatever JSON values they are."""
    return (repr(space), repr(name))
