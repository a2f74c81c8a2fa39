"""The connection to a NeuroIO API: one session, one request path (layer 1).

Every request goes through :meth:`Transport.request`, which retries with tenacity,
turns error answers into typed exceptions, and never lets the token out. It knows
nothing of sources; :class:`neuroio_nb._client.Client` adds them on top.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import functools
import html
import ipaddress
import json
import logging
import numbers
import os
import random
import re
import ssl
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting
from tenacity import RetryCallState, Retrying, retry_if_exception_type

from ._journal import Journal, open_journal
from ._throttle import AdaptiveLimit
from ._values import whole_number
from ._version import __version__
from .errors import CUT as EXCERPT_CUT
from .errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    MalformedResponseError,
    NeuroIOError,
    NotFoundError,
    Problem,
    RateLimitError,
    ServerError,
    ThrottledWarning,
    TransportError,
    ValidationError,
    scrub,
)

log = logging.getLogger("neuroio_nb")

DEFAULT_URL = "https://api.neuroio.com"
TOKEN_ENV = "NEUROIO_API_TOKEN"
URL_ENV = "NEUROIO_API_URL"
_Self = TypeVar("_Self", bound="Transport")
#: Methods that may simply be sent again when their outcome is unknown: sending them twice
#: leaves the server as sending them once, and answers the same.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "PATCH"})
#: Methods that change nothing: they are sent within ``max_readers``, every other within ``max_workers``.
READS = frozenset({"GET", "HEAD"})
#: Statuses after which the server certainly did not act: 429 too many requests, 503 unavailable.
NOT_ACTED_STATUSES = frozenset({429, 503})
#: Statuses from a proxy whose request may or may not have reached the API.
UNKNOWN_OUTCOME_STATUSES = frozenset({502, 504})


class Verdict(enum.Enum):
    """What to do after a failed attempt."""

    RETRY = "send again"
    ASK = "ask the server whether it acted"
    STOP = "raise the error"


def outcome_unknown(error: BaseException) -> bool:
    """Did the request perhaps reach the server and act, though no answer says so?

    The one definition: a connection lost after sending (or a read timeout), or a
    502/504 from a proxy.
    """
    return (isinstance(error, TransportError) and error.maybe_sent) or (
        isinstance(error, APIError) and error.status_code in UNKNOWN_OUTCOME_STATUSES
    )


def should_retry(error: BaseException, method: str, *, can_ask: bool = False) -> Verdict:
    """Send ``method`` again after ``error``, ask the server first, or give up?"""
    if isinstance(error, TransportError) and not error.maybe_sent:
        return Verdict.RETRY if error.retryable else Verdict.STOP
    if isinstance(error, APIError) and error.status_code in NOT_ACTED_STATUSES:
        return Verdict.RETRY
    if outcome_unknown(error):
        if method.upper() in IDEMPOTENT:
            return Verdict.RETRY
        return Verdict.ASK if can_ask else Verdict.STOP
    return Verdict.STOP


def retry_delay(
    attempt: int,
    retry_after: float | None = None,
    *,
    max_retry_after: float = 30.0,
    base: float = 0.2,
    max_backoff: float = 10.0,
    rand: Callable[[], float] = random.random,
    max_jitter: float = 1.0,
) -> float:
    """Seconds to wait before attempt ``attempt + 1``.

    With the server's ``Retry-After``: that (at most ``max_retry_after``) plus a
    jitter of up to a quarter of it (at least 0.1 s, at most ``max_jitter``), so that
    clients told the same time do not all come back at once (a client whose requests
    are paced spaces them anyway: it needs little). Without: exponential backoff
    with full jitter, ``base * 2**(attempt-1)`` capped at ``max_backoff``.
    """
    if retry_after is not None:
        wait = min(max(retry_after, 0.0), max_retry_after)
        return wait + rand() * min(max_jitter, 0.1 + 0.25 * wait)
    return rand() * min(max_backoff, base * 2.0 ** max(0, attempt - 1))


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """A ``Retry-After`` header as seconds from ``now``: delta-seconds or an HTTP date; None if unreadable."""
    if value is None or not value.strip():
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        seconds = (when - (now or dt.datetime.now(dt.timezone.utc))).total_seconds()
    return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None


@dataclass(frozen=True)
class Settled:
    """The server shows that a request whose answer was lost did act; ``value`` stands for its answer."""

    value: Any


#: Asked when a request's outcome is unknown: :class:`Settled` if it acted, None to send it again.
IfUnknown = Callable[[NeuroIOError], "Settled | None"]


#: The most jitter added to a Retry-After while the client paces its requests (they are spaced anyway).
PACED_JITTER = 0.1
#: Seconds of waiting out 429s after which a single call says it is waiting (once).
THROTTLED_NOTICE = 5.0


@dataclass
class _Throttled:
    """Seconds a call has waited out 429s (all its requests), and whether it said so."""

    waited: float = 0.0
    noticed: bool = False


@dataclass
class _Budget:
    """What one request has spent: failures (against ``max_retries``), and its call's waiting
    on 429s (against ``limit`` seconds, which ``setting`` sets)."""

    throttled: _Throttled
    limit: float
    setting: str
    failures: int = 0
    #: Is the wait about to be taken one out of a 429?
    throttled_next: bool = False


def _still_throttled(error: RateLimitError, budget: _Budget) -> None:
    """Say in ``error`` how long was waited, the setting that bounds it, and the ways out."""
    error.message = (
        f"{error.message} (still throttled after waiting {budget.throttled.waited:.0f} s in all, the most "
        f"{budget.setting}={budget.limit:g} allows: try again later, or make the client with a larger "
        f"{budget.setting})"
    )
    error.args = (error._describe(),)


def _caller_level() -> int:
    """The stack level of the first frame outside this package, for a warning to point at the user's line."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith(("neuroio_nb", "tenacity")):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


