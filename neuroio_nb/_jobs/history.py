"""The journal as frames and reports; undo and resume of a run from any later process.

A source whose outcome the journal does not know (its intent is on disk, its
outcome is not: the process died with the request in flight, or before sending
it) is never guessed: undo and resume re-read the server and compare it with the
intent's ``before`` and ``after`` values (the conflict check of a plan with a base).
"""

from __future__ import annotations

import datetime as dt
import os
import warnings
from dataclasses import replace
from typing import Any, ClassVar

import pandas as pd

from .._journal import Entry, Journal, RunRecord, labelled, start_run
from .._schema import BY_NAME
from .._views import empty, esc, headline, plural, showing, table, td, view, window
from ..errors import ConfigurationError, JournalError, Problem, RunsKeptWarning, ValidationError
from .bulk import SourceCalls, apply_job, deletes_frame
from .outcomes import Outcome, Report, as_action, as_status, check_on_conflict, make_report, with_run
from .plan import creates_frame, update_job
from .sync import undo as undo_report

#: Count columns of :func:`history_frame`, in this order.
COUNTED = ("updated", "created", "deleted", "conflict", "failed", "unknown")
WRITABLE = frozenset(name for name, spec in BY_NAME.items() if spec.writable)
COLUMNS = ["started", "finished", "kind", "base_url", "parent", *COUNTED, "state", "followed_by"]


class History(pd.DataFrame):
    """One row per run, newest first (index ``run``)."""

    _metadata: ClassVar[list[str]] = []

    @property
    def _constructor(self) -> type[History]:
        return History

    def _constructor_from_mgr(self, mgr: Any, axes: Any) -> History:
        # As Report's: pandas 2.2 warns when a subclass is built from a block manager via __init__.
        history: History = History._from_mgr(mgr, axes=axes)  # type: ignore[attr-defined]  # private pandas API, not in pandas-stubs
        return history

    def summary(self) -> str:
        """``"12 runs; 1 interrupted (latest ...): ..."``, with what to do about an interrupted one.

        Example::

            client.sources.history().summary()   # "12 runs; 1 interrupted (latest ...): ..."
        """
        if not len(self):
            return "no runs in the journal"
        interrupted = self.index[self["state"] == "interrupted"].tolist()
        text = f"{len(self)} run{'s' if len(self) != 1 else ''}"
        if interrupted:
            text += (
                f"; {len(interrupted)} interrupted (latest {interrupted[0]}): sources.undo(run) puts back "
                "what it changed, sources.resume(run) sends the rest"
            )
        return text

    def _repr_html_(self) -> str:
        """The runs as a table that fits beside the file browser (900 px): run id, kind, what it
        did to how many sources, state, then when it started; the run it undid or resumed and
        the run that followed it when any run has one, and the API URL only when runs differ
        in it (else the headline says it). The frame keeps every column. Cut as pandas cuts rows."""
        if not set(COLUMNS) <= set(self.columns):  # a selection of columns: pandas' own view
            plain: Any = pd.DataFrame(self)
            return str(plain._repr_html_())
        if not len(self):
            return empty("No runs in the journal.")
        urls = self["base_url"].dropna().unique().tolist()
        extra = [c for c in ("parent", "followed_by") if self[c].notna().any()] + (
            ["base_url"] if len(urls) > 1 else []
        )
        win = window(len(self))
        rows = [_run_row(str(self.index[k]), self.iloc[k], extra) for k in win.positions()]
        summary = self.summary() + (f"; against {urls[0]}" if len(urls) == 1 else "") + " (times in UTC)"
        header = ["run", "kind", "sources", "state", "started", *extra]
        return view(headline("History", summary, showing(win, "sources.history()", "runs")), table(header, rows, win))


