"""Checking an edited frame against the schema before anything is sent.

:func:`checked_cells` raises one :class:`ValidationError` for every problem
with the frame's shape (its index, its columns) and returns the problems of
its cells beside the frame, typed exactly like ``to_frame()`` where the cells
allow, so that the plan compares like with like and refuses only the bad cells
that change something: a value the server holds that the schema would refuse
(a newer list value, a threshold above our cap, a null name) is carried
through untouched. :func:`checked_frame` refuses every bad cell.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .._schema import BY_NAME, Field
from .._values import ID_RULE, check_value, id_index, id_problem, is_missing, whole_number
from ..errors import Problem, ValidationError
from .frames import INDEX, typed_column


def checked_frame(edited: Any, *, what: str = "edited frame") -> pd.DataFrame:
    """``edited`` checked and typed; raises ValidationError listing every problem."""
    frame, problems = checked_cells(edited, what=what)
    if problems:
        raise ValidationError(problems, what=what)
    return frame


def checked_cells(edited: Any, *, what: str = "edited frame") -> tuple[pd.DataFrame, list[Problem]]:
    """``edited`` typed, and the problems of its cells; raises ValidationError for problems of its shape.

    A column with a bad cell is left as it came (not typed).
    """
    if isinstance(edited, pd.Series):
        raise ValidationError.one(
            "got a Series (one row?); pass a DataFrame, e.g. frame.loc[[id]] rather than frame.loc[id]", what=what
        )
    if not isinstance(edited, pd.DataFrame):
        raise ValidationError.one("expected a pandas DataFrame", value=type(edited).__name__, what=what)
    if isinstance(edited.columns, pd.MultiIndex):
        raise ValidationError.one(
            "the columns have several levels (a MultiIndex); give one level of field names, "
            "e.g. frame.columns = frame.columns.get_level_values(-1)",
            value=list(edited.columns[:3]),
            what=what,
        )
    frame = _with_id_index(edited, what)
    problems = _index_problems(frame)
    if frame.empty:
        problems.append(Problem(None, None, None, "the frame has no rows: nothing to compare"))
    if INDEX in frame.columns:
        problems.append(Problem(None, INDEX, None, "'id' is both the index and a column; drop one of them"))
    if frame.columns.duplicated().any():
        dup = sorted(set(frame.columns[frame.columns.duplicated()]))
        problems.append(Problem(None, None, dup, "duplicated column names"))
    if INDEX in frame.columns or frame.columns.duplicated().any():
        raise ValidationError(problems, what=what)
    found = {name: column_problems(BY_NAME[name], frame[name]) for name in frame.columns if name in BY_NAME}
    cells = [p for column in found.values() for p in column]
    if problems:  # the shape is wrong: no plan, so every problem is reported at once
        raise ValidationError(problems + cells, what=what)
    typed = {
        name: frame[name]
        if found.get(name, True) or frame[name].dtype == BY_NAME[name].dtype
        else typed_column(BY_NAME[name], frame[name])
        for name in frame.columns
    }
    checked = pd.DataFrame(typed, index=frame.index, columns=list(frame.columns))
    checked.index = id_index(checked.index)
    return checked, cells


def _with_id_index(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if frame.index.name == INDEX:
        return frame
    if INDEX in frame.columns:
        return frame.set_index(INDEX)
    raise ValidationError.one(
        "the frame needs the source ids as its index named 'id' (as to_frame() gives) or as an 'id' column",
        field=INDEX,
        what=what,
    )


def _index_problems(frame: pd.DataFrame) -> list[Problem]:
    problems = []
    ids = frame.index
    if ids.dtype.kind not in "iu":
        for value in ids:
            if is_missing(value):
                problems.append(Problem(None, INDEX, None, "missing id"))
            elif isinstance(value, (float, np.floating)) and float(value).is_integer() and whole_number(value) is None:
                problems.append(
                    Problem(
                        _py(value),
                        INDEX,
                        _py(value),
                        "this id passed through a float column "
                        "(a blank id cell, an outer merge) and may have been rounded to a "
                        "neighbour's: keep ids whole numbers (read the CSV with neuroio_nb.read_csv)",
                    )
                )
            elif reason := id_problem(value):
                problems.append(Problem(_py(value), INDEX, _py(value), reason))
    else:
        problems += [Problem(_py(v), INDEX, _py(v), ID_RULE) for v in ids[ids < 1]]
    for value in ids[ids.duplicated()].dropna().unique():
        problems.append(Problem(value, INDEX, _py(value), f"id appears {int((ids == value).sum())} times"))
    return problems


def column_problems(field: Field, column: pd.Series) -> list[Problem]:
    """Every bad cell of one column, vectorised where the dtype allows."""
    return _required(field, column) + _present_problems(field, column)


def _present_problems(field: Field, column: pd.Series) -> list[Problem]:
    """The bad cells that are not missing."""
    if field.dtype == "boolean" and column.dtype in ("boolean", bool):
        return []
    if field.dtype == "Int64" and (column.dtype.kind in "iu" or str(column.dtype) in ("Int64", "Int32")):
        return _out_of_bounds(field, column)
    if field.kind == "object":
        return []
    if field.dtype == "string" and isinstance(column.dtype, pd.StringDtype):
        return _blank_required_texts(field, column)
    if field.kind == "list":
        return _list_problems(field, column)
    return [
        Problem(i, field.name, _py(v), reason)
        for i, v in column.items()
        if not _is_na(v) and (reason := check_value(field, _cell(v)))
    ]


def _out_of_bounds(field: Field, column: pd.Series) -> list[Problem]:
    """The cells of a typed number column outside the field's bounds."""
    # As floats (a missing cell NaN, which is never out of range): the bounds are small
    # whole numbers, so a comparison with one is exact for every value that is near it.
    values = column.to_numpy(dtype="float64", na_value=np.nan)
    bad = np.zeros(len(values), dtype=bool)
    if field.minimum is not None:
        bad |= values < field.minimum
    if field.maximum is not None:
        bad |= values > field.maximum
    return [
        Problem(i, field.name, _py(v), check_value(field, int(v)) or "out of range") for i, v in column[bad].items()
    ]


