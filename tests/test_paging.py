"""Paging as pure arithmetic, with no server: page offsets, the end of a listing, and a walk
over a listing that changes while it is read."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroio_nb._paging import Ahead, Walk, is_last_page, overlapping_offsets


def rows(*ids: int) -> list[dict[str, Any]]:
    return [{"id": i} for i in ids]


@pytest.mark.parametrize(
    "count,size,offsets",
    [
        (0, 100, []),
        (100, 100, []),
        (101, 100, [99]),
        (199, 100, [99]),
        (200, 100, [99, 198]),
        (1000, 100, [99 * k for k in range(1, 11)]),
        (5, 2, [1, 2, 3]),
        (3, 1, [1, 2]),
    ],
)
def test_page_offsets_overlap_by_one_row(count, size, offsets):
    assert overlapping_offsets(count, size) == offsets


@pytest.mark.parametrize(
    "page,after,last",
    [
        ({"results": []}, 0, True),
        ({"results": [], "next": "http://x/?offset=1"}, 0, True),
        ({"results": rows(1), "next": None}, 1, True),
        ({"results": rows(1), "next": None, "count": 9}, 1, True),
        ({"results": rows(1), "next": "http://x/?offset=1", "count": 1}, 1, False),  # a count too low
        ({"results": rows(1), "count": 1}, 1, True),
        ({"results": rows(1), "count": 5}, 1, False),
        ({"results": rows(1)}, 1, False),  # neither count nor next: only an empty page ends it
    ],
)
def test_the_last_page(page, after, last):
    assert is_last_page(page, after) is last


class Listing:
    """A listing on a server that pages it with limit/offset, with no count and no next, and
    that adds or deletes sources as given requests arrive."""

    def __init__(self, n: int, cap: int, events: dict[int, tuple[str, int]]) -> None:
        self.ids = list(range(1, n + 1))
        self.cap = cap
        self.events = events
        self.requests = 0
        self.next_id = n + 1
        self.always: set[int] = set(self.ids)  # there from start to end
        self.changed = False

    def page(self, offset: int, limit: int) -> dict[str, Any]:
        self.requests += 1
        event = self.events.get(self.requests)
        if event is not None and self.ids:
            kind, where = event
            where %= len(self.ids)
            if kind == "delete":
                self.always.discard(self.ids.pop(where))
            else:
                self.ids.insert(where, self.next_id)
                self.next_id += 1
            self.changed = True
        return {"results": rows(*self.ids[offset : offset + min(limit, self.cap)])}


def walk(listing: Listing, size: int) -> Walk:
    w = Walk(size)
    while (ask := w.next_request()) is not None:
        w.take(ask[0], listing.page(*ask))
        assert listing.requests < 1000, "the walk does not end"
    return w


@pytest.mark.parametrize("n,size", [(0, 10), (1, 10), (10, 10), (11, 10), (95, 10), (7, 1), (30, 2)])
def test_a_quiet_listing_is_read_whole_in_order(n, size):
    w = walk(Listing(n, cap=size, events={}), size)
    assert [r["id"] for r in w.rows] == list(range(1, n + 1)) and not w.changed


def test_a_deletion_before_the_read_position_loses_nothing_and_is_noticed():
    listing = Listing(30, cap=10, events={3: ("delete", 2)})  # while the third page is asked for
    w = walk(listing, 10)
    ids = [r["id"] for r in w.rows]
    assert set(ids) >= listing.always and len(ids) == len(set(ids)) and w.changed


def test_an_insertion_before_the_read_position_repeats_nothing_and_is_noticed():
    listing = Listing(30, cap=10, events={3: ("insert", 0)})
    w = walk(listing, 10)
    ids = [r["id"] for r in w.rows]
    assert set(ids) >= listing.always and len(ids) == len(set(ids)) and w.changed


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(0, 120),
    size=st.integers(2, 25),
    cap_less=st.integers(0, 5),
    events=st.dictionaries(
        st.integers(1, 15), st.tuples(st.sampled_from(["delete", "insert"]), st.integers(0, 200)), max_size=3
    ),
)
def test_any_listing_that_changes_at_most_a_page_at_a_time(n, size, cap_less, events):
    """Whatever the server's cap and however sources come and go (no more than a page's worth
    between two reads), every source there all along is read, none twice, and a change that
    moved rows under the read is reported."""
    cap = max(2, size - cap_less)
    listing = Listing(n, cap=cap, events=events)
    w = walk(listing, cap)
    ids = [r["id"] for r in w.rows]
    assert set(ids) >= listing.always
    assert len(ids) == len(set(ids))
    if not listing.changed:
        assert not w.changed and ids == list(range(1, n + 1))


@given(
    count=st.integers(0, 10**9),
    size=st.integers(1, 200),
    window=st.integers(1, 16),
    ends_after=st.integers(0, 20),
)
def test_pages_are_asked_for_a_window_at_a_time_and_none_past_the_end(count, size, window, ends_after):
    ahead = Ahead(count, size)
    asked = ahead.next(window)
    assert asked == overlapping_offsets(min(count, (window + 1) * size), size)[:window]  # in order, at most a window
    answered = 0
    while asked:
        offset = asked.pop(0)
        answered += 1
        empty = answered > ends_after  # the pages after the first `ends_after` hold nothing
        ahead.answered(offset, {"count": count, "next": None if empty else "x", "results": [] if empty else [{}]})
        asked = [o for o in asked if not ahead.beyond(o)] + ahead.next(window - len(asked))
        assert all(not ahead.beyond(o) for o in asked)
    # every page up to the end was asked for once; past it, at most the window already in flight
    assert answered <= min(ahead.total, ends_after + 1 + window)