def _run_row(run_id: str, row: pd.Series, extra: list[str]) -> str:
    """One run of :meth:`History._repr_html_`: its id (it may break after a ``-``), kind, counts in
    words (toned when some failed or conflicted), state and start; ``extra`` columns as text."""
    counts = [f"{row[c]} {c}" for c in COUNTED if row[c]]
    tone = "bad" if row["failed"] else "warn" if row["conflict"] or row["unknown"] else None
    started = row["started"]
    when = "" if pd.isna(started) else f"<span>{started:%Y-%m-%d}</span> <span>{started:%H:%M:%S}</span>"
    return (
        td(esc(run_id).replace("-", "-<wbr>"), raw=True)
        + td(row["kind"], wrap="never")
        + td(", ".join(counts) or "nothing", tone=tone)
        + td(row["state"], tone="good" if row["state"] == "complete" else "warn", wrap="never")
        + td(when.replace("<span>", '<span style="white-space:nowrap">'), raw=True)
        + "".join(td("" if pd.isna(row[c]) else row[c], wrap="anywhere") for c in extra)
    )


def journal_of(sources: SourceCalls) -> Journal:
    journal = sources.client.journal
    if journal is None:
        raise ConfigurationError(
            "This client was made with journal=False, so it records no runs; "
            "make one with Client(journal=None) (the default folder) or a folder path "
            "to read a journal."
        )
    return journal  # type: ignore[no-any-return]  # SourceCalls types its client loosely (Any)


def history_frame(runs: list[RunRecord]) -> History:
    """``runs`` as a :class:`History` frame, newest first."""
    rows = []
    followers: dict[str, str] = {}
    for run in reversed(runs):  # oldest first, so the latest undo or resume of a run wins
        if run.parent:
            followers[run.parent] = f"{run.kind} {run.run_id}"
    for run in runs:
        counts = run.counts()
        rows.append(
            [
                _time(run.started),
                _time(run.finished),
                run.kind,
                run.base_url,
                run.parent,
                *(counts.get(c, 0) for c in COUNTED),
                run.state,
                followers.get(run.run_id),
            ]
        )
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["started"] = pd.to_datetime(frame["started"], utc=True)
    frame["finished"] = pd.to_datetime(frame["finished"], utc=True)
    for column in ("kind", "base_url", "parent", "state", "followed_by"):
        frame[column] = frame[column].astype("string")
    for column in COUNTED:
        frame[column] = frame[column].astype("int64")
    frame.index = pd.Index([r.run_id for r in runs], dtype="string", name="run")
    return History(frame)


