"""What the sandbox saw: one record per request, and how many ran at once."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RequestRecord:
    """One request the sandbox saw. ``started``/``ended`` are ``time.monotonic()`` seconds."""

    method: str
    #: The path without the query string.
    path: str
    params: dict[str, str]
    #: The parsed JSON body; None when there was none or it was not JSON.
    body: Any
    #: None when the connection was closed without an answer.
    status: int | None
    #: The fault kind injected, "drop_after_apply", "502_after_apply", "rate_limit",
    #: "incomplete_body" (the body was cut off: dropped unprocessed), or None.
    fault: str | None
    authorized: bool
    user_agent: str | None
    started: float
    ended: float

    @property
    def source_id(self) -> int | None:
        """The id in a ``/v1/sources/<id>/`` path; None for the listing or any other path."""
        last = self.path.rstrip("/").rsplit("/", 1)[-1]
        return int(last) if last.isdigit() and self.path.startswith("/v1/sources/") else None


class RequestLog:
    """Thread-safe list of :class:`RequestRecord`, with an in-flight gauge."""

    def __init__(self) -> None:
        self._records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._in_flight = 0
        self._max_in_flight = 0

    def begin(self) -> None:
        """A request starts being handled."""
        with self._lock:
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)

    def end(self, record: RequestRecord) -> None:
        """The request of a :meth:`begin` is answered (or dropped)."""
        with self._lock:
            self._in_flight -= 1
            self._records.append(record)

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def clear(self) -> None:
        """Forget every record; the in-flight high-water mark restarts from now."""
        with self._lock:
            self._records.clear()
            self._max_in_flight = self._in_flight

    @property
    def max_in_flight(self) -> int:
        with self._lock:
            return self._max_in_flight

    @property
    def in_flight(self) -> int:
        """How many requests are being handled now."""
        with self._lock:
            return self._in_flight