class _Again(Exception):
    """Inside the engine only: this attempt failed and may be retried."""

    def __init__(self, error: NeuroIOError) -> None:
        super().__init__(str(error))
        self.error = error


def _error_of(state: RetryCallState) -> NeuroIOError | None:
    exc = state.outcome.exception() if state.outcome else None
    return exc.error if isinstance(exc, _Again) else None


def _ask(if_unknown: IfUnknown, error: NeuroIOError) -> Settled | None:
    """``if_unknown(error)``; if that check fails too, the request's own error says so."""
    try:
        return if_unknown(error)
    except NeuroIOError as check_error:
        note = f"whether it was applied could not be checked: {check_error}"
        if isinstance(error, APIError):
            error.message = f"{error.message} ({note})"
            error.args = (error._describe(),)
        else:
            error.args = (f"{error.args[0] if error.args else error} ({note})", *error.args[1:])
        raise error from None


class _TokenAuth(requests.auth.AuthBase):
    """Adds the token only to requests for the client's own origin."""

    def __init__(self, token: str, origin: tuple[str, str]) -> None:
        self._token = token
        self._origin = origin

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        parts = urlsplit(r.url or "")
        if (parts.scheme, parts.netloc) == self._origin:
            r.headers["Authorization"] = f"Token {self._token}"
        return r

    def __repr__(self) -> str:
        return "<TokenAuth ***>"


