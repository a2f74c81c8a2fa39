"""Reviewing a plan: the state it would leave, checked against a policy.

The rules of a :class:`~neuroio_nb._jobs.policy.Policy` see the *desired* state, as the
plan would leave it: every source the plan compared (each row of the edited frame that
matched a source) with its settings as the plan read them and the edit on top, and each
source it would create with the settings it sends (the server's defaults for those it
leaves out). Sources the plan deletes are not checked: they would not exist.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pandas as pd

from .._schema import READ_ONLY, create_defaults
from .._values import shown, to_python
from .._views import ACTION_MARKS, cut_lines, plural, showing, window
from .bulk import RESTORABLE
from .frames import INDEX, empty_frame, frame_from_records
from .parts import PlanParts, parts_of
from .policy import Policy, empty_violations

if TYPE_CHECKING:
    from .plan import Plan


def desired_state(parts: PlanParts) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the sources the plan compared, as it would leave them; the sources it would create,
    with the server's defaults for what they leave out and no id yet), both indexed by ``id``."""
    if parts.compared is None:
        kept = empty_frame()
    else:
        edited, seen = parts.compared
        kept = seen.copy()
        for column in edited.columns:
            if column not in READ_ONLY and column != INDEX:
                kept[column] = edited[column]
    bodies = parts.job.bodies
    spaces = parts.job.create_spaces  # where a row says its source must land
    made = frame_from_records(
        [
            {**create_defaults(), **body, **({"space_id": spaces[label]} if label in spaces else {}), INDEX: n}
            for n, (label, body) in enumerate(bodies.items())
        ]
    )
    made.index = pd.Index(pd.array([None] * len(bodies), dtype="Int64"), name=INDEX)  # no id yet: missing
    return kept, made


def plan_violations(parts: PlanParts, policy: Policy) -> pd.DataFrame:
    """The violations of the state the plan of ``parts`` would leave (see the module doc)."""
    found = [v for v in (policy.check(frame) for frame in desired_state(parts)) if len(v)]
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


# ---- a plan for a ticket: Markdown and JSON -------------------------------------------

#: The version of :func:`plan_json`'s schema (``docs/guide/review.md`` documents it).
JSON_VERSION = 1
#: Characters that would format inline Markdown text (or end a table cell): escaped in names and notes.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def plan_markdown(plan: Plan) -> str:
    """GitHub-flavoured Markdown: the summary first, then one table row per deleted source
    (``-``), created source (``+``, with the values it sends) and changed value (``~``, old
    and new); cut
    as pandas cuts rows, with "showing N of M" (:func:`plan_json` holds every one)."""
    rows = _markdown_rows(plan)
    win = window(len(rows))
    lines = [f"**Plan**: {_md_text(plan.summary())}", ""]
    if win.truncated:
        lines += [f"_{showing(win, None, 'rows')}; every change in the JSON (`plan.to_json()`, `--format json`)_", ""]
    lines += _markdown_notes(plan)
    if rows:
        lines += ["| | id | name | field | old | new |", "|:-:|--:|---|---|---|---|"]
        lines += [rows[k] for k in win.head]
        if win.truncated:
            lines.append(f"| | | _… {plural(win.total - win.shown, 'more row')} …_ | | | |")
        lines += [rows[k] for k in win.tail]
    return "\n".join(lines).rstrip() + "\n"


def _markdown_rows(plan: Plan) -> list[str]:
    delete, create, update = (ACTION_MARKS[a] for a in ("delete", "create", "update"))
    job = parts_of(plan).job
    deletes = plan.deletes[["id", "space_id", "name", "undo"]].itertuples(index=False, name=None)
    out = [
        _md_row(delete, sid, name, "", f"every setting (space {shown(space)})", _md_text(_deleted(undo)))
        for sid, space, name, undo in deletes
    ]
    for body in job.bodies.values():
        sent = "; ".join(f"`{f}`: {_md_value(v)}" for f, v in body.items() if f != "name")
        out.append(_md_row(create, "", body.get("name"), "", "", sent or "the server's defaults"))
    out += [
        _md_row(update, sid, job.names.get(sid), fname, _md_value(old), _md_value(new))
        for sid, fname, old, new in plan.changes[["id", "field", "old", "new"]].itertuples(index=False, name=None)
    ]
    return out


