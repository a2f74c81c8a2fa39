"""Desired state: the sources a frame describes, matched to the server by id or by name.

:func:`make_sync_plan` builds a :class:`~neuroio_nb._jobs.plan.Plan` that may also create
(rows that match no source, when ``create=True``) and delete (sources in scope that
no row matches, when ``delete=True``); :func:`undo` reverses any report.

Matching by name. A row that names its space (a ``space_id`` cell: an export's rows,
``to_frame()``'s) describes the whole source, so a restore is exact: its empty cell is an
empty value, and the server's value is emptied (a license assigned since the backup is
taken off again), except where the API takes no null (a setting with a default): that
value stays, and a :class:`NotEmptiedWarning` says so when the plan is made. A row that
names no space (a site's CSV need not list every setting) sets only what it fills: its
empty cell means "leave it as it is". A row matches the source of its name within the scope (``q``,
``spaces_ids``). Names are unique per space, so a row with a ``space_id`` (a backup's
rows have one) matches only the source of its name in that space: the namesake in
another space is another source, and restoring a deleted one must not overwrite it.
Such a row that matches nothing is created; the API puts a new source in the token's
own space, so the create must land in the row's space or it is refused (see
:class:`~neuroio_nb._jobs.writes.CreateWrite`). A row without a ``space_id`` matches the
source of its name whatever its space. A name that points at two sources, or that
two rows claim, is an error: nothing is guessed.

Without ``create=True``, a row that matches no source is not dropped in silence: the
plan keeps it (:attr:`~neuroio_nb._jobs.plan.Plan.unmatched`, :mod:`~neuroio_nb._jobs.unmatched`), says so in its views, and an
:class:`UnmatchedRowsWarning` says it when the plan is made, with what ``create=True``
would do with it: create it, or refuse it (and the plan) as outside the scope, its name
lacking ``q`` or its ``space_id`` not in ``spaces_ids``.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from .._schema import BY_NAME, READ_ONLY
from .._values import is_missing, sendable, to_python, whole_number
from .._views import number, plural
from ..errors import NearDuplicateNamesWarning, NotEmptiedWarning, Problem, UnmatchedRowsWarning, ValidationError
from .bulk import CHANGE_COLUMNS, Job, SourceCalls, apply_job, deletes_frame, settings_of
from .frames import INDEX, frame_from_records
from .names import near_duplicates
from .outcomes import Report, check_on_conflict
from .parts import PlanParts, parts_of
from .plan import Plan, creates_frame, make_plan, update_job
from .unmatched import Unmatched, outside_q, outside_scope, outside_spaces
from .validate import column_problems

KEYS = ("id", "name")
#: Re-reads of the scope before giving up on a listing that keeps changing.
READS = 3


def make_sync_plan(
    sources: SourceCalls,
    desired: Any,
    base: pd.DataFrame | None = None,
    *,
    key: str = "id",
    create: bool = False,
    delete: bool = False,
    q: str | None = None,
    spaces_ids: Iterable[int] | int | None = None,
) -> Plan:
    """What making the server match ``desired`` would do (see the module doc); the plan says
    how it was asked for (its ``made_with``, kept in a saved plan for its reviewer)."""
    _check_arguments(desired, key, create, delete, q)
    spaces = None if spaces_ids is None else _spaces(spaces_ids)
    if key == "id":
        parts = parts_of(make_plan(sources, desired, base))
        if delete:
            scope, _ = _read_scope(sources, q, spaces)
            index = desired.index if desired.index.name == INDEX or INDEX not in desired.columns else desired[INDEX]
            wanted = set(index)
            parts = replace(
                parts, job=_with_deletes(parts.job, [sid for sid in scope if sid not in wanted], scope, base)
            )
    else:
        parts = _named_parts(sources, desired, base, create=create, delete=delete, q=q, spaces=spaces)
    made_with = {
        "key": key,
        "create": create,
        "delete": delete,
        "q": q,
        "spaces_ids": spaces_ids,
        "base": base is not None,
    }
    return Plan(replace(parts, made_with=made_with))


def _named_parts(
    sources: SourceCalls,
    desired: pd.DataFrame,
    base: pd.DataFrame | None,
    *,
    create: bool,
    delete: bool,
    q: str | None,
    spaces: list[int] | None,
) -> PlanParts:
    """The plan of a frame matched to the sources by name (see the module doc)."""
    _check_named_shape(desired)
    row_spaces = spaces_of_rows(desired)  # worked out once: the checks and the matching share it
    row_spaces_of = dict(zip(desired.index, row_spaces, strict=True))
    problems = _named_frame_problems(desired, row_spaces, create, q, spaces)  # every problem, before any write
    scope, listing = _read_scope(sources, q, spaces)
    matched, to_create, ambiguous = _match(desired, row_spaces, scope)
    problems += ambiguous
    _warn_near_duplicates(desired, to_create, scope)
    server = frame_from_records(scope.values())
    if create:
        problems += _create_refusals(desired.loc[to_create], server)
    frame = desired.loc[list(matched)].drop(columns=[c for c in desired.columns if c in READ_ONLY or c == INDEX])
    frame.index = pd.Index([matched[label] for label in frame.index], name=INDEX)
    whole = [row_spaces_of[label] is not None for label in matched]
    frame = _empty_cells(frame, server if base is None else base, whole)
    compared: Plan | None = None  # no matched row: an empty plan, made only once nothing is wrong
    if len(frame):
        try:
            compared = make_plan(sources, frame, server if base is None else base)
        except ValidationError as exc:  # about the sources the rows matched: said of those rows
            row_of = {sid: label for label, sid in matched.items()}
            problems += [p._replace(id=row_of.get(p.id, p.id)) for p in exc.problems]
    if problems:  # a frame matched by name has no ids: its problems name rows (a file's, lines)
        raise ValidationError(problems, labels=desired.attrs.get("labels", "row"))
    parts = PlanParts(sources) if compared is None else parts_of(compared)
    job = replace(parts.job, identity={sid: scope[sid].get("name") for sid in matched.values()})
    unmatched = Unmatched()
    if create:
        job = replace(
            job,
            creates=_creates(desired.loc[to_create], server),
            create_spaces=_named_spaces(desired.index, row_spaces, to_create),
            scope=(q, spaces),
            seen=frozenset(scope),
            listing=listing,
        )
    else:  # the frame's columns and dtypes, even with no row
        rows = desired.loc[to_create] if to_create else desired.iloc[:0]
        if to_create:  # what create=True would refuse of them, found as it finds it
            unmatched = Unmatched(
                rows=rows,
                outside=outside_scope(desired, row_spaces, to_create, q, spaces),
                refused_values=tuple(_create_refusals(rows, server)),
            )
            unmatched.warn(q, spaces)
        else:
            unmatched = Unmatched(rows=rows)
    claimed = set(matched.values())
    job = _with_deletes(job, [sid for sid in scope if sid not in claimed] if delete else [], scope, base)
    return replace(parts, job=job, unmatched=unmatched)


def _warn_near_duplicates(desired: pd.DataFrame, unmatched: list[Any], scope: dict[int, dict[str, Any]]) -> None:
    """One :class:`NearDuplicateNamesWarning` for the rows that match no source only because of
    a difference a person cannot see (case, spaces, Unicode): each with the source it looks like."""
    if not unmatched:
        return
    names = desired["name"]
    found = near_duplicates(((label, names.at[label]) for label in unmatched), scope.values())
    if not found:
        return
    noun = desired.attrs.get("labels", "row")
    shown = [
        f"{noun} {d.label!r} {d.name!r} ~ source {d.source_id} {d.source_name!r} ({', '.join(d.differences)})"
        for d in found[:NEAR_DUPLICATES_SHOWN]
    ]
    if len(found) > NEAR_DUPLICATES_SHOWN:
        shown.append(f"... {len(found) - NEAR_DUPLICATES_SHOWN} more")
    warnings.warn(
        f"{plural(len(found), noun)} {'matches' if len(found) == 1 else 'match'} no source by name, but "
        f"{'it looks' if len(found) == 1 else 'each looks'} like one: {'; '.join(shown)}. Matching is exact, "
        "so create=True would make a second source beside it; to update that source instead, give the row "
        "its exact name",
        NearDuplicateNamesWarning,
        stacklevel=5,  # the caller of client.sources.plan
    )


#: How many near-duplicate rows a warning names before it counts the rest.
NEAR_DUPLICATES_SHOWN = 10


def _check_arguments(desired: Any, key: Any, create: Any, delete: Any, q: Any) -> None:
    problems = []
    if key not in KEYS:
        problems.append(Problem(None, "key", key, "must be 'id' or 'name'"))
    for name, value in (("create", create), ("delete", delete)):
        if not isinstance(value, bool):
            problems.append(Problem(None, name, value, "must be True or False"))
    if key == "id" and create is True:
        problems.append(
            Problem(
                None,
                "create",
                create,
                "creating needs key='name': a new source gets a new id, "
                "so matching by id would create it again on every apply",
            )
        )
    if q is not None and not isinstance(q, str):
        problems.append(Problem(None, "q", q, "must be text (part of a name)"))
    elif isinstance(q, str) and not q.strip() and delete is True:
        problems.append(
            Problem(
                None,
                "q",
                q,
                "is empty: with delete=True it would delete every source the frame does not list "
                "(an empty shell variable?); give the text names contain, or leave q out (None) "
                "to mean every source on purpose",
            )
        )
    if problems:
        raise ValidationError(problems, what="arguments")
    if key == "name" and not isinstance(desired, pd.DataFrame):
        raise ValidationError([Problem(None, None, type(desired).__name__, "expected a pandas DataFrame")])


def _spaces(spaces_ids: Any) -> list[int]:
    parts = list(spaces_ids) if isinstance(spaces_ids, Iterable) and not isinstance(spaces_ids, str) else [spaces_ids]
    numbers = [whole_number(p, text=True) for p in parts]
    if not numbers or any(n is None or n < 0 for n in numbers):
        raise ValidationError(
            [Problem(None, "spaces_ids", spaces_ids, "must be space ids: whole numbers, e.g. [1, 2]")], what="arguments"
        )
    return [n for n in numbers if n is not None]


def _check_named_shape(desired: pd.DataFrame) -> None:
    """Raise for a frame that cannot be matched by name at all."""
    if "name" not in desired.columns:
        raise ValidationError([Problem(None, "name", None, "key='name' needs a 'name' column")])
    if desired.empty:
        raise ValidationError([Problem(None, None, None, "the frame has no rows: nothing to compare")])
    if desired.columns.duplicated().any():
        raise ValidationError(
            [Problem(None, None, sorted(set(desired.columns[desired.columns.duplicated()])), "duplicated column names")]
        )


def _named_frame_problems(
    desired: pd.DataFrame, row_spaces: list[int | None], create: bool, q: str | None, spaces: list[int] | None = None
) -> list[Problem]:
    """Every problem of a frame matched by name: no name, a name twice, a row outside the
    scope it would be created in, bad values to create. ``row_spaces``: :func:`spaces_of_rows`."""
    problems = []
    if not desired.index.is_unique:
        problems.append(
            Problem(
                None,
                None,
                None,
                "the index labels rows and must not repeat (frame.reset_index(drop=True) makes it unique)",
            )
        )
    names = desired["name"]
    if "space_id" in desired.columns:
        problems += [
            Problem(label, "space_id", to_python(value), "must be a space id (a whole number), or empty")
            for (label, value), space in zip(desired["space_id"].items(), row_spaces, strict=True)
            if (space is None or space < 0) and not is_missing(value)
        ]
    cells = names.to_numpy(dtype=object)
    problems += [
        Problem(label, "name", to_python(value), "a row without a name cannot be matched (key='name')")
        for label, value in zip(desired.index, cells, strict=True)
        if not (type(value) is str and value.strip()) and _nameless(value)
    ]
    problems += _repeated_names(desired.index, cells, row_spaces)
    if create:
        problems += [
            Problem(
                label, "name", name, f"is outside the scope q={q!r}: planning again with it would not see this source"
            )
            for label, name in zip(desired.index, cells, strict=True)
            if outside_q(name, q)
        ]
        problems += [
            Problem(
                label,
                "space_id",
                to_python(space),
                f"is outside the scope spaces_ids={spaces}: a source of this row's space is not compared, "
                "so the row would be created again",
            )
            for label, space in zip(desired.index, row_spaces, strict=True)
            if outside_spaces(space, spaces)
        ]
    return problems


def _nameless(value: Any) -> bool:
    return is_missing(value) or not isinstance(to_python(value), str) or not str(value).strip()


def _repeated_names(labels: pd.Index, names: np.ndarray, row_spaces: list[int | None]) -> list[Problem]:
    """A name two rows claim in the same space (or where one of them names no space)."""
    given = np.fromiter((not is_missing(name) for name in names), dtype=bool, count=len(names))
    texts = names[given]
    if all(type(name) is str for name in texts):  # plain text: pandas finds the repeats
        repeated = pd.Series(texts, dtype=object).duplicated(keep=False).to_numpy()
    else:  # other cells compare as Python compares them: every row is looked at below
        repeated = np.ones(len(texts), dtype=bool)
    if not repeated.any():
        return []
    seen: dict[Any, list[tuple[Any, Any]]] = {}
    row_labels = list(labels)  # as iterating the index gives them (Python scalars, not numpy ones)
    for position in np.flatnonzero(given)[repeated].tolist():
        seen.setdefault(names[position], []).append((row_labels[position], row_spaces[position]))
    problems = []
    for name, rows in seen.items():
        in_spaces = [space for _, space in rows]
        if len(rows) > 1 and (None in in_spaces or len(set(in_spaces)) < len(in_spaces)):
            problems.append(
                Problem(
                    rows[1][0],
                    "name",
                    name,
                    f"the name appears {len(rows)} times in the frame "
                    f"(rows {', '.join(repr(label) for label, _ in rows)})",
                )
            )
    return problems


def spaces_of_rows(desired: pd.DataFrame) -> list[int | None]:
    """The space each row names (its ``space_id`` cell), None where it names none."""
    if "space_id" not in desired.columns:
        return [None] * len(desired)
    column = desired["space_id"]
    if column.dtype.kind in "iu" or str(column.dtype) in ("Int64", "Int32", "Int16", "Int8"):
        missing = column.isna().to_numpy()
        numbers = column.to_numpy(dtype="int64", na_value=0).tolist()
        return [None if gone else number for number, gone in zip(numbers, missing.tolist(), strict=True)]
    return [None if is_missing(v) else whole_number(v, text=True) for v in column]


def _named_spaces(labels: pd.Index, row_spaces: list[int | None], to_create: list[Any]) -> dict[Any, int]:
    """Row label -> the space a row to create names (a backup's ``space_id``): it must land there."""
    space_of = dict(zip(labels, row_spaces, strict=True))
    return {label: space for label in to_create if (space := space_of[label]) is not None}


def _create_refusals(rows: pd.DataFrame, server: pd.DataFrame) -> list[Problem]:
    """What ``create=True`` refuses in ``rows``, the rows to create: their bad values (see
    :func:`_create_problems`), and columns neither the schema nor the server's sources know
    (``server``: the scope as read; a column's problem has no row label: it is every row's)."""
    problems = _create_problems(rows)
    if len(server.columns):
        problems += [
            Problem(None, c, None, "unknown column: not a field of the schema nor of the server's sources")
            for c in rows.columns
            if c not in BY_NAME and c != INDEX and c not in server.columns
        ]
    return problems


def _create_problems(rows: pd.DataFrame) -> list[Problem]:
    """Bad values in rows to create; an empty cell is left to the server's default."""
    problems = []
    for column in rows.columns:
        field = BY_NAME.get(column)
        if field is not None and field.writable and column != "name":
            cells = rows[column]
            if cells.dtype == object:  # a list cell is a value, not missing: asked cell by cell
                given = cells[[not is_missing(v) for v in cells.to_numpy()]]
            else:
                given = cells[cells.notna().to_numpy()]
            problems += column_problems(field, given)
    return problems


def _read_scope(
    sources: SourceCalls, q: str | None, spaces: list[int] | None
) -> tuple[dict[int, dict[str, Any]], tuple[int, int] | None]:
    """The sources in scope by id, read until a read sees no change (at most :data:`READS`),
    and how the listing went: ``(count, rows a page)``, when its first page said."""
    for _ in range(READS):
        first = sources.list(q, spaces, limit=sources.client.page_size)
        rows, changed = sources.records(q, spaces, progress=False, first=first)
        if not changed:
            break
    count, got = first.get("count"), len(first["results"])
    return {r["id"]: r for r in rows}, ((count, got) if isinstance(count, int) and got else None)


def _match(
    desired: pd.DataFrame, row_spaces: list[int | None], scope: dict[int, dict[str, Any]]
) -> tuple[dict[Any, int], list[Any], list[Problem]]:
    """Row label -> server id for the rows that match, the labels that match nothing, and
    the names that point at several sources. A row naming a space matches only there."""
    by_name: dict[Any, list[dict[str, Any]]] = {}
    for source in scope.values():
        by_name.setdefault(source.get("name"), []).append(source)
    rows = [
        (label, name, space)
        for label, name, space in zip(desired.index, desired["name"].to_numpy(dtype=object), row_spaces, strict=True)
        if not is_missing(name)
    ]
    matched: dict[Any, int] = {}
    claimed: set[int] = set()
    problems = []
    to_create = []
    for label, name, space in rows:
        if space is not None:
            same_space = [s for s in by_name.get(name, ()) if s.get("space_id") == space]
            if same_space:
                matched[label] = same_space[0]["id"]
                claimed.add(same_space[0]["id"])
    for label, name, space in rows:
        if label in matched:
            continue
        if space is not None:  # nothing of its name in its space; a namesake elsewhere is another source
            to_create.append(label)
            continue
        candidates = [s for s in by_name.get(name, ()) if s["id"] not in claimed]
        if not candidates:
            to_create.append(label)
        elif len(candidates) == 1:
            matched[label] = candidates[0]["id"]
            claimed.add(candidates[0]["id"])
        else:
            held = ", ".join(f"{s['id']} (space {s.get('space_id')})" for s in candidates)
            problems.append(
                Problem(
                    label,
                    "name",
                    name,
                    f"is held by {len(candidates)} sources in scope: {held}; "
                    "narrow the scope (q, spaces_ids) or give the row a space_id",
                )
            )
    return matched, to_create, problems


def _empty_cells(frame: pd.DataFrame, reference: pd.DataFrame, whole: list[bool]) -> pd.DataFrame:
    """The empty cells of rows matched by name, as the plan compares them (see the module doc).

    ``whole``: per row, whether it describes the whole source (it names its space). Its empty
    cell stays empty (the plan empties the server's value) unless the API takes no null for
    the field: such a cell, and every empty cell of another row, is filled from ``reference``
    ("as it is"); the values a whole row could not empty are named in a :class:`NotEmptiedWarning`.
    """
    if INDEX in reference.columns:
        reference = reference.set_index(INDEX)
    known = frame.index.isin(reference.index)
    exact = np.asarray(whole, dtype=bool) & known
    out = frame.copy()
    kept: list[tuple[Any, Any, str, Any]] = []
    for column in frame.columns:
        if column not in reference.columns:
            continue
        empty = _na_cells(frame[column]) & known
        fill = empty & ~exact if _can_empty(column) else empty
        if fill.any():
            server = reference.loc[frame.index[fill], column].astype(object).to_numpy()
            cells = out[column].astype(object)
            cells[fill] = server
            out[column] = cells
            kept += [
                (sid, frame.at[sid, "name"] if "name" in frame.columns else None, column, value)
                for sid, value, was_exact in zip(frame.index[fill], server, exact[fill], strict=True)
                if was_exact and not is_missing(value)
            ]
    if kept:
        _warn_not_emptied(kept)
    return out


def _na_cells(column: pd.Series) -> np.ndarray:
    """Missing cells (an empty list is a value)."""
    if column.dtype == object:
        return np.fromiter(
            (not isinstance(v, (list, tuple, set, frozenset, dict, np.ndarray)) and is_missing(v) for v in column),
            dtype=bool,
            count=len(column),
        )
    return np.asarray(column.isna(), dtype=bool)


def _can_empty(column: str) -> bool:
    """Whether the API takes null for a field: not for the name nor a setting with a default.
    A field the schema does not know is tried (the server's answer says, on its row)."""
    spec = BY_NAME.get(column)
    return spec is None or (not spec.required and spec.default is None)


def _warn_not_emptied(kept: list[tuple[Any, Any, str, Any]]) -> None:
    """One :class:`NotEmptiedWarning` naming each source, field and value a restore keeps."""
    shown = pd.get_option("display.max_rows") or len(kept)  # cut as pandas cuts rows
    listed = "; ".join(f"{sid} ({name!r}) keeps {column}={value!r}" for sid, name, column, value in kept[:shown])
    more = f"; and {number(len(kept) - shown)} more" if len(kept) > shown else ""
    fields = sorted({column for _, _, column, _ in kept})
    warnings.warn(
        f"{plural(len(kept), 'value')} empty in the frame cannot be emptied on the server: the API "
        f"takes no null for {', '.join(fields)} (a setting with a default), so the plan leaves "
        f"{'it' if len(kept) == 1 else 'them'} as {'it is' if len(kept) == 1 else 'they are'}: "
        f"{listed}{more}. Fill the cell with the value wanted to change it.",
        NotEmptiedWarning,
        stacklevel=6,  # the caller of client.sources.plan
    )


def _creates(rows: pd.DataFrame, server: pd.DataFrame) -> pd.DataFrame:
    """The rows to create, as the values to send: writable fields, and fields the schema
    does not know that the server sends (they are part of a backup)."""
    unknown_ok = set(server.columns)
    columns = [
        c
        for c in rows.columns
        if c not in READ_ONLY and c != INDEX and (c in BY_NAME or c in unknown_ok or not len(server.columns))
    ]
    out = {c: pd.Series([_sendable(c, v) for v in rows[c]], index=rows.index, dtype=object) for c in columns}
    frame: pd.DataFrame = pd.DataFrame(out, index=rows.index, columns=columns)
    frame.index.name = "row"
    return frame


def _sendable(column: str, value: Any) -> Any:
    """A cell as a create sends it: NA as None, whole floats of number fields as integers."""
    return sendable(column, value)


def _with_deletes(job: Job, ids: list[int], scope: dict[int, dict[str, Any]], base: pd.DataFrame | None) -> Job:
    """``job`` that also deletes ``ids``, each conflict-checked against the base (else the scope as read)."""
    if not ids:
        return job
    based = _base_records(base, ids)
    return replace(
        job,
        deleted={sid: settings_of(based.get(sid) or scope[sid]) for sid in ids},
        deletes=deletes_frame(
            ids, [scope[sid].get("space_id") for sid in ids], [scope[sid].get("name") for sid in ids]
        ),
    )


def _base_records(base: pd.DataFrame | None, ids: list[int]) -> dict[int, dict[str, Any]]:
    if base is None or not ids:
        return {}
    frame = base if base.index.name == INDEX else base.set_index(INDEX)
    rows = frame[frame.index.isin(ids)]
    return {
        int(sid): {str(c): to_python(v) for c, v in row.items()}
        for sid, row in zip(rows.index, rows.to_dict("records"), strict=True)
    }


def _check_report(report: object) -> None:
    if not isinstance(report, pd.DataFrame) or not {"status", "changes"} <= set(report.columns):
        raise ValidationError(
            [
                Problem(
                    None,
                    None,
                    type(report).__name__,
                    "undo needs the report that bulk_update or plan.apply returned (columns status and changes)",
                )
            ],
            what="report",
        )


def undo(
    sources: SourceCalls,
    report: pd.DataFrame,
    *,
    on_conflict: str = "skip",
    progress: bool | None = None,
    probes: Collection[int] = (),
) -> Report:
    """Reverse what a report's writes did, conflict-checked against what they wrote.

    ``updated``: puts back each value the write replaced. ``created``: deletes the source.
    ``deleted``: creates it again with the settings it had (the undo report's ``old_id``
    says which source each new id replaces). Rows where nothing was sent are left alone.
    ``probes``: the created ids that are probes a journaled run left (their deletes are
    journaled as a probe's, and no report shows them once done).
    """
    _check_report(report)
    replaced = report["replaced"] if "replaced" in report.columns else pd.Series(None, index=report.index)
    names = report["name"] if "name" in report.columns else pd.Series(None, index=report.index)
    records = []
    recreate: dict[int, dict[str, Any]] = {}
    spaces: dict[int, int] = {}
    remove: dict[int, dict[str, Any]] = {}
    remove_names: dict[int, Any] = {}
    for (sid, status, changes), before, name in zip(
        report[["status", "changes"]].itertuples(name=None), replaced, names, strict=True
    ):
        if status == "updated":
            for fname, (old, new) in (changes or {}).items():
                if isinstance(before, dict):
                    if fname in before:
                        records.append((sid, fname, new, before[fname]))
                else:  # a report written before the replaced values were recorded
                    records.append((sid, fname, new, old))
        elif status == "created" and not is_missing(sid):
            remove[int(sid)] = {f: new for f, (old, new) in (changes or {}).items()}
            remove_names[int(sid)] = name
        elif status == "deleted" and isinstance(before, dict) and before:
            recreate[int(sid)] = {f: v for f, v in before.items() if f != "space_id"}
            space = whole_number(before.get("space_id"))
            if space is not None:  # re-created there, or refused: never made in another space
                spaces[int(sid)] = space
    job = replace(
        update_job(records, dict(zip(report.index, names, strict=True))),
        deleted=remove,
        deletes=deletes_frame(list(remove), [None] * len(remove), list(remove_names.values())),
        creates=creates_frame(recreate),
        old_ids={sid: sid for sid in recreate},
        create_spaces=spaces,
        probes=frozenset(probes),
    )
    # Undo deletes only what the run created, in the space the token creates in: no refusal.
    return apply_job(sources, job, on_conflict=check_on_conflict(on_conflict), progress=progress, irreversible=True)


__all__ = ["CHANGE_COLUMNS", "UnmatchedRowsWarning", "make_sync_plan", "undo"]
