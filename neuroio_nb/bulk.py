"""Applying a plan: conflict check, concurrent PATCHes, one report row per source.

Per-source failures never raise: they become report rows carrying the
server's message. Ctrl-C stops sending, lets requests in flight finish and
raises :class:`BulkInterrupted` with the partial report.
"""
from __future__ import annotations

import json
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any

import pandas as pd
from tqdm.auto import tqdm

from .errors import BulkInterrupted, NeuroIOError, Problem, ValidationError
from .values import same, three_way, to_python
from .views import empty, report_html

if TYPE_CHECKING:
    from .plan import Plan
    from .sources import Sources

STATUSES = ("updated", "conflict", "failed", "planned")
Row = tuple[str, dict[str, tuple[Any, Any]], Any]


class Report(pd.DataFrame):
    """The outcome of a bulk update: index ``id``; ``status``, ``changes``, ``error``."""

    _metadata: list[str] = []

    @property
    def _constructor(self) -> type[Report]:
        return Report

    def counts(self) -> dict[str, int]:
        found = self["status"].value_counts().to_dict() if "status" in self else {}
        return {s: int(found[s]) for s in STATUSES if found.get(s)}

    def summary(self) -> str:
        counts = self.counts()
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to change"

    def _repr_html_(self) -> str:  # type: ignore[override]
        if not len(self):
            return empty("Nothing was changed: the plan had no changes.")
        names = self["name"] if "name" in self.columns else pd.Series(None, index=self.index, dtype=object)
        rows = list(zip(self.index.tolist(), names.tolist(), self["status"].tolist(),
                        self["changes"].tolist(), self["error"].tolist()))
        return report_html(self.summary(), rows, where="report")


def make_report(rows: dict[int, Row], order: list[int], names: dict[int, Any] | None = None) -> Report:
    ids = [i for i in order if i in rows] + [i for i in rows if i not in set(order)]
    names = names or {}
    report = Report({
        "name": pd.Series([names.get(i) for i in ids], dtype=object),
        "status": pd.Series([rows[i][0] for i in ids], dtype="string"),
        "changes": pd.Series([rows[i][1] for i in ids], dtype=object),
        "error": pd.Series([rows[i][2] for i in ids], dtype=object),
    })
    report.index = pd.Index(ids, dtype="int64", name="id")
    return report


def check_on_conflict(on_conflict: Any) -> None:
    if on_conflict not in ("skip", "overwrite"):
        raise ValidationError([Problem(None, "on_conflict", on_conflict, "must be 'skip' or 'overwrite'")],
                              what="arguments")


def apply_plan(plan: Plan, *, dry_run: bool = False, on_conflict: str = "skip",
               progress: bool | None = None) -> Report:
    check_on_conflict(on_conflict)
    by_source = plan.by_source()
    _check_sendable(by_source)
    order = list(by_source) + list(plan.missing)
    rows: dict[int, Row] = {sid: ("failed", {}, reason) for sid, reason in plan.missing.items()}
    if dry_run:
        rows.update({sid: ("planned", changes, None) for sid, changes in by_source.items()})
        return make_report(rows, order, plan.names)
    bodies: dict[int, dict[str, Any]] = {}
    current = plan.sources.current(list(by_source)) if plan.check_conflicts and by_source else {}
    for sid, changes in by_source.items():
        body = {f: new for f, (old, new) in changes.items()}
        if plan.check_conflicts:
            server = current.get(sid)
            if server is None:
                rows[sid] = ("failed", changes, "not found on the server")
                continue
            sides = {f: three_way(f, old, new, server.get(f)) for f, (old, new) in changes.items()}
            moved = {f: server.get(f) for f, side in sides.items() if side == "conflict"}
            body = {f: v for f, v in body.items() if sides[f] != "agree"}
            if moved and on_conflict == "skip":
                rows[sid] = ("conflict", changes, "changed on the server since the base was read: " + ", ".join(
                    f"{f} is now {v!r} (base had {changes[f][0]!r})" for f, v in moved.items()))
                continue
            if not body:
                rows[sid] = ("updated", changes, None)
                continue
        bodies[sid] = body
    rows.update(_send_all(plan.sources, bodies, by_source, progress, rows, order, plan.names))
    return make_report(rows, order, plan.names)


def _check_sendable(by_source: dict[int, dict[str, tuple[Any, Any]]]) -> None:
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


def _send_all(sources: Sources, bodies: dict[int, dict[str, Any]], by_source: dict[int, dict],
              progress: bool | None, rows: dict[int, Row], order: list[int],
              names: dict[int, Any]) -> dict[int, Row]:
    # Each worker records its own outcome, so a run cut short at any line (even while
    # the work is being queued) still knows exactly what was sent.
    done: dict[int, Row] = {}

    def send(sid: int) -> None:
        changes = by_source[sid]
        try:
            result = sources.update(sid, **bodies[sid])
        except NeuroIOError as exc:
            done[sid] = ("failed", changes, str(exc))
            return
        lost = [f for f, v in bodies[sid].items() if not same(f, result.get(f), v)]
        if lost:
            done[sid] = ("failed", changes, "the server answered but did not keep: " + ", ".join(
                f"{f} (sent {bodies[sid][f]!r}, has {result.get(f)!r})" for f in lost))
        else:
            done[sid] = ("updated", changes, None)

    if not bodies:
        return done
    bar = tqdm(total=len(bodies), desc="updating", unit="source", leave=False,
               disable=progress is False or (progress is None and len(bodies) < 2))
    pool = ThreadPoolExecutor(sources.client.max_workers)
    try:
        pending: set[Future] = {pool.submit(send, sid) for sid in bodies}
        while pending:
            finished, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                bar.update(1)
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)  # nothing new starts; requests in flight finish
        raise BulkInterrupted(make_report({**rows, **done}, order, names)) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return done


def undo(sources: Sources, report: pd.DataFrame, *, on_conflict: str = "skip",
         progress: bool | None = None) -> Report:
    """Put back the old values of every ``updated`` row, conflict-checked against what was written."""
    from .plan import CHANGE_COLUMNS, Plan

    if not isinstance(report, pd.DataFrame) or not {"status", "changes"} <= set(report.columns):
        raise ValidationError([Problem(None, None, type(report).__name__, "undo needs the report that "
                                       "bulk_update or plan.apply returned (columns status and changes)")],
                              what="report")
    records = [(sid, f, new, old)
               for sid, status, changes in report[["status", "changes"]].itertuples(name=None)
               if status == "updated" for f, (old, new) in (changes or {}).items()]
    changes = pd.DataFrame(records, columns=CHANGE_COLUMNS).astype({"id": "int64", "old": object, "new": object})
    return Plan(sources, changes, check_conflicts=True).apply(on_conflict=on_conflict, progress=progress)
