"""Checking an edited frame against the schema before anything is sent.

:func:`checked_frame` finds every problem at once and raises one
:class:`ValidationError`; what passes comes back typed exactly like
``to_frame()`` so the plan compares like with like.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .errors import Problem, ValidationError
from .frames import INDEX, typed_column
from .schema import BY_NAME, Field
from .values import check_value


def checked_frame(edited: Any, *, what: str = "edited frame") -> pd.DataFrame:
    """``edited`` checked and typed; raises ValidationError listing every problem."""
    if isinstance(edited, pd.Series):
        raise ValidationError([Problem(None, None, None, "got a Series (one row?); pass a DataFrame, "
                                       "e.g. frame.loc[[id]] rather than frame.loc[id]")], what=what)
    if not isinstance(edited, pd.DataFrame):
        raise ValidationError([Problem(None, None, type(edited).__name__, "expected a pandas DataFrame")],
                              what=what)
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
    typed = {}
    for name in frame.columns:
        field = BY_NAME.get(name)
        column = frame[name]
        if field is None:
            typed[name] = column
            continue
        found = column_problems(field, column)
        problems += found
        if not found:
            typed[name] = typed_column(field, column) if column.dtype != field.dtype else column
    if problems:
        raise ValidationError(problems, what=what)
    return pd.DataFrame(typed, index=frame.index, columns=list(frame.columns))


def _with_id_index(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    if frame.index.name == INDEX:
        return frame
    if INDEX in frame.columns:
        return frame.set_index(INDEX)
    raise ValidationError([Problem(None, INDEX, None,
                                   "the frame needs the source ids as its index named 'id' "
                                   "(as to_frame() gives) or as an 'id' column")], what=what)


def _index_problems(frame: pd.DataFrame) -> list[Problem]:
    problems = []
    ids = frame.index
    if ids.dtype.kind not in "iu":
        for value in ids:
            if _cell(value) is None:
                problems.append(Problem(None, INDEX, None, "missing id"))
            elif check_value(BY_NAME[INDEX], _py(value)) or _py(value) < 0:
                problems.append(Problem(value, INDEX, _py(value), "a source id is a whole number >= 0"))
    else:
        problems += [Problem(_py(v), INDEX, _py(v), "a source id is a whole number >= 0") for v in ids[ids < 0]]
    for value in ids[ids.duplicated()].dropna().unique():
        problems.append(Problem(value, INDEX, _py(value), f"id appears {int((ids == value).sum())} times"))
    return problems


def column_problems(field: Field, column: pd.Series) -> list[Problem]:
    """Every bad cell of one column, vectorised where the dtype allows."""
    if field.dtype == "boolean" and column.dtype in ("boolean", bool):
        return _required(field, column)
    if field.dtype == "Int64" and (column.dtype.kind in "iu" or str(column.dtype) in ("Int64", "Int32")):
        bad = pd.Series(False, index=column.index)
        if field.minimum is not None:
            bad |= (column < field.minimum).fillna(False).astype(bool)
        if field.maximum is not None:
            bad |= (column > field.maximum).fillna(False).astype(bool)
        return _required(field, column) + [
            Problem(i, field.name, _py(v), check_value(field, int(v)) or "out of range")
            for i, v in column[bad].items()]
    if field.kind == "object":
        return _required(field, column)
    if field.dtype == "string" and isinstance(column.dtype, pd.StringDtype):
        if not field.required:
            return []
        blank = column.str.strip().eq("").fillna(False).astype(bool)
        return _required(field, column) + [Problem(i, field.name, v, "must not be empty")
                                           for i, v in column[blank].items()]
    if field.kind == "list":
        return _list_problems(field, column)
    return [Problem(i, field.name, _py(v), reason) for i, v in column.items()
            if (reason := check_value(field, _cell(v)))]


def _list_problems(field: Field, column: pd.Series) -> list[Problem]:
    """Like the generic check, but each distinct list is checked once (frames repeat a few)."""
    seen: dict[tuple, str | None] = {}
    problems = []
    for i, v in zip(column.index, column.to_numpy(dtype=object)):
        if type(v) is list:
            try:
                key = tuple(v)
                reason = seen[key] if key in seen else seen.setdefault(key, check_value(field, v))
            except TypeError:
                reason = check_value(field, v)
        else:
            reason = check_value(field, _cell(v))
        if reason:
            problems.append(Problem(i, field.name, _py(v), reason))
    return problems


def _required(field: Field, column: pd.Series) -> list[Problem]:
    if not field.required:
        return []
    return [Problem(i, field.name, None, "is required") for i in column.index[column.isna()]]


def _cell(value: Any) -> Any:
    """A cell as check_value expects it: missing -> None."""
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, dict)):
        return list(value) if not isinstance(value, dict) else value
    return None if pd.isna(value) else _py(value)


def _py(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
