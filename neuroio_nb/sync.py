"""Desired state: create, update and delete sources so that the server matches a frame,
and undo of any report.
"""
from __future__ import annotations

import pandas as pd

from .bulk import Report, SourceCalls
from .errors import Problem, ValidationError
from .plan import update_plan


def undo(sources: SourceCalls, report: pd.DataFrame, *, on_conflict: str = "skip",
         progress: bool | None = None) -> Report:
    """Put back what each ``updated`` row's write replaced, conflict-checked against what was written.

    Rows where nothing was sent (the server already had the value) are left alone.
    """
    if not isinstance(report, pd.DataFrame) or not {"status", "changes"} <= set(report.columns):
        raise ValidationError([Problem(None, None, type(report).__name__, "undo needs the report that "
                                       "bulk_update or plan.apply returned (columns status and changes)")],
                              what="report")
    replaced = report["replaced"] if "replaced" in report.columns else pd.Series(None, index=report.index)
    records = []
    for (sid, status, changes), before in zip(report[["status", "changes"]].itertuples(name=None), replaced, strict=False):
        if status != "updated":
            continue
        for fname, (old, new) in (changes or {}).items():
            if isinstance(before, dict):
                if fname in before:
                    records.append((sid, fname, new, before[fname]))
            else:  # a report written before the replaced values were recorded
                records.append((sid, fname, new, old))
    names = dict(zip(report.index, report["name"], strict=False)) if "name" in report.columns else {}
    return update_plan(sources, records, names).apply(on_conflict=on_conflict, progress=progress)
