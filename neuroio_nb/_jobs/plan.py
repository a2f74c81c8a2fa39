"""What applying an edited frame would change, compared column by column.

A :class:`Plan` is a long frame of changes (id, field, old, new) plus the ids
that could not be planned (not on the server). The comparison is vectorised
per column: NA equals NA, and ``store_images_for_results`` compares as a set.

:class:`Plan` is the user's face of a plan and nothing more; what it is made of (the job it
sends, its sources, its policy) is a :class:`~neuroio_nb._jobs.parts.PlanParts`, which the
package's other modules read with :func:`~neuroio_nb._jobs.parts.parts_of`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._schema import BY_NAME, COLUMNS, READ_ONLY
from .._values import id_index, same, sendable, to_python
from .._views import (
    ACTION_MARKS,
    changes_html,
    cut_items,
    cut_lines,
    defaults_text,
    empty,
    esc,
    headline,
    ids_text,
    notice,
    number,
    plural,
    showing,
    shown,
    split_create,
    view,
    window,
)
from ..errors import PolicyViolationError, Problem, ValidationError
from .bulk import CANNOT_TELL, CHANGE_COLUMNS, RESTORABLE, Job, SourceCalls, apply_job, undo_of_deletes
from .csvio import neutralised
from .frames import INDEX, frame_from_records, typed_column
from .outcomes import Report, check_on_conflict
from .parts import PlanParts, parts_of
from .policy import Policy
from .review import plan_json, plan_markdown, plan_violations, refusal, summary_note, violation_lines
from .validate import checked_cells


class Plan:
    """The changes an edited frame makes. ``len(plan)`` is how many sources change.

    What a plan holds for its reader: :meth:`summary`, :attr:`changes`, :attr:`creates`,
    :attr:`deletes`, :attr:`unmatched` and :attr:`violations`; :meth:`apply` sends it, each
    write conditional on what the plan saw (its own read of the server, or the ``base``);
    :meth:`to_markdown` and :meth:`to_json` show it for a review, :meth:`save` keeps it to
    apply later. A plan with rows that match no source is true (``bool(plan)``), as one with
    ids not found on the server is (those, under ``key="id"``, are reported as failed).

    A plan comes from ``client.sources.plan(edited)`` or ``client.sources.load_plan(path)``;
    it is not made directly.
    """

    def __init__(self, parts: PlanParts) -> None:
        self._parts = parts

    @property
    def unmatched(self) -> pd.DataFrame:
        """The rows of a frame planned with ``key="name"`` and without ``create=True`` whose name
        matches no source in scope, as the frame holds them (its labels, columns and dtypes; no
        row when every row matched). Nothing is done with them; the plan's views say what
        ``create=True`` would do with each (create it, or refuse it as outside the scope or for
        its values)."""
        return self._parts.unmatched.rows

    @property
    def changes(self) -> pd.DataFrame:
        """The updates: one row per (id, field): ``id``, ``name``, ``field``, ``old`` (the value
        the plan saw), ``new``."""
        return self._parts.job.changes

    @property
    def creates(self) -> pd.DataFrame:
        """Rows to create (index: the desired frame's labels; one column per field sent)."""
        return self._parts.job.creates

    @property
    def deletes(self) -> pd.DataFrame:
        """Server sources to delete: ``id``, ``space_id``, ``name``, and ``undo``: whether undo
        could re-create it (``can restore``; ``cannot restore: ...`` for a source of another
        space than the one the token's creates land in; ``cannot tell yet`` while that space is
        not known). ``apply()`` refuses deletes undo could not re-create, unless
        ``apply(irreversible=True)``."""
        frame = self._parts.job.deletes.copy()
        frame["undo"] = pd.Series(self._undo_of_deletes(), index=frame.index, dtype=object)
        return frame

    @property
    def violations(self) -> pd.DataFrame:
        """What breaks the rules the plan was checked against (``plan(..., policy=)``) in the
        state it would leave: one row per source and rule (``id``, ``name``, ``rule``,
        ``require``, ``fields``, ``values``; a source to create has no id yet). ``apply()``
        refuses the plan while any remain, unless ``apply(allow_violations=True)``."""
        return self._parts.violations

    def __len__(self) -> int:
        """How many sources change: updated, created and deleted."""
        job = self._parts.job
        return int(job.changes["id"].nunique()) + len(job.creates) + len(job.deletes)

    def __bool__(self) -> bool:
        return len(self) > 0 or bool(self._missing) or len(self.unmatched) > 0 or len(self.violations) > 0

    @property
    def _missing(self) -> Mapping[int, str]:
        """Ids that could not be planned (not on the server, not in the base), by reason."""
        return self._parts.job.missing

    def _undo_of_deletes(self) -> list[str]:
        """Per delete, whether undo could re-create it (see :attr:`deletes`)."""
        return undo_of_deletes(self._parts.job, self._parts.sources.landing_space)

    def apply(
        self,
        *,
        dry_run: bool = False,
        on_conflict: str = "skip",
        progress: bool | None = None,
        allow_violations: bool = False,
        irreversible: bool = False,
    ) -> Report:
        """Send the plan, each write conditional on what the plan saw (a field changed on the
        server since is a conflict: ``on_conflict`` says whether to skip it or overwrite it);
        returns the report.

        A plan with policy :attr:`violations` sends nothing (:class:`~neuroio_nb.errors.PolicyViolationError`)
        unless ``allow_violations=True``; deletes that undo could not bring back (see
        :attr:`deletes`) are refused before anything is sent, unless ``irreversible=True``.

        Example::

            report = plan.apply(on_conflict="skip")
            report.summary()
        """
        if len(self.violations) and not allow_violations and not dry_run:
            raise PolicyViolationError(refusal(self.violations), self.violations)
        sources = self._parts.sources
        with sources.client.job():  # unattended: 429s waited out on the job's budget
            return apply_job(
                sources,
                self._parts.job,
                dry_run=dry_run,
                on_conflict=check_on_conflict(on_conflict),
                progress=progress,
                irreversible=irreversible,
            )

    def to_markdown(self) -> str:
        """The plan for a ticket or a pull request (GitHub-flavoured Markdown): the summary, then
        a row per deleted source (``-``), created source's value (``+``) and changed value (``~``)
        with old and new, cut as pandas cuts rows ("showing N of M"; :meth:`to_json` has all).

        Example::

            Path("change.md").write_text(plan.to_markdown())   # for the ticket or pull request
        """
        return plan_markdown(self)

    def to_json(self, *, indent: int | None = 2) -> str:
        """Every change, uncut, as JSON: ``deletes`` (with each source's settings), ``creates``,
        ``updates`` (each field's old and new), ``not_found``, ``unmatched``, ``violations``,
        ``counts`` and ``summary`` (the schema: the user guide's "Change review" page).

        Example::

            changes = json.loads(plan.to_json())
            changes["summary"]
        """
        return json.dumps(plan_json(self), indent=indent, ensure_ascii=False, default=str)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save the plan's writes to ``path``, to review and apply later with
        ``client.sources.load_plan(path).apply()``: exactly these writes, each conditional on
        what this plan saw (a source changed since is a conflict). Versioned JSON with a
        checksum and the base URL; never the token. Returns the path.

        Example::

            client.sources.plan(edited).save("change.plan")   # review it, then, later:
            report = client.sources.load_plan("change.plan").apply()
        """
        from .saved import save_plan

        return save_plan(self, path)

    def summary(self) -> str:
        """``3 sources to update (5 values); 1 id not found``; deletions and creations lead:
        ``1 source to delete, 2 to create, 269 to update (283 values)``.

        Example::

            plan.summary()   # "1 source to delete, 2 to create, 3 to update (4 values)"
        """
        unmatched = self._parts.unmatched
        if not len(self) and not self._missing:
            notes = [unmatched.note() if len(unmatched) else "", summary_note(self.violations)]
            return "; ".join(["nothing to change", *filter(None, notes)])
        n_updates = int(self.changes["id"].nunique())
        updates = f"to update ({plural(len(self.changes), 'value')})"
        if len(self.deletes) or len(self.creates):
            parts = [(len(self.deletes), "to delete"), (len(self.creates), "to create"), (n_updates, updates)]
            kept = [(n, what) for n, what in parts if n]
            text = ", ".join(
                f"{plural(n, 'source') if k == 0 else number(n)} {what}" for k, (n, what) in enumerate(kept)
            )
        else:
            text = f"{plural(n_updates, 'source')} {updates}"
        if self._missing:
            text += f"; {plural(len(self._missing), 'id')} not found"
        if len(unmatched):
            text += f"; {unmatched.note()}"
        if len(self.violations):
            text += f"; {summary_note(self.violations)}"
        return text

    def _irreversible_note(self) -> str:
        """``undo cannot restore 1 of the deleted (not in the space the token creates in): ...``,
        or that it cannot tell yet; empty when undo can bring every delete back."""
        said = pd.Series(self._undo_of_deletes(), dtype=object)
        lost, unknown = int((~said.isin([RESTORABLE, CANNOT_TELL])).sum()), int((said == CANNOT_TELL).sum())
        parts = []
        if lost:
            parts.append(f"undo cannot restore {number(lost)} of the deleted (not in the space the token creates in)")
        if unknown:
            parts.append(
                f"undo cannot tell yet whether it can restore {'it' if unknown == 1 else 'them'} "
                "(the token's space is known once it created a source)"
            )
        return f"{'; '.join(parts)}: apply(irreversible=True) deletes anyway" if parts else ""

    def __repr__(self) -> str:
        """Every source a line, ``- `` deletes first, then ``+ `` creates and ``~ `` updates,
        cut like the HTML view (``display.max_rows``) with what was cut said in place."""
        rows = self._rows()
        win = window(len(rows))
        note = showing(win, self._where(), "sources")
        lines = [f"<Plan: {self.summary()}{'; ' + note if note else ''}>"]
        if irreversible := self._irreversible_note():
            lines.append(f"  {irreversible}")
        lines += self._parts.unmatched.lines()
        lines += cut_lines([_row_line(*rows[k]) for k in win.positions()], win, "source")
        if self._missing:
            lines.append(f"  not found: {ids_text(list(self._missing))}")
        if len(self.violations):
            lines += [f"  {summary_note(self.violations)} (apply() refuses the plan while any remain):"]
            lines += violation_lines(self.violations, indent="    ")
        return "\n".join(lines)

    def _where(self) -> str:
        """Where every row of the plan is, for the note of a cut view."""
        if not len(self.creates) and not len(self.deletes):
            return "plan.changes"
        return "`plan.deletes`, `plan.creates` and `plan.changes`"

    def _repr_html_(self) -> str:
        unmatched = self._parts.unmatched.html() + self._violations_html()
        if not len(self) and not self._missing:
            if unmatched:
                return view(headline("Plan", self.summary()), unmatched)
            return empty("Nothing to change: every edited value already equals the current one.")
        deleted = ACTION_MARKS["delete"]
        rows = [(m, sid, name, {} if m == deleted else ch) for m, sid, name, ch in self._rows()]
        fields = [c for c in ["name", *COLUMNS] if any(c in changes for _, _, _, changes in rows)]
        fields += sorted({f for _, _, _, changes in rows for f in changes} - set(fields))
        footer = f"<p>Not found: {esc(ids_text(list(self._missing)))}</p>" if self._missing else ""
        marked = bool(len(self.creates) or len(self.deletes))
        return changes_html(
            "Plan",
            self.summary(),
            [r[1:] for r in rows],
            fields,
            where=self._where(),
            marks=[r[0] for r in rows] if marked else None,
            footer=footer,
            lead=unmatched + self._irreversible_html(),
        )

    def _irreversible_html(self) -> str:
        """A notice naming the deletes undo could not restore, or cannot tell yet, each with its
        space: grouped by what undo says of them (said once), each group cut like pandas."""
        deletes = self.deletes
        shown_rows = deletes[deletes["undo"] != RESTORABLE]
        if not len(shown_rows):
            return ""
        groups = []
        for said, group in shown_rows.groupby("undo", sort=False):
            items = [
                f"{sid} {shown(name)} (space {shown(_plain_cell(space))})"
                for sid, name, space in zip(group["id"], group["name"], group["space_id"], strict=True)
            ]
            groups.append(f"undo {said}: {cut_items(items, 'delete', sep='; ')}")
        return notice(f"{'. '.join(groups)}. apply(irreversible=True) deletes them anyway.")

    def _violations_html(self) -> str:
        """The policy's violations as a notice: what apply() refuses, one per line, cut like pandas."""
        if not len(self.violations):
            return ""
        lines = "<br>".join(esc(line) for line in violation_lines(self.violations, indent=""))
        head = f"{summary_note(self.violations).capitalize()} (all in `plan.violations`): apply() refuses them"
        return notice(f"{head} unless apply(allow_violations=True).", tone="bad") + f"<p>{lines}</p>"

    def _rows(self) -> list[tuple[str, Any, Any, dict[str, tuple[Any, Any]]]]:
        """One ``(mark, id, name, {field: (old, new)})`` per source, as the views show them: ``-``
        deletes first (their changes: ``space_id`` and ``undo``), then ``+`` creates (no id
        yet), then ``~`` updates."""
        delete, create, update = (ACTION_MARKS[a] for a in ("delete", "create", "update"))
        job, deletes = self._parts.job, self.deletes
        out: list[tuple[str, Any, Any, dict[str, tuple[Any, Any]]]] = [
            (delete, sid, name, {"space_id": (_plain_cell(space), None), "undo": (said, None)})
            for sid, name, space, said in zip(
                deletes["id"], deletes["name"], deletes["space_id"], deletes["undo"], strict=True
            )
        ]
        out += [
            (create, "", body.get("name"), {f: (None, v) for f, v in body.items() if f != "name"})
            for body in job.bodies.values()
        ]
        out += [(update, sid, job.names.get(sid), changes) for sid, changes in job.updates.items()]
        return out


def _plain_cell(value: Any) -> Any:
    return None if value is pd.NA or value is None else int(value)


def _row_line(mark: str, sid: Any, name: Any, changes: dict[str, tuple[Any, Any]]) -> str:
    """``  ~ 3 Gate: use_pps_time: False -> True``; a create shows the values it sets differently
    from the defaults, and counts the rest: ``  + Gate 9: use_pps_time: True (+ 15 defaults)``."""
    who = " ".join(str(part) for part in (sid, shown(name)) if part != "")
    if mark == ACTION_MARKS["delete"]:
        space, said = changes["space_id"][0], changes["undo"][0]
        undo = "" if said == RESTORABLE else f"; undo {said}"
        return f"  {mark} {who} (space {shown(space)}{undo})"
    if mark == ACTION_MARKS["create"]:
        said, folded = split_create({k: n for k, (_, n) in changes.items()})
        what = ", ".join(f"{k}: {shown(n)}" for k, n in said.items())
        what += f" ({defaults_text(folded)})" if what and folded else defaults_text(folded)
    else:
        what = ", ".join(f"{k}: {shown(o)} -> {shown(n)}" for k, (o, n) in changes.items())
    return f"  {mark} {who}" + (f": {what}" if what else "")


def make_plan(sources: SourceCalls, edited: Any, base: pd.DataFrame | None) -> Plan:
    """Validate ``edited``, fetch the server's values if no base, and compare."""
    try:
        edited, cell_problems = checked_cells(edited)
    except ValidationError as exc:
        if base is not None and isinstance(edited, pd.DataFrame) and not isinstance(edited.columns, pd.MultiIndex):
            exc.problems += _unknown_columns(edited, _typed_base(base))
        raise ValidationError(exc.problems, what=exc.what) from None
    if base is None:
        spaces = _spaces_of(edited)
        current = sources.current(edited.index.tolist(), spaces_ids=spaces)
        base_frame = frame_from_records([s for s in current.values() if s is not None])
        missing = {i: "not found on the server" for i, s in current.items() if s is None}
        absent = edited.index.isin(list(missing))
    else:
        base_frame = _typed_base(base)
        absent = ~edited.index.isin(base_frame.index)
        missing = dict.fromkeys(edited.index[absent].tolist(), "not in base")
    known = edited[~absent] if absent.any() else edited
    old = base_frame if base_frame.index.equals(known.index) else base_frame.loc[known.index]
    _check_columns(known, old, base_frame, read_only=base is not None)
    rows, fields, olds, news = [], [], [], []
    for position, column in enumerate(known.columns):
        if column in READ_ONLY:
            continue
        before = old[column] if column in old.columns else pd.Series(None, index=old.index, dtype=object)
        where = np.flatnonzero(changed(column, before, known[column]))
        if len(where):
            rows.append(where)
            fields.append(np.full(len(where), position))
            olds += _plain(column, before, where)
            news += _plain(column, known[column], where)
    changes = _changes_frame(known, rows, fields, olds, news)
    _refuse_bad_changes(cell_problems, changes)
    names = _names(known if "name" in known.columns else base_frame, changes["id"].unique())
    changes.insert(1, "name", changes["id"].map(names).astype(object))
    job = Job(changes=changes, names=names, missing=missing, spaces=_spaces_of_ids(base_frame, changes["id"].unique()))
    return Plan(PlanParts(sources, job, compared=(known, old)))


def with_policy(plan: Plan, policy: Policy) -> Plan:
    """``plan`` checked against ``policy``: the violations of the state it would leave."""
    parts = parts_of(plan)
    return Plan(replace(parts, policy=policy, violations=plan_violations(parts, policy)))


def _spaces_of_ids(frame: pd.DataFrame, ids: np.ndarray) -> list[int] | None:
    """The spaces of ``ids`` in ``frame``, when it says for every one."""
    if "space_id" not in frame.columns or not len(ids):
        return None
    spaces = frame["space_id"][frame.index.isin(ids)]
    if len(spaces) != len(ids) or spaces.isna().any():
        return None
    return sorted(int(s) for s in spaces.unique())


def creates_frame(bodies: dict[Any, dict[str, Any]]) -> pd.DataFrame:
    """The bodies to POST as :attr:`Plan.creates`: one row each, labelled by its key (index
    ``row``), one object column per field any of them sends (None where one does not)."""
    columns = list(dict.fromkeys(f for body in bodies.values() for f in body))
    rows = pd.Index(list(bodies), name="row")
    return pd.DataFrame(
        {c: pd.Series([body.get(c) for body in bodies.values()], index=rows, dtype=object) for c in columns},
        index=rows,
        columns=columns,
    )


def update_job(records: list[tuple[int, str, Any, Any]], names: Mapping[Any, Any] | None = None) -> Job:
    """The conflict-checked updates of (id, field, old, new) records, as undo and resume send them."""
    names = names or {}
    changes = pd.DataFrame(
        [(sid, names.get(sid), f, old, new) for sid, f, old, new in records], columns=CHANGE_COLUMNS, dtype=object
    )  # objects: None stays None, not NaN
    changes = changes.astype({"id": id_index(changes["id"]).dtype, "name": object, "old": object, "new": object})
    return Job(changes=changes, names={sid: names.get(sid) for sid in changes["id"]})


def _names(frame: pd.DataFrame, ids: np.ndarray) -> dict[int, Any]:
    """id -> the name in ``frame`` (None where it has none), for ``ids``."""
    if "name" not in frame.columns:
        return dict.fromkeys(ids)
    names = frame["name"][frame.index.isin(ids)]
    if isinstance(names.dtype, pd.StringDtype):  # what to_dict() gives, without boxing cell by cell
        found = dict(zip(names.index.tolist(), names.to_numpy(dtype=object).tolist(), strict=False))
    else:
        found = names.to_dict()
    return {i: found.get(i) for i in ids}


def _changes_frame(
    known: pd.DataFrame, rows: list[np.ndarray], fields: list[np.ndarray], olds: list[Any], news: list[Any]
) -> pd.DataFrame:
    """The long frame of changes, in row order then column order."""
    if not rows:
        return pd.DataFrame(
            {c: pd.Series([], dtype="int64" if c == "id" else object) for c in CHANGE_COLUMNS if c != "name"}
        )
    row, field_no = np.concatenate(rows), np.concatenate(fields)
    order = np.lexsort((field_no, row))
    return pd.DataFrame(
        {
            "id": known.index.to_numpy()[row[order]],
            "field": pd.Series(known.columns.to_numpy(dtype=object)[field_no[order]], dtype=object),
            "old": _objects(olds, order),
            "new": _objects(news, order),
        }
    )


def _objects(values: list[Any], order: np.ndarray) -> pd.Series:
    """``values`` reordered, as objects (a list stays one cell; text is not made a string dtype)."""
    return pd.Series(np.fromiter(values, dtype=object, count=len(values))[order], dtype=object)


#: dtypes whose cells :func:`_plain` converts in one go: NA becomes None, the rest Python scalars.
_PLAIN_DTYPES = ("boolean", "Int64", "string", "bool", "int64")


def _plain(name: str, column: pd.Series, where: np.ndarray) -> list[Any]:
    """Chosen cells of a column as plain JSON values (as :func:`to_python` makes them).

    In a column the schema does not know, a whole float is the integer it stands
    for: such a column is float only because a source lacks the field. A license
    id written in plain digits (``"204"``, as the frame holds every license id)
    goes out as the integer 204; other texts (``"lic-7"``, ``"007"``) as text.
    """
    if any(column.dtype == pd.api.types.pandas_dtype(d) for d in _PLAIN_DTYPES):
        cells: list[Any] = column.array[where].to_numpy(dtype=object, na_value=None).tolist()
        field = BY_NAME.get(name)
        if field is None or field.kind != "license":  # no float here: sendable would leave each as it is
            return cells
    else:
        cells = column.to_numpy()[where].tolist()
    return [sendable(name, v) for v in cells]


def _refuse_bad_changes(problems: list[Problem], changes: pd.DataFrame) -> None:
    """Raise for the bad cells that change something; a bad value the server holds is carried through."""
    if not problems:
        return
    changing = set(zip(changes["id"].tolist(), changes["field"].tolist(), strict=True))
    found = [p for p in problems if p.id is None or p.field is None or (p.id, p.field) in changing]
    if found:
        raise ValidationError(found)


def changed(column: str, old: pd.Series, new: pd.Series) -> np.ndarray:
    """Per row: does ``new`` differ from ``old``? NA equals NA; lists compare as sets.

    Text that differs only by the ``'`` an export put before a would-be formula
    (``'=Gate`` for ``=Gate``, as plain ``pd.read_csv`` reads it back) is no change.
    """
    spec = BY_NAME.get(column)
    if spec is not None and spec.kind == "list":
        mask = _changed_cells(old, new, lambda a, b: _as_set(a) != _as_set(b))
    else:
        mask = _changed_values(column, old, new)
    return _not_only_neutralised(old, new, mask)


def _not_only_neutralised(old: pd.Series, new: pd.Series, mask: np.ndarray) -> np.ndarray:
    where = np.flatnonzero(mask)
    if len(where) and _may_hold_text(old) and _may_hold_text(new):
        before, after = old.iloc[where].to_numpy(dtype=object), new.iloc[where].to_numpy(dtype=object)
        mask[where] = [
            not (isinstance(a, str) and isinstance(b, str) and a.startswith("'") and a == neutralised(b))
            for b, a in zip(before, after, strict=True)
        ]
    return mask


def _may_hold_text(column: pd.Series) -> bool:
    """Not a column of booleans, numbers or times (text, objects, categories may hold text)."""
    return column.dtype.kind not in "biufcmM"


def _changed_values(column: str, old: pd.Series, new: pd.Series) -> np.ndarray:
    old_na = old.isna().to_numpy()
    new_na = new.isna().to_numpy()
    if old.dtype != object and new.dtype != object:
        try:
            equal = np.asarray(pd.array(old.array == new.array, dtype="boolean").fillna(False), dtype=bool)
            return ~((old_na & new_na) | (equal & ~old_na & ~new_na))
        except (TypeError, ValueError):
            pass
    return _changed_cells(old, new, lambda a, b: not same(column, a, b))


def _changed_cells(old: pd.Series, new: pd.Series, differ: Callable[[Any, Any], bool]) -> np.ndarray:
    """``differ`` per cell, asked only of cells that are not plainly equal (``==`` on the objects)."""
    a, b = old.to_numpy(dtype=object), new.to_numpy(dtype=object)
    try:
        unsure = np.flatnonzero(~(a == b))
    except (TypeError, ValueError):  # a cell that cannot say if it is equal (NA, an array)
        unsure = np.arange(len(a))
    mask = np.zeros(len(a), dtype=bool)
    mask[unsure] = [differ(x, y) for x, y in zip(a[unsure], b[unsure], strict=False)]
    return mask


def _as_set(value: Any) -> frozenset[Any] | None:
    """A list cell as a set; JSON text of a list (as plain ``pd.read_csv`` leaves it) as that list's set."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return frozenset([value])
        if not isinstance(value, list):
            return frozenset([json.dumps(value)])
    try:
        return frozenset(value)
    except TypeError:
        return frozenset([repr(value)])


def _check_columns(edited: pd.DataFrame, old: pd.DataFrame, base: pd.DataFrame, *, read_only: bool) -> None:
    """Unknown columns, and (``read_only``: against a base) edits of read-only columns.

    Against the server now, a read-only column that differs was changed by the
    server (a source moved to another space), not by the user: it is not compared.
    """
    problems = _unknown_columns(edited, base)
    for column in READ_ONLY if read_only else ():
        if column in edited.columns and column in old.columns:
            mask = changed(column, old[column], edited[column])
            problems += [
                Problem(i, column, to_python(v), "is read-only and cannot be changed")
                for i, v in edited.loc[mask, column].items()
            ]
    if problems:
        raise ValidationError(problems)


def _unknown_columns(edited: pd.DataFrame, base: pd.DataFrame) -> list[Problem]:
    if not len(base.columns) or not len(base):  # nothing to know the server's fields from
        return []
    return [
        Problem(None, column, None, "unknown column: not a field of the schema nor of the base")
        for column in edited.columns
        if column not in BY_NAME and column not in base.columns and column != INDEX
    ]


def _typed_base(base: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(base, pd.DataFrame):
        raise ValidationError([Problem(None, None, type(base).__name__, "base must be a DataFrame")], what="base")
    if base.index.name != INDEX:
        if INDEX not in base.columns:
            raise ValidationError([Problem(None, INDEX, None, "base needs an 'id' index")], what="base")
        base = base.set_index(INDEX)
    typed = {c: typed_column(BY_NAME[c], base[c]) if c in BY_NAME else base[c] for c in base.columns}
    frame = pd.DataFrame(typed, index=id_index(base.index), columns=list(base.columns), copy=False)
    duplicated = frame.index.duplicated()
    return frame[~duplicated] if duplicated.any() else frame


def _spaces_of(edited: pd.DataFrame) -> list[int] | None:
    if "space_id" not in edited.columns or edited["space_id"].isna().any():
        return None
    return sorted(int(s) for s in edited["space_id"].unique())
