"""The journal: every write on disk before it is sent, its outcome after.

One file per run (``<run id>.jsonl``) in one folder, readable JSON lines:

- a header: ``{"format": "neuroio-nb-journal", "version": 1, "run": ..., "kind": ...,
  "base_url": ..., "started": ..., "parent": ..., "probe_marks": true}`` (never the token);
- ``intent`` lines: what is about to be sent (``seq``, ``action``, source ``id``,
  ``name``, ``before`` and ``after`` values of the fields it changes; ``probe: true`` for a
  probe's write, see :data:`PROBE`);
- ``amend`` lines: what an intent really sends, known once the server was read
  (``seq``, ``before``, ``after``; both empty: nothing is sent), in place of the
  intent's values (a conflict check made as the listing's pages arrive); written
  before the request goes, as outcomes are (not fsynced one by one);
- ``outcome`` lines: what came of an intent (``seq``, ``status``, ``error``, ``id``);
- an ``end`` line when the run finished (``state``: ``complete`` or ``interrupted``).

Intents (and amends) are written in batches, each batch flushed and fsynced before any of its
requests goes: one fsync per batch, not per request. An outcome line is written to
the operating system at once (so a killed process keeps it) and fsynced with the
end line; an outcome a machine crash loses only makes that source "unknown",
which readers settle by asking the server, never by guessing.

The journal never blocks the truth. Its folder is checked before a run's first line: one
that cannot be made or written, or that others may read and that holds more than run files
(so that narrowing it to ``0700`` would change someone's folder), is a :class:`JournalError`
naming it and the way out (``Client(journal=False)``, ``$NEUROIO_NB_JOURNAL``) before
anything is sent. A write that fails mid-run (disk full) makes the run's writer *broken*:
that write and every later one raise the same :class:`JournalError`, which the job sending
the writes treats like Ctrl-C (no new request starts, the partial report is kept on the
error). A reader shows every run it can read: a record of the wrong shape hides only its
own run, named in an :class:`UnreadableRunWarning`.

The seam for testing (and for tools) is :class:`Journal`'s ``write`` argument: the function
that puts bytes into a run file (``os.write``). One that raises ``OSError(errno.ENOSPC)``
after some bytes is a full disk, without patching anything private.

Only this module touches the files; it knows nothing of HTTP, pandas or plans.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import secrets
import stat
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigurationError, JournalError, TornLineWarning, UnreadableRunWarning

FORMAT = "neuroio-nb-journal"
VERSION = 1
ENV = "NEUROIO_NB_JOURNAL"
SUFFIX = ".jsonl"
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
#: What to do when the journal cannot be written: said by every error about it.
WAY_OUT = (
    "give the journal a folder you can write (Client(journal='/path/to/folder'), or the "
    f"${ENV} environment variable for the CLI), or turn it off with Client(journal=False) "
    "(then no run can be undone or resumed from the journal)"
)
#: A function that writes bytes to a file descriptor, as ``os.write`` does.
WriteBytes = Callable[[int, memoryview], int]
#: What an intent may ask the server to do.
ACTIONS = ("update", "create", "delete")
#: Statuses that say the server did what the intent asked.
APPLIED = frozenset({"updated", "created", "deleted"})
#: The start of a probe's name: a throwaway source a job creates, alone, to learn the space
#: the token's creates land in, and deletes at once (its intent is ``create``, then outcomes
#: ``created`` and ``deleted``). A probe is known by the ``probe`` mark of its intent record
#: (and of the delete of one left behind), never by its name: a user may name a source anything.
PROBE = "neuroio-nb probe "
#: A probe's name as runs written before probes were marked gave it (:data:`PROBE`, the run id,
#: eight hex digits): in such a run (its header has no ``probe_marks``), an entry of that name
#: is a probe, so that the run reads as it did.
LEGACY_PROBE = re.compile(r"^neuroio-nb probe (\d{8}-\d{6}-[0-9a-f]{6}|unjournaled) [0-9a-f]{8}$")


def probe_gone(action: str, status: str | None, maybe_applied: bool) -> bool:
    """Is nothing left of a probe whose write (its ``create``, or the ``delete`` of one left
    behind) ended so? Deleted, or its create refused for sure: no report row shows it then.
    Anything else (made and not deleted, an unknown outcome) is a row, so that the user sees it."""
    return status == "deleted" or (action == "create" and status == "failed" and not maybe_applied)


def default_folder() -> Path:
    """``$NEUROIO_NB_JOURNAL``, else the user data folder of ``neuroio-nb`` (per platformdirs)."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("neuroio-nb", appauthor=False)) / "journal"


