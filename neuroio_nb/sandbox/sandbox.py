"""The :class:`Sandbox`: a NeuroIO sources API on loopback, with trouble on demand."""

from __future__ import annotations

import math
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from .._journal import sandbox_journal
from .api import CORRUPT_MODES, INVALID_JSON, PageOptions, handle, parse_body
from .data import LicenseIds, generate_sources
from .faults import Dice, TokenBucket, bad_gateway, checked_faults, even_split, fault_reply, throttled
from .fields import ServerFields
from .log import RequestLog, RequestRecord
from .replies import AUTH, DROP, INTERNAL, ApiFailure, Reply, error_reply
from .server import Request, SandboxServer
from .store import Store

_T = TypeVar("_T")
_WRITES = frozenset({"POST", "PATCH", "DELETE"})
#: The log's fault for a request whose body was cut off: dropped, never processed.
INCOMPLETE = "incomplete_body"


class Sandbox:
    """Serves the sources API on ``host:port`` (a free port by default) until stopped.

    Every knob but ``sources``, ``seed``, ``host``, ``port``, ``tls``, ``license_ids`` and
    ``unknown_fields`` is an attribute that may be changed while the sandbox runs;
    requests read them as they arrive. :meth:`reset` replaces the state.

    ``sources`` is a number to generate (see :func:`generate_sources`, which also
    explains ``license_ids`` and ``unknown_fields``) or the records themselves: any
    fields they carry that the server does not know are learned, and writes to them
    must keep the JSON types the records had. ``drop_after_apply`` and
    ``gateway_after_apply`` are the shares of writes that are applied and then
    answered by a dropped connection, or by a proxy's HTML 502. ``tls``: the paths of a
    PEM certificate and its key, to serve HTTPS (``url`` is then ``https://``).
    """

    def __init__(  # noqa: PLR0913  (the the sandbox's knobs: each a documented keyword)
        self,
        sources: int | list[dict[str, Any]] = 100,
        *,
        seed: int = 0,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        page_cap: int = 100,
        fault_rate: float = 0.0,
        faults: dict[str, float] | None = None,
        fault_methods: frozenset[str] | set[str] | None = None,
        retry_after: tuple[float, float] = (0, 1),
        rate_limit: float | None = None,
        rate_burst: int | None = None,
        drop_after_apply: float = 0.0,
        gateway_after_apply: float = 0.0,
        license_ids: LicenseIds = "mixed",
        unknown_fields: bool = False,
        omit_count: bool = False,
        claimed_count: int | None = None,
        next_base: str | None = None,
        corrupt: str | None = None,
        before_request: Callable[[str, str], None] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self._seed = seed
        self.license_ids = license_ids
        self.unknown_fields = unknown_fields
        self._store = self._new_store(sources)
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self._port = port
        self.latency = latency
        self.page_cap = page_cap
        self.faults = even_split(fault_rate) if faults is None else faults
        #: The methods that may get a fault (None: every method), e.g. ``{"PATCH", "POST"}``.
        self.fault_methods = fault_methods
        self.retry_after = retry_after
        self._bucket: TokenBucket | None = None
        self._rate_burst = rate_burst
        self.rate_limit = rate_limit
        self.drop_after_apply = drop_after_apply
        self.gateway_after_apply = gateway_after_apply
        self.omit_count = omit_count
        self.claimed_count = claimed_count
        self.next_base = next_base
        self.corrupt = corrupt
        self.before_request = before_request
        self.tls = tls
        self._dice = Dice(seed)
        self._log = RequestLog()
        self._server: SandboxServer | None = None
        #: Where its clients journal their runs while it serves (None when stopped); see :meth:`start`.
        self.journal_folder: Path | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle -----------------------------------------------------------

    def start(self) -> Sandbox:
        """Start serving in a background thread (a no-op when already serving); returns the sandbox.

        Its clients (``Client(sandbox.token, sandbox.url)``, with no ``journal=``) journal their
        runs in a temporary folder of its own, removed when it stops: a demo never lands in the
        user's real journal (:attr:`journal_folder`).

        Example::

            sandbox = Sandbox(sources=500, latency=0.02).start()
            client = Client(sandbox.token, sandbox.url)
        """
        if self._server is None:
            self._server = SandboxServer((self.host, self._port), self._respond, self.tls)
            self._port = self._server.server_address[1]
            self.journal_folder = Path(tempfile.mkdtemp(prefix="neuroio-sandbox-journal-"))
            sandbox_journal(self.host, self._port, self.journal_folder)
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"neuroio-sandbox-{self._port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (a no-op when not serving).

        Example::

            sandbox.stop()   # or: with Sandbox() as sandbox: ...
        """
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            sandbox_journal(self.host, self._port, None)
            if self.journal_folder is not None:
                shutil.rmtree(self.journal_folder, ignore_errors=True)
                self.journal_folder = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the running sandbox (``https://`` with ``tls``), for
        ``Client(sandbox.token, sandbox.url)``."""
        if self._server is None:
            raise RuntimeError("the sandbox is not running; call start() or use `with`")
        return f"{'https' if self.tls else 'http'}://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        """The port served on (the one picked when started with port 0)."""
        return self._port

    # -- knobs that need checking ------------------------------------------------

    @property
    def faults(self) -> dict[str, float]:
        """Fault kind ("503", "429", "502", "drop") -> share of requests."""
        return dict(self._faults)

    @faults.setter
    def faults(self, value: Mapping[str, float] | None) -> None:
        self._faults = checked_faults(value or {})

    @property
    def fault_rate(self) -> float:
        """The share of requests that get a fault; setting it splits it evenly over the kinds."""
        return sum(self._faults.values())

    @fault_rate.setter
    def fault_rate(self, value: float) -> None:
        self.faults = even_split(value)

    @property
    def rate_limit(self) -> float | None:
        """Requests a second (None: unlimited), with bursts of up to ``rate_burst``."""
        return self._bucket.rate if self._bucket else None

    @rate_limit.setter
    def rate_limit(self, value: float | None) -> None:
        if not value:
            self._bucket = None
            return
        self._bucket = TokenBucket(value, self._rate_burst or max(1, math.ceil(value / 10)))

    @property
    def rate_burst(self) -> int | None:
        """How many requests may come at once before ``rate_limit`` paces them (None: a tenth of a second's worth)."""
        return self._bucket.burst if self._bucket else self._rate_burst

    @rate_burst.setter
    def rate_burst(self, value: int | None) -> None:
        self._rate_burst = value
        self.rate_limit = self.rate_limit

    @property
    def corrupt(self) -> str | None:
        """None, or how list pages are broken: one of ``CORRUPT_MODES``."""
        return self._corrupt

    @corrupt.setter
    def corrupt(self, value: str | None) -> None:
        if value is not None and value not in CORRUPT_MODES:
            raise ValueError(f"corrupt must be None or one of {CORRUPT_MODES}, not {value!r}")
        self._corrupt = value

    # -- state, changed as another user would -----------------------------------

    def _new_store(self, sources: int | list[dict[str, Any]]) -> Store:
        if isinstance(sources, int):
            generated = generate_sources(
                sources, self._seed, license_ids=self.license_ids, unknown_fields=self.unknown_fields
            )
            return Store(generated, ServerFields(license_ids=self.license_ids, unknown_fields=self.unknown_fields))
        return Store(
            sources, ServerFields(license_ids=self.license_ids, unknown_fields=self.unknown_fields, seeded=sources)
        )

    def reset(self, sources: int | list[dict[str, Any]]) -> None:
        """Replace every source (a number to generate, or the records) and clear the log.

        For tests that try many servers' data on one running sandbox (hypothesis).

        Example::

            sandbox.reset(50)                                   # 50 fresh sources
            sandbox.reset([{"id": 1, "name": "Gate"}])          # exactly these
        """
        self._store = self._new_store(sources)
        self.clear_log()

    @property
    def creates_land_in(self) -> int:
        """The space new sources are made in: the token's own (the API lets no client choose).
        The lowest space of the sources when started or :meth:`reset`; set it to play a token
        of another space.

        Example::

            sandbox.creates_land_in = 3   # this token's creates now land in space 3
        """
        return self._store.default_space

    @creates_land_in.setter
    def creates_land_in(self, space: int) -> None:
        self._store.default_space = space

    @property
    def sources(self) -> dict[int, dict[str, Any]]:
        """A deep copy of the state: id -> source."""
        return self._store.snapshot()

    def source(self, source_id: int) -> dict[str, Any]:
        """A copy of one source as the server holds it now.

        Example::

            sandbox.source(7)["use_pps_time"]
        """
        return self._call(self._store.get, source_id)

    def external_edit(self, source_id: int, **fields: Any) -> dict[str, Any]:
        """Change a source as another user would (validated, not logged); the result.

        Example::

            sandbox.external_edit(7, use_pps_time=True)   # a colleague changed it meanwhile
        """
        return self._call(self._store.update, source_id, fields)

    def add_source(self, **fields: Any) -> dict[str, Any]:
        """Create a source as another user would (validated, not logged).

        Example::

            sandbox.add_source(name="Dock cam 1")   # the name is taken before our create
        """
        return self._call(self._store.create, fields)

    def remove_source(self, source_id: int) -> None:
        """Delete a source on the server side, as another user would.

        Example::

            sandbox.remove_source(7)
        """
        self._call(self._store.delete, source_id)

    @staticmethod
    def _call(method: Callable[..., _T], *args: Any) -> _T:
        """Run a store method, raising KeyError / ValueError as Python callers expect."""
        try:
            return method(*args)
        except ApiFailure as failure:
            if failure.status == 404:
                raise KeyError(args[0]) from None
            raise ValueError(failure.describe()) from None

    # -- the request log -----------------------------------------------------------

    @property
    def log(self) -> list[RequestRecord]:
        """Every request seen since the last :meth:`clear_log`, oldest first."""
        return self._log.records()

    def requests(self, method: str | None = None) -> list[RequestRecord]:
        """The request log, or the requests of one method (``"PATCH"``), oldest first.

        Example::

            patches = sandbox.requests("PATCH")
            [(r.path, r.body) for r in patches]
        """
        records = self._log.records()
        return records if method is None else [r for r in records if r.method == method.upper()]

    def clear_log(self) -> None:
        """Forget the requests seen so far; the in-flight high-water mark restarts from now.

        Example::

            sandbox.clear_log()
            client.sources.get(7)
            assert len(sandbox.requests()) == 1
        """
        self._log.clear()

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since the last :meth:`clear_log`."""
        return self._log.max_in_flight

    def wait_idle(self, timeout: float = 60.0, *, closed: bool = False, poll: float = 0.05) -> None:
        """Wait until no request is being handled and none arrived for a moment; ``closed``:
        also until every client connection is closed.

        For tests of a client stopped mid-run: what it sent still reaches the store before the
        test looks at the state. A killed process's connections close only once the requests
        already in them were read and answered (a request it had sent whole is applied, its
        answer never read): ``closed=True`` waits for that. Raises ``TimeoutError`` after
        ``timeout`` seconds.

        Example::

            process.kill()                # a client killed mid-run
            sandbox.wait_idle(closed=True)
            sandbox.sources               # now holds whatever that client's requests did
        """
        deadline = time.monotonic() + timeout
        seen = -1
        while True:
            server = self._server
            busy = self._log.in_flight or (closed and server is not None and server.open_connections)
            if not busy and seen == len(self._log.records()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the sandbox was still busy after {timeout} s")
            seen = len(self._log.records())
            time.sleep(poll)

    # -- answering ---------------------------------------------------------------

    def _respond(self, request: Request) -> Reply:
        """Called by the server in a handler thread for every request."""
        started = time.monotonic()
        self._log.begin()
        target = urlsplit(request.target)
        params = dict(parse_qsl(target.query, keep_blank_values=True))
        body = parse_body(request.body)
        authorized = self._authorized(request.authorization)
        try:
            if request.complete:
                reply, fault = self._answer(request, target.path, params, body, authorized)
            else:  # the client went away mid-body: nothing to process, no one to answer
                reply, fault = DROP, INCOMPLETE
        except Exception as exc:  # a failing before_request hook, say: answer, never hang
            reply, fault = error_reply(500, INTERNAL, f"Sandbox error: {exc!r}"), None
        record = RequestRecord(
            request.method,
            target.path,
            params,
            None if body is INVALID_JSON else body,
            reply.status,
            fault,
            authorized,
            request.user_agent,
            started,
            time.monotonic(),
        )
        self._log.end(record)
        return reply

    def _answer(
        self, request: Request, path: str, params: dict[str, str], body: Any, authorized: bool
    ) -> tuple[Reply, str | None]:
        """The reply and the fault behind it, if any.

        In order: latency, rate limit, injected fault, auth, ``before_request``,
        the API, then maybe losing a write's answer once it is applied.
        """
        method = request.method
        if self.latency > 0:
            time.sleep(self.latency)
        bucket = self._bucket
        wait = bucket.take() if bucket is not None else 0.0
        if wait > 0:
            return throttled(max(1, math.ceil(wait))), "rate_limit"
        methods = self.fault_methods
        kind = self._dice.fault(self._faults) if methods is None or method in methods else None
        if kind is not None:
            retry_after = self._dice.retry_after(*self.retry_after) if kind == "429" else 0
            return fault_reply(kind, retry_after, request), kind
        if not authorized:
            return error_reply(401, AUTH, "Invalid token."), None
        hook = self.before_request
        if hook is not None:
            hook(method, path)
        reply = handle(
            self._store,
            method,
            path,
            params,
            body,
            PageOptions(self.next_base or self.url, self.page_cap, self.omit_count, self._corrupt, self.claimed_count),
        )
        if method in _WRITES and reply.status is not None and reply.status < 300:
            if self._dice.chance(self.drop_after_apply):
                return DROP, "drop_after_apply"
            if self._dice.chance(self.gateway_after_apply):
                return bad_gateway(), "502_after_apply"
        return reply, None

    def _authorized(self, header: str | None) -> bool:
        scheme, _, token = (header or "").partition(" ")
        return scheme.lower() == "token" and secrets.compare_digest(token.strip().encode(), self.token.encode())
