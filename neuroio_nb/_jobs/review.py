"""Reviewing a plan: the state it would leave, checked against a policy.

The rules of a :class:`~neuroio_nb._jobs.policy.Policy` see the *desired* state, as the
plan would leave it: every source the plan compared (each row of the edited frame that
matched a source) with its settings as the plan read them and the edit on top, and each
source it would create with the settings it sends (the server's defaults for those it
leaves out). Sources the plan deletes are not checked: they would not exist.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from .._schema import READ_ONLY, create_defaults
from .._values import shown
from .._views import cut_lines, plural, window
from .frames import INDEX, empty_frame, frame_from_records
from .policy import Policy, empty_violations

if TYPE_CHECKING:
    from .plan import Plan


def desired_state(plan: Plan) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the sources the plan compared, as it would leave them: index ``id``; the sources it
    would create, with the server's defaults for what they leave out: index the row labels)."""
    if plan.compared is None:
        kept = empty_frame()
    else:
        edited, seen = plan.compared
        kept = seen.copy()
        for column in edited.columns:
            if column not in READ_ONLY and column != INDEX:
                kept[column] = edited[column]
    bodies = plan.create_bodies()
    spaces = plan.create_spaces  # where a row says its source must land
    made = frame_from_records(
        [
            {**create_defaults(), **body, **({"space_id": spaces[label]} if label in spaces else {}), INDEX: n}
            for n, (label, body) in enumerate(bodies.items())
        ]
    )
    made.index = pd.Index(list(bodies), name="row")
    return kept, made


def plan_violations(plan: Plan, policy: Policy) -> pd.DataFrame:
    """The violations of the state ``plan`` would leave (see the module doc)."""
    found = [v for v in (policy.check(frame) for frame in desired_state(plan)) if len(v)]
    if not found:
        return empty_violations()
    return found[0] if len(found) == 1 else pd.concat(found, ignore_index=True)


def violation_lines(violations: pd.DataFrame, *, indent: str = "  ") -> list[str]:
    """One line per violation, cut like pandas cuts rows:
    ``rule 'liveness': 12 Gate (space_id = 2, auto_check_liveness = False)``;
    a source to create has no id yet: ``rule 'liveness': new 'Dock cam 1' (...)``."""
    win = window(len(violations))
    rows = violations.iloc[win.positions()]
    lines = [
        f"{indent}rule {rule!r}: {_who(sid, name)}" + (f" ({_values_text(values)})" if values else "")
        for sid, name, rule, values in rows[["id", "name", "rule", "values"]].itertuples(index=False, name=None)
    ]
    return cut_lines(lines, win, "violation")


def refusal(violations: pd.DataFrame) -> str:
    """Why ``apply()`` sent nothing: the violations, and the two ways on."""
    return "\n".join(
        [
            f"{plural(len(violations), 'policy violation')}: the plan would leave sources that break "
            "its rules, so nothing was sent. Fix the edit and plan again, or pass "
            "apply(allow_violations=True) to apply it anyway:",
            *violation_lines(violations),
        ]
    )


def _who(sid: Any, name: Any) -> str:
    if sid is None or sid is pd.NA:
        return f"new {shown(name)!r}"
    return f"{sid} {shown(name)}" if name is not None else str(sid)


def _values_text(values: dict[str, Any]) -> str:
    return ", ".join(f"{field} = {shown(value)}" for field, value in values.items())


def summary_note(violations: pd.DataFrame) -> str:
    """``3 policy violations`` for a plan's summary; empty when none."""
    return plural(len(violations), "policy violation") if len(violations) else ""
