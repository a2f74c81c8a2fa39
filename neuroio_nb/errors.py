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

import sys
import traceback
from collections.abc import Iterable
from typing import Any, NamedTuple

from ._views import problems_html, problems_text

#: The most lines an error takes in a notebook (its message cut to fit, then what to do next).
NOTEBOOK_LINES = 12
_RED, _BOLD, _RESET = "\x1b[0;31m", "\x1b[1m", "\x1b[0m"


class NeuroIOError(Exception):
    """Base class of every error raised by neuroio-nb.

    In a notebook (IPython) it shows short: its name and message, what to do next, and no
    traceback through the toolkit's own code. ``%tb`` right after shows the whole traceback.

    Example::

        try:
            client.sources.get(42)
        except NeuroIOError as exc:
            print(f"could not read source 42: {exc}")
    """

    _shown_short = False

    def hint(self) -> str | None:
        """What to do next, said under the message in a notebook (None: the message says it).

        Example::

            except NeuroIOError as exc:
                print(exc, exc.hint() or "", sep="\n")
        """
        return None

    def _message_lines(self) -> list[str]:
        return str(self).splitlines() or [""]

    def _render_traceback_(self) -> list[str]:
        """IPython's hook: the short form the first time, the whole traceback when asked again (``%tb``)."""
        if getattr(self, "_shown_short", False):
            return _whole_traceback(self)
        self._shown_short = True
        return short_form(self)


def short_form(error: NeuroIOError) -> list[str]:
    """At most :data:`NOTEBOOK_LINES` lines: the error's name and message, the user's line that
    raised it, what to do next, and how to see the whole traceback.

    Example::

        try:
            client.sources.plan(edited)
        except ValidationError as exc:
            log.warning("\n".join(short_form(exc)))
    """
    hint = error.hint()
    tail = [*([f"{_BOLD}What to do:{_RESET} {hint}"] if hint else []), "(the whole traceback: %tb)"]
    where = _users_line(error)
    if where:
        tail.insert(0, f"raised by: {where}")
    lines = error._message_lines()
    room = NOTEBOOK_LINES - len(tail)
    if len(lines) > room:
        lines = [*lines[: room - 1], f"  ... {len(lines) - room + 1} more lines ..."]
    lines[0] = f"{_RED}{type(error).__name__}{_RESET}: {lines[0]}"
    return [*lines, *tail]


def _users_line(error: BaseException) -> str | None:
    """The last line of the user's own code the traceback passes (not this package, not IPython)."""
    found = None
    for frame in traceback.extract_tb(error.__traceback__):
        if not any(part in frame.filename for part in ("neuroio_nb", "IPython", "site-packages")) and frame.line:
            found = frame.line.strip()
    return found