class Transport:
    """Everything about the connection to one NeuroIO API.

    ``api_token`` defaults to ``$NEUROIO_API_TOKEN`` and ``base_url`` to
    ``$NEUROIO_API_URL`` or ``https://api.neuroio.com``. ``max_workers`` bounds
    the writes (POST, PATCH, DELETE) in flight at once, and ``max_readers`` (default:
    ``max_workers``) the reads (GET); the two budgets are apart so that a job's reads
    never hold up its writes (a conflict-checked update sends its PATCHes while the
    listing is still read), so up to ``max_workers + max_readers`` requests may be in
    flight at once, and the connection pool holds as many. A 429 narrows both and
    paces both (see :mod:`neuroio_nb._throttle`). ``max_retries`` is how
    many times a retryable failure is retried. Answers "429 too many requests"
    do not count against ``max_retries``: they are waited out (as long as each
    ``Retry-After`` says, capped at ``max_retry_after``), by a single call (``get``,
    ``list``, ``create``, ``update``, ``delete``, a form's Save: every request it sends)
    for up to ``max_throttled_wait`` seconds in all (default a minute, so that control
    comes back to a person), then :class:`~neuroio_nb.errors.RateLimitError` names the
    setting; a call that waits more than :data:`THROTTLED_NOTICE` seconds says so once
    (:class:`~neuroio_nb.errors.ThrottledWarning`). A bulk job (``to_frame``, ``plan``,
    ``apply``, ``bulk_update``, ``undo``, ``resume``) waits up to ``job_throttled_wait``
    seconds per request, since it runs unattended and throttling alone must not fail
    its rows. ``timeout``: seconds to wait for the connection, then for *each read* of
    the answer (the gap between bytes, not the whole answer: a server that keeps sending
    slowly is not cut off); a ``(connect, read)`` pair sets them apart. ``journal``: where every write is
    recorded before it is sent: None for ``$NEUROIO_NB_JOURNAL``, else the user
    data folder; a folder path; False for no journal.
    """

    def __init__(  # noqa: PLR0913  (the Client's options: each a documented keyword)
        self,
        api_token: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_workers: int = 8,
        max_readers: int | None = None,
        page_size: int = 100,
        max_retry_after: float = 30.0,
        max_throttled_wait: float = 60.0,
        job_throttled_wait: float = 300.0,
        allow_insecure: bool = False,
        journal: Journal | str | os.PathLike[str] | bool | None = None,
    ) -> None:
        self._token = _check_token(api_token if api_token is not None else os.environ.get(TOKEN_ENV))
        self.base_url = _check_url(base_url or os.environ.get(URL_ENV) or DEFAULT_URL, allow_insecure)
        self.timeout = _check_timeout(timeout)
        self.max_retries = int(_check_number("max_retries", max_retries, minimum=0, whole=True))
        self.max_workers = max(1, int(_check_number("max_workers", max_workers, minimum=0, whole=True)))
        self.max_readers = (
            self.max_workers
            if max_readers is None
            else max(1, int(_check_number("max_readers", max_readers, minimum=0, whole=True)))
        )
        self.page_size = int(_check_number("page_size", page_size, minimum=1, whole=True))
        self.max_retry_after = _check_number("max_retry_after", max_retry_after, minimum=0)
        self.max_throttled_wait = _check_number("max_throttled_wait", max_throttled_wait, minimum=0)
        self.job_throttled_wait = _check_number("job_throttled_wait", job_throttled_wait, minimum=0)
        self._jobs = 0  # bulk jobs running on this client (see job())
        self._jobs_lock = threading.Lock()
        self._calls = threading.local()  # the call a thread is making (see one_call())
        self.limit = AdaptiveLimit(self.max_workers, self.max_readers)
        #: Where every write is recorded before it is sent (None when off); see :mod:`neuroio_nb._journal`.
        self.journal = open_journal(journal, self.base_url)
        parts = urlsplit(self.base_url)
        self._loopback = _is_loopback(parts.hostname or "")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"neuroio-nb/{__version__}"
        self.session.headers["Accept"] = "application/json"
        if self._token:
            self.session.auth = _TokenAuth(self._token, (parts.scheme, parts.netloc))
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.max_workers + self.max_readers, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        # requests reads the environment (proxies, NO_PROXY, CA bundle) again for every
        # request, about as much CPU as the rest of sending it. Every request goes to
        # base_url, so it is read once, here, and the session is told to stop.
        env = self.session.merge_environment_settings(self.base_url + "/", {}, None, None, None)
        self.session.proxies.update(env["proxies"])
        self.session.verify = env["verify"]
        self.session.cert = env["cert"]
        self.session.trust_env = False

    def __repr__(self) -> str:
        return f"<neuroio_nb.{type(self).__name__} {self.base_url}>"

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its pooled connections.

        Example::

            client = Client()
            ...
            client.close()   # or: with Client() as client: ...
        """
        self.session.close()

    def url(self, path: str) -> str:
        """The absolute URL of an API path on this client's server.

        Example::

            client.url("/v1/sources/")   # "https://api.neuroio.com/v1/sources/"
        """
        return self.base_url + "/" + path.lstrip("/")

    @contextlib.contextmanager
    def job(self) -> Iterator[None]:
        """Meanwhile a bulk job runs: 429s are waited out up to ``job_throttled_wait`` per request.

        Example::

            with client.job():   # a loop of your own that sends many requests
                for source_id in ids:
                    client.sources.update(source_id, use_pps_time=True)
        """
        with self._jobs_lock:
            self._jobs += 1
        try:
            yield
        finally:
            with self._jobs_lock:
                self._jobs -= 1

    @contextlib.contextmanager
    def one_call(self) -> Iterator[None]:
        """Meanwhile one call is made from this thread: its requests share one budget of throttled
        waiting (``max_throttled_wait`` in all) and one notice. Nested calls are part of the outer one.

        Example::

            with client.one_call():   # two requests, one budget of waiting out 429s
                source = client.request("GET", "/v1/sources/7/")
                client.request("PATCH", "/v1/sources/7/", json_body={"use_pps_time": True})
        """
        if getattr(self._calls, "throttled", None) is not None:
            yield
            return
        self._calls.throttled = _Throttled()
        try:
            yield
        finally:
            self._calls.throttled = None

    def _throttle_budget(self) -> tuple[float, str]:
        """How long a request may wait out 429s in all now, and the setting that says so."""
        if self._jobs:
            return self.job_throttled_wait, "job_throttled_wait"
        return self.max_throttled_wait, "max_throttled_wait"

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json_body: Any = None,
        if_unknown: IfUnknown | None = None,
    ) -> Any:
        """Send one API request, retried as the API allows; return the decoded body.

        A request whose outcome is unknown (the connection dropped after sending,
        a 502/504) is sent again if it is idempotent (every method but POST);
        otherwise ``if_unknown(error)`` asks the server: it returns
        :class:`Settled` when the request did act (its value is the answer), or
        None when it did not (the request is then sent again). Without
        ``if_unknown`` such a POST is not sent again: its error is raised.

        Example::

            page = client.request("GET", "/v1/sources/", params={"limit": 5})
            page["count"]
        """
        if not self._token:
            raise ConfigurationError(
                f"No API token: pass Client(api_token=...) or set the {TOKEN_ENV} environment variable."
            )
        method = method.upper()
        data = None if json_body is None else _encode_json(json_body, method, path)
        limit, setting = self._throttle_budget()
        budget = _Budget(getattr(self._calls, "throttled", None) or _Throttled(), limit, setting)

        def attempt() -> Any:
            try:
                return self._send_once(method, path, params, data)
            except NeuroIOError as sent_error:
                error = scrub(sent_error, self._token)
            verdict = should_retry(error, method, can_ask=if_unknown is not None)
            if verdict is Verdict.ASK and if_unknown is not None:
                settled = _ask(if_unknown, error)
                if settled is not None:
                    return settled.value
                verdict = Verdict.RETRY
            if verdict is Verdict.RETRY:
                raise _Again(error)
            raise error

        retrying = Retrying(
            stop=functools.partial(self._stop, budget),
            wait=functools.partial(self._wait, budget),
            retry=retry_if_exception_type(_Again),
            sleep=functools.partial(self._sleep_counted, budget),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Again as spent:  # retries spent: the last error, with a traceback that starts here
            if isinstance(spent.error, RateLimitError):
                _still_throttled(spent.error, budget)
            raise spent.error.with_traceback(None) from None
        except NeuroIOError as error:
            raise error.with_traceback(None) from None

    def _stop(self, budget: _Budget, state: RetryCallState) -> bool:
        """Retries spent? 429s draw on their own budget (waited seconds), everything else on ``max_retries``."""
        error = _error_of(state)
        if isinstance(error, RateLimitError):
            return bool(budget.throttled.waited >= budget.limit - 1e-9)
        budget.failures += 1
        return budget.failures > self.max_retries

    def _wait(self, budget: _Budget, state: RetryCallState) -> float:
        error = _error_of(state)
        retry_after = error.retry_after if isinstance(error, RateLimitError) else None
        delay = retry_delay(
            state.attempt_number,
            retry_after,
            max_retry_after=self.max_retry_after,
            max_jitter=PACED_JITTER if self.limit.rate is not None else 1.0,
        )
        budget.throttled_next = isinstance(error, RateLimitError)
        if isinstance(error, RateLimitError):
            throttled = budget.throttled
            delay = min(delay, max(0.0, budget.limit - throttled.waited))  # never past the budget
            if throttled.waited + delay > THROTTLED_NOTICE and not throttled.noticed and not self._jobs:
                throttled.noticed = True
                warnings.warn(
                    f"{error.method} {error.path}: the server is throttling requests (429 too many requests); "
                    f"waiting it out, up to {budget.limit:g} s in all ({budget.setting})",
                    ThrottledWarning,
                    stacklevel=_caller_level(),
                )
        return delay

    def _sleep_counted(self, budget: _Budget, seconds: float) -> None:
        """Wait before the next attempt; a wait out of a 429 counts against the call's budget
        (counted here, as it happens: tenacity may work out a wait it then does not take)."""
        if budget.throttled_next:
            budget.throttled.waited += seconds
        self.retry_sleep(seconds)

    @staticmethod
    def retry_sleep(seconds: float) -> None:
        """How the client waits before it retries: ``time.sleep``. The one place a retry wait is
        slept, so that a test suite may bound it (every budget still counts the wait asked for).

        Example::

            Client.retry_sleep = staticmethod(lambda seconds: time.sleep(min(seconds, 0.02)))
        """
        time.sleep(seconds)

    def _prepare(
        self, method: str, url: str, params: dict[str, Any] | None, data: bytes | None
    ) -> requests.PreparedRequest:
        """The request as ``Session.request`` would prepare it, for much less CPU.

        ``Session.request`` merges the session's settings into each request with general
        code (copies of every setting, cookie jars merged, runtime protocol checks) that
        costs about a fifth of the CPU of sending a request, which bounds a bulk job on a
        small machine. The session's headers, params, auth, cookies and hooks are taken
        here as they are at each request, so a change made to ``client.session`` still
        applies; the settings ``Session.send`` fills in (proxies, verify, cert, stream)
        it still fills in. What this must keep (auth after headers, cookies, hooks, params,
        the environment's proxies and CA bundle, mounted adapters) is pinned by tests in
        ``tests/test_request_path.py`` that fail when a part is dropped.
        """
        session = self.session
        headers = dict(session.headers)
        if data is not None:
            headers["Content-Type"] = "application/json"
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=method,
            url=url,
            headers=headers,
            params=_with_session_params(params, session.params),
            data=data,
            auth=session.auth,
            cookies=session.cookies,
            hooks=session.hooks,
        )
        return prepared

    def _send_once(self, method: str, path: str, params: dict[str, Any] | None, data: bytes | None) -> Any:
        with self.limit.reads if method in READS else self.limit.writes:
            try:
                prepared = self._prepare(method, self.url(path), params, data)
                resp = self.session.send(prepared, timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.ConnectTimeout:
                raise TransportError(
                    f"{method} {path}: connection timed out ({self.base_url})", maybe_sent=False, url=self.base_url
                ) from None
            except requests.exceptions.SSLError as e:
                raise _tls_error(e, f"{method} {path}", self.base_url) from None
            except requests.exceptions.ConnectionError as e:
                never_sent = _never_sent(e)
                reason = "could not connect" if never_sent else "the connection was lost before an answer came"
                hint = "; is the sandbox still running?" if never_sent and self._loopback else ""
                raise TransportError(
                    f"{method} {path}: {reason} ({self.base_url}){hint}"
                    + ("" if never_sent else _may_have_acted(method)),
                    maybe_sent=not never_sent,
                    url=self.base_url,
                ) from None
            except requests.exceptions.Timeout:
                raise TransportError(
                    f"{method} {path}: the server sent nothing for {_read_timeout(self.timeout):g} s (the client's "
                    "timeout bounds each wait for the answer's next bytes, not the whole answer; a slow server "
                    "needs a larger Client(timeout=...))" + _may_have_acted(method),
                    url=self.base_url,
                ) from None
            except requests.exceptions.RequestException as e:
                raise TransportError(
                    f"{method} {path}: {type(e).__name__}: {e}" + _may_have_acted(method), url=self.base_url
                ) from None
            if resp.status_code == 429:
                self.limit.throttled()
            elif resp.status_code < 400:
                self.limit.succeeded()
        log.debug("%s %s -> %s", method, path, resp.status_code)
        if resp.status_code >= 400:
            raise error_from_response(resp, method, path)
        if resp.is_redirect:
            target = urlsplit(resp.headers.get("Location", "")).netloc or "the same host"
            raise APIError(
                resp.status_code,
                f"unexpected redirect to {target} (not followed, so the token stays with the API host)",
                method=method,
                path=path,
            )
        if resp.status_code in (202, 204) or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise MalformedResponseError(
                resp.status_code, f'the server\'s answer is not JSON: "{_excerpt(resp.text)}"', method=method, path=path
            ) from None


def _with_session_params(params: dict[str, Any] | None, session_params: Any) -> Any:
    """The request's query parameters over the session's (rarely any), merged as ``Session.request`` does."""
    if not session_params:
        return params
    return merge_setting(params, session_params)  # type: ignore[no-untyped-call]  # requests' stubs leave it untyped


def error_from_response(resp: requests.Response, method: str, path: str) -> APIError:
    """Build the typed exception for an error answer, whatever its body."""
    status = resp.status_code
    message, codes, fields = "", [], []
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and ("message" in body or "fields" in body or "error_codes" in body):
        message = str(body.get("message") or "")
        codes = [
            int(c)
            for c in _as_list(body.get("error_codes"))
            if (isinstance(c, int) and not isinstance(c, bool)) or (isinstance(c, str) and c.isdigit())
        ]
        fields = [f if isinstance(f, dict) else {"name": None, "message": str(f)} for f in _as_list(body.get("fields"))]
    else:
        text = _excerpt(resp.text)
        message = f"{resp.reason or 'error'}" + (f' (body: "{text}")' if text else " (empty body)")
    cls: type[APIError] = APIError
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    err = cls(status, message or resp.reason or "error", error_codes=codes, fields=fields, method=method, path=path)
    answered = urlsplit(resp.url or "")
    err.url = f"{answered.scheme}://{answered.netloc}" if answered.netloc else None
    if isinstance(err, RateLimitError):
        err.retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    return err


def _as_list(value: Any) -> list[Any]:
    """A body's list member as a list, whatever came: nothing, one item, or a list."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _may_have_acted(method: str) -> str:
    return "" if method in ("GET", "HEAD") else "; the change may have been applied (read it back to see)"


def _excerpt(text: str, n: int = 200) -> str:
    """A short, single-line excerpt of an HTML or text body, cut between words.

    Never cutting a word in two means a token a page echoes (tokens hold no
    spaces) is in the excerpt whole, where :func:`~neuroio_nb.errors.scrub`
    masks it, or not at all: never a start of it.
    """
    flat = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text or "")).split())
    if len(flat) <= n:
        return flat
    head = flat[: n + 1]  # one more: a word that ends exactly at n is whole
    return (head.rsplit(" ", 1)[0] if " " in head else "") + EXCERPT_CUT


#: OpenSSL's words for a handshake that failed before any request byte was sent.
_HANDSHAKE_FAILED = re.compile(
    r"HANDSHAKE|WRONG_VERSION_NUMBER|UNSUPPORTED_PROTOCOL|NO_PROTOCOLS|ALERT|NO_SHARED_CIPHER"
)


def _tls_error(e: requests.exceptions.SSLError, request: str, base_url: str) -> TransportError:
    """A TLS failure as the user can act on it. A certificate that is not trusted, or a
    handshake that failed, means the request was never sent (so a write is not "maybe
    applied"), and sending it again cannot help."""
    reason = _innermost(e, ssl.SSLError)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return TransportError(
            f"{request}: the server's TLS certificate is not trusted ({base_url}: {reason.verify_message}); "
            "nothing was sent. If the URL is right and your network signs certificates with its own "
            "authority (a company proxy, an internal CA), set REQUESTS_CA_BUNDLE to that authority's "
            "PEM file before the Client is made (or set client.session.verify to it)",
            maybe_sent=False,
            retryable=False,
        )
    if reason is not None and _HANDSHAKE_FAILED.search(str(reason)):
        return TransportError(
            f"{request}: the TLS handshake with {base_url} failed ({reason.reason or reason}); nothing was sent. "
            "Check that the URL's scheme and port are right (https:// to a port that speaks TLS)",
            maybe_sent=False,
            retryable=False,
        )
    return TransportError(
        f"{request}: the TLS connection failed ({base_url}: {reason or e})" + _may_have_acted(request.split()[0])
    )


def _innermost(e: BaseException, kind: type[BaseException]) -> Any:
    """The innermost exception of ``kind`` in ``e``'s chain (args, reasons, contexts), or None."""
    found: BaseException | None = None
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, kind):
            found = cur
        if isinstance(cur, u3.MaxRetryError) and cur.reason is not None:
            cur = cur.reason
            continue
        cur = cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else cur.__context__
    return found


def _never_sent(e: requests.exceptions.ConnectionError) -> bool:
    """True when the connection was never made, so the server saw nothing."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (u3.NewConnectionError, u3.ConnectTimeoutError, ConnectionRefusedError)):
            return True
        if isinstance(cur, u3.MaxRetryError) and cur.reason is not None:
            cur = cur.reason
            continue
        cur = cur.args[0] if cur.args and isinstance(cur.args[0], BaseException) else cur.__context__
    return False


def _encode_json(body: Any, method: str, path: str) -> bytes:
    """``body`` as the JSON bytes to send; a value JSON cannot carry is a ValidationError, sent nowhere."""
    try:
        return json.dumps(body, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError):
        pass
    items = body.items() if isinstance(body, dict) else [(None, body)]
    problems = []
    for name, value in items:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            problems.append(
                Problem(
                    None,
                    name,
                    value,
                    f"a {type(value).__name__} value cannot be sent "
                    "as JSON (use a number, text, true/false, a list or nothing)",
                )
            )
    raise ValidationError(problems, what=f"{method} {path} body")


def _check_token(token: str | None) -> str | None:
    """The token without surrounding whitespace; refused (never shown) if a header cannot carry it."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise ConfigurationError(f"The API token must be text, not {type(token).__name__}.")
    token = token.strip()
    if any(not ("!" <= ch <= "~") for ch in token):
        raise ConfigurationError(
            "The API token contains a space, a control character or a non-ASCII "
            "character, so it cannot be sent in an HTTP header; check how it was copied."
        )
    return token


