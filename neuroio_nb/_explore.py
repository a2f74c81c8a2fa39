"""Small views a user wants first when exploring sources."""

from __future__ import annotations

import pandas as pd

from ._schema import FIELDS
from ._values import to_python


def non_defaults(frame: pd.DataFrame) -> pd.DataFrame:
    """Every setting that differs from the create default: one row per (source, field).

    Columns: ``name``, ``field``, ``value``, ``default``; index ``id``. ``value`` and ``default``
    hold each field's own kind of value (a switch True or False, a threshold a number).

    Example::

        non_defaults(client.sources.to_frame())   # name, field, value, default per (source, field)
    """
    parts = []
    for field in FIELDS:
        if field.default is None or field.name not in frame.columns:
            continue
        column = frame[field.name]
        differs = column.ne(field.default).fillna(True).to_numpy(dtype=bool)
        if differs.any():
            index = frame.index[differs]
            parts.append(
                pd.DataFrame(
                    {
                        "name": frame["name"].to_numpy()[differs] if "name" in frame.columns else None,
                        "field": field.name,
                        # object columns: a switch stays True/False beside numbers (pandas would make it 1/0)
                        "value": pd.Series([to_python(v) for v in column.to_numpy()[differs]], index, object),
                        "default": pd.Series([field.default] * len(index), index, object),
                    },
                    index=index,
                )
            )
    if not parts:
        return pd.DataFrame(columns=["name", "field", "value", "default"], index=pd.Index([], name="id"))
    return pd.concat(parts).sort_index(kind="stable")


__all__ = ["non_defaults"]
