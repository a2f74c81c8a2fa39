"""The sources endpoint's REST verbs and paging readers (layer 2).

One page (:meth:`SourcesAPI.list`), every source (:meth:`SourcesAPI.iter`,
:meth:`SourcesAPI.records`), one source (get/create/update/delete), and the
current state of many (:meth:`SourcesAPI.current`). It speaks JSON dicts only:
frames, plans, bulk jobs, CSV and the form live in the layers above.
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import numpy as np

from ._journal import Intent, journaled
from ._paging import LISTING_CHANGED, Ahead, Walk
from ._progress import progress_bar
from ._schema import ALIASES, BY_NAME, create_defaults
from ._transport import IfUnknown, Settled, Transport, _encode_json, outcome_unknown
from ._values import COUNT_RULE, check_value, id_problem, same, whole_number
from .errors import (
    ListingChangedWarning,
    MalformedResponseError,
    NeuroIOError,
    NotFoundError,
    Problem,
    TransportError,
    ValidationError,
)

PATH = "v1/sources/"
#: One source, as the API sends it.
Source = dict[str, Any]
#: One page of the listing, as the API sends it: ``{"count", "next", "previous", "results"}``.
Page = dict[str, Any]
SourceList = list[Source]


class SourcesAPI:
    """The REST verbs of ``v1/sources/`` over one :class:`~neuroio_nb._transport.Transport`."""

    def __init__(self, client: Transport) -> None:
        self.client = client
        #: The space this token's creates land in, once a create's answer showed it (the API
        #: lets no client choose it, and says it nowhere else). None: not known yet.
        self.landing_space: int | None = None

    def __repr__(self) -> str:
        return f"<Sources of {self.client!r}>"

    # ---- one page, every page -------------------------------------------------
    def list(
        self, q: str | None = None, spaces_ids: Iterable[int] | int | None = None, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]:
        """One page, as the API sends it: ``{"count", "next", "previous", "results"}``.

        Example::

            page = client.sources.list(q="lobby", limit=50)
            page["count"], len(page["results"])
        """
        with self.client.one_call():
            params: dict[str, Any] = {"limit": _count_param("limit", limit), "offset": _count_param("offset", offset)}
            if q is not None:
                params["q"] = q
            if spaces_ids is not None:
                params["spaces_ids"] = _spaces_param(spaces_ids)
            return _checked_page(self.client.request("GET", PATH, params=params), PATH)

    def iter(self, q: str | None = None, spaces_ids: Iterable[int] | int | None = None) -> Iterator[Source]:
        """Every source, page after page, as dicts, each once.

        Pages overlap by one row, so sources added or deleted while the listing is
        read cannot make others go unseen; a :class:`ListingChangedWarning` says
        when that happened (once the last page is read).

        Example::

            names = [source["name"] for source in client.sources.iter(spaces_ids=[2])]
        """
        walk = Walk(self.client.page_size)
        yield from self._walked(walk, q, spaces_ids)

    def _walked(
        self,
        walk: Walk,
        q: str | None,
        spaces_ids: Any,
        *,
        warn: bool = True,
        fetched: Mapping[int, Page] | None = None,
    ) -> Iterator[Source]:
        """The new sources of each page ``walk`` asks for: from ``fetched`` (pages by offset), else read."""
        fetched = dict(fetched or {})
        while (ask := walk.next_request()) is not None:
            offset, limit = ask
            page = fetched.pop(offset, None) or self.list(q, spaces_ids, limit=limit, offset=offset)
            yield from walk.take(offset, page)
        if warn and walk.changed:
            warnings.warn(LISTING_CHANGED, ListingChangedWarning, stacklevel=3)

    def records(
        self,
        q: str | None = None,
        spaces_ids: Iterable[int] | int | None = None,
        progress: bool | None = None,
        *,
        first: Page | None = None,
        fetched: Mapping[int, Page] | None = None,
    ) -> tuple[SourceList, bool]:
        """Every source as dicts, each once; and whether the listing changed while it was read.

        With a ``count``, the pages after the first are fetched at once; then they
        are walked as :class:`~neuroio_nb._paging.Walk` reads a listing page after
        page (each one row early, so a seam shows any shift), any page the walk
        needs that was not fetched (a shift, a short page, a ``count`` too low
        while ``next`` goes on) read then. ``first``: the first page (offset 0,
        the client's page size), if already read; ``fetched``: pages after it
        already read, by offset (those are not fetched again).

        Example::

            sources, changed = client.sources.records(q="dock")
        """
        if first is None:
            first = self.list(q, spaces_ids, limit=self.client.page_size, offset=0)
        rows: SourceList = list(first["results"])
        count = first.get("count")
        if not rows:
            return rows, False
        walk = Walk(len(rows), rows=rows, after=first)
        if not isinstance(count, int):
            for _ in self._walked(walk, q, spaces_ids, warn=False):
                pass
            return walk.rows, walk.changed
        if fetched is None:
            fetched = self._concurrently(q, spaces_ids, len(rows), count, progress)
        counts = {page.get("count") for page in fetched.values()}
        for _ in self._walked(walk, q, spaces_ids, warn=False, fetched=dict(fetched)):
            pass
        # Fewer rows than a count every page agreed on, with no shift seen: the count is wrong, not the listing.
        return walk.rows, walk.changed or counts - {count} != set() or len(walk.rows) > count

    def _concurrently(
        self, q: str | None, spaces_ids: Any, size: int, count: int, progress: bool | None
    ) -> dict[int, Page]:
        """The pages after the first that ``count`` implies, several at once, by offset; an
        error ends the read at the caller. They are asked for as earlier ones come back (a
        window of twice ``max_readers``), and none past a page that shows the listing ends:
        a ``count`` far above the sources there costs a few empty pages, not millions."""
        ahead = Ahead(count, size)
        bar = progress_bar(total=ahead.total + 1, desc="sources", unit="page", progress=progress)
        bar.update(1)
        window = 2 * self.client.max_readers
        pages: dict[int, Page] = {}
        pool = ThreadPoolExecutor(self.client.max_readers)
        try:
            asked = {pool.submit(self.list, q, spaces_ids, min(size, count - o), o): o for o in ahead.next(window)}
            while asked:
                done, _ = wait(asked, return_when=FIRST_COMPLETED)
                for future in done:
                    offset = asked.pop(future)
                    pages[offset] = future.result()
                    ahead.answered(offset, pages[offset])
                    bar.update(1)
                for future in [f for f, o in asked.items() if ahead.beyond(o) and f.cancel()]:
                    del asked[future]
                for o in ahead.next(window - len(asked)):
                    asked[pool.submit(self.list, q, spaces_ids, min(size, count - o), o)] = o
            return pages
        except NeuroIOError as error:  # the traceback ends here, not in the pool's threads
            raise error.with_traceback(None) from None
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()

    # ---- one source -----------------------------------------------------------
    def get(self, source_id: int) -> dict[str, Any]:
        """One source, as the API sends it (``NotFoundError`` when there is none).

        Example::

            source = client.sources.get(42)
            source["auto_check_liveness"]
        """
        with self.client.one_call():
            return _checked_source(self.client.request("GET", _path(source_id)), _path(source_id))

    def create(self, name: str, **fields: Any) -> dict[str, Any]:
        """Create a source; fields not given get the SDK's defaults.

        A create whose outcome is unknown (the connection dropped after sending,
        a 502/504) is settled by reading the server: a source of that name and
        those settings that was not there before the POST is the one made;
        with none, the create is sent again. Never two sources for one call.

        Example::

            new = client.sources.create("Dock cam 3", auto_check_liveness=True, license=7)
            new["id"]
        """
        return self.create_from(dict(fields, name=name))

    def create_from(self, fields: Mapping[str, Any], *, holders: Collection[int] | None = None) -> dict[str, Any]:
        """:meth:`create` for callers holding every field (``name`` too) in one mapping.

        ``holders``: the ids of every source that held the name just before, when the
        caller has read them already (from a listing that covers every source that could
        hold the name: unscoped, or searched with a ``q`` the name contains, and not
        narrowed to some spaces). None: read them first (one GET). An unknown outcome is
        settled against them; the journal records them before the POST goes, so that undo
        and resume settle it the same way from another process.

        Example::

            client.sources.create_from({"name": "Dock cam 4", "use_pps_time": True})
        """
        with self.client.one_call():
            body = self._create_body(fields)
            held = self._holders_of(body["name"]) if holders is None else frozenset(int(i) for i in holders)
            if self.client.journal is None:
                return self._create(body, held)
            _encode_json(body, "POST", PATH)  # a body that cannot be sent is refused before anything is written
            intent = Intent(
                action="create",
                source_id=None,
                after=body,
                name=body["name"],
                holders=sorted(held),
                space=self.landing_space,
            )
            return journaled(
                self.client.journal,
                self.client.base_url,
                intent,
                lambda: self._create(body, held),
                applied="created",
                result_id=lambda made: made["id"],
                unknown=outcome_unknown,
            )

    def _send_create(self, fields: Mapping[str, Any], *, holders: Collection[int]) -> dict[str, Any]:
        """POST a create, not journaled: for a job whose own run records it (with ``holders``,
        the ids that held the name just before, before this is called)."""
        return self._create(self._create_body(fields), frozenset(int(i) for i in holders))

    def _holders_of(self, name: Any) -> frozenset[int]:
        """The ids of every source (in every space this token sees) holding ``name`` now."""
        return frozenset(source["id"] for source in self._named(name))

    def _create_body(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        if "name" not in fields:
            raise ValidationError([Problem(None, "name", None, "a source to create needs a name")], what="request")
        return {**create_defaults(), **_writable(dict(fields))}

    def _create(self, body: dict[str, Any], held: frozenset[int]) -> dict[str, Any]:
        """POST ``body``; ``held``: the ids that held its name before. Learns :attr:`landing_space`."""

        def if_unknown(error: NeuroIOError) -> Settled | None:
            made = self._created_since(body, held)
            return None if made is None else Settled(made)

        made = _checked_source(self._write("POST", PATH, body, if_unknown=if_unknown), PATH)
        space = made.get("space_id")
        if self.landing_space is None and isinstance(space, int) and not isinstance(space, bool):
            self.landing_space = space
        return made

    def _named(self, name: str) -> SourceList:
        return [source for source in self.iter(q=name) if source.get("name") == name]

    def _created_since(self, body: dict[str, Any], before: frozenset[int]) -> dict[str, Any] | None:
        """The source ``body`` made, if it is there: one that was not among ``before`` (ids)."""
        new = [
            source
            for source in self._named(body["name"])
            if source["id"] not in before and all(same(k, source.get(k), v) for k, v in body.items() if k in BY_NAME)
        ]
        if len(new) > 1:
            raise TransportError(
                f"{len(new)} sources named {body['name']!r} with these settings appeared "
                f"meanwhile (ids {', '.join(str(s['id']) for s in new)}); "
                "one of them may be the one this create made"
            )
        return new[0] if new else None

    def update(self, source_id: int, **fields: Any) -> dict[str, Any]:
        """PATCH only the given fields (checked against the schema first); journaled as a run
        of its own, with the values it replaces (read just before).

        Example::

            client.sources.update(42, identify_facesize_threshold=9000, use_pps_time=True)
        """
        with self.client.one_call():
            path = _path(source_id)
            body = _writable(fields, source_id)
            if self.client.journal is None:
                return self._send_update(source_id, body)
            _encode_json(body, "PATCH", path)
            was = self.get(source_id)  # the journal keeps the values this write replaces
            intent = Intent(
                action="update",
                source_id=was["id"],
                before={f: was.get(f) for f in body},
                after=body,
                name=was.get("name"),
            )
            return journaled(
                self.client.journal,
                self.client.base_url,
                intent,
                lambda: self._send_update(source_id, body),
                applied="updated",
                result_id=lambda result: result["id"],
                unknown=outcome_unknown,
            )

    def _send_update(self, source_id: int, fields: Mapping[str, Any]) -> dict[str, Any]:
        """PATCH ``fields``, not journaled: for a job whose own run records it."""
        path = _path(source_id)
        return _checked_source(self._write("PATCH", path, _writable(dict(fields), source_id)), path)

    def delete(self, source_id: int) -> None:
        """Delete a source, journaled as a run of its own (with the whole source, so that undo
        can make it again). A retry after an answer was lost finds it gone: that is success.

        Example::

            client.sources.delete(42)
        """
        with self.client.one_call():
            if self.client.journal is None:
                return self._send_delete(source_id)
            was = self.get(source_id)
            journaled(
                self.client.journal,
                self.client.base_url,
                Intent(action="delete", source_id=was["id"], before=was, name=was.get("name")),
                lambda: self._send_delete(source_id),
                applied="deleted",
                result_id=lambda _: was["id"],
                unknown=outcome_unknown,
            )
            return None

    def _send_delete(self, source_id: int) -> None:
        """DELETE, not journaled: for a job whose own run records it."""
        self._delete(_path(source_id))

    def _delete(self, path: str) -> None:
        unanswered: builtins.list[NeuroIOError] = []

        def if_unknown(error: NeuroIOError) -> Settled | None:
            unanswered.append(error)
            return None  # send it again: a 404 then means this call deleted it

        try:
            self._write("DELETE", path, if_unknown=if_unknown)
        except NotFoundError:
            if not unanswered:
                raise

    def _write(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, if_unknown: IfUnknown | None = None
    ) -> Any:
        """Send one write (POST, PATCH or DELETE): every change this package makes goes through here.

        Journaling sits one level up, explicitly: :meth:`create`, :meth:`update` and
        :meth:`delete` each write a run of their own; a job calls the ``_send_*`` verbs and
        records them in its run. Either records the verb's settled outcome (a retried delete
        that finds the source gone is a success), and the values a write replaces.
        """
        return self.client.request(method, path, json_body=body, if_unknown=if_unknown)

    def current(self, ids: Sequence[int], spaces_ids: Iterable[int] | None = None) -> dict[int, Source | None]:
        """The server's sources for ``ids`` (None where there is none), in few requests.

        Few ids: one GET each, concurrently. Many: the listing (of the given
        spaces, when known), and a GET for any id the listing did not have.

        Example::

            now = client.sources.current([7, 8, 9])   # {7: {...}, 8: {...}, 9: None}
        """
        ids = list(dict.fromkeys(int(i) for i in ids))
        found: dict[int, Source | None] = {}
        if len(ids) > self.client.max_readers:
            first = self.list(spaces_ids=spaces_ids, limit=self.client.page_size)
            count = first.get("count")
            pages_left = (
                (count - len(first["results"])) / max(1, len(first["results"]))
                if isinstance(count, int)
                else float("inf")
            )
            if pages_left < len(ids):
                wanted = set(ids)
                rows, _ = self.records(spaces_ids=spaces_ids, progress=False, first=first)
                found = {r["id"]: r for r in rows if r["id"] in wanted}
        missing = [i for i in ids if i not in found]

        def get_or_none(source_id: int) -> Source | None:
            try:
                return self.get(source_id)
            except NotFoundError:
                return None

        try:
            with ThreadPoolExecutor(self.client.max_readers) as pool:
                found.update(zip(missing, pool.map(get_or_none, missing), strict=True))
        except NeuroIOError as error:  # the traceback ends here, not in the pool's threads
            raise error.with_traceback(None) from None
        return found


def _whole(value: Any) -> int | None:
    """``value`` as a whole number, 0 or more (digit strings too), or None if it is not one."""
    number = whole_number(value, text=True)
    return number if number is not None and number >= 0 else None


def _path(source_id: Any) -> str:
    reason = id_problem(source_id, text=True)
    if reason is not None:
        raise ValidationError([Problem(source_id, "id", source_id, reason)], what="request")
    return f"{PATH}{whole_number(source_id, text=True)}/"


def _count_param(name: str, value: Any) -> int:
    number = _whole(value)
    if number is None:
        raise ValidationError([Problem(None, name, value, COUNT_RULE)], what="request")
    return number


def _spaces_param(spaces_ids: Iterable[int] | int | str) -> str:
    """``spaces_ids`` as the API's comma-joined list: from ints, digit strings or ``"1,2"``."""
    if isinstance(spaces_ids, str):
        parts: list[Any] = [part.strip() for part in spaces_ids.split(",")]
    elif isinstance(spaces_ids, Iterable):
        parts = list(spaces_ids)
    else:
        parts = [spaces_ids]
    numbers = [_whole(part) for part in parts]
    if not numbers or None in numbers:
        raise ValidationError(
            [Problem(None, "spaces_ids", spaces_ids, "must be space ids: whole numbers, e.g. [1, 2]")], what="request"
        )
    return ",".join(str(n) for n in numbers)