#: The journals of the sandboxes serving in this process: their port -> (host, folder).
_SANDBOXES: dict[int, tuple[str, Path]] = {}
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def sandbox_journal(host: str, port: int, folder: Path | None) -> None:
    """A sandbox serving on ``host:port`` keeps the runs of its clients in ``folder``
    (None: it stopped serving), never in the user's journal: see :func:`open_journal`."""
    if folder is None:
        _SANDBOXES.pop(port, None)
    else:
        _SANDBOXES[port] = (host, folder)


def open_journal(option: Any, base_url: str | None = None) -> Journal | None:
    """The journal a ``Client(journal=...)`` option asks for: None the default folder, False none, else a path.

    The default for a client of a sandbox serving in this process (``base_url``) is that
    sandbox's own temporary journal, which goes when the sandbox stops: a demo's runs do not
    mix with the user's real ones, and a run of a sandbox that is gone can never be undone
    or resumed against another sandbox that later gets the same port.
    """
    if option is False:
        return None
    if option is None or option is True:
        folder = _sandbox_folder(base_url) if base_url else None
        return Journal(folder or default_folder())
    if isinstance(option, Journal):
        return option
    if isinstance(option, (str, os.PathLike)):
        return Journal(Path(option).expanduser())
    raise ConfigurationError(
        f"Client option journal must be None (the default folder), False (no journal) "
        f"or a folder path, not {type(option).__name__}"
    )


def _sandbox_folder(base_url: str) -> Path | None:
    parts = urlsplit(base_url)
    try:
        host, folder = _SANDBOXES[parts.port or -1]
    except (KeyError, ValueError):
        return None
    return folder if parts.hostname in _LOOPBACK | {host} else None


