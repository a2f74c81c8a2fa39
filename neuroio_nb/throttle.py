"""Adaptive concurrency: back off when the server says 429, grow back when it stops.

A fixed pool of workers either under-uses a generous server or hammers a
rate-limited one. :class:`AdaptiveLimit` gates every request of a client: the
number allowed in flight halves on each 429 (at most once per round of
requests) and grows by one after a round of successes, as TCP does.
"""
from __future__ import annotations

import threading
import time


class AdaptiveLimit:
    """A concurrency gate whose width adapts to 429 answers (AIMD)."""

    def __init__(self, maximum: int) -> None:
        self.maximum = max(1, maximum)
        self.current = float(self.maximum)
        self._in_flight = 0
        self._successes = 0
        self._last_cut = 0.0
        self._cond = threading.Condition()

    @property
    def width(self) -> int:
        return max(1, int(self.current))

    def __enter__(self) -> AdaptiveLimit:
        with self._cond:
            while self._in_flight >= self.width:
                self._cond.wait()
            self._in_flight += 1
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._in_flight -= 1
            self._cond.notify()

    def throttled(self) -> None:
        """A 429 came back: halve the width, once per round trip's worth of time."""
        with self._cond:
            now = time.monotonic()
            if now - self._last_cut > 0.05:
                self.current = max(1.0, self.current / 2)
                self._last_cut = now
            self._successes = 0

    def succeeded(self) -> None:
        """A request went through: after a full window of successes, widen by one."""
        with self._cond:
            self._successes += 1
            if self.current < self.maximum and self._successes >= self.width:
                self.current = min(float(self.maximum), self.current + 1)
                self._successes = 0
                self._cond.notify()