def _writable(fields: dict[str, Any], source_id: Any = None) -> dict[str, Any]:
    """Fields checked against the schema, aliases resolved; ValidationError lists all problems."""
    body: dict[str, Any] = {}
    problems = []
    for key, value in fields.items():
        name = ALIASES.get(key, key)
        if name in ALIASES.values() and key != name and name in fields:
            problems.append(Problem(source_id, key, value, f"give either {key!r} or {name!r}, not both"))
            continue
        field = BY_NAME.get(name)
        if field is not None:
            if not field.writable:
                problems.append(Problem(source_id, name, value, "is read-only"))
                continue
            reason = check_value(field, value)
            if reason:
                problems.append(Problem(source_id, name, value, reason))
                continue
        body[name] = value.item() if isinstance(value, np.generic) else value  # a frame cell
    if problems:
        raise ValidationError(problems, what="fields")
    return body


def _checked_page(body: Any, path: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise MalformedResponseError(200, "the server's page has no list of results", method="GET", path=path)
    for row in body["results"]:
        _checked_source(row, path)
    return body


def _checked_source(body: Any, path: str) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("id"), int) or isinstance(body.get("id"), bool):
        raise MalformedResponseError(200, "the server sent a source without a whole-number id", path=path)
    return body


__all__ = ["PATH", "ListingChangedWarning", "SourcesAPI"]
