"""The journal: every write on disk before it is sent, its outcome after.

One file per run (``<run id>.jsonl``) in one folder, readable JSON lines:

- a header: ``{"format": "neuroio-nb-journal", "version": 1, "run": ..., "kind": ...,
  "base_url": ..., "started": ..., "parent": ...}`` (never the token);
- ``intent`` lines: what is about to be sent (``seq``, ``action``, source ``id``,
  ``name``, ``before`` and ``after`` values of the fields it changes);
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

Only this module touches the files; it knows nothing of HTTP, pandas or plans.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .errors import ConfigurationError, JournalError, TornLineWarning

FORMAT = "neuroio-nb-journal"
VERSION = 1
ENV = "NEUROIO_NB_JOURNAL"
SUFFIX = ".jsonl"
RUN_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6}$")
#: Statuses that say the server did what the intent asked.
APPLIED = frozenset({"updated", "created", "deleted"})


def default_folder() -> Path:
    """``$NEUROIO_NB_JOURNAL``, else the user data folder of ``neuroio-nb`` (per platformdirs)."""
    configured = os.environ.get(ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("neuroio-nb", appauthor=False)) / "journal"


def open_journal(option: Any) -> Journal | None:
    """The journal a ``Client(journal=...)`` option asks for: None the default folder, False none, else a path."""
    if option is False:
        return None
    if option is None or option is True:
        return Journal(default_folder())
    if isinstance(option, Journal):
        return option
    if isinstance(option, (str, os.PathLike)):
        return Journal(Path(option).expanduser())
    raise ConfigurationError(
        f"Client option journal must be None (the default folder), False (no journal) "
        f"or a folder path, not {type(option).__name__}"
    )


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


@dataclass
class Intent:
    """One write about to be sent: ``action`` is ``update``, ``create`` or ``delete``.

    ``before``/``after`` hold the fields it changes (a delete's ``before`` is the
    whole source, so that it can be made again; a create's ``after`` is its body).
    ``status``, when given, is an outcome decided without a request (a conflict
    found before sending, say): it is written with the intent, and nothing is sent.
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


class Journal:
    """A folder of run files. Made ``0700`` when the toolkit creates it; files are ``0600``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)

    def __repr__(self) -> str:
        return f"<neuroio_nb.Journal {self.folder}>"

    def start(
        self, kind: str, base_url: str, *, parent: str | None = None, details: Mapping[str, Any] | None = None
    ) -> RunWriter:
        """Open a new run file (header written and fsynced) and return its writer."""
        self._make_folder()
        for _ in range(20):
            run_id = new_run_id()
            path = self.path_of(run_id)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                continue
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
            }
            if details:
                header["details"] = dict(details)
            writer = RunWriter(run_id, path, fd)
            writer._write([header], sync=True)
            return writer
        raise JournalError(f"could not create a new run file in {self.folder}")

    def _make_folder(self) -> None:
        if not self.folder.is_dir():
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.folder.chmod(0o700)

    def path_of(self, run_id: str) -> Path:
        return self.folder / f"{run_id}{SUFFIX}"

    def run_ids(self) -> list[str]:
        """Every run id in the folder, newest first."""
        if not self.folder.is_dir():
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
                    str(exc), TornLineWarning if "no complete header" in str(exc) else UserWarning, stacklevel=2
                )
        return sorted(found, key=lambda r: (r.started, r.run_id), reverse=True)

    def remove(self, run_id: str) -> None:
        self.path_of(run_id).unlink()


class RunWriter:
    """Appends one run's lines. Thread-safe: each line is one ``write`` under a lock."""

    def __init__(self, run_id: str, path: Path, fd: int) -> None:
        self.run_id = run_id
        self.path = path
        self._fd: int | None = fd
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
                self._write_locked(encoded, sync=True)
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
            self._write(records, sync=False)

    def outcome_of(
        self,
        key: Any,
        status: str,
        *,
        error: str | None = None,
        source_id: int | None = None,
        maybe_applied: bool = False,
    ) -> None:
        """:meth:`outcome` of the intent written under ``key`` by :meth:`intend_keyed`."""
        if key in self._keys:
            self.outcome(self._keys[key], status, error=error, source_id=source_id, maybe_applied=maybe_applied)

    def outcome(
        self,
        seq: int,
        status: str,
        *,
        error: str | None = None,
        source_id: int | None = None,
        maybe_applied: bool = False,
    ) -> None:
        """Record what came of intent ``seq`` (written at once; fsynced at :meth:`finish`).

        ``maybe_applied``: it failed without an answer that says the server did
        nothing (a lost connection), so undo settles it by reading the server.
        """
        record = {"t": "outcome", "seq": seq, "status": status, "error": error, "id": source_id, "at": _now()}
        if maybe_applied:
            record["maybe_applied"] = True
        line = _line(record)
        with self._lock:
            self.counts[status] = self.counts.get(status, 0) + 1
            self._write_locked([line], sync=False)

    def finish(self, state: str = "complete") -> None:
        """Write the end line (``complete``, or ``interrupted`` for a run stopped on purpose) and close."""
        with self._lock:
            if self._fd is None:
                return
            self._write_locked(
                [_line({"t": "end", "state": state, "finished": _now(), "counts": dict(self.counts)})], sync=True
            )
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        """Close without an end line: the run reads as interrupted."""
        with self._lock:
            if self._fd is not None:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None

    def _write(self, records: list[dict[str, Any]], *, sync: bool) -> None:
        with self._lock:
            self._write_locked([_line(r) for r in records], sync=sync)

    def _write_locked(self, lines: list[bytes], *, sync: bool) -> None:
        if self._fd is None:
            raise JournalError(f"run {self.run_id} is already finished")
        data = b"".join(lines)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if sync:
            os.fsync(self._fd)


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
    ) -> None:
        return None

    def finish(self, state: str = "complete") -> None:
        return None

    def close(self) -> None:
        return None

    def _write(self, records: list[dict[str, Any]], *, sync: bool) -> None:
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


