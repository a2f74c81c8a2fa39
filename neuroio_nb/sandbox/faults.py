"""Trouble on demand: injected faults, and a rate limit.

The kinds (:data:`FAULT_KINDS`), each answered before the request is processed:

- ``"503"``: a JSON "unavailable"; ``"429"``: throttled, with ``Retry-After``;
  ``"502"``: a proxy's HTML page; ``"drop"``: the connection closes unanswered.
  ``fault_rate`` splits evenly over these four (:data:`TRANSIENT_KINDS`).
- ``"echo_headers"``: a 400 HTML page from a firewall or debug proxy that shows the
  request's headers, ``Authorization`` included, as such pages do.
- ``"scalar_error"``: a 400 whose JSON body has a scalar ``error_codes`` (``1007``)
  and a scalar ``fields`` instead of lists.

Faults are drawn from one seeded ``random.Random`` under a lock, so a run that
sends the same requests in the same order sees the same faults.
"""

from __future__ import annotations

import html
import math
import random
import threading
import time
from collections.abc import Mapping

from .replies import DROP, THROTTLED, UNAVAILABLE, Reply, error_reply, json_reply
from .server import Request

TRANSIENT_KINDS = ("503", "429", "502", "drop")
FAULT_KINDS = (*TRANSIENT_KINDS, "echo_headers", "scalar_error")
#: The error code of the ``"scalar_error"`` fault.
LOCKED = 1007

_PROXY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


def even_split(rate: float) -> dict[str, float]:
    """``rate`` shared evenly by the transient fault kinds."""
    return {kind: rate / len(TRANSIENT_KINDS) for kind in TRANSIENT_KINDS} if rate else {}


def checked_faults(faults: Mapping[str, float]) -> dict[str, float]:
    """A copy of ``faults``, refusing unknown kinds and shares that cannot be."""
    unknown = set(faults) - set(FAULT_KINDS)
    if unknown:
        raise ValueError(f"unknown fault kind(s) {sorted(unknown)}; known: {FAULT_KINDS}")
    if any(share < 0 for share in faults.values()) or sum(faults.values()) > 1 + 1e-9:
        raise ValueError(f"fault shares must be >= 0 and sum to at most 1: {dict(faults)}")
    return {kind: float(share) for kind, share in faults.items() if share}


def fault_reply(kind: str, retry_after: int, request: Request) -> Reply:
    if kind == "503":
        return error_reply(503, UNAVAILABLE, "Service temporarily unavailable.")
    if kind == "429":
        return throttled(retry_after)
    if kind == "502":
        return bad_gateway()
    if kind == "echo_headers":
        return echo_page(request)
    if kind == "scalar_error":
        return json_reply(
            400, {"error_codes": LOCKED, "fields": "settings", "message": "Source is locked by another operation."}
        )
    return DROP


def bad_gateway() -> Reply:
    return Reply(502, _PROXY_PAGE, "text/html")


def echo_page(request: Request) -> Reply:
    """A firewall's "request rejected" page that shows the request, headers and all
    (in name order: ``Authorization`` comes early, within any excerpt of the page)."""
    headers = sorted(request.headers, key=lambda header: header[0].lower())  # as debug pages list them
    shown = "\n".join(f"{name}: {html.escape(value)}" for name, value in headers)
    page = (
        f"<html><head><title>400 Request Rejected</title></head><body>"
        f"<h1>Request Rejected</h1><p>Support ID: 1446-{len(request.body):04d}</p>"
        f"<pre>{request.method} {html.escape(request.target)} HTTP/1.1\n{shown}</pre></body></html>"
    )
    return Reply(400, page.encode(), "text/html")


def throttled(retry_after: int) -> Reply:
    return error_reply(429, THROTTLED, "Request was throttled.", headers=(("Retry-After", str(retry_after)),))


class Dice:
    """The sandbox's seeded randomness, safe to share between handler threads."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def fault(self, faults: Mapping[str, float]) -> str | None:
        """A fault kind drawn by share, or None for "answer normally"."""
        if not faults:
            return None
        with self._lock:
            roll = self._rng.random()
        for kind, share in faults.items():
            if roll < share:
                return kind
            roll -= share
        return None

    def chance(self, share: float) -> bool:
        if share <= 0:
            return False
        with self._lock:
            return self._rng.random() < share

    def retry_after(self, low: float, high: float) -> int:
        """Whole seconds drawn uniformly from [low, high]."""
        low_s, high_s = math.ceil(low), math.floor(high)
        with self._lock:
            return self._rng.randint(low_s, high_s) if high_s > low_s else low_s


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; starts full."""

    def __init__(self, rate: float, burst: int) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate_limit must be > 0 and rate_burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 if a token was taken, else the seconds until one is free (nothing taken)."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate
