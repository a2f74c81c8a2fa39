"""The connection to a NeuroIO API: one session, one request path (layer 1).

Every request goes through :meth:`Transport.request`, which retries with tenacity,
turns error answers into typed exceptions, and never lets the token out. It knows
nothing of sources; :class:`neuroio_nb.client.Client` adds them on top.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import numbers
import os
import re
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3.exceptions as u3
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from ._version import __version__
from .errors import (
    APIError,
    AuthenticationError,
    ConfigurationError,
    MalformedResponseError,
    NotFoundError,
    Problem,
    RateLimitError,
    ServerError,
    TransportError,
    ValidationError,
)
from .throttle import AdaptiveLimit

log = logging.getLogger("neuroio_nb")

DEFAULT_URL = "https://api.neuroio.com"
TOKEN_ENV = "NEUROIO_API_TOKEN"
URL_ENV = "NEUROIO_API_URL"
_Self = TypeVar("_Self", bound="Transport")
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: Statuses after which a create is retried: the server certainly did not act on it.
CREATE_RETRY_STATUSES = frozenset({429, 503})


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
    concurrent requests (and sizes the connection pool); ``max_retries`` is how
    many times a retryable failure is retried.
    """

    def __init__(
        self,
        api_token: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = 30.0,
        max_retries: int = 5,
        max_workers: int = 8,
        page_size: int = 100,
        max_retry_after: float = 30.0,
        allow_insecure: bool = False,
    ) -> None:
        self._token = _check_token(api_token if api_token is not None else os.environ.get(TOKEN_ENV))
        self.base_url = _check_url(base_url or os.environ.get(URL_ENV) or DEFAULT_URL, allow_insecure)
        self.timeout = _check_timeout(timeout)
        self.max_retries = int(_check_number("max_retries", max_retries, minimum=0, whole=True))
        self.max_workers = max(1, int(_check_number("max_workers", max_workers, minimum=0, whole=True)))
        self.page_size = int(_check_number("page_size", page_size, minimum=1, whole=True))
        self.max_retry_after = _check_number("max_retry_after", max_retry_after, minimum=0)
        self.limit = AdaptiveLimit(self.max_workers)
        parts = urlsplit(self.base_url)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"neuroio-nb/{__version__}"
        self.session.headers["Accept"] = "application/json"
        if self._token:
            self.session.auth = _TokenAuth(self._token, (parts.scheme, parts.netloc))
        adapter = HTTPAdapter(pool_connections=2, pool_maxsize=self.max_workers, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self) -> str:
        return f"<neuroio_nb.{type(self).__name__} {self.base_url}>"

    def __enter__(self: _Self) -> _Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session and its pooled connections."""
        self.session.close()

    def url(self, path: str) -> str:
        """The absolute URL of an API path on this client's server."""
        return self.base_url + "/" + path.lstrip("/")

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json_body: Any = None, retry_unknown: bool | None = None) -> Any:
        """Send one API request, retried as the API allows; return the decoded body.

        ``retry_unknown``: may a request whose outcome is unknown (the connection
        dropped after sending, a 502/504) be sent again? Default: yes except POST.
        """
        if not self._token:
            raise ConfigurationError(
                f"No API token: pass Client(api_token=...) or set the {TOKEN_ENV} environment variable.")
        method = method.upper()
        data = None if json_body is None else _encode_json(json_body, method, path)
        if retry_unknown is None:
            retry_unknown = method != "POST"

        def retryable(exc: BaseException) -> bool:
            if isinstance(exc, TransportError):
                return retry_unknown or not exc.maybe_sent
            if isinstance(exc, APIError) and exc.status_code is not None:
                allowed = RETRY_STATUSES if retry_unknown else CREATE_RETRY_STATUSES
                return exc.status_code in allowed
            return False

        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(retryable),
            reraise=True,
        )
        return retrying(self._send_once, method, path, params, data)

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return wait_random_exponential(multiplier=0.2, max=10)(state)

    def _send_once(self, method: str, path: str, params: dict[str, Any] | None, data: bytes | None) -> Any:
        url = self.url(path)
        headers = {"Content-Type": "application/json"} if data is not None else None
        with self.limit:
            try:
                resp = self.session.request(method, url, params=params, data=data, headers=headers,
                                            timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.ConnectTimeout:
                raise TransportError(f"{method} {path}: connection timed out ({self.base_url})",
                                     maybe_sent=False) from None
            except requests.exceptions.ConnectionError as e:
                raise TransportError(f"{method} {path}: {_connection_reason(e)} ({self.base_url})",
                                     maybe_sent=not _never_sent(e)) from None
            except requests.exceptions.Timeout:
                raise TransportError(f"{method} {path}: no answer within {self.timeout} s") from None
            except requests.exceptions.RequestException as e:
                text = str(e).replace(self._token, "***") if self._token else str(e)
                raise TransportError(f"{method} {path}: {type(e).__name__}: {text}") from None
            if resp.status_code == 429:
                self.limit.throttled()
            elif resp.status_code < 400:
                self.limit.succeeded()
        log.debug("%s %s -> %s", method, path, resp.status_code)
        if resp.status_code >= 400:
            raise error_from_response(resp, method, path)
        if resp.is_redirect:
            target = urlsplit(resp.headers.get("Location", "")).netloc or "the same host"
            raise APIError(resp.status_code, f"unexpected redirect to {target} (not followed, so the "
                           "token stays with the API host)", method=method, path=path)
        if resp.status_code in (202, 204) or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise MalformedResponseError(
                resp.status_code, f"the server's answer is not JSON: {_excerpt(resp.text)!r}",
                method=method, path=path) from None


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
        codes = [c for c in body.get("error_codes") or [] if isinstance(c, int)]
        fields = [f for f in body.get("fields") or [] if isinstance(f, dict)]
    else:
        text = _excerpt(resp.text)
        message = f"{resp.reason or 'error'}" + (f" (body: {text!r})" if text else " (empty body)")
    cls: type[APIError] = APIError
    if status in (401, 403):
        cls = AuthenticationError
    elif status == 404:
        cls = NotFoundError
    elif status == 429:
        cls = RateLimitError
    elif status >= 500:
        cls = ServerError
    err = cls(status, message or resp.reason or "error", error_codes=codes, fields=fields,
              method=method, path=path)
    if isinstance(err, RateLimitError):
        err.retry_after = _retry_after(resp.headers.get("Retry-After"))
    return err


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, (when - dt.datetime.now(dt.timezone.utc)).total_seconds())