def _whole_traceback(error: BaseException) -> list[str]:
    """The traceback IPython would show for ``error`` without the short form."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None:
        stb: list[str] = shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)
        return stb
    return "".join(traceback.format_exception(type(error), error, error.__traceback__)).splitlines()


class ConfigurationError(NeuroIOError, ValueError):
    """The client is set up wrongly (no token, a bad or insecure URL); the message says what to change,
    ``advice`` (when given) which setting holds it."""

    def __init__(self, message: str, *, advice: str | None = None) -> None:
        super().__init__(message)
        self.advice = advice

    def hint(self) -> str | None:
        """The setting to change, when the message does not name it.

        Example::

            Client("token", "http://neuroio.example.com")   # ConfigurationError; .hint() names base_url and $NEUROIO_API_URL
        """
        return self.advice


class TransportError(NeuroIOError):
    """A connection or timeout failure, once retries are spent.

    ``maybe_sent`` says whether the request may have reached the server (a
    connection dropped after sending) as opposed to certainly not (refused, or a
    TLS handshake that failed); ``url`` is the API URL that was tried, when known.
    ``retryable`` is False for a failure that sending again cannot cure (a
    certificate that is not trusted).
    """

    def __init__(
        self, message: str, *, maybe_sent: bool = True, url: str | None = None, retryable: bool = True
    ) -> None:
        super().__init__(message)
        self.maybe_sent = maybe_sent
        self.url = url
        self.retryable = retryable

    def hint(self) -> str | None:
        """The URL tried, where it came from, and the way there (None when no URL was tried).

        Example::

            except TransportError as exc:
                print(exc.hint())   # "the API URL tried was https://...: is it right ...?"
        """
        if not self.url:
            return None
        return (
            f"the API URL tried was {self.url}: is it right (Client(base_url=...), else $NEUROIO_API_URL) "
            "and reachable from here (network, VPN, a proxy in $HTTPS_PROXY)? Then run the cell again."
        )


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
        #: The API's address (scheme, host, port) that answered, when known.
        self.url: str | None = None
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

    def hint(self) -> str:
        """Which setting holds the token, and which server refused it.

        Example::

            except AuthenticationError as exc:
                print(exc.hint())   # "... refused the API token: check $NEUROIO_API_TOKEN ..."
        """
        server = f"the server at {self.url}" if self.url else "this server"
        if self.status_code == 403:
            return f"{server} knows the token but it lacks the right for this; ask for a token that has it."
        return (
            f"{server} refused the API token: check $NEUROIO_API_TOKEN (or Client(api_token=...)) holds "
            "a token of this server, whole and not expired (the URL comes from Client(base_url=...), "
            "else $NEUROIO_API_URL)."
        )


class NotFoundError(APIError):
    """404: no such source."""

    def hint(self) -> str:
        """Where the ids of the sources that are there can be seen.

        Example::

            except NotFoundError as exc:
                print(exc.hint())   # "this server has no such source: ..."
        """
        server = f"the server at {self.url}" if self.url else "this server"
        return (
            f"{server} has no such source: it may have been deleted, or the id belongs to another "
            "account or server; client.sources.to_frame() lists the ones there are."
        )


class RateLimitError(APIError):
    """429: too many requests. ``retry_after`` is in seconds, if the server said."""

    retry_after: float | None = None

    def hint(self) -> str:
        """When to try again, and how to ask less at once.

        Example::

            except RateLimitError as exc:
                time.sleep(exc.retry_after or 60)
        """
        wait = f"in {self.retry_after:g} s" if self.retry_after else "in a minute"
        return (
            f"the server limits how many requests it takes: run the cell again {wait}, or with Client(max_workers=2)."
        )


class ServerError(APIError):
    """5xx: the server or a proxy in front of it failed."""

    def hint(self) -> str:
        """What can be done about a server that failed (retries are already spent).

        Example::

            except ServerError as exc:
                print(exc.hint())
        """
        return (
            "the server failed, also when asked again (retries spent): run the cell again later; "
            "a write it failed may or may not have been applied (planning again shows what is left)."
        )


class MalformedResponseError(APIError):
    """The server answered 2xx with a body that is not what the API promises."""


class Problem(NamedTuple):
    """One thing wrong with an edited frame or CSV."""

    id: Any
    field: str | None
    value: Any
    reason: str


class ValidationError(NeuroIOError, ValueError):
    """Every problem found in an edited frame (or a CSV, or arguments), found before anything was sent.

    ``problems`` lists them all; ``what`` names what was checked; ``nothing_sent`` is False
    for what sends nothing anyway (reading a CSV), so its message does not say "nothing was sent".
    ``labels`` says what each problem's ``id`` is: a source's ``"id"``, or for a frame matched
    by name (which has no ids) its ``"row"`` label, or the ``"line"`` of the file it was read from.
    """

    def __init__(
        self,
        problems: Iterable[Problem],
        *,
        what: str = "edited frame",
        nothing_sent: bool = True,
        labels: str = "id",
    ) -> None:
        self.problems = list(problems)
        self.what = what
        self.nothing_sent = nothing_sent
        self.labels = labels
        super().__init__(self._describe())

    @classmethod
    def one(
        cls,
        reason: str,
        *,
        value: Any = None,
        field: str | None = None,
        what: str = "edited frame",
        nothing_sent: bool = True,
    ) -> ValidationError:
        """The error of a single problem: a file, frame or argument refused as a whole.

        Example::

            raise ValidationError.one("the file is empty", what="CSV 'sources.csv'", nothing_sent=False)
        """
        return cls([Problem(None, field, value, reason)], what=what, nothing_sent=nothing_sent)

    def _describe(self) -> str:
        return problems_text(self.problems, self.what, nothing_sent=self.nothing_sent, noun=self.labels)

    def _message_lines(self) -> list[str]:
        """Cut as pandas cuts rows, to fit a notebook's short form (the message keeps every line)."""
        text = problems_text(
            self.problems, self.what, max_rows=6, min_rows=6, nothing_sent=self.nothing_sent, noun=self.labels
        )
        return text.splitlines()

    def hint(self) -> str:
        """Where every problem is, and what to do.

        Example::

            except ValidationError as exc:
                print(exc.hint())   # "fix these in the edited frame and run again; ..."
        """
        where = f"the {self.what}" if self.nothing_sent else "the file"
        return f"fix these in {where} and run again; all of them as a table: sys.last_value.to_frame()"

    def to_frame(self) -> Any:
        """The problems as a frame: one row per problem, a column per field of :class:`Problem`.

        Example::

            try:
                client.sources.plan(edited)
            except ValidationError as exc:
                problems = exc.to_frame()   # id, field, value, reason
        """
        import pandas as pd

        return pd.DataFrame(self.problems, columns=list(Problem._fields))

    def _repr_html_(self) -> str:
        return problems_html(self.problems, self.what, nothing_sent=self.nothing_sent, noun=self.labels)


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
    """The journal cannot be used: its folder cannot be written (or is open to others), a
    run file cannot be written (disk full) or read (not the toolkit's, damaged), or no such run.

    ``path``: the folder or run file concerned, when there is one. ``report``: when a run
    was stopped because its journal could not be written, the exact partial report of
    what was sent before it stopped (as :class:`BulkInterrupted` holds one), else None.
    """

    def __init__(self, message: str, *, path: Any = None, report: Any = None) -> None:
        super().__init__(message)
        self.path = path
        self.report = report


