"""Adaptive concurrency: back off when the server says 429, grow back when it stops.

A fixed pool of workers either under-uses a generous server or hammers a
rate-limited one. :class:`AdaptiveLimit` gates every request of a client. Reads
and writes go through two lanes (:attr:`AdaptiveLimit.reads`,
:attr:`AdaptiveLimit.writes`), each with its own number of requests in flight,
so that a job that writes while it reads (a conflict check streaming its
PATCHes as the listing's pages arrive) does not queue its writes behind its
reads. Both lanes share one back-off, in two ways, both idle until 429s come:

- **Width** (AIMD, as TCP): the number of requests allowed in flight (in each
  lane, in proportion to its maximum) halves on a 429 of either lane (at most
  once per round of requests) and grows by one after a round of successes.
- **Pace**: a server that limits requests a second cannot be matched by a width
  alone (at 20 ms a request, width 1 is 50 a second and width 2 is 100), and
  requests refused together all wait the same Retry-After, to come back
  together and be refused together again. So once 429s come in a run
  (:data:`RUN`), request starts (of both lanes alike) are also spaced in time: first at the rate that
  succeeded over the last second, growing by half each second (a slow start)
  until the next 429. The rate that 429 came at is the *ceiling*; the pace drops
  to :data:`BETA` of it, grows back towards it (fast while far below it), then
  past it, slowly at first, probing in case the server allows more, until a
  429 says where the limit is now. A lone 429 below the ceiling (an injected
  fault, a hiccup) is left to the width, so random 429s never slow a client for
  long; but a 429 just under the ceiling (within :data:`NEAR` of it: a token bucket
  drained by requests that came bunched) says the limit is there, and cuts the pace
  like one above it. A ceiling is never put below :data:`FLOOR` of the pace that met
  the 429 (after a stall of the client's own, what succeeded lately looks low). The
  pace is dropped once far above the ceiling.

Every 429 costs its request the server's Retry-After (a whole second or more),
so settling just under the server's rate, rather than bouncing off it, is what
keeps a long job near the allowed rate and its retries from piling up at the end.
"""

from __future__ import annotations

import threading
import time
from collections import deque

#: A run of 429s: at least this many among the last answers.
RUN = (5, 8)
#: The pace after a 429, as a share of the rate it came at (the ceiling).
BETA = 0.95
#: Growth of the pace per second before any ceiling is known, as a share of the pace.
START = 2.0
#: Growth per second below the ceiling, as a share of the distance to it; and past it, of the distance beyond.
CLOSE = 1.0
#: Least growth of the pace per second past the ceiling, as a share of it: the probe (a ceiling
#: found too low, after a stall, is left within a couple of seconds).
PROBE = 0.03
#: A 429 while paced puts the ceiling at what succeeded over the last second, but at least this
#: share of the pace: what succeeded is low after a stall of the client's own.
FLOOR = 0.9
#: A 429 at a pace above this share of the ceiling says the limit is there (not a stray).
NEAR = 0.9
#: The pace is dropped once this many times the ceiling, or after this many 429s below it.
UNPACED = 4.0
STRAY = 3
#: A 429 within this many seconds means the server is throttling now.
LATELY = 2.0
#: Successes within this many seconds set the first pace.
WINDOW = 1.0


class Lane:
    """One kind of request (reads or writes) through an :class:`AdaptiveLimit`: a context
    manager that waits for a free place in flight, and for the pace, before a request starts."""

    def __init__(self, limit: AdaptiveLimit, maximum: int) -> None:
        self.limit = limit
        self.maximum = max(1, maximum)
        self.in_flight = 0
        self.free = threading.Condition(limit._lock)

    @property
    def width(self) -> int:
        """Requests of this lane allowed in flight now: its maximum, narrowed as the limit's width is."""
        return max(1, int(self.limit.current * self.maximum / self.limit.maximum))

    def __enter__(self) -> Lane:
        limit = self.limit
        with self.free:
            while self.in_flight >= self.width:
                self.free.wait()
            self.in_flight += 1
            now = start = time.monotonic()
            if limit._rate is not None:
                start = max(now, limit._next_start)
                limit._next_start = start + 1.0 / limit._rate
        if start > now:
            time.sleep(start - now)
        limit._local.started = start
        return self

    def __exit__(self, *exc: object) -> None:
        with self.free:
            self.in_flight -= 1
            self.free.notify()


