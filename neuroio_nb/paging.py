"""Limit/offset paging as pure arithmetic (layer 2, no I/O): which pages to ask for, and
how to join them so that a listing that shifts while it is read is noticed.

A server may cap ``limit`` silently and may omit ``count`` and ``next``, so readers
advance by the rows they actually got. Each page but the first starts one row early:
that row must be the previous page's last, and when it is not, sources were added or
deleted before it while the listing was read (a shift).
"""
from __future__ import annotations

from typing import Any


class ListingChangedWarning(UserWarning):
    """Sources were added or deleted while the listing was being read."""


def overlap_step(size: int) -> int:
    """How far apart pages of ``size`` rows start, so that neighbours share one row."""
    return size - 1 if size > 1 else size


def overlapping_offsets(count: int, size: int) -> list[int]:
    """Offsets of the pages after a first page of ``size`` rows, up to ``count`` rows."""
    step = overlap_step(size)
    return list(range(step, count - (size - step), step))


def join(rows: list[dict[str, Any]], offset: int, chunk: list[dict[str, Any]]) -> bool:
    """Append ``chunk`` (a page read at ``offset``) to ``rows`` (read from 0); True if it shifted.

    The part of ``chunk`` that ``rows`` already covers is the overlap, and its first row
    must be the one ``rows`` holds there. Rows that end before ``offset`` (a gap the
    server would not fill) also count as a shift: sources went missing meanwhile.
    """
    if len(rows) < offset:
        rows += chunk
        return True
    shifted = len(rows) > offset and bool(chunk) and rows[offset]["id"] != chunk[0]["id"]
    rows += chunk[len(rows) - offset:]
    return shifted


def dedupe(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], bool]:
    """``rows`` without repeated ids (first kept), and whether any was repeated."""
    seen: set[int] = set()
    out = []
    for row in rows:
        if row["id"] not in seen:
            seen.add(row["id"])
            out.append(row)
    return out, len(out) != len(rows)


def is_last_page(page: dict[str, Any], offset_after: int, stop: int | None) -> bool:
    """Does reading end after ``page``, which brought the read to ``offset_after`` rows?"""
    if stop is not None:
        return offset_after >= stop
    if not page["results"]:
        return True
    count = page.get("count")
    if isinstance(count, int) and offset_after >= count:
        return True
    return "next" in page and page["next"] is None
