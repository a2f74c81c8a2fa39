"""Limit/offset paging as pure arithmetic (layer 2, no I/O): which pages to ask for, when a
listing ends, and how to walk it so that a listing that shifts while it is read loses no
source and is noticed.

A server may cap ``limit`` silently and may omit ``count`` and ``next``, so readers
advance by the rows they actually got. Each page but the first starts one row early:
that row must be the previous page's last, and when it is not, sources were added or
deleted before it while the listing was read (a shift).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

#: What a reader says when the listing changed under it.
LISTING_CHANGED = (
    "The listing changed while it was read (sources added or deleted meanwhile): "
    "each source is listed once, but one added or deleted during the read may be "
    "missing or still listed. Read it again for a settled list."
)


def overlap_step(size: int) -> int:
    """How far apart pages of ``size`` rows start, so that neighbours share one row."""
    return size - 1 if size > 1 else size


def overlapping_offsets(count: int, size: int) -> list[int]:
    """Offsets of the pages after a first page of ``size`` rows, up to ``count`` rows."""
    step = overlap_step(size)
    return list(range(step, count - (size - step), step))


class Ahead:
    """Which pages after the first of a counted listing to ask for next: a few at a time,
    and none past a page that shows the listing ended there (no rows, or ``next`` null).

    A ``count`` is the server's claim, not a promise: one of 10**9 on an account of fifty
    sources must cost a few requests for empty pages, not millions. So the pages are asked
    for as earlier ones are answered (a caller keeps a window of them in flight), and an
    end seen stops the asking. ``asked``: offsets already asked for (not asked again);
    ``end``: an end seen already.
    """

    def __init__(self, count: int, size: int, *, asked: Iterable[int] = (), end: int | None = None) -> None:
        step = overlap_step(max(1, size))
        offsets = range(step, count - (max(1, size) - step), step)
        #: How many pages after the first ``count`` implies (not all are asked for if the listing ends first).
        self.total = len(offsets)
        self._offsets: Iterator[int] = iter(offsets)
        self.asked: set[int] = set(asked)
        self.end = end

    def next(self, n: int) -> list[int]:
        """Up to ``n`` more offsets to ask for, in order; none past the end."""
        out: list[int] = []
        while len(out) < n:
            offset = next(self._offsets, None)
            if offset is None or (self.end is not None and offset > self.end):
                self._offsets = iter(())
                break
            if offset not in self.asked:
                self.asked.add(offset)
                out.append(offset)
        return out

    def answered(self, offset: int, page: dict[str, Any]) -> None:
        """The page at ``offset`` came: if it shows the end of the listing, ask for nothing past it."""
        if not page["results"] or ("next" in page and page["next"] is None):
            self.end = offset if self.end is None else min(self.end, offset)

    def beyond(self, offset: int) -> bool:
        """Is ``offset`` past the end seen (a page asked for that is no longer needed)?"""
        return self.end is not None and offset > self.end


def is_last_page(page: dict[str, Any], offset_after: int) -> bool:
    """Does reading end after ``page``, which brought the read to ``offset_after`` rows?

    An empty page ends it; so does ``next`` being null. A ``next`` link that is not
    null goes on even past ``count`` (a count that is too low must not end a read
    silently); without ``next``, reading ``count`` rows ends it.
    """
    if not page["results"]:
        return True
    if "next" in page:
        return page["next"] is None
    count = page.get("count")
    return isinstance(count, int) and offset_after >= count


class Walk:
    """Reading a listing one page after another, as pure bookkeeping (no I/O).

    Ask :meth:`next_request` for the ``(offset, limit)`` of the next page and give
    the page to :meth:`take`, until ``next_request`` says None. Each page after the
    first starts one row early, at the last row already read (the anchor):

    - the anchor first on the page: nothing moved;
    - the anchor later on the page: sources were added before it; the rows before
      it are new arrivals or rows already read (kept once);
    - the anchor not on the page: sources before it (or it) were deleted, so rows
      slid back past the read: one page further back is read again.

    Any of these, a repeated row, or more rows than ``count`` sets :attr:`changed`.
    :attr:`rows` holds every source read, each once. ``rows`` given at the start
    were read already, from offset 0 (the walk goes on after them); ``after``: the
    page they came in, which may say that the listing ends there.
    """

    def __init__(
        self, size: int, *, rows: list[dict[str, Any]] | None = None, after: dict[str, Any] | None = None
    ) -> None:
        self.size = max(1, size)
        self.rows: list[dict[str, Any]] = []
        self.changed = False
        self._seen: set[Any] = set()
        self._keep(rows or [])
        self.changed = len(self.rows) != len(rows or [])
        self._end = len(rows or [])  # where the next page starts, before its one row of overlap
        self._anchor: Any = self.rows[-1]["id"] if self.rows else None
        self._overlap = self.size > 1
        self._back: int | None = None  # an offset to read again after rows slid back
        self._done = after is not None and is_last_page(after, self._end)

    def next_request(self) -> tuple[int, int] | None:
        """The next page to read, as ``(offset, limit)``; None when the listing is read."""
        if self._back is not None:
            return self._back, self.size
        if self._done:
            return None
        offset = self._end - 1 if self._overlap and self._anchor is not None else self._end
        return offset, self.size

    def take(self, offset: int, page: dict[str, Any]) -> list[dict[str, Any]]:
        """Record the page read at ``offset``; return its sources not read before."""
        rows: list[dict[str, Any]] = page["results"]
        if offset == self._back:
            self._back = None
            return self._keep(rows)
        ids = [row["id"] for row in rows]
        overlapping = offset < self._end and self._anchor is not None
        if overlapping and ids == [self._anchor]:  # nothing after the last row read: the end
            self._done = True
            return []
        if overlapping and self._anchor not in ids:
            self.changed = True
            self._back = max(0, offset - (self.size - 1))
        elif overlapping and ids.index(self._anchor) > 0:
            self.changed = True
        if any(i in self._seen and i != self._anchor for i in ids):
            self.changed = True
        new = self._keep(rows)
        self._end = offset + len(rows)
        if rows:
            self._anchor = ids[-1]
        self._overlap = self.size > 1 and len(rows) > 1
        count = page.get("count")
        if isinstance(count, int) and len(self.rows) > count:
            self.changed = True
        self._done = is_last_page(page, self._end)
        return new

    def _keep(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        new = [row for row in rows if row["id"] not in self._seen]
        self._seen.update(row["id"] for row in new)
        self.rows += new
        return new