def _read_timeout(timeout: Any) -> float:
    """The read part of a timeout (a number, or a ``(connect, read)`` pair)."""
    return float(timeout[1] if isinstance(timeout, tuple) else timeout)


def _check_timeout(timeout: Any) -> Any:
    """Seconds > 0, or a (connect, read) pair of them as requests also takes."""
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return tuple(_check_number("timeout", t, minimum=0, exclusive=True) for t in timeout)
    return _check_number("timeout", timeout, minimum=0, exclusive=True)


def _check_number(name: str, value: Any, *, minimum: float, exclusive: bool = False, whole: bool = False) -> Any:
    """A client option that must be a (whole) number >= minimum (> minimum if exclusive)."""
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and value == value
    if ok and whole:
        ok = whole_number(value) is not None
    if ok:
        ok = value > minimum if exclusive else value >= minimum
    if not ok:
        kind = "a whole number" if whole else "a number"
        bound = f"> {minimum}" if exclusive else f">= {minimum}"
        raise ConfigurationError(f"Client option {name} must be {kind} {bound}, not {value!r}")
    return value


def _check_url(url: str, allow_insecure: bool) -> str:
    parts = urlsplit(url.strip())
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            "Not an API URL: it carries a user name or password "
            f"({parts.scheme}://***@{parts.hostname}); pass the API token instead."
        )
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"Not an API URL: {url!r} (expected https://host[:port])")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"Refusing plain http:// to {parts.hostname}: the token would cross the network "
            "unencrypted. Use https://, or pass allow_insecure=True if you really mean it.",
            advice="the URL comes from Client(base_url=...), else $NEUROIO_API_URL: make it https://"
            f"{parts.netloc}{parts.path.rstrip('/')} (or pass allow_insecure=True on a network you trust).",
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "Transport", "error_from_response"]
