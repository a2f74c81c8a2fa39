"""Applying a plan: conflict check, concurrent writes, one report row per source.

Per-source failures never raise: any exception while one source is sent (a
server error, a dropped connection, a bug) becomes a ``failed`` row carrying
its message. Ctrl-C stops sending, lets requests in flight finish (however
often it is pressed again meanwhile) and raises :class:`BulkInterrupted`
with the exact partial report.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import pandas as pd
from tqdm.auto import tqdm

from .errors import BulkInterrupted, Problem, ValidationError
from .values import same, three_way, to_python
from .views import empty, report_html

STATUSES = ("deleted", "created", "updated", "conflict", "failed", "planned")
ACTIONS = ("delete", "create", "update")
Changes = dict[str, tuple[Any, Any]]


class SourceCalls(Protocol):
    """What the jobs need of the REST layer (``client.sources`` provides it)."""

    @property
    def client(self) -> Any: ...

    def get(self, source_id: int) -> dict[str, Any]: ...

    def create(self, name: str, **fields: Any) -> dict[str, Any]: ...

    def update(self, source_id: int, **fields: Any) -> dict[str, Any]: ...

    def delete(self, source_id: int) -> None: ...

    def current(self, ids: Sequence[int],
                spaces_ids: Iterable[int] | None = None) -> dict[int, dict[str, Any] | None]: ...

    def records(self, q: str | None = None, spaces_ids: Any = None, progress: bool | None = None,
                *, first: dict[str, Any] | None = None) -> tuple[list[dict[str, Any]], bool]: ...


@dataclass
class Outcome:
    """One report row. ``replaced``: field -> the server's value that a write replaced
    (as read just before sending); empty when nothing was sent."""

    action: str
    status: str
    changes: Changes
    error: str | None = None
    name: Any = None
    id: int | None = None
    replaced: dict[str, Any] = field(default_factory=dict)
    row: Any = None
    old_id: int | None = None


class Report(pd.DataFrame):
    """The outcome of a bulk job: index ``id``; ``action``, ``status``, ``name``, ``changes``,
    ``replaced``, ``error`` (and ``row``, ``old_id`` when sources were created)."""

    _metadata: ClassVar[list[str]] = []

    @property
    def _constructor(self) -> type[Report]:
        return Report

    def _constructor_from_mgr(self, mgr: Any, axes: Any) -> Report:
        # pandas >= 2.1 builds results from a block manager; building a subclass from one
        # through __init__ is deprecated (pandas 2.2 warns), so skip __init__ as pandas does.
        report: Report = Report._from_mgr(mgr, axes=axes)  # type: ignore[attr-defined]  # private pandas API, not in pandas-stubs
        return report

    def counts(self) -> dict[str, int]:
        """How many sources ended in each status, e.g. ``{"updated": 297, "conflict": 2}``."""
        found = self["status"].value_counts().to_dict() if "status" in self else {}
        return {s: int(found[s]) for s in STATUSES if found.get(s)}

    def summary(self) -> str:
        """The counts in words: ``"297 updated, 2 conflict"`` (``"nothing to change"`` when empty)."""
        counts = self.counts()
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to change"

    def _repr_html_(self) -> str:
        if not len(self):
            return empty("Nothing was changed: the plan had no changes.")
        names = self["name"] if "name" in self.columns else pd.Series(None, index=self.index, dtype=object)
        rows = list(zip(self.index.tolist(), names.tolist(), self["status"].tolist(),
                        self["changes"].tolist(), self["error"].tolist(), strict=False))
        return report_html(self.summary(), rows, where="report")


def make_report(outcomes: Iterable[Outcome]) -> Report:
    """A report with one row per outcome, in the order given."""
    rows = list(outcomes)
    ids = [o.id for o in rows]
    columns: dict[str, pd.Series] = {
        "action": pd.Series([o.action for o in rows], dtype="string"),
        "status": pd.Series([o.status for o in rows], dtype="string"),
        "name": pd.Series([to_python(o.name) for o in rows], dtype=object),
        "changes": pd.Series([o.changes for o in rows], dtype=object),
        "replaced": pd.Series([o.replaced for o in rows], dtype=object),
        "error": pd.Series([o.error for o in rows], dtype=object),
    }
    if any(o.action == "create" for o in rows):
        columns["row"] = pd.Series([o.row for o in rows], dtype=object)
        columns["old_id"] = pd.Series([o.old_id for o in rows], dtype="Int64")
    report: Report = Report(columns)
    report.index = pd.Index(ids, dtype="Int64" if None in ids else "int64", name="id")
    return report


def check_on_conflict(on_conflict: Any) -> None:
    if on_conflict not in ("skip", "overwrite"):
        raise ValidationError([Problem(None, "on_conflict", on_conflict, "must be 'skip' or 'overwrite'")],
                              what="arguments")


def apply_updates(sources: SourceCalls, by_source: dict[int, Changes], *, names: dict[Any, Any],
                  missing: dict[int, str], check_conflicts: bool, dry_run: bool = False,
                  on_conflict: str = "skip", progress: bool | None = None) -> Report:
    """Send updates: one PATCH per changed source (``by_source``: id -> field -> (old, new))."""
    check_on_conflict(on_conflict)
    check_sendable(by_source)
    not_found = [Outcome("update", "failed", {}, reason, names.get(sid), sid) for sid, reason in missing.items()]
    if dry_run:
        return make_report([*(Outcome("update", "planned", changes, None, names.get(sid), sid)
                              for sid, changes in by_source.items()), *not_found])
    current = sources.current(list(by_source)) if check_conflicts and by_source else {}
    decided: dict[Hashable, Outcome] = {}
    tasks: dict[Hashable, Callable[[], Outcome]] = {}
    for sid, changes in by_source.items():
        name = names.get(sid)
        if check_conflicts:
            outcome_or_body = checked_update(sid, changes, current.get(sid), on_conflict, name)
            if isinstance(outcome_or_body, Outcome):
                decided[sid] = outcome_or_body
                continue
            body, replaced = outcome_or_body
        else:
            body = {f: new for f, (old, new) in changes.items()}
            replaced = {f: old for f, (old, new) in changes.items()}
        tasks[sid] = update_task(sources, sid, changes, body, replaced, name)
    order: list[Hashable] = [*by_source, *missing]
    done = send_all(sources.client.max_workers, tasks, decided, order, progress, "updating",
                    fallback=lambda sid: Outcome("update", "failed", by_source[sid], None, names.get(sid), sid))
    return make_report([*(done.get(k) or decided[k] for k in by_source), *not_found])


def checked_update(sid: int, changes: Changes, server: dict[str, Any] | None, on_conflict: str,
                   name: Any = None, action: str = "update") -> Outcome | tuple[dict[str, Any], dict[str, Any]]:
    """The outcome decided without sending (gone, conflict, already there), or the body to send
    and the server's values it replaces."""
    if server is None:
        return Outcome(action, "failed", changes, "not found on the server", name, sid)
    sides = {f: three_way(f, old, new, server.get(f)) for f, (old, new) in changes.items()}
    moved = {f: server.get(f) for f, side in sides.items() if side == "conflict"}
    if moved and on_conflict == "skip":
        return Outcome(action, "conflict", changes, "changed on the server since the base was read: " + ", ".join(
            f"{f} is now {v!r} (base had {changes[f][0]!r})" for f, v in moved.items()), name, sid)
    body = {f: new for f, (old, new) in changes.items() if sides[f] != "agree"}
    if not body:
        return Outcome(action, "updated", changes, None, name, sid)
    return body, {f: server.get(f) for f in body}