class AdaptiveLimit:
    """A concurrency gate whose width adapts to 429 answers (AIMD), paced once they come in runs.

    ``maximum``: writes in flight at most (:attr:`writes`; also the gate's own
    ``with limit:``); ``readers``: reads in flight at most (:attr:`reads`; default
    ``maximum``). A 429 narrows both lanes and paces both.
    """

    def __init__(self, maximum: int, readers: int | None = None) -> None:
        self.maximum = max(1, maximum)
        self.current = float(self.maximum)
        self._successes = 0
        self._lock = threading.Lock()
        self._local = threading.local()
        self._last_cut = self._last_pace_cut = self._last_429 = float("-inf")
        #: Requests a second allowed to start (None: not paced); the rate of the last 429 (0: none yet).
        self._rate: float | None = None
        self._ceiling = 0.0
        self._next_start = 0.0
        #: 429s below the ceiling since the pace was last cut.
        self._below = 0
        #: The last answers (True: a 429), and when the last successes came.
        self._answers: deque[bool] = deque(maxlen=RUN[1])
        self._success_times: deque[float] = deque(maxlen=1024)
        self.writes = Lane(self, self.maximum)
        self.reads = Lane(self, self.maximum if readers is None else readers)

    @property
    def width(self) -> int:
        """Writes allowed in flight now."""
        return self.writes.width

    @property
    def rate(self) -> float | None:
        """Requests a second the gate lets start (None: not paced)."""
        return self._rate

    def __enter__(self) -> AdaptiveLimit:
        self.writes.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.writes.__exit__(*exc)

    @property
    def throttling(self) -> bool:
        """Is the server throttling now (a 429 within the last :data:`LATELY` seconds)? A
        job's progress bar says so."""
        return time.monotonic() - self._last_429 < LATELY

    def throttled(self) -> None:
        """A 429 came back: halve the width once per round, and pace (see the module's doc)."""
        with self._lock:
            now = time.monotonic()
            self._last_429 = now
            started = getattr(self._local, "started", now)
            self._answers.append(True)
            self._successes = 0
            if started >= self._last_cut:  # sent at the current width
                self._last_cut = now
                self.current = max(1.0, self.current / 2)
            if started < self._last_pace_cut:
                return  # sent at the old pace: already answered for
            run = sum(self._answers) >= RUN[0]
            accepted = self._recent_successes(now)
            if self._rate is None:
                if run:
                    self._pace(now, 0.0, accepted)
            elif run or self._rate >= self._ceiling or not self._ceiling:
                # Over the server's rate: it admits about what succeeded lately, if less; but a
                # stall of ours (a busy machine) makes that look low, so never below FLOOR of the pace.
                found = min(self._rate, max(accepted, FLOOR * self._rate))
                self._pace(now, found, BETA * found)
            elif self._rate >= NEAR * self._ceiling:
                # Just under the ceiling: a bucket drained by requests that came bunched. The
                # limit is here: pace under it, rather than count a stray and drop the pace.
                self._pace(now, self._rate, BETA * self._rate)
            else:
                self._below += 1
                if self._below >= STRAY:  # 429s whatever the pace: not a rate limit
                    self._rate = None

    def _pace(self, now: float, ceiling: float, rate: float) -> None:
        self._ceiling, self._rate, self._below = ceiling, max(rate, 1.0), 0
        self._next_start = max(self._next_start, now)
        self._last_pace_cut = now

    def _recent_successes(self, now: float) -> float:
        """Successes a second within the last WINDOW seconds (0: none); idle time before the first is not counted."""
        times = self._success_times
        while times and times[0] < now - WINDOW:
            times.popleft()
        return len(times) / max(now - times[0], 0.1) if times else 0.0

    def succeeded(self) -> None:
        """A request went through: widen by one after a full window, and grow the pace."""
        with self._lock:
            self._answers.append(False)
            self._successes += 1
            if self.current < self.maximum and self._successes >= self.width:
                self.current = min(float(self.maximum), self.current + 1)
                self._successes = 0
                self.writes.free.notify_all()
                self.reads.free.notify_all()
            self._success_times.append(time.monotonic())
            rate, ceiling = self._rate, self._ceiling
            if rate is None:
                return
            if not ceiling:
                growth = START * rate
            else:
                growth = max(PROBE * ceiling, CLOSE * abs(ceiling - rate))
            self._rate = rate + growth / rate
            if ceiling and self._rate > UNPACED * ceiling:
                self._rate = None
