"""What a job reads of the server before and while it writes (layer 3, below the jobs).

A conflict check needs the server's sources as they are now; a create needs to know
who holds its name (a name taken since the plan is a conflict; the ids holding it
settle an unknown outcome). These readers get both in as few requests as they can:
one listing for everything, or the pages handed on as each arrives so that the job's
writes start before the listing ends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from .._paging import Ahead
from ..errors import NotFoundError


class SourceCalls(Protocol):
    """What the jobs need of the REST layer (``client.sources`` provides it)."""

    @property
    def client(self) -> Any: ...

    #: The space the token's creates land in, once known (see ``SourcesAPI.landing_space``).
    landing_space: int | None

    def get(self, source_id: int) -> dict[str, Any]: ...

    def create(self, name: str, **fields: Any) -> dict[str, Any]: ...

    def _send_create(self, fields: Mapping[str, Any], *, holders: Collection[int]) -> dict[str, Any]: ...

    def _send_update(self, source_id: int, fields: Mapping[str, Any]) -> dict[str, Any]: ...

    def _send_delete(self, source_id: int) -> None: ...

    def _holders_of(self, name: Any) -> frozenset[int]: ...

    def current(
        self, ids: Sequence[int], spaces_ids: Iterable[int] | None = None
    ) -> dict[int, dict[str, Any] | None]: ...

    def records(
        self,
        q: str | None = None,
        spaces_ids: Any = None,
        progress: bool | None = None,
        *,
        first: dict[str, Any] | None = None,
        fetched: Mapping[int, dict[str, Any]] | None = None,
    ) -> tuple[list[dict[str, Any]], bool]: ...

    def list(
        self, q: str | None = None, spaces_ids: Any = None, limit: int = 20, offset: int = 0
    ) -> dict[str, Any]: ...


@dataclass
class ReadFirst:
    """What a job reads before its first write.

    ``current``: the server's sources the conflict checks need, by id. ``holders``: by
    name to create, a source now holding it that was not in scope when planned (the
    create is then a conflict). ``held``: by name to create, the ids of every source
    holding it now, for the names a listing read here covers (a create is settled
    against them, see :meth:`~neuroio_nb._rest.SourcesAPI._send_create`); a name missing
    here is looked up by its create.
    """

    current: dict[int, dict[str, Any] | None] = field(default_factory=dict)
    holders: dict[Any, dict[str, Any]] = field(default_factory=dict)
    held: dict[Any, frozenset[int]] = field(default_factory=dict)


def read_before_sending(
    sources: SourceCalls,
    wanted: Sequence[int],
    creates: Iterable[Any],
    scope: tuple[str | None, Any] | None,
    seen: frozenset[int],
) -> ReadFirst:
    """The server's sources ``wanted`` (ids) for the conflict checks, and what the creates
    (their names: ``creates``) need to know (see :class:`ReadFirst`). With creates and a
    ``scope`` (q, spaces_ids) the scope is listed once for both."""
    read = ReadFirst()
    named = Counter(creates)
    if named and scope is not None:
        q, spaces_ids = scope
        listing, changed = sources.records(q, spaces_ids, progress=False)
        in_listing = {r["id"]: r for r in listing}
        read.current = {sid: in_listing[sid] for sid in wanted if sid in in_listing}
        read.holders, read.held = names_read(sources, named, scope, seen, listing, changed)
    else:
        read.holders, read.held = names_read(sources, named, None, seen, [], True)
    rest = [sid for sid in wanted if sid not in read.current]
    if rest:
        read.current.update(sources.current(rest))
    return read


def names_read(
    sources: SourceCalls,
    named: Counter[Any],
    scope: tuple[str | None, Any] | None,
    seen: frozenset[int],
    listing: list[dict[str, Any]],
    changed: bool,
) -> tuple[dict[Any, dict[str, Any]], dict[Any, frozenset[int]]]:
    """What the creates (``named``: how many create each name) learn from ``listing`` (of
    ``scope``; ``changed``: it shifted while read): the :attr:`ReadFirst.holders` and
    :attr:`ReadFirst.held`; the holders of names it does not cover come from one unscoped
    listing when that is cheaper than a look-up per create."""
    holders: dict[Any, dict[str, Any]] = {}
    held: dict[Any, frozenset[int]] = {}
    # A name two creates send (an undo re-creating namesakes) is looked up by each, just before it.
    names = {name for name, n in named.items() if n == 1}
    if scope is not None:
        q, spaces_ids = scope
        holders = {r.get("name"): r for r in listing if r.get("name") in named and r["id"] not in seen}
        if not changed:  # a listing that shifted while read may lack a holder
            held = _held([n for n in names if _covers(q, spaces_ids, n)], listing)
    unknown = [n for n in names if n not in held]
    if len(unknown) > sources.client.max_readers:
        held.update(_held_from_one_listing(sources, unknown))
    return holders, held


def _covers(q: str | None, spaces_ids: Any, name: Any) -> bool:
    """Does a listing of ``q`` and ``spaces_ids`` hold every source named ``name``?
    (The API's ``q`` is "name contains"; ``q`` within the name, case and all, is safe
    whether the server matches case or not.)"""
    return spaces_ids is None and isinstance(name, str) and (q is None or q in name)


def _held(names: Iterable[Any], listing: Iterable[dict[str, Any]]) -> dict[Any, frozenset[int]]:
    """By name, the ids of the sources in ``listing`` holding it (an empty set when none)."""
    held: dict[Any, set[int]] = {name: set() for name in names}
    for row in listing:
        ids = held.get(row.get("name"))
        if ids is not None:
            ids.add(row["id"])
    return {name: frozenset(ids) for name, ids in held.items()}


def _held_from_one_listing(sources: SourceCalls, names: list[Any]) -> dict[Any, frozenset[int]]:
    """The holders of ``names`` from one unscoped listing, when that takes fewer requests
    than a look-up per create; else nothing (each create looks its name up)."""
    first = sources.list(limit=sources.client.page_size)
    count, got = first.get("count"), len(first["results"])
    pages_left = (count - got) / got if isinstance(count, int) and got else (0 if not first.get("next") else None)
    if pages_left is None or pages_left + sources.client.max_readers >= len(names):
        return {}
    listing, changed = sources.records(progress=False, first=first)
    return {} if changed else _held([n for n in names if isinstance(n, str)], listing)


def current_as_read(
    sources: SourceCalls, ids: list[int], spaces: list[int] | None = None
) -> Iterator[list[tuple[int, dict[str, Any] | None]]]:
    """``(id, the server's source or None)`` for each of ``ids``, in batches, each batch as soon
    as it is read (a page's sources; the ids no page had, at the end).

    Few ids: a GET each. Many: the listing (of ``spaces`` when known: a source there
    cannot be elsewhere unless it moved, and then its GET finds it), pages read
    concurrently and handed on as each arrives; then a GET for any id no page had
    (a shifted listing, a failed page, a moved source).
    """
    remaining = dict.fromkeys(ids)
    pool = ThreadPoolExecutor(sources.client.max_readers)
    try:
        if len(ids) > sources.client.max_readers:
            for rows in _listing_pages(sources, spaces, pool, wanted=lambda: len(remaining)):
                yield from _taken(remaining, rows)
        left = list(remaining)
        if left:
            yield list(zip(left, pool.map(partial(_get_or_none, sources), left), strict=True))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _taken(remaining: dict[int, None], rows: list[dict[str, Any]]) -> Iterator[list[tuple[int, dict[str, Any] | None]]]:
    """The rows whose ids are still ``remaining`` (taken out of it), as one batch if there are any."""
    batch: list[tuple[int, dict[str, Any] | None]] = []
    for row in rows:
        if row["id"] in remaining:
            del remaining[row["id"]]
            batch.append((row["id"], row))
    if batch:
        yield batch


def _get_or_none(sources: SourceCalls, source_id: int) -> dict[str, Any] | None:
    try:
        return sources.get(source_id)
    except NotFoundError:
        return None


def _listing_pages(
    sources: SourceCalls, spaces: list[int] | None, pool: ThreadPoolExecutor, wanted: Callable[[], int]
) -> Iterator[list[dict[str, Any]]]:
    """The rows of the listing of ``spaces``, a page at a time as each arrives: the first page,
    then, if reading the rest takes fewer requests than a GET for each of the ``wanted()``
    sources still missing, the others concurrently, a window of pages at a time and none past
    the end. A page that fails is left out: its sources are read one by one afterwards."""
    first = sources.list(spaces_ids=spaces, limit=sources.client.page_size)
    yield first["results"]
    count, got = first.get("count"), len(first["results"])
    if isinstance(count, int) and got and (count - got) / got < wanted():
        yield from _pages_after_the_first(sources, spaces, pool, count, got)


def _pages_after_the_first(
    sources: SourceCalls, spaces: list[int] | None, pool: ThreadPoolExecutor, count: int, got: int
) -> Iterator[list[dict[str, Any]]]:
    """The listing's other pages (``count`` sources, ``got`` a page), as each arrives."""
    workers = sources.client.max_readers
    ahead = Ahead(count, got)  # a window of pages at a time, none past the end
    asked: dict[Future[dict[str, Any]], int] = {}
    while True:
        for offset in ahead.next(2 * workers - len(asked)):
            asked[pool.submit(sources.list, None, spaces, min(got, count - offset), offset)] = offset
        if not asked:
            break
        done, _ = wait(asked, return_when=FIRST_COMPLETED)
        for page in done:
            offset = asked.pop(page)
            try:
                result = page.result()
            except Exception:  # its sources are read one by one afterwards
                continue
            ahead.answered(offset, result)
            yield result["results"]
        for page in [page for page, offset in asked.items() if ahead.beyond(offset) and page.cancel()]:
            del asked[page]


class ScopeRead:
    """The sources of a scope, read from the moment this is made: the first page, and the
    pages ``expected`` implies, are asked for at once, so that the requests are under way
    while the job does its other preparations (the journal's fsync among them).

    ``expected``: ``(count, rows a page)`` of the scope's last listing (a plan's read).
    The pages it implies are asked for with the first, not a round trip after it; the
    first page's own ``count`` still decides which pages are read, and the walk reads
    any page the guess missed. :meth:`pages` hands them on; :meth:`close` (which
    :meth:`pages` calls when it ends) gives up what is still unasked or unread.
    """

    def __init__(
        self, sources: SourceCalls, q: str | None, spaces_ids: Any, expected: tuple[int, int] | None = None
    ) -> None:
        self._sources, self._q, self._spaces_ids = sources, q, spaces_ids
        self._pool = ThreadPoolExecutor(sources.client.max_readers)
        self._asked: dict[Future[dict[str, Any]], int] = {}
        self._window = 2 * sources.client.max_readers
        self._ahead: Ahead | None = None
        self._shape = (0, 0)
        try:
            self._first = self._pool.submit(sources.list, q, spaces_ids, sources.client.page_size, 0)
            if expected is not None:
                self._ask(*expected)
                self._top_up()
        except BaseException:
            self.close()
            raise

    def _ask(self, count: int, got: int) -> None:
        """From now on, ask for the pages ``count`` rows of ``got`` a page imply (those not
        asked for yet, a window at a time: see :class:`~neuroio_nb._paging.Ahead`)."""
        before = self._ahead
        self._ahead = Ahead(count, got, asked=self._asked.values(), end=None if before is None else before.end)
        self._shape = (count, got)

    def _top_up(self) -> set[Future[dict[str, Any]]]:
        """Give up pages past the end seen; ask for more while the window has room. The new ones."""
        ahead, (count, got) = self._ahead, self._shape
        if ahead is None:
            return set()
        for page in [page for page, offset in self._asked.items() if ahead.beyond(offset) and page.cancel()]:
            del self._asked[page]
        new = set()
        for offset in ahead.next(self._window - sum(not page.done() for page in self._asked)):
            page = self._pool.submit(self._sources.list, self._q, self._spaces_ids, min(got, count - offset), offset)
            self._asked[page] = offset
            new.add(page)
        return new

    def pages(self) -> Generator[list[dict[str, Any]], None, tuple[list[dict[str, Any]], bool]]:
        """Each page's sources as soon as it arrives, in the order they arrive; then, as the
        generator's value, every source of the scope once and whether the listing changed
        while it was read, as :meth:`records` gives them (the pages already read are walked
        again for that, not fetched again)."""
        fetched: dict[int, dict[str, Any]] = {}
        try:
            pending: set[Future[dict[str, Any]]] = {self._first, *self._asked}
            first: dict[str, Any] | None = None
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for page in done:
                    if page is self._first:
                        first = page.result()
                        yield first["results"]
                        if not self._counted(first):  # no count to go by: the walk reads page after page
                            pending.clear()
                            fetched.clear()
                            break
                        continue
                    if page.cancelled() or page not in self._asked:
                        continue
                    try:
                        fetched[self._asked[page]] = page.result()
                    except Exception:  # read again by the walk below, which raises if it fails again
                        continue
                    if self._ahead is not None:
                        self._ahead.answered(self._asked[page], fetched[self._asked[page]])
                    yield fetched[self._asked[page]]["results"]
                pending = {page for page in pending if page in self._asked or page is self._first} | self._top_up()
        finally:
            self.close()
        assert first is not None
        return self._sources.records(self._q, self._spaces_ids, progress=False, first=first, fetched=fetched)

    def _counted(self, first: dict[str, Any]) -> bool:
        """Ask for the pages the first page's ``count`` implies that were not asked for yet;
        without a count, give up the guessed ones. Does the count go by?"""
        count, got = first.get("count"), len(first["results"])
        if isinstance(count, int) and got:
            self._ask(count, got)
            if self._ahead is not None:
                self._ahead.answered(0, first)
            return True
        for future in self._asked:
            future.cancel()
        self._ahead = None
        return False

    def close(self) -> None:
        """Stop: pages not yet asked for never are."""
        self._pool.shutdown(wait=False, cancel_futures=True)