def update_task(sources: SourceCalls, sid: int, changes: Changes, body: dict[str, Any],
                replaced: dict[str, Any], name: Any, action: str = "update") -> Callable[[], Outcome]:
    """A PATCH of ``body``; its outcome says what it replaced."""
    def send() -> Outcome:
        result = sources.update(sid, **body)
        lost = [f for f, v in body.items() if not same(f, result.get(f), v)]
        if lost:
            return Outcome(action, "failed", changes, "the server answered but did not keep: " + ", ".join(
                f"{f} (sent {body[f]!r}, has {result.get(f)!r})" for f in lost), name, sid, replaced)
        return Outcome(action, "updated", changes, None, name, sid, replaced)
    return send


def check_sendable(by_source: dict[Any, Changes]) -> None:
    """Every new value must be JSON: checked for the whole plan before anything is sent."""
    problems = []
    for sid, changes in by_source.items():
        for fname, (_, new) in changes.items():
            try:
                json.dumps(to_python(new), allow_nan=False)
            except (TypeError, ValueError):
                problems.append(Problem(sid, fname, new, f"a {type(new).__name__} value cannot be sent as JSON "
                                        "(use a number, text, true/false, a list or nothing)"))
    if problems:
        raise ValidationError(problems)


def send_all(workers: int, tasks: dict[Hashable, Callable[[], Outcome]], decided: dict[Hashable, Outcome],
             order: Sequence[Hashable], progress: bool | None, desc: str,
             fallback: Callable[[Any], Outcome]) -> dict[Hashable, Outcome]:
    """Run ``tasks`` concurrently; their outcomes by key.

    ``fallback(key)``: the outcome of a task that raised, completed with its error.
    On Ctrl-C, raises :class:`BulkInterrupted` whose report holds ``decided`` and every
    task that finished, in ``order``.
    """
    # Each worker records its own outcome, so a run cut short at any line (even while
    # the work is being queued) still knows exactly what was sent.
    done: dict[Hashable, Outcome] = {}

    def run(key: Hashable) -> None:
        try:
            done[key] = tasks[key]()
        except Exception as exc:
            outcome = fallback(key)
            outcome.error = str(exc) or type(exc).__name__
            done[key] = outcome

    if not tasks:
        return done
    bar = tqdm(total=len(tasks), desc=desc, unit="source", leave=False,
               disable=progress is False or (progress is None and len(tasks) < 2))
    pool = ThreadPoolExecutor(workers)
    try:
        pending: set[Future[None]] = {pool.submit(run, key) for key in tasks}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                bar.update(1)
    except KeyboardInterrupt:
        report = _finish_in_flight(pool, lambda: make_report(
            [o for k in order if (o := done.get(k) or decided.get(k)) is not None]))
        raise BulkInterrupted(report) from None
    finally:
        _finish_in_flight(pool, lambda: bar.close())
    return done


def _finish_in_flight(pool: ThreadPoolExecutor, then: Callable[[], Any]) -> Any:
    """Let requests in flight finish (nothing new starts), then ``then()``: both
    carried through however many more Ctrl-Cs arrive meanwhile."""
    while True:
        try:
            pool.shutdown(wait=True, cancel_futures=True)
            return then()
        except KeyboardInterrupt:
            continue