@contextmanager
def covered() -> Iterator[None]:
    """Writes sent from this thread meanwhile are journaled by the caller's run, not one of their own."""
    depth = getattr(_local, "covered", 0)
    _local.covered = depth + 1
    try:
        yield
    finally:
        _local.covered = depth


def is_covered() -> bool:
    """Is a write sent now from this thread already journaled by a run (see :func:`covered`)?"""
    return bool(getattr(_local, "covered", 0))


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
        with covered():
            result = send()
    except Exception as exc:
        run.outcome(seq, "failed", error=str(exc), source_id=intent.source_id, maybe_applied=unknown(exc))
        run.finish("complete")
        raise
    except BaseException:
        run.finish("interrupted")
        raise
    run.outcome(seq, applied, source_id=result_id(result))
    run.finish("complete")
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


def read_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a run file. A torn last line is skipped with a :class:`TornLineWarning`."""
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
        yield record
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
            yield record


def _not_ours(path: Path) -> str:
    return (
        f"{path} is not a neuroio-nb journal file (its first line is not a neuroio-nb journal header); "
        "refusing to read it"
    )


def read_run(path: Path) -> RunRecord:
    """Read one run file; a file that is not the toolkit's raises :class:`JournalError`."""
    records = iter(read_lines(path))
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
    entries: dict[int, Entry] = {}
    end: dict[str, Any] | None = None
    for record in records:
        kind = record.get("t")
        seq = record.get("seq")
        if kind == "intent" and isinstance(seq, int):
            entries[seq] = Entry(
                seq,
                str(record.get("action")),
                record.get("id"),
                record.get("name"),
                dict(record.get("before") or {}),
                dict(record.get("after") or {}),
            )
            if isinstance(record.get("changes"), dict):
                entries[seq].changes = {
                    f: tuple(pair) if isinstance(pair, list) and len(pair) == 2 else (None, pair)
                    for f, pair in record["changes"].items()
                }
        elif kind == "amend" and isinstance(seq, int) and seq in entries:
            entries[seq].before = dict(record.get("before") or {})
            entries[seq].after = dict(record.get("after") or {})
        elif kind == "outcome" and isinstance(seq, int) and seq in entries:
            entry = entries[seq]
            entry.status = record.get("status")
            entry.error = record.get("error")
            entry.result_id = record.get("id")
            entry.maybe_applied = bool(record.get("maybe_applied"))
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
        entries=sorted(entries.values(), key=lambda e: e.seq),
        details=dict(header.get("details") or {}),
    )


__all__ = [
    "APPLIED",
    "ENV",
    "Entry",
    "Intent",
    "Journal",
    "JournalError",
    "NoRun",
    "RunRecord",
    "RunWriter",
    "TornLineWarning",
    "covered",
    "default_folder",
    "is_covered",
    "journaled",
    "labelled",
    "new_run_id",
    "open_journal",
    "read_run",
    "start_run",
]