def new_run_id(now: dt.datetime | None = None) -> str:
    """A run id that says when it started (UTC) and, with a random tail, is unique: ``20261129-092030-1f2e3d``.

    Two processes that draw the same id in the same second are kept apart by
    ``O_EXCL`` when the file is made: the second draws again.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def _plain(value: Any) -> Any:
    """JSON fallback for values a caller forgot to make plain (numpy scalars and arrays, sets).

    Anything else is written as its repr: such a value is refused by the request
    path before it is sent, so the journal only needs to say what was tried.
    """
    if type(value).__name__ in ("NAType", "NaTType"):  # pandas' missing values, without importing pandas
        return None
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value, key=repr)
    return repr(value)


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, default=_plain, ensure_ascii=False) + "\n").encode("utf-8")


@dataclass(kw_only=True)
class Intent:
    """One write about to be sent: ``action`` is ``update``, ``create`` or ``delete``.

    ``before``/``after`` hold the fields it changes (``before``: the server's values it
    expects to find and replaces; a delete's is the whole source, so that it can be made
    again; a create's ``after`` is its body). ``status``, when given, is an outcome decided
    without a request (a conflict found before sending, say): it is written with the
    intent, and nothing is sent. A create also records ``holders``, the ids of every source
    that held its name just before the POST (an unknown outcome is then settled as the
    holder of the name that is not among them), and ``space``, the space it must land in
    (its row's, or where the token's creates land), when known.
    """

    action: str
    source_id: int | None
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    name: Any = None
    status: str | None = None
    error: str | None = None
    #: The plan's view, field -> (old, new), when it differs from before/after (for the report).
    changes: dict[str, Any] | None = None
    holders: list[int] | None = None
    space: int | None = None
    #: A probe's write (see :data:`PROBE`): marked in its record, the only way a reader knows it.
    probe: bool = False


#: Called with the type of each batch of lines (``header``, ``intent``, ``amend``,
#: ``holders``, ``outcome``, ``end``) just before it is written: the seam tests use to stop a
#: process at a known point (see :attr:`Journal.hook`).
Hook = Callable[[str], None]


class Journal:
    """A folder of run files: the folder ``0700``, files ``0600``.

    ``write``: the function that puts a run's bytes into its file (``os.write``); a test
    passes one that fails as a full disk does (see the module doc).
    """

    def __init__(self, folder: str | os.PathLike[str], *, write: WriteBytes = os.write) -> None:
        self.folder = Path(folder)
        self.write = write
        #: A :data:`Hook` for the runs started from now on (None: none).
        self.hook: Hook | None = None

    def __repr__(self) -> str:
        return f"<neuroio_nb.Journal {self.folder}>"

    def start(
        self, kind: str, base_url: str, *, parent: str | None = None, details: Mapping[str, Any] | None = None
    ) -> RunWriter:
        """Open a new run file (header written and fsynced) and return its writer.

        Raises :class:`JournalError` (naming the folder and the way out) when the folder
        cannot be made, written or kept to its owner: nothing has been sent then."""
        self._make_folder()
        for _ in range(20):
            run_id = new_run_id()
            path = self.path_of(run_id)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
            except OSError as exc:
                raise self._unusable(f"cannot be written ({_reason(exc)})") from None
            if hasattr(os, "fchmod"):  # the umask may have narrowed it; never widen beyond 0600
                os.fchmod(fd, 0o600)
            header = {
                "format": FORMAT,
                "version": VERSION,
                "run": run_id,
                "kind": kind,
                "base_url": base_url,
                "started": _now(),
                "pid": os.getpid(),
                "parent": parent,
                "probe_marks": True,  # its probes are marked (see LEGACY_PROBE)
            }
            if details:
                header["details"] = dict(details)
            writer = RunWriter(run_id, path, fd, write=self.write, hook=self.hook)
            try:
                writer._write([header], sync=True)
            except JournalError:  # the writer removed its file: a header alone records nothing
                raise self._unusable(f"cannot be written ({writer.failure_reason})") from None
            return writer
        raise self._unusable("has no free run file name (20 tries)")

    def _make_folder(self) -> None:
        """Make the folder ``0700`` (and its missing parents), or narrow an existing one to
        ``0700``; refuse one that cannot be, or that holds files other than runs."""
        try:
            if not self.folder.is_dir():
                if self.folder.exists():
                    raise self._unusable("is a file, not a folder")
                self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.folder.chmod(0o700)
            if os.name != "posix":
                return
            mode = stat.S_IMODE(self.folder.stat().st_mode)
            if mode & 0o077:
                self._narrow(mode)
        except OSError as exc:
            raise self._unusable(f"cannot be made or used ({_reason(exc)})") from None

    def _narrow(self, mode: int) -> None:
        """Narrow an existing folder open to others to ``0700``: only when it holds nothing
        but run files, so that a folder of the user's (a home folder, ``/tmp``) is never changed."""
        others = sorted(p.name for p in self.folder.iterdir() if not _is_run_file(p.name))
        if others:
            shown = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
            raise self._unusable(
                f"may be read by others (mode {mode:04o}) and holds other files than journal runs "
                f"({shown}); neuroio-nb will not change its permissions, as the journal holds what "
                "each write changed: give the journal a folder of its own"
            )
        try:
            self.folder.chmod(0o700)
        except OSError as exc:
            raise self._unusable(
                f"may be read by others (mode {mode:04o}) and cannot be narrowed to 0700 ({_reason(exc)})"
            ) from None

    def _unusable(self, problem: str) -> JournalError:
        return JournalError(
            f"the journal folder {self.folder} {problem}; nothing was sent. Every write is journaled "
            f"before it is sent: {WAY_OUT}.",
            path=self.folder,
        )

    def path_of(self, run_id: str) -> Path:
        return self.folder / f"{run_id}{SUFFIX}"

    def run_ids(self) -> list[str]:
        """Every run id in the folder, newest first (none when the folder is not there yet)."""
        if not self.folder.is_dir():
            if self.folder.exists():
                raise JournalError(
                    f"the journal folder {self.folder} is a file, not a folder: no run can be in it. "
                    f"Point the journal at its folder (Client(journal=...), ${ENV})",
                    path=self.folder,
                )
            return []
        ids = [p.name[: -len(SUFFIX)] for p in self.folder.iterdir() if p.name.endswith(SUFFIX)]
        return sorted((i for i in ids if RUN_ID.match(i)), reverse=True)

    def locate(self, run: str | os.PathLike[str]) -> Path:
        """The file of a run id, a unique start of one, or a path to a run file (one copied from elsewhere)."""
        text = os.fspath(run).strip()
        if RUN_ID.match(text) and self.path_of(text).exists():
            return self.path_of(text)
        path = Path(text).expanduser()
        if text.endswith(SUFFIX) or os.sep in text:
            if path.is_file():
                return path
            raise JournalError(f"no journal file {text!r}")
        matches = [i for i in self.run_ids() if i.startswith(text)] if text else []
        if len(matches) == 1:
            return self.path_of(matches[0])
        if len(matches) > 1:
            raise JournalError(
                f"{text!r} starts {len(matches)} run ids in the journal at {self.folder}: "
                + ", ".join(matches[:5])
                + (" ..." if len(matches) > 5 else "")
                + "; give more of it"
            )
        raise JournalError(
            f"no run {text!r} in the journal at {self.folder} (sources.history() or 'neuroio-nb history' lists them)"
        )

    def read(self, run: str | os.PathLike[str]) -> RunRecord:
        return read_run(self.locate(run))

    def runs(self) -> list[RunRecord]:
        """Every readable run, newest first; a file that is not a run is named in a warning and skipped."""
        found: list[RunRecord] = []
        for run_id in self.run_ids():
            try:
                found.append(read_run(self.path_of(run_id)))
            except JournalError as exc:
                warnings.warn(
                    f"{exc}; that run is left out of the history, every other run is listed",
                    TornLineWarning if "no complete header" in str(exc) else UnreadableRunWarning,
                    stacklevel=2,
                )
        return sorted(found, key=lambda r: (r.started, r.run_id), reverse=True)

    def remove(self, run_id: str) -> None:
        self.path_of(run_id).unlink()


class RunWriter:
    """Appends one run's lines. Thread-safe: each line is one ``write`` under a lock.

    A write that fails (disk full, the file gone read-only) *breaks* the writer: it raises a
    :class:`JournalError` naming the file and the way out, and so does every later write,
    at once (:attr:`failure`), so that a job stops before its next request.
    """

    def __init__(
        self, run_id: str, path: Path, fd: int, *, write: WriteBytes = os.write, hook: Hook | None = None
    ) -> None:
        self.run_id = run_id
        self._hook = hook
        self.path = path
        self._fd: int | None = fd
        self._write_bytes = write
        #: The error of the write that failed, once one did: the run is then stopped.
        self.failure: JournalError | None = None
        self.failure_reason = ""
        #: Whether intents are on disk, so that their requests may have been sent.
        self.intended = False
        self._lock = threading.Lock()
        self._seq = 0
        self._keys: dict[Any, int] = {}
        self.counts: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"<RunWriter {self.run_id}>"

    def intend(self, intents: Iterable[Intent]) -> list[int]:
        """Write a batch of intents, fsynced before returning; their sequence numbers.

        Call it before sending any request of the batch: once it returns, the
        batch is on disk.
        """
        lines: list[dict[str, Any]] = []
        seqs = []
        with self._lock:
            for intent in intents:
                self._seq += 1
                seqs.append(self._seq)
                line = {
                    "t": "intent",
                    "seq": self._seq,
                    "action": intent.action,
                    "id": intent.source_id,
                    "name": intent.name,
                    "before": intent.before,
                    "after": intent.after,
                }
                if intent.changes is not None:
                    line["changes"] = {f: list(pair) for f, pair in intent.changes.items()}
                if intent.holders is not None:
                    line["holders"] = sorted(intent.holders)
                if intent.space is not None:
                    line["space"] = intent.space
                if intent.probe:
                    line["probe"] = True
                lines.append(line)
                if intent.status is not None:
                    lines.append(
                        {
                            "t": "outcome",
                            "seq": self._seq,
                            "status": intent.status,
                            "error": intent.error,
                            "id": intent.source_id,
                        }
                    )
                    self.counts[intent.status] = self.counts.get(intent.status, 0) + 1
            encoded = [_line(line) for line in lines]
            if encoded:
                self._write_locked(encoded, sync=True, kind="intent")
                self.intended = True
        return seqs

    def intend_keyed(self, intents: Mapping[Any, Intent]) -> None:
        """:meth:`intend` for intents known by a key of the caller's (see :meth:`outcome_of`)."""
        keys = list(intents)
        self._keys.update(zip(keys, self.intend(intents[k] for k in keys), strict=True))

    def amend_keyed(self, amends: Mapping[Any, tuple[dict[str, Any], dict[str, Any]]]) -> None:
        """What the writes under these keys really send, once the server was read: key ->
        ``(before, after)``, the values each replaces and the values it sends (both empty:
        nothing will be sent, the server already holds the values). A reader takes these in
        place of the intent's. Call it before sending: the lines reach the operating system at
        once (a killed process keeps them) and are fsynced with the next batch or the end line,
        as outcomes are; one a machine crash loses leaves the intent's own values, the plan's.

        A job that records every intent before it reads the server (so that an interrupted run
        knows the whole plan) amends each intent as it checks it against what the server holds;
        an fsync for each page read would cost more than the journal's whole budget.
        """
        records = [
            {"t": "amend", "seq": self._keys[key], "before": before, "after": after}
            for key, (before, after) in amends.items()
            if key in self._keys
        ]
        if records:
            self._write(records, sync=False, kind="amend")

    def holders_of(self, key: Any, holders: Iterable[int], space: int | None) -> None:
        """Record, before a create's POST goes, the ids of every source holding its name now and
        the space it must land in (None: not known). Written to the operating system at once
        (a killed process keeps it), fsynced with the next batch or the end line."""
        if key in self._keys:
            record = {"t": "holders", "seq": self._keys[key], "ids": sorted(holders), "space": space}
            self._write([record], sync=False, kind="holders")

    def outcome_of(
        self,
        key: Any,
        status: str,
        *,
        error: str | None = None,
        source_id: int | None = None,
        maybe_applied: bool = False,
        changes: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> None:
        """:meth:`outcome` of the intent written under ``key`` by :meth:`intend_keyed`."""
        if key in self._keys:
            self.outcome(
                self._keys[key], status, error=error, source_id=source_id, maybe_applied=maybe_applied, changes=changes
            )

    def outcome(
        self,
        seq: int,
        status: str,
        *,
        error: str | None = None,
        source_id: int | None = None,
        maybe_applied: bool = False,
        changes: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> None:
        """Record what came of intent ``seq`` (written at once; fsynced at :meth:`finish`).

        ``maybe_applied``: it failed without an answer that says the server did
        nothing (a lost connection), so undo settles it by reading the server.
        ``changes``: the report row's changes when the write came out other than its
        intent says (a create: every value the server gave the new source).
        """
        record: dict[str, Any] = {"t": "outcome", "seq": seq, "status": status, "error": error, "id": source_id}
        record["at"] = _now()
        if maybe_applied:
            record["maybe_applied"] = True
        if changes is not None:
            record["changes"] = {f: list(pair) for f, pair in changes.items()}
        line = _line(record)
        with self._lock:
            self.counts[status] = self.counts.get(status, 0) + 1
            self._write_locked([line], sync=False, kind="outcome")

    def finish(self, state: str = "complete") -> None:
        """Write the end line (``complete``, or ``interrupted`` for a run stopped on purpose) and close.

        A broken writer (see the class doc) only closes: its run reads as interrupted."""
        with self._lock:
            if self._fd is None:
                return
            if self.failure is None:
                try:
                    self._write_locked(
                        [_line({"t": "end", "state": state, "finished": _now(), "counts": dict(self.counts)})],
                        sync=True,
                        kind="end",
                    )
                except JournalError:
                    self._close_locked(sync=False)
                    raise
            self._close_locked(sync=False)  # the end line was fsynced; a broken run has nothing to sync

    def close(self) -> None:
        """Close without an end line: the run reads as interrupted."""
        with self._lock:
            self._close_locked(sync=self.failure is None)

    def _remove_locked(self) -> None:
        """Close and remove the run's file (called before any intent is on disk)."""
        self._close_locked(sync=False)
        _remove(self.path)

    def _close_locked(self, *, sync: bool) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            if sync:
                os.fsync(fd)
        except OSError:
            pass  # what reached the file stays; a reader settles the rest with the server
        finally:
            os.close(fd)

    def _write(self, records: list[dict[str, Any]], *, sync: bool, kind: str = "header") -> None:
        with self._lock:
            self._write_locked([_line(r) for r in records], sync=sync, kind=kind)

    def _write_locked(self, lines: list[bytes], *, sync: bool, kind: str = "header") -> None:
        if self.failure is not None:
            raise self.failure
        if self._hook is not None:
            self._hook(kind)
        if self._fd is None:
            raise JournalError(f"run {self.run_id} is already finished", path=self.path)
        view = memoryview(b"".join(lines))
        try:
            while view:
                written = self._write_bytes(self._fd, view)
                view = view[written:]
            if sync:
                os.fsync(self._fd)
        except OSError as exc:
            self.failure_reason = _reason(exc)
            sent = (
                "What it sent is in the error's report (planning again shows what was not applied)"
                if self.intended
                else "Nothing was sent"
            )
            if not self.intended:  # no write can have been sent: the file records nothing
                self._remove_locked()
            self.failure = JournalError(
                f"the journal file {self.path} could not be written ({self.failure_reason}): run "
                f"{self.run_id} stopped before its next write, as each write is journaled before it is "
                f"sent. {sent}. To go on: {WAY_OUT}.",
                path=self.path,
            )
            raise self.failure from None


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):  # left, it reads as a run whose intents were cut short
        path.unlink(missing_ok=True)


def _reason(exc: OSError) -> str:
    """An OS error in words, without its Python dress: ``No space left on device``."""
    return exc.strerror or str(exc) or type(exc).__name__


def _is_run_file(name: str) -> bool:
    return name.endswith(SUFFIX) and bool(RUN_ID.match(name[: -len(SUFFIX)]))


class NoRun(RunWriter):
    """Stands in for a run when the journal is off: writes nothing."""

    def __init__(self) -> None:
        super().__init__("", Path(), -1)
        self._fd = None

    def intend(self, intents: Iterable[Intent]) -> list[int]:
        """Sequence numbers, as a real run would give them; nothing is written."""
        first = self._seq + 1
        self._seq += len(list(intents))
        return list(range(first, self._seq + 1))

    def outcome(
        self,
        seq: int,
        status: str,
        *,
        error: str | None = None,
        source_id: int | None = None,
        maybe_applied: bool = False,
        changes: Mapping[str, tuple[Any, Any]] | None = None,
    ) -> None:
        return None

    def finish(self, state: str = "complete") -> None:
        return None

    def close(self) -> None:
        return None

    def _write(self, records: list[dict[str, Any]], *, sync: bool, kind: str = "header") -> None:
        return None


_local = threading.local()


@contextmanager
def labelled(kind: str, parent: str | None = None) -> Iterator[None]:
    """Runs started in this thread meanwhile are of ``kind`` (e.g. ``undo``), following run ``parent``."""
    saved = getattr(_local, "label", None)
    _local.label = (kind, parent)
    try:
        yield
    finally:
        _local.label = saved


def start_run(journal: Journal | None, kind: str, base_url: str, *, parent: str | None = None) -> RunWriter:
    """A new run (of the :func:`labelled` kind, if one is set in this thread); a :class:`NoRun` if no journal."""
    if journal is None:
        return NoRun()
    label = getattr(_local, "label", None)
    if label is not None:
        return journal.start(label[0], base_url, parent=label[1])
    return journal.start(kind, base_url, parent=parent)


T = TypeVar("T")


def journaled(
    journal: Journal | None,
    base_url: str,
    intent: Intent,
    send: Callable[[], T],
    *,
    applied: str,
    result_id: Callable[[T], Any],
    unknown: Callable[[Any], bool],
) -> T:
    """Send one write as a run of its own: intent fsynced, ``send()``, outcome, end line.

    ``applied`` is the status of a success (``updated``...); ``result_id(result)``
    the source id to record; ``unknown(exc)`` tells a failure the server may still
    have acted on (recorded as such, so undo settles it by reading the server).
    """
    run = start_run(journal, intent.action, base_url)
    (seq,) = run.intend([intent])
    try:
        result = send()
    except Exception as exc:
        run.outcome(seq, "failed", error=str(exc), source_id=intent.source_id, maybe_applied=unknown(exc))
        run.finish("complete")
        raise
    except BaseException:
        run.finish("interrupted")
        raise
    try:
        run.outcome(seq, applied, source_id=result_id(result))
        run.finish("complete")
    except JournalError as exc:  # the write was made: its answer goes with the error
        run.close()
        raise JournalError(str(exc), path=exc.path, report=result) from None
    return result


@dataclass
class Entry:
    """One intent of a run, with its outcome if one was recorded (``status`` None: unknown)."""

    seq: int
    action: str
    source_id: int | None
    name: Any
    before: dict[str, Any]
    after: dict[str, Any]
    status: str | None = None
    error: str | None = None
    result_id: int | None = None
    maybe_applied: bool = False
    changes: dict[str, tuple[Any, Any]] | None = None
    #: A create's: the ids that held its name just before its POST (None: not recorded, so
    #: the POST never went), and the space it had to land in (None: not known).
    holders: list[int] | None = None
    space: int | None = None

    #: A probe's write (see :data:`PROBE`), as its record marks it.
    probe: bool = False

    @property
    def settled_probe(self) -> bool:
        """A probe deleted again, or never made: nothing of it is left (see :func:`probe_gone`)."""
        return self.probe and probe_gone(self.action, self.status, self.maybe_applied)

    @property
    def perhaps_applied(self) -> bool:
        """Did (or may) the server act on it? Unknown outcomes count: readers settle them with the server."""
        return self.status is None or self.status in APPLIED or self.maybe_applied


@dataclass
class RunRecord:
    """A run as read back from its file."""

    run_id: str
    path: Path
    kind: str
    base_url: str
    started: str
    parent: str | None
    finished: str | None
    state: str
    entries: list[Entry]
    details: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Entries by status; ``unknown`` for an intent with no recorded outcome."""
        out: dict[str, int] = {}
        for entry in self.entries:
            key = entry.status or "unknown"
            out[key] = out.get(key, 0) + 1
        return out

    def unknown(self) -> list[Entry]:
        return [e for e in self.entries if e.status is None]


def read_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """The records of a run file, each with its line number. A torn last line is skipped with
    a :class:`TornLineWarning`."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise JournalError(f"cannot read journal file {path}: {exc.strerror or exc}") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # after the last newline: empty unless the last write was cut short
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except ValueError:
            if number == 1:
                raise JournalError(_not_ours(path)) from None
            raise JournalError(
                f"journal file {path}: line {number} is not JSON; the file was changed by "
                "something other than neuroio-nb"
            ) from None
        if not isinstance(record, dict):
            raise JournalError(
                _not_ours(path) if number == 1 else f"journal file {path}: line {number} is not a journal record"
            )
        yield number, record
    if tail.strip():
        try:
            record = json.loads(tail)
        except ValueError:
            warnings.warn(
                f"journal file {path}: its last line was cut short (the process writing it "
                f"stopped mid-line); skipped {len(tail)} byte(s)",
                TornLineWarning,
                stacklevel=3,
            )
            return
        if isinstance(record, dict):
            yield len(lines) + 1, record


#: JSON types a record's fields may have, by record kind (a field may also be absent).
_TEXT, _INT, _NONE, _DICT, _BOOL, _LIST = (str,), (int,), (type(None),), (dict,), (bool,), (list,)
#: Fields that hold a list of source ids.
ID_LISTS = ("holders", "ids")
SHAPES: dict[str | None, dict[str, tuple[type, ...]]] = {
    None: {
        "run": _TEXT,
        "kind": _TEXT,
        "base_url": _TEXT,
        "started": _TEXT,
        "parent": _TEXT + _NONE,
        "details": _DICT + _NONE,
        "probe_marks": _BOOL,
    },
    "intent": {
        "seq": _INT,
        "action": _TEXT,
        "id": _INT + _NONE,
        "before": _DICT + _NONE,
        "after": _DICT + _NONE,
        "changes": _DICT + _NONE,
        "holders": _LIST + _NONE,
        "space": _INT + _NONE,
        "probe": _BOOL,
    },
    "amend": {"seq": _INT, "before": _DICT + _NONE, "after": _DICT + _NONE},
    "holders": {"seq": _INT, "ids": _LIST, "space": _INT + _NONE},
    "outcome": {"seq": _INT, "status": _TEXT, "error": _TEXT + _NONE, "id": _INT + _NONE, "maybe_applied": _BOOL},
    "end": {"state": _TEXT, "finished": _TEXT + _NONE, "counts": _DICT + _NONE},
}
#: Fields a record of each kind must have.
REQUIRED = {
    None: ("run", "kind", "base_url", "started"),
    "intent": ("seq", "action"),
    "amend": ("seq",),
    "holders": ("seq", "ids"),
    "outcome": ("seq", "status"),
    "end": ("state",),
}
#: Fields that hold a time (ISO 8601 text).
TIMES = ("started", "finished")


def shape_problem(record: Mapping[str, Any]) -> str | None:
    """What is wrong with the shape of one record, or None. Kinds this version does not know
    are not checked (a later writer of the same format version may add some); fields a kind
    does not list are ignored, so that records may grow."""
    kind = record.get("t")
    shape = SHAPES.get(kind)
    if shape is None:
        return None
    missing = [f for f in REQUIRED[kind] if f not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    problem = _field_type_problem(record, shape) or _id_list_problem(record, shape)
    if problem is None and kind == "intent" and record["action"] not in ACTIONS:
        problem = f"its action is {record['action']!r}, not one of {', '.join(ACTIONS)}"
    return problem


def _field_type_problem(record: Mapping[str, Any], shape: Mapping[str, tuple[type, ...]]) -> str | None:
    """The first field of ``record`` whose value is not of its type (or a time that is not one)."""
    for name, types in shape.items():
        value = record.get(name)
        if name in record and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            return f"its {name} is {value!r}, not {' or '.join(_TYPE_WORDS[t] for t in types)}"
        if name in TIMES and isinstance(value, str) and not _is_time(value):
            return f"its {name} is {value!r}, not a time"
    return None


def _id_list_problem(record: Mapping[str, Any], shape: Mapping[str, tuple[type, ...]]) -> str | None:
    """The first list of source ids in ``record`` that holds something else."""
    for name in ID_LISTS:
        ids = record.get(name)
        if name in shape and isinstance(ids, list) and not all(type(i) is int for i in ids):
            return f"its {name} is {ids!r}, not a list of source ids"
    return None


_TYPE_WORDS = {
    str: "text",
    int: "a whole number",
    type(None): "null",
    dict: "an object",
    bool: "true or false",
    list: "a list",
}


def _is_time(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _not_ours(path: Path) -> str:
    return (
        f"{path} is not a neuroio-nb journal file (its first line is not a neuroio-nb journal header); "
        "refusing to read it"
    )


def _shaped(path: Path, lines: Iterator[tuple[int, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The records of ``lines``; one of the wrong shape raises :class:`JournalError` naming it.
    The header (the first) is checked by :func:`read_run`, once its format and version are known."""
    first = True
    for number, record in lines:
        if not first:
            _check_shape(path, number, record)
        first = False
        yield record


def _check_shape(path: Path, number: int, record: Mapping[str, Any]) -> None:
    problem = shape_problem(record)
    if problem is not None:
        raise JournalError(
            f"journal file {path}: line {number} is not a record neuroio-nb writes ({problem}); "
            "the file was changed by something other than neuroio-nb, so this run cannot be read",
            path=path,
        )


def _read_holders(entry: Entry, record: Mapping[str, Any]) -> None:
    """A create's recorded holders and space, when the record holds them as it should."""
    holders, space = record.get("holders"), record.get("space")
    if isinstance(holders, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in holders):
        entry.holders = list(holders)
    if isinstance(space, int) and not isinstance(space, bool):
        entry.space = space


def _entry_of(seq: int, record: Mapping[str, Any], marked: bool) -> Entry:
    """The entry of an intent record (``marked``: its run marks its probes)."""
    entry = Entry(
        seq,
        str(record.get("action")),
        record.get("id"),
        record.get("name"),
        dict(record.get("before") or {}),
        dict(record.get("after") or {}),
        changes=_changes_of(record),
        probe=_is_probe(record, marked),
    )
    _read_holders(entry, record)
    return entry


def _is_probe(record: Mapping[str, Any], marked: bool) -> bool:
    """Is this intent a probe's? Its mark says, in a run whose probes are marked; in an older
    run, a name of the shape probes had then (:data:`LEGACY_PROBE`)."""
    if marked:
        return record.get("probe") is True
    name = record.get("name")
    return isinstance(name, str) and LEGACY_PROBE.match(name) is not None


def read_run(path: Path) -> RunRecord:
    """Read one run file; a file that is not the toolkit's raises :class:`JournalError`."""
    records = _shaped(path, read_lines(path))
    header = next(records, None)
    if header is None:
        raise JournalError(
            f"journal file {path} holds no complete header (the process died as it "
            "was created); nothing was sent in that run"
        )
    if header.get("format") != FORMAT or header.get("t") is not None:
        raise JournalError(_not_ours(path))
    if not isinstance(header.get("version"), int) or header["version"] > VERSION:
        raise JournalError(
            f"{path} is a neuroio-nb journal of version {header.get('version')!r}; this "
            f"neuroio-nb reads version {VERSION} or older: upgrade neuroio-nb to read it"
        )
    _check_shape(path, 1, header)
    entries: dict[int, Entry] = {}
    end: dict[str, Any] | None = None
    marked = header.get("probe_marks") is True
    for record in records:
        kind = record.get("t")
        seq = record.get("seq")
        if kind == "intent" and isinstance(seq, int):
            entries[seq] = _entry_of(seq, record, marked)
        elif kind == "amend" and isinstance(seq, int) and seq in entries:
            entries[seq].before = dict(record.get("before") or {})
            entries[seq].after = dict(record.get("after") or {})
        elif kind == "holders" and isinstance(seq, int) and seq in entries:
            _read_holders(entries[seq], {"holders": record.get("ids"), "space": record.get("space")})
        elif kind == "outcome" and isinstance(seq, int) and seq in entries:
            entry = entries[seq]
            entry.status = record.get("status")
            entry.error = record.get("error")
            entry.result_id = record.get("id")
            entry.maybe_applied = bool(record.get("maybe_applied"))
            entry.changes = _changes_of(record) or entry.changes
        elif kind == "end":
            end = record
    state = "interrupted"
    if end is not None and not any(e.status is None for e in entries.values()):
        state = str(end.get("state") or "complete")
    return RunRecord(
        run_id=str(header.get("run")),
        path=path,
        kind=str(header.get("kind")),
        base_url=str(header.get("base_url")),
        started=str(header.get("started")),
        parent=header.get("parent"),
        finished=end.get("finished") if end else None,
        state=state,
        entries=sorted((e for e in entries.values() if not e.settled_probe), key=lambda e: e.seq),
        details=dict(header.get("details") or {}),
    )


__all__ = [
    "APPLIED",
    "ENV",
    "PROBE",
    "Entry",
    "Intent",
    "Journal",
    "JournalError",
    "NoRun",
    "RunRecord",
    "RunWriter",
    "TornLineWarning",
    "default_folder",
    "journaled",
    "labelled",
    "new_run_id",
    "open_journal",
    "probe_gone",
    "read_run",
    "start_run",
]


def _changes_of(record: Mapping[str, Any]) -> dict[str, tuple[Any, Any]] | None:
    """The ``changes`` of an intent or outcome line (field -> [old, new]), if it has them."""
    if not isinstance(record.get("changes"), dict):
        return None
    return {
        f: tuple(pair) if isinstance(pair, list) and len(pair) == 2 else (None, pair)
        for f, pair in record["changes"].items()
    }