def _blank_required_texts(field: Field, column: pd.Series) -> list[Problem]:
    """The blank cells of a typed text column whose field must not be empty."""
    if not field.required:
        return []
    blank = column.str.strip().eq("").fillna(False).astype(bool)
    return [Problem(i, field.name, v, "must not be empty") for i, v in column[blank].items()]


def _list_problems(field: Field, column: pd.Series) -> list[Problem]:
    """Like the generic check, but each distinct list is checked once (frames repeat a few)."""
    seen: dict[tuple[Any, ...], str | None] = {}
    problems = []
    for i, v in zip(column.index, column.to_numpy(dtype=object), strict=True):
        if type(v) is list:
            try:
                key = tuple(v)
                reason = seen[key] if key in seen else seen.setdefault(key, check_value(field, v))
            except TypeError:
                reason = check_value(field, v)
        elif _is_na(v):
            continue
        else:
            reason = check_value(field, _cell(v))
        if reason:
            problems.append(Problem(i, field.name, _py(v), reason))
    return problems


def _required(field: Field, column: pd.Series) -> list[Problem]:
    """Missing cells where a value must be: a required field, or a setting that has a default.

    The server keeps a value for every setting with a default and takes no null
    for it (a slip such as ``frame["x"] = frame["space_id"].map({2: True})``).
    """
    if field.required:
        reason = "is required"
    elif field.default is not None and field.writable:
        reason = f"may not be missing: the server takes no null for this setting (its default is {field.default!r})"
    else:
        return []
    missing = _na_mask(column)
    return [Problem(i, field.name, None, reason) for i in column.index[missing]] if missing.any() else []


def _na_mask(column: pd.Series) -> np.ndarray:
    if column.dtype == object:
        return np.fromiter((_is_na(v) for v in column.to_numpy()), dtype=bool, count=len(column))
    return np.asarray(column.isna(), dtype=bool)


def _is_na(value: Any) -> bool:
    """A missing cell (an empty list is a value)."""
    return not isinstance(value, (list, tuple, set, frozenset, np.ndarray, dict)) and is_missing(value)


def _cell(value: Any) -> Any:
    """A cell as check_value expects it: missing -> None."""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, dict)):
        return list(value) if not isinstance(value, dict) else value
    return None if is_missing(value) else _py(value)


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
