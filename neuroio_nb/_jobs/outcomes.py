"""What came of each write of a job: one :class:`Outcome` per source, the :class:`Report` frame.

The statuses, actions and ``on_conflict`` choices are ``Literal`` types, so that
``mypy --strict`` checks every place that makes or compares one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, cast, get_args

import pandas as pd

from .._journal import RunWriter
from .._values import id_index, to_python
from .._views import empty, report_html
from ..errors import Problem, ValidationError

Action = Literal["update", "create", "delete"]
Status = Literal["deleted", "created", "updated", "conflict", "failed", "planned", "unknown"]
OnConflict = Literal["skip", "overwrite"]
STATUSES: tuple[Status, ...] = get_args(Status)
ACTIONS: tuple[Action, ...] = get_args(Action)
#: field -> (old, new)
Changes = dict[str, tuple[Any, Any]]


@dataclass(kw_only=True)
class Outcome:
    """One report row. ``replaced``: field -> the server's value that the write replaced (as
    read right before sending; a delete's: the whole source); empty when nothing was sent.
    ``row`` and ``old_id``: a create's row label, and the id of the source it re-creates."""

    action: Action
    status: Status
    changes: Changes
    error: str | None = None
    name: Any = None
    id: int | None = None
    replaced: dict[str, Any] = field(default_factory=dict)
    row: Any = None
    old_id: int | None = None
    #: A created source's fields its row did not set: the server gave them their defaults.
    defaults: list[str] | None = None


class Report(pd.DataFrame):
    """The outcome of a bulk job: index ``id``; ``action``, ``status``, ``name``, ``changes``,
    ``replaced``, ``error`` (and ``row``, ``old_id`` and ``defaults`` when sources were created:
    ``defaults`` lists the fields of a created source's ``changes`` that its row did not set)."""

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
        """How many sources ended in each status, e.g. ``{"updated": 297, "conflict": 2}``.

        Example::

            plan.apply().counts()   # {"updated": 297, "conflict": 2}
        """
        found = self["status"].value_counts().to_dict() if "status" in self else {}
        return {s: int(found[s]) for s in STATUSES if found.get(s)}

    def summary(self) -> str:
        """The counts in words: ``"297 updated, 2 conflict"`` (``"nothing to change"`` when empty).

        Example::

            plan.apply().summary()   # "297 updated, 2 conflict"
        """
        counts = self.counts()
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to change"

    def _repr_html_(self) -> str:
        if not {"status", "changes", "error"} <= set(self.columns):  # a selection of columns: a plain table
            return str(cast(Any, pd.DataFrame(self))._repr_html_())
        if not len(self):
            return empty("Nothing was changed: the plan had no changes.")
        names = self["name"] if "name" in self.columns else pd.Series(None, index=self.index, dtype=object)
        rows = list(
            zip(
                self.index.tolist(),
                names.tolist(),
                self["status"].tolist(),
                self["changes"].tolist(),
                self["error"].tolist(),
                strict=False,
            )
        )
        actions = self["action"].tolist() if "action" in self.columns else None
        defaults = self["defaults"].tolist() if "defaults" in self.columns else None
        return report_html(self.summary(), rows, where="report", actions=actions, defaults=defaults)


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
        columns["defaults"] = pd.Series([o.defaults for o in rows], dtype=object)
    report: Report = Report(columns)
    report.index = pd.Index(ids, dtype="Int64", name="id") if None in ids else id_index(ids)
    return report


def with_run(report: Report, run: RunWriter) -> Report:
    """The report, its journal run id in ``report.attrs["run_id"]`` (for ``sources.undo(run_id)``)."""
    if run.run_id:
        report.attrs["run_id"] = run.run_id
    return report


def check_on_conflict(on_conflict: object) -> OnConflict:
    """``on_conflict`` as its type, or a ValidationError saying what it must be."""
    if on_conflict == "skip" or on_conflict == "overwrite":
        return on_conflict
    raise ValidationError(
        [Problem(None, "on_conflict", on_conflict, "must be 'skip' or 'overwrite'")], what="arguments"
    )


def as_status(text: object) -> Status:
    """A status read back from a file (a journal, a report CSV); anything else is ``unknown``."""
    return text if text in STATUSES else "unknown"


def as_action(text: object) -> Action:
    """An action read back from a file; anything else is an ``update`` (reports before actions)."""
    return text if text in ACTIONS else "update"