class PolicyViolationError(NeuroIOError):
    """A plan would leave sources that break its policy's rules, so ``apply()`` sent nothing.

    ``violations``: the plan's violations frame (one row per source and rule). Fix the
    edit and plan again, or pass ``apply(allow_violations=True)`` to apply it anyway.
    """

    def __init__(self, message: str, violations: Any) -> None:
        super().__init__(message)
        self.violations = violations


class ListingChangedWarning(UserWarning):
    """Sources were added or deleted while the listing was being read."""


class UnreadableRunWarning(UserWarning):
    """A run of the journal cannot be read (a record of the wrong shape, a damaged or foreign
    file): it is left out of ``history()`` and named, and every other run is listed."""


class NotEmptiedWarning(UserWarning):
    """A restore (rows that describe whole sources, matched by name) holds empty cells that the
    API cannot empty (a setting with a default takes no null): those sources keep the server's
    value. Said when the plan is made, naming each source, field and value kept."""


class RunsKeptWarning(UserWarning):
    """``history(prune_before=...)`` kept runs older than the date that are not settled: each
    is interrupted (or still running in another process) and no undo or resume finished it."""


class TornLineWarning(UserWarning):
    """A journal file's last line was cut short (the process died while writing it); it was skipped."""


class ThrottledWarning(UserWarning):
    """A single call is waiting out the server's 429 answers for more than a few seconds: said
    once per call, with how long it may wait in all (``max_throttled_wait``)."""


class NearDuplicateNamesWarning(UserWarning):
    """Rows planned with ``key="name"`` match no source exactly, but each matches one once case,
    spaces at the ends, invisible or non-breaking spaces, or Unicode normalisation (NFC/NFKC) are
    set aside: almost always a typo that would create a second source beside the first. Matching
    stays exact; the warning names each row, the source it looks like and what differs."""


class UnmatchedRowsWarning(UserWarning):
    """Rows planned with ``key="name"`` and without ``create=True`` match no source: nothing
    is done with them (they are in ``plan.unmatched``). One warning per plan, naming them and
    saying which ``create=True`` would create and which it refuses as outside the scope."""


def redact(text: str, secret: str | None, *, mask: str = "***") -> str:
    """``text`` without ``secret``, nor the start of it that ends ``text`` or an excerpt (``CUT``).

    Example::

        redact("token abcd1234efgh was refused", "abcd1234efgh")   # "token *** was refused"
    """
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
    """``error`` with ``secret`` redacted from its message, its field errors and its args.

    Example::

        raise scrub(TransportError(f"lost {url}"), token)
    """
    if not secret:
        return error
    if isinstance(error, APIError):
        error.message = redact(error.message, secret)
        error.fields = [{k: redact(v, secret) if isinstance(v, str) else v for k, v in f.items()} for f in error.fields]
        error.args = (error._describe(),)
    else:
        error.args = tuple(redact(a, secret) if isinstance(a, str) else a for a in error.args)
    return error