def _excerpt(text: str, n: int = 200) -> str:
    """A short, single-line excerpt of an HTML or text body."""
    flat = re.sub(r"<[^>]+>", " ", text or "")
    flat = " ".join(flat.split())
    return flat[:n] + ("..." if len(flat) > n else "")


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


def _connection_reason(e: requests.exceptions.ConnectionError) -> str:
    if _never_sent(e):
        return "could not connect"
    return "the connection was lost before an answer came"


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
            problems.append(Problem(None, name, value, f"a {type(value).__name__} value cannot be sent "
                                    "as JSON (use a number, text, true/false, a list or nothing)"))
    raise ValidationError(problems, what=f"{method} {path} body")


def _check_token(token: str | None) -> str | None:
    """The token without surrounding whitespace; refused (never shown) if a header cannot carry it."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise ConfigurationError(f"The API token must be text, not {type(token).__name__}.")
    token = token.strip()
    if any(not ("!" <= ch <= "~") for ch in token):
        raise ConfigurationError("The API token contains a space, a control character or a non-ASCII "
                                 "character, so it cannot be sent in an HTTP header; check how it was copied.")
    return token


def _check_timeout(timeout: Any) -> Any:
    """Seconds > 0, or a (connect, read) pair of them as requests also takes."""
    if isinstance(timeout, tuple) and len(timeout) == 2:
        return tuple(_check_number("timeout", t, minimum=0, exclusive=True) for t in timeout)
    return _check_number("timeout", timeout, minimum=0, exclusive=True)


def _check_number(name: str, value: Any, *, minimum: float, exclusive: bool = False,
                  whole: bool = False) -> Any:
    """A client option that must be a (whole) number >= minimum (> minimum if exclusive)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and value == value
    if ok and whole:
        ok = float(value).is_integer()
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
        raise ConfigurationError("Not an API URL: it carries a user name or password "
                                 f"({parts.scheme}://***@{parts.hostname}); pass the API token instead.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"Not an API URL: {url!r} (expected https://host[:port])")
    if parts.scheme == "http" and not allow_insecure and not _is_loopback(parts.hostname):
        raise ConfigurationError(
            f"Refusing plain http:// to {parts.hostname}: the token would cross the network "
            "unencrypted. Use https://, or pass allow_insecure=True if you really mean it.")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["DEFAULT_URL", "TOKEN_ENV", "URL_ENV", "Transport", "error_from_response"]
