"""Sources as typed pandas frames, and back to plain JSON values.

A frame has the index ``id``, the schema's fields in schema order (typed by
:attr:`Field.dtype`), then any field the schema does not know, as it came.
"""
from __future__ import annotations

import math
import warnings
from typing import Any, Iterable, Mapping

import numpy as np
import pandas as pd

from .schema import BY_NAME, COLUMNS, Field

INDEX = "id"


def frame_from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One typed frame from source dicts as the API sends them."""
    records = list(records)
    if not records:
        return empty_frame()
    raw = pd.DataFrame.from_records(records)
    ids = raw.pop(INDEX) if INDEX in raw.columns else pd.Series([None] * len(raw))
    known = [c for c in COLUMNS if c in raw.columns]
    unknown = [c for c in raw.columns if c not in BY_NAME]
    out = {c: typed_column(BY_NAME[c], raw[c]) for c in known}
    out.update({c: raw[c] for c in unknown})
    frame = pd.DataFrame(out, columns=known + unknown)
    frame.index = pd.Index(ids.to_numpy(dtype="int64"), name=INDEX)
    return frame


def empty_frame() -> pd.DataFrame:
    """A frame with no sources and every schema column, typed."""
    cols = {c: pd.Series([], dtype=BY_NAME[c].dtype) for c in COLUMNS}
    return pd.DataFrame(cols, index=pd.Index([], dtype="int64", name=INDEX))


def typed_column(field: Field, column: pd.Series) -> pd.Series:
    """``column`` in the field's dtype; kept as it came (with a warning) if it can't be."""
    dtype = field.dtype
    if dtype is object:
        values = column.to_numpy(dtype=object, copy=True)
        values[pd.isna(values) if field.kind != "list" else _missing_mask(values)] = None
        return pd.Series(values, index=column.index, dtype=object, name=column.name)
    try:
        if dtype == "boolean":
            return _boolean(column)
        if dtype == "Int64":
            return _int64(column)
        return column.astype("string")
    except (TypeError, ValueError):
        warnings.warn(f"column {field.name!r}: values the schema does not expect; kept as they came",
                      stacklevel=3)
        return column


def _missing_mask(values: np.ndarray) -> np.ndarray:
    return np.fromiter((v is None or (isinstance(v, float) and math.isnan(v)) for v in values),
                       dtype=bool, count=len(values))


def _boolean(column: pd.Series) -> pd.Series:
    if column.dtype == bool:
        return column.astype("boolean")
    values = column.to_numpy(dtype=object)
    mask = pd.isna(values)
    present = values[~mask]
    if not all(isinstance(v, (bool, np.bool_)) for v in set(present.tolist())):
        raise TypeError("not booleans")
    data = np.zeros(len(values), dtype=bool)
    data[~mask] = present.astype(bool)
    return pd.Series(pd.arrays.BooleanArray(data, mask), index=column.index, name=column.name)


def _int64(column: pd.Series) -> pd.Series:
    if column.dtype.kind in "iu":
        return column.astype("Int64")
    values = column.to_numpy(dtype=object)
    mask = pd.isna(values)
    present = values[~mask]
    if any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer, float, np.floating))
           for v in set(present.tolist())):
        raise TypeError("not whole numbers")
    as_float = present.astype(float)
    if not np.all(np.mod(as_float, 1) == 0):
        raise TypeError("not whole numbers")
    data = np.zeros(len(values), dtype="int64")
    data[~mask] = present.astype("int64")
    return pd.Series(pd.arrays.IntegerArray(data, mask), index=column.index, name=column.name)


def to_python(value: Any) -> Any:
    """A frame cell as a plain JSON value (NA -> None, numpy scalars -> Python)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray)):
        return [to_python(v) for v in value]
    if isinstance(value, dict):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        item = value.item()
        return None if isinstance(item, float) and math.isnan(item) else item
    return value


def row_dict(frame: pd.DataFrame, source_id: Any, columns: Iterable[str]) -> dict[str, Any]:
    """Chosen cells of one row as plain JSON values."""
    return {c: to_python(frame.at[source_id, c]) for c in columns}
