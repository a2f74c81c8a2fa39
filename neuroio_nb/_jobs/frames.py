"""Sources as typed pandas frames, and back to plain JSON values.

A frame has the index ``id``, the schema's fields in schema order (typed by
:attr:`Field.dtype`), then any field the schema does not know, as it came.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from .._schema import BY_NAME, COLUMNS, Field
from .._values import is_missing, whole_number

INDEX = "id"


def frame_from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One typed frame from source dicts as the API sends them.

    The dicts become one object array per column, as ``DataFrame.from_records``
    makes them but without its inference, and each known column is typed
    straight from that array (no per-cell Python). A column with values the fast
    path does not expect is first inferred as ``from_records`` would infer it,
    then typed by :func:`typed_column`; unknown columns are only inferred.
    """
    records = list(records)
    if not records:
        return empty_frame()
    raw = pd.DataFrame(records, dtype=object)
    values = {c: raw[c].to_numpy() for c in raw.columns}
    ids = values.pop(INDEX, None)
    known = [c for c in COLUMNS if c in values]
    unknown = [c for c in values if c not in BY_NAME]
    out = {c: _typed_values(BY_NAME[c], values[c]) for c in known}
    out.update({c: _as_came(values[c]) for c in unknown})
    # The columns' arrays as they are: each is new, so there is nothing to copy or align.
    frame = pd.DataFrame({c: column.array for c, column in out.items()}, columns=known + unknown, copy=False)
    frame.index = pd.Index(_id_values(ids, len(records)), name=INDEX)
    return frame


def _as_came(values: np.ndarray) -> pd.Series:
    """An object array inferred as ``DataFrame.from_records`` infers a column.

    One difference: in a column left as objects, every missing cell is None
    (a source that lacks the field and one that sent null read alike, as a CSV
    reads them back).
    """
    kind = pd.api.types.infer_dtype(values, skipna=False)
    if kind == "boolean":
        return pd.Series(values.astype(bool))
    missing = np.asarray(pd.isna(values), dtype=bool)
    if missing.all():  # null or absent alike: no values to infer a type from
        return pd.Series([None] * len(values), dtype=object)
    if kind == "integer":
        try:
            return pd.Series(values.astype(np.int64))
        except OverflowError:  # from_records makes these uint64 or leaves them as objects
            pass
    column = pd.Series(values).infer_objects()
    if column.dtype == object:
        cells = column.to_numpy(dtype=object, copy=True)
        cells[missing] = None
        column = pd.Series(cells, dtype=object)
    return column


def _id_values(values: np.ndarray | None, n: int) -> np.ndarray:
    """The ids as int64, or as uint64 when one is 2**63 or more (never wrapped to a negative)."""
    if values is not None and pd.api.types.infer_dtype(values, skipna=False) == "integer":
        try:
            return values.astype("int64")
        except OverflowError:
            try:
                return values.astype("uint64")
            except OverflowError:
                pass
    ids = _as_came(values) if values is not None else pd.Series([None] * n)
    return ids.to_numpy(dtype="uint64" if ids.dtype == "uint64" else "int64")


#: Per dtype, what ``pandas.api.types.infer_dtype`` says of a column the fast path can type.
_FAST_KINDS: dict[Any, tuple[str, ...]] = {
    "boolean": ("boolean", "empty"),
    "Int64": ("integer", "empty"),
    "string": ("string", "integer", "mixed-integer", "empty"),
    object: ("mixed", "empty"),  # objects from_records would keep as they are
}


def _typed_values(field: Field, values: np.ndarray) -> pd.Series:
    """An object array of raw values in the field's dtype, exactly as :func:`typed_column` types them."""
    dtype = field.dtype
    if dtype in ("boolean", "Int64"):
        if pd.api.types.infer_dtype(values, skipna=False) == _FAST_KINDS[dtype][0]:
            typed = _masked(dtype, values, None)  # nothing missing: no mask to look for
        elif pd.api.types.infer_dtype(values, skipna=True) in _FAST_KINDS[dtype]:
            typed = _masked(dtype, values, pd.isna(values))
        else:
            typed = None
        return typed if typed is not None else typed_column(field, _as_came(values))
    if pd.api.types.infer_dtype(values, skipna=True) not in _FAST_KINDS[dtype]:
        return typed_column(field, _as_came(values))
    if dtype == "string":
        return pd.Series(pd.array(values, dtype="string"))
    values = values.copy()
    values[_missing(field, values)] = None
    return pd.Series(values, dtype=object)