def _deleted(undo: str) -> str:
    """``deleted``, and whether undo could bring it back when it could not (or cannot tell yet)."""
    return "deleted" if undo == RESTORABLE else f"deleted (undo {undo}: apply(irreversible=True) deletes anyway)"


def _markdown_notes(plan: Plan) -> list[str]:
    """What needs the reviewer's eye besides the changes: violations, ids not found, unmatched rows."""
    notes = []
    missing, unmatched = parts_of(plan).job.missing, parts_of(plan).unmatched
    if len(plan.violations):
        notes.append(f"> **{_md_text(summary_note(plan.violations))}** (apply() refuses the plan while any remain):")
        notes += [f"> - {_md_text(line.strip())}" for line in violation_lines(plan.violations, indent="")]
        notes.append("")
    if missing:
        notes += [f"> Not found: {_md_text(', '.join(str(i) for i in missing))} (reported as failed)", ""]
    if len(unmatched):
        notes += [f"> {_md_text(unmatched.note())}: {_md_text(unmatched.names())}", ""]
    return notes


def _md_row(mark: str, sid: Any, name: Any, field: str, old: str, new: str) -> str:
    who = "" if name is None else _md_text(shown(name))
    cells = [f"`{mark}`", str(sid), who, f"`{field}`" if field else "", old, new]
    return "| " + " | ".join(cells) + " |"


def _md_value(value: Any) -> str:
    """A value as code (``7000``, ``true``, ``["new", "ha"]``), safe inside a table cell."""
    text = shown(value, json_literals=True).replace("|", "\\|").replace("\n", " ")
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _md_text(text: Any) -> str:
    """Text with Markdown's special characters escaped (a name such as ``*Gate*|2`` shows as written)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text).replace("\n", " "))


def plan_json(plan: Plan) -> dict[str, Any]:
    """Every change of ``plan``, uncut, as plain JSON values (the schema is in the docs)."""
    parts = parts_of(plan)
    job = parts.job
    return {
        "schema": "neuroio-nb plan",
        "version": JSON_VERSION,
        "base_url": parts.sources.client.base_url,
        "summary": plan.summary(),
        "counts": {
            "delete": len(plan.deletes),
            "create": len(plan.creates),
            "update": int(plan.changes["id"].nunique()),
            "values": len(plan.changes),
            "not_found": len(job.missing),
            "unmatched": len(plan.unmatched),
            "violations": len(plan.violations),
        },
        "deletes": [
            {
                "id": int(sid),
                "space_id": json_value(space),
                "name": json_value(name),
                "undo": undo,
                "settings": json_value(job.deleted.get(sid, {})),
            }
            for sid, space, name, undo in plan.deletes[["id", "space_id", "name", "undo"]].itertuples(
                index=False, name=None
            )
        ],
        "creates": [{"row": json_label(row), "settings": json_value(body)} for row, body in job.bodies.items()],
        "updates": [
            {
                "id": int(sid),
                "name": json_value(job.names.get(sid)),
                "changes": {f: {"old": json_value(old), "new": json_value(new)} for f, (old, new) in changes.items()},
            }
            for sid, changes in job.updates.items()
        ],
        "not_found": [{"id": json_value(sid), "reason": reason} for sid, reason in job.missing.items()],
        "unmatched": [
            {"row": json_label(row), "name": json_value(name)} for row, name in plan.unmatched["name"].items()
        ],
        "violations": [
            {
                "id": json_value(sid),
                "name": json_value(name),
                "rule": rule,
                "require": require,
                "values": json_value(values),
            }
            for sid, name, rule, require, values in plan.violations[
                ["id", "name", "rule", "require", "values"]
            ].itertuples(index=False, name=None)
        ],
    }


def json_value(value: Any) -> Any:
    """``value`` as JSON: numpy and pandas scalars as Python ones, missing as null, containers inside too."""
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v) for v in value]
    return to_python(value)


def json_label(label: Any) -> Any:
    """A frame's row label as JSON: an int or text as it is, anything else as its text."""
    label = to_python(label)
    return label if isinstance(label, (int, str)) else str(label)