def _time(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


UNKNOWN = (
    "no outcome recorded: the run stopped with this write unsent or unanswered; "
    "undo or resume settles it by reading the server"
)


def outcomes(run: RunRecord) -> list[Outcome]:
    """The report rows of a run; ``unknown`` where no outcome was recorded."""
    rows = []
    for entry in run.entries:
        changes = entry.changes if entry.changes is not None else _changes(entry)
        sent = entry.action != "create" and (entry.after or entry.action == "delete")
        created = entry.action == "create" and entry.status == "created"
        rows.append(
            Outcome(
                action=as_action(entry.action),
                status=as_status(entry.status or "unknown"),
                changes=changes,
                error=UNKNOWN if entry.status is None else entry.error,
                name=entry.name,
                id=entry.result_id if entry.result_id is not None else entry.source_id,
                replaced=dict(entry.before) if sent else {},
                # what the server gave that the row did not set (its intent holds what the row set)
                defaults=[f for f in changes if f not in entry.after] if created else None,
            )
        )
    return rows


def _changes(entry: Entry) -> dict[str, tuple[Any, Any]]:
    if entry.action == "delete":
        return {}
    return {f: (entry.before.get(f), new) for f, new in entry.after.items()}


def run_report(run: RunRecord) -> Report:
    """A run as the report ``apply()`` returned (``report.attrs["run_id"]`` is its id)."""
    report = make_report(outcomes(run))
    report.attrs["run_id"] = run.run_id
    return report


def history(sources: SourceCalls, run_id: str | None = None, *, prune_before: Any = None) -> pd.DataFrame:
    """Every run (newest first); one run's report; or, with ``prune_before``, remove older runs."""
    journal = journal_of(sources)
    if prune_before is not None:
        if run_id is not None:
            raise ValidationError(
                [Problem(None, "prune_before", prune_before, "give a run id or prune_before, not both")],
                what="arguments",
            )
        return prune(journal, prune_before)
    if run_id is not None:
        return report_of(sources, run_id)
    return history_frame(journal.runs())


def prune(journal: Journal, before: Any) -> History:
    """Remove the runs started before ``before`` (a date, time, or text pandas reads as one); returns them.

    A run that is not settled is kept, named in a :class:`RunsKeptWarning`: one that is
    ``interrupted`` (or still running in another process: the two look alike on disk), that
    recorded a write, and that no complete undo or resume followed. Its file is what undo and
    resume need (and a process still writing it would lose it)."""
    try:
        cutoff = pd.Timestamp(before)
    except (TypeError, ValueError):
        raise ValidationError(
            [Problem(None, "prune_before", before, "must be a date or time, e.g. '2026-01-31' or a datetime")],
            what="arguments",
        ) from None
    if pd.isna(cutoff):
        raise ValidationError([Problem(None, "prune_before", before, "must be a date or time")], what="arguments")
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff.tz_convert("UTC")
    runs = journal.runs()
    settled = {run.parent for run in runs if run.parent and run.kind in ("undo", "resume") and run.state == "complete"}
    older = [run for run in runs if pd.Timestamp(run.started) < cutoff]
    kept = [run.run_id for run in older if run.state != "complete" and run.entries and run.run_id not in settled]
    removed = [run for run in older if run.run_id not in kept]
    for run in removed:
        os.unlink(run.path)
    if kept:
        warnings.warn(
            f"kept {plural(len(kept), 'run')} started before {cutoff:%Y-%m-%d %H:%M} UTC that "
            f"{'is' if len(kept) == 1 else 'are'} not settled: {', '.join(kept)} (interrupted, or still "
            "running in another process, and neither undone nor resumed since). sources.resume(run) "
            "sends the rest of one, sources.undo(run) puts back what it changed; then prune again. "
            f"To drop one anyway, delete its file from {journal.folder}.",
            RunsKeptWarning,
            stacklevel=4,  # the caller of sources.history
        )
    return history_frame(removed)


def report_of(sources: SourceCalls, run_id: str) -> Report:
    """The report of one journaled run (``run_id``: an id, a unique start of one, or a run file)."""
    return run_report(journal_of(sources).read(run_id))


def _checked_run(sources: SourceCalls, run_id: str) -> RunRecord:
    run = journal_of(sources).read(run_id)
    if run.base_url != sources.client.base_url:
        raise JournalError(
            f"run {run.run_id} wrote to {run.base_url}, but this client talks to "
            f"{sources.client.base_url}; use a client of {run.base_url}"
        )
    return run


def undo(sources: SourceCalls, run_id: str, *, on_conflict: str = "skip", progress: bool | None = None) -> Report:
    """Put back what run ``run_id`` changed (also when it was interrupted), as a run of kind ``undo``.

    Sources the run certainly did not change are not touched. One whose outcome
    is unknown is read from the server first: an update is put back only where
    the server holds the run's new values; a create made the holder of its name
    that was not among the holders recorded before its POST (:func:`made_by`); a
    delete counts only if the source is gone.
    """
    on_conflict = check_on_conflict(on_conflict)
    run = _checked_run(sources, run_id)
    rows = []
    for entry, row in zip(run.entries, outcomes(run), strict=True):
        if entry.probe or not entry.perhaps_applied or row.status == "conflict":
            continue
        if entry.action == "update" and entry.after:
            row.status = "updated"  # sent, or perhaps: the conflict check compares with the server
        elif entry.action == "create" and entry.status is None:
            made = made_by(sources, entry)
            row.id = made[0] if len(made) == 1 else None
            row.status = "created" if row.id is not None else "unknown"
        elif entry.action == "delete" and entry.status is None and entry.source_id is not None:
            gone = sources.current([entry.source_id]).get(entry.source_id) is None
            row.status = "deleted" if gone else "unknown"
        elif entry.status is None or entry.maybe_applied:
            continue
        rows.append(row)
    probes = left_probes(sources, run)
    rows += [
        Outcome(action="create", status="created", changes={"name": (None, name)}, name=name, id=sid)
        for sid, name in probes.items()
    ]
    with labelled("undo", parent=run.run_id):
        return undo_report(sources, make_report(rows), on_conflict=on_conflict, progress=progress, probes=probes)


def resume(sources: SourceCalls, run_id: str, *, on_conflict: str = "skip", progress: bool | None = None) -> Report:
    """Finish an interrupted run: send exactly what it did not; the report covers the whole run.

    A source whose outcome is unknown is read from the server first: one that
    already holds the run's new values is ``updated`` without a request; one
    changed by someone else meanwhile is a ``conflict`` (``on_conflict="overwrite"``
    writes anyway). A create is looked up by its name and settings (found: ``created``,
    with that id, and not sent again); a delete whose source is gone is ``deleted``,
    and one whose source changed since the run read it is a ``conflict``. What is left
    is sent as one plan, journaled as one run of kind ``resume``.
    """
    on_conflict = check_on_conflict(on_conflict)
    run = _checked_run(sources, run_id)
    todo = {k: e for k, e in enumerate(run.entries) if e.status is None and not e.probe}
    probes = left_probes(sources, run)  # deleted, never sent again
    updates = [e for e in todo.values() if e.action == "update" and e.after]
    records = [
        (int(e.source_id), f, e.before.get(f), new)
        for e in updates
        if e.source_id is not None
        for f, new in e.after.items()
    ]
    settled, creates, spaces, deletes = _settled(sources, todo)
    with labelled("resume", parent=run.run_id):
        job = replace(
            update_job(records, {e.source_id: e.name for e in updates}),
            creates=creates_frame(creates),
            create_spaces=spaces,
            **_deletes_left(deletes, probes),
        )
        if job.order():  # the deletes were asked for by the run: no second refusal
            resumed = apply_job(sources, job, on_conflict=on_conflict, progress=progress, irreversible=True)
        else:  # nothing to send: for an interrupted run, a run of its own says it was looked after
            empty_run = start_run(
                sources.client.journal if run.state == "interrupted" else None, "resume", sources.client.base_url
            )
            empty_run.finish()
            resumed = with_run(make_report([]), empty_run)
    fresh = _by_key(resumed)
    rows = []
    for k, (entry, row) in enumerate(zip(run.entries, outcomes(run), strict=True)):
        if entry.probe:
            continue
        if k in settled:
            rows.append(settled[k])
        elif entry.status is None:
            key = ("create", k) if entry.action == "create" else (entry.action, row.id)
            rows.append(fresh.get(key, row))
        else:
            rows.append(row)
    rows += [fresh[("delete", sid)] for sid in probes if ("delete", sid) in fresh]  # a probe left again
    report = make_report(rows)
    report.attrs["run_id"] = resumed.attrs.get("run_id")
    report.attrs["resumed"] = run.run_id
    return report


def _deletes_left(deletes: dict[int, Entry], probes: dict[int, str]) -> dict[str, Any]:
    """The :class:`Job` fields of a resume's deletes: the run's unsent ones (``deletes``), then
    the probes it left (id -> name), each marked as a probe's."""
    ids = {int(e.source_id): e for e in deletes.values() if e.source_id is not None}
    return {
        "deleted": {
            **{sid: dict(e.before) for sid, e in ids.items()},
            **{sid: {"name": n} for sid, n in probes.items()},
        },
        "deletes": deletes_frame(
            [*ids, *probes], [None] * (len(ids) + len(probes)), [*(e.name for e in ids.values()), *probes.values()]
        ),
        "probes": frozenset(probes),
    }


def _settled(
    sources: SourceCalls, todo: dict[int, Entry]
) -> tuple[dict[int, Outcome], dict[int, dict[str, Any]], dict[int, int], dict[int, Entry]]:
    """The unknown creates and deletes the server shows done (by entry position), and the
    creates (bodies, and the spaces they must land in) and deletes left to send."""
    settled: dict[int, Outcome] = {}
    creates: dict[int, dict[str, Any]] = {}
    spaces: dict[int, int] = {}
    deletes: dict[int, Entry] = {}
    gone = [e.source_id for e in todo.values() if e.action == "delete" and e.source_id is not None]
    current = sources.current(gone) if gone else {}
    for k, entry in todo.items():
        changes = entry.changes if entry.changes is not None else _changes(entry)
        if entry.action == "create":
            made = made_by(sources, entry)
            if len(made) == 1:
                settled[k] = Outcome(action="create", status="created", changes=changes, name=entry.name, id=made[0])
            elif made:  # several new holders: which one this create made cannot be told
                settled[k] = Outcome(
                    action="create",
                    status="unknown",
                    changes=changes,
                    name=entry.name,
                    error=f"sources {', '.join(map(str, made))} took the name since; which one this create made "
                    "cannot be told, so none is taken as it and nothing is sent again",
                )
            else:
                creates[k] = dict(entry.after)
                if entry.before.get("space_id") is not None:  # the space its row names
                    spaces[k] = int(entry.before["space_id"])
        elif entry.action == "delete" and entry.source_id is not None:
            if current.get(entry.source_id) is None:
                settled[k] = Outcome(
                    action="delete",
                    status="deleted",
                    changes=changes,
                    name=entry.name,
                    id=entry.source_id,
                    replaced=dict(entry.before),
                )
            else:
                deletes[k] = entry
    return settled, creates, spaces, deletes


def _by_key(report: Report) -> dict[tuple[str, Any], Outcome]:
    """A report's rows as outcomes: creates by ``("create", row label)``, the rest by ``(action, id)``."""
    out: dict[tuple[str, Any], Outcome] = {}
    rows = report.reset_index().to_dict("records")
    for row in rows:
        sid = None if pd.isna(row["id"]) else int(row["id"])
        outcome = Outcome(
            action=as_action(row["action"]),
            status=as_status(row["status"]),
            changes=row["changes"],
            error=row["error"],
            name=row["name"],
            id=sid,
            replaced=row["replaced"] if isinstance(row["replaced"], dict) else {},
        )
        out[("create", row["row"]) if row["action"] == "create" else (str(row["action"]), sid)] = outcome
    return out


def left_probes(sources: SourceCalls, run: RunRecord) -> dict[int, str]:
    """id -> name of each probe ``run`` may have left on the server (an entry its journal marks
    ``probe``, see ``_journal.PROBE``): one answered and not deleted again, one whose answer was
    lost (found as :func:`made_by` finds a create: none when it never got made), or one whose
    delete (by an undo or resume) did not finish. Read back, a run holds no probe that is gone."""
    left: dict[int, str] = {}
    for entry in run.entries:
        if not entry.probe:
            continue
        if entry.action == "create" and entry.status == "created" and entry.result_id is not None:
            left[int(entry.result_id)] = entry.name
        elif entry.action == "create" and (entry.status is None or entry.maybe_applied):
            left.update(dict.fromkeys(made_by(sources, entry), entry.name))
        elif entry.action == "delete" and entry.source_id is not None:
            left[int(entry.source_id)] = entry.name
    return left


def made_by(sources: SourceCalls, entry: Entry) -> list[int]:
    """The ids of the sources an unanswered create may have made: holders of its name now that
    were not among the holders recorded before its POST, in the space it had to land in when
    that is known (never a namesake looked up across spaces). Empty: it made none (with no
    holders on record, its POST never went). One read of the server."""
    if entry.holders is None:
        return []
    name, before = entry.after.get("name"), set(entry.holders)
    space = entry.space if entry.space is not None else sources.landing_space
    return [
        int(source["id"])
        for source in sources.records(q=str(name), progress=False)[0]
        if source.get("name") == name
        and source["id"] not in before
        and (space is None or source.get("space_id") == space)
    ]


__all__ = ["History", "history", "history_frame", "outcomes", "prune", "resume", "run_report", "undo"]