def _masked(dtype: str, values: np.ndarray, mask: np.ndarray | None) -> pd.Series | None:
    """Booleans or whole numbers (and missing cells, where ``mask``) as a nullable column."""
    try:
        if mask is None:
            data, mask = values.astype(bool if dtype == "boolean" else np.int64), np.zeros(len(values), bool)
        else:
            data = np.zeros(len(values), dtype=bool if dtype == "boolean" else np.int64)
            data[~mask] = values[~mask]
    except OverflowError:  # a whole number beyond int64
        return None
    return pd.Series(pd.arrays.BooleanArray(data, mask) if dtype == "boolean" else pd.arrays.IntegerArray(data, mask))


def _missing(field: Field, values: np.ndarray) -> np.ndarray:
    """The missing cells of an object column; in a list column only None and NaN."""
    mask = pd.isna(values)
    if field.kind == "list" and mask.any():
        where = np.flatnonzero(mask)
        mask[where] = _missing_mask(values[where])
    return mask


def empty_frame() -> pd.DataFrame:
    """A frame with no sources and every schema column, typed."""
    cols = {c: pd.Series([], dtype=BY_NAME[c].dtype) for c in COLUMNS}
    return pd.DataFrame(cols, index=pd.Index([], dtype="int64", name=INDEX))


def typed_column(field: Field, column: pd.Series) -> pd.Series:
    """``column`` in the field's dtype; kept as it came (with a warning) if it can't be."""
    dtype = field.dtype
    if dtype is not object and column.dtype == pd.api.types.pandas_dtype(dtype):
        return column.copy(deep=False)  # typed already (a base frame from to_frame, say)
    if dtype is object:
        values = column.to_numpy(dtype=object, copy=True)
        values[_missing(field, values)] = None
        return pd.Series(values, index=column.index, dtype=object, name=column.name)
    try:
        return _converted(field, column)
    except (TypeError, ValueError, OverflowError):
        warnings.warn(f"column {field.name!r}: values the schema does not expect; kept as they came", stacklevel=3)
        return column


def _converted(field: Field, column: pd.Series) -> pd.Series:
    """``column`` in the dtype of a boolean, number or text field (raises if it cannot be)."""
    if field.dtype == "boolean":
        return _boolean(column)
    if field.dtype == "Int64":
        return _int64(column)
    if field.kind == "license":
        return _license_text(column)
    return column.astype("string")


def _license_text(column: pd.Series) -> pd.Series:
    """License ids as text: a whole number (also a whole float, as plain ``pd.read_csv`` makes them
    when one is missing) as its digits, ``204.0`` as ``"204"``; never a new text such as ``"204.0"``."""
    if column.dtype.kind in "iu" or isinstance(column.dtype, pd.StringDtype):
        return column.astype("string")
    values = column.to_numpy(dtype=object)
    out = np.empty(len(values), dtype=object)
    for n, value in enumerate(values):
        if is_missing(value):
            out[n] = None
        elif isinstance(value, str):
            out[n] = value
        elif (number := whole_number(value)) is not None:
            out[n] = str(number)
        else:
            raise TypeError("not a license id")
    return pd.Series(pd.array(out, dtype="string"), index=column.index, name=column.name)


def _missing_mask(values: np.ndarray) -> np.ndarray:
    return np.fromiter((is_missing(v) for v in values), dtype=bool, count=len(values))


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
    if not all(whole_number(v) is not None for v in set(present.tolist())):
        raise TypeError("not whole numbers")
    data = np.zeros(len(values), dtype="int64")
    data[~mask] = present.astype("int64")
    return pd.Series(pd.arrays.IntegerArray(data, mask), index=column.index, name=column.name)
