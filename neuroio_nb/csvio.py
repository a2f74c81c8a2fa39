"""CSV export and import, lossless for every frame ``to_frame()`` makes.

The encoding, cell by cell:

- the first column is ``id``; then the frame's columns in order;
- booleans are ``true`` / ``false`` (``TRUE``, ``False``, ``1``, ``0`` are read too);
- a missing value is an empty cell;
- lists and nested objects are JSON (``["new", "exact"]``, ``{"id": 3}``);
  ``store_images_for_results`` also reads ``new, exact`` or ``new;exact``;
- fields the schema does not know are written as they are and read back by
  inference per column (whole numbers, numbers, booleans, JSON, else text).

Reading checks every cell and raises one :class:`ValidationError` naming the
line and column of each cell it cannot read.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import Any, Callable

import pandas as pd

from .errors import Problem, ValidationError
from .frames import INDEX, frame_from_records
from .schema import BY_NAME
from .values import to_python

TRUE = frozenset({"true", "1"})
FALSE = frozenset({"false", "0"})
_INT = re.compile(r"^[+-]?\d+$")
_INT64 = 2**63


def write_csv(frame: pd.DataFrame, path: Any) -> None:
    """Write ``frame`` (index ``id``) in the encoding above."""
    encoded = {c: _encode_column(frame[c]) for c in frame.columns}
    out = pd.DataFrame(encoded, index=frame.index, columns=list(frame.columns))
    out.to_csv(path, index=True, index_label=INDEX, lineterminator="\n", encoding="utf-8")


def _encode_column(column: pd.Series) -> pd.Series:
    if column.dtype == object or column.dtype in ("boolean", bool):
        return pd.Series([_encode_cell(v) for v in column.to_numpy(dtype=object)],
                         index=column.index, dtype=object)
    return column


def _encode_cell(value: Any) -> str:
    value = to_python(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def read_csv(path: Any) -> pd.DataFrame:
    """A CSV written by :func:`export_csv` (or edited by hand) as a frame typed like ``to_frame()``."""
    if not isinstance(path, (str, os.PathLike)) and not hasattr(path, "read"):
        raise ValidationError([Problem(None, None, type(path).__name__, "read_csv needs a file path or an open file")],
                              what="CSV")
    what = f"CSV {os.fspath(path)!r}" if isinstance(path, (str, os.PathLike)) else "CSV"
    text = _read_text(path, what)
    # strict: a stray or unclosed quote is an error, not cells silently merged across lines
    reader = csv.reader(io.StringIO(text), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    problems: list[Problem] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [cell.strip() for cell in row]
                continue
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise ValidationError([Problem(None, None, None, f"line {reader.line_num}: not valid CSV ({exc}); "
                                       "check the quotes on this line and the ones before it")], what=what) from None
    if header is None:
        raise ValidationError([Problem(None, None, None, "the file is empty: no header and no rows")], what=what)
    if INDEX not in header:
        raise ValidationError([Problem(None, None, header[:5], "no header row with an 'id' column "
                                       "(the first line must name the columns, as export_csv writes it)")],
                              what=what)
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups or "" in header:
        raise ValidationError([Problem(None, None, dups or header, "column names must be unique and not empty")],
                              what=what)
    parsers = {name: _parser_for(name, [r[header.index(name)] for _, r in rows if len(r) == len(header)])
               for name in header}
    records = []
    for line, row in rows:
        if len(row) != len(header):
            cells = dict(zip(header, row))
            sid = (cells.get(INDEX) or "").strip() or None
            problems.append(Problem(sid, None, None, f"line {line} has {len(row)} cells, the header has {len(header)}"))
            continue
        record: dict[str, Any] = {}
        for col, (name, cell) in enumerate(zip(header, row), start=1):
            try:
                record[name] = parsers[name](cell)
            except ValueError as exc:
                problems.append(Problem(row[header.index(INDEX)].strip() or None, name, cell,
                                        f"line {line}, column {col}: {exc}"))
        sid = record.get(INDEX, 0)  # absent: the id cell was unreadable, already reported
        if sid is None or sid < 0:
            problems.append(Problem(None, INDEX, row[header.index(INDEX)] or None,
                                    f"line {line}: every row needs its source id, a whole number >= 0"))
        records.append(record)
    if problems:
        raise ValidationError(problems, what=what)
    if not records:
        from .frames import empty_frame

        return empty_frame()[[c for c in header if c != INDEX and c in BY_NAME]]
    return frame_from_records(records)


def _read_text(path: Any, what: str) -> str:
    if hasattr(path, "read"):
        data = path.read()
    else:
        with open(path, "rb") as fh:
            data = fh.read()
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValidationError([Problem(None, None, None, f"line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x} "
                                       f"at offset {exc.start}); save the file as CSV UTF-8")], what=what) from None


def _parser_for(name: str, cells: list[str]) -> Callable[[str], Any]:
    field = BY_NAME.get(name)
    if field is None:
        return _infer(cells)
    return {"id": _parse_int, "int": _parse_int, "bool": _parse_bool, "str": _parse_text,
            "license": _parse_text, "list": _parse_list, "object": _parse_json}[field.kind]


def _parse_bool(cell: str) -> bool | None:
    text = cell.strip().lower()
    if not text:
        return None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise ValueError("not a boolean (write true or false)")


def _parse_int(cell: str) -> int | None:
    text = cell.strip()
    if not text:
        return None
    if _INT.match(text):
        if not -_INT64 <= int(text) < _INT64:
            raise ValueError("too large a number")
        return int(text)
    try:
        number = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    if not number.is_integer():
        raise ValueError("not a whole number")
    if not -_INT64 <= number < _INT64:
        raise ValueError("too large a number")
    return int(number)


def _parse_float(cell: str) -> float | None:
    text = cell.strip()
    return float(text) if text else None


def _parse_text(cell: str) -> str | None:
    return cell if cell.strip() else None


def _parse_json(cell: str) -> Any:
    if not cell.strip():
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None


def _parse_list(cell: str) -> list | None:
    text = cell.strip()
    if not text:
        return None
    if text.startswith("["):
        value = _parse_json(text)
        if not isinstance(value, list):
            raise ValueError("not a JSON list")
        return value
    return [part.strip() for part in re.split(r"[,;]", text) if part.strip()]


def _infer(cells: list[str]) -> Callable[[str], Any]:
    """The parser that reads every non-empty cell of an unknown column."""
    present = [c.strip() for c in cells if c.strip()]
    if not present:
        return _parse_text
    for parser in (_parse_int, _parse_float, _parse_bool):
        try:
            for cell in present:
                parser(cell)
        except ValueError:
            continue
        if parser is _parse_bool and not all(c.lower() in ("true", "false") for c in present):
            continue
        return parser
    if all(c[0] in "[{" for c in present):
        try:
            for cell in present:
                json.loads(cell)
            return _parse_json
        except json.JSONDecodeError:
            pass
    return _parse_text
