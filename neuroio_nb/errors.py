"""Exceptions raised by neuroio-nb.

Every error the toolkit raises is a :class:`NeuroIOError` (but Ctrl-C during a
bulk update, :class:`BulkInterrupted`, which is a ``KeyboardInterrupt``). Errors that come
from the server are :class:`APIError` (refined by status); a connection that
could not be made or kept once retries were spent is :class:`TransportError`;
an edited frame that does not pass the schema is :class:`ValidationError`.
None of them ever carries the API token: :func:`scrub` takes it (and any start
of it that an excerpt cut off) out of an error's every text, once, where the
error is made.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

from ._views import problems_html, problems_text


class NeuroIOError(Exception):
    """Base class of every error raised by neuroio-nb."""


class ConfigurationError(NeuroIOError, ValueError):
    """The client is set up wrongly (no token, a bad or insecure URL)."""


class TransportError(NeuroIOError):
    """A connection or timeout failure, once retries are spent.

    ``maybe_sent`` says whether the request may have reached the server (a
    connection dropped after sending) as opposed to certainly not (refused).
    """

    def __init__(self, message: str, *, maybe_sent: bool = True) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent


class APIError(NeuroIOError):
    """The server answered with status >= 400 (or with a body that makes no sense).

    ``message``, ``error_codes`` and ``fields`` come from the API's error body;
    ``fields`` is a list of ``{"name", "message", "error_code"}`` dicts.
    """

    def __init__(
        self,
        status_code: int | None,
        message: str,
        *,
        error_codes: Iterable[int] = (),
        fields: Iterable[dict[str, Any]] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.error_codes = list(error_codes)
        self.fields = list(fields)
        self.method = method
        self.path = path
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        head = f"{self.status_code}: {self.message}" if self.status_code else self.message
        lines = [head + where]
        lines += [f"  {_field_line(f)}" for f in self.fields]
        return "\n".join(lines)

    @property
    def field_errors(self) -> dict[str, str]:
        """Field name -> the server's message for it (entries that name no field are left out)."""
        return {str(f["name"]): _text(f.get("message")) for f in self.fields if not _empty(f.get("name"))}


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _field_line(entry: dict[str, Any]) -> str:
    """One entry of ``fields`` as a line: ``name: message``, or whichever of them the server sent
    (an error body with ``"fields": "settings"`` names no field: the line is ``settings``)."""
    name, message = entry.get("name"), entry.get("message")
    if _empty(name):
        return _text(message) or "(a field error without a name or message)"
    return f"{name}: {message}" if not _empty(message) else str(name)


class AuthenticationError(APIError):
    """401 or 403: the token is missing, wrong or lacks the right."""


class NotFoundError(APIError):
    """404: no such source."""


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is in seconds, if the server said."""

    retry_after: float | None = None


class ServerError(APIError):
    """5xx: the server or a proxy in front of it failed."""


class MalformedResponseError(APIError):
    """The server answered 2xx with a body that is not what the API promises."""


class Problem(NamedTuple):
    """One thing wrong with an edited frame or CSV."""

    id: Any
    field: str | None
    value: Any
    reason: str


class ValidationError(NeuroIOError, ValueError):
    """Every problem found in an edited frame, found before anything was sent."""

    def __init__(self, problems: Iterable[Problem], *, what: str = "edited frame") -> None:
        self.problems = list(problems)
        self.what = what
        super().__init__(self._describe())

    @classmethod
    def one(
        cls, reason: str, *, value: Any = None, field: str | None = None, what: str = "edited frame"
    ) -> ValidationError:
        """The error of a single problem: a file, frame or argument refused as a whole."""
        return cls([Problem(None, field, value, reason)], what=what)

    def _describe(self) -> str:
        return problems_text(self.problems, self.what)

    def to_frame(self) -> Any:
        """The problems as a frame: one row per problem, a column per field of :class:`Problem`."""
        import pandas as pd

        return pd.DataFrame(self.problems, columns=list(Problem._fields))

    def _repr_html_(self) -> str:
        return problems_html(self.problems, self.what)


class BulkInterrupted(KeyboardInterrupt):
    """A bulk update was interrupted (Ctrl-C); ``report`` holds what happened so far.

    It is a ``KeyboardInterrupt`` and not an ``Exception`` (so not a
    :class:`NeuroIOError`): a loop that catches ``Exception`` still stops on Ctrl-C.
    """

    def __init__(self, report: Any) -> None:
        self.report = report
        super().__init__(
            "bulk update interrupted; the partial report is in .report and planning again shows what was not applied"
        )


#: What an excerpt of a long body ends with where it was cut.
CUT = "..."
#: The shortest start of a secret that :func:`redact` hides where an excerpt was cut.
_SHORTEST_CUT_SECRET = 3
#: Shorter "secrets" (a test's "t") cannot be told apart from the words around them: left alone.
_SHORTEST_SECRET = 8


class JournalError(NeuroIOError):
    """A journal file cannot be used: not the toolkit's, unreadable, or no such run."""


class ListingChangedWarning(UserWarning):
    """Sources were added or deleted while the listing was being read."""


class TornLineWarning(UserWarning):
    """A journal file's last line was cut short (the process died while writing it); it was skipped."""


class UnmatchedRowsWarning(UserWarning):
    """Rows planned with ``key="name"`` and without ``create=True`` match no source: nothing
    is done with them (they are in ``plan.unmatched``). One warning per plan, naming them and
    saying which ``create=True`` would create and which it refuses as outside the scope."""


def redact(text: str, secret: str | None, *, mask: str = "***") -> str:
    """``text`` without ``secret``, nor the start of it that ends ``text`` or an excerpt (``CUT``)."""
    if not secret or len(secret) < _SHORTEST_SECRET:
        return text
    text = text.replace(secret, mask)
    for n in range(len(secret) - 1, _SHORTEST_CUT_SECRET - 1, -1):
        start = secret[:n]
        text = text.replace(start + CUT, mask + CUT)
        if text.endswith(start):
            text = text[:-n] + mask
    return text


def scrub(error: NeuroIOError, secret: str | None) -> NeuroIOError:
    """``error`` with ``secret`` redacted from its message, its field errors and its args."""
    if not secret:
        return error
    if isinstance(error, APIError):
        error.message = redact(error.message, secret)
        error.fields = [{k: redact(v, secret) if isinstance(v, str) else v for k, v in f.items()} for f in error.fields]
        error.args = (error._describe(),)
    else:
        error.args = tuple(redact(a, secret) if isinstance(a, str) else a for a in error.args)
    return error
