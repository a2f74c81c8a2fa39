"""CSV export and import, lossless for every frame ``to_frame()`` makes.

The encoding, cell by cell:

- the first column is ``id``; then the frame's columns in order;
- booleans are ``true`` / ``false`` (``TRUE``, ``False``, ``1``, ``0`` are read too);
- a missing value is an empty cell;
- lists and nested objects are JSON (``["new", "exact"]``, ``{"id": 3}``);
  ``store_images_for_results`` also reads ``new, exact`` or ``new;exact``;
- fields the schema does not know are read back cell by cell, exactly as the
  server sent them: a cell that is valid JSON is that JSON value (``45`` a
  number, ``true`` a boolean, ``"007"`` the text 007), any other cell is text
  as written (``007``, ``Gate 3``). So text is written bare unless it would
  read back as something else: ``007`` stays bare, the texts ``true``,
  ``1.50``, ``45`` and the empty text are written as JSON strings
  (``"true"``, ``"1.50"``, ``"45"``, ``""``);
- text that a spreadsheet would run as a formula (starting with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return) is written with a leading ``'``
  (OWASP's advice), and so is text that already starts with ``'`` before such
  a character; reading takes exactly one ``'`` off again;
- the separator is ``,``; a file whose header is separated by ``;`` or tabs
  (Excel in many locales) is read with that separator.

Reading checks every cell and raises one :class:`ValidationError` naming the
line and column of each cell it cannot read.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Callable
from typing import Any

import pandas as pd

from .._schema import BY_NAME
from .._values import ID_RULE, id_problem, license_number, to_python, whole_number
from .._views import plural
from ..errors import Problem, ValidationError
from .frames import INDEX, frame_from_records

TRUE = frozenset({"true", "1"})
FALSE = frozenset({"false", "0"})
_INT = re.compile(r"^[+-]?\d+$")
_INT64 = 2**63
_UINT64 = 2**64  # ids go up to 2**64 - 1
#: Text a spreadsheet runs as a formula (after any quotes a previous neutralising added).
_FORMULA = re.compile(r"^'*[=+\-@\t\r]")


def write_csv(frame: pd.DataFrame, path: Any) -> None:
    """Write ``frame`` (index ``id``) in the encoding above."""
    encoded = {c: _encode_column(frame[c]) if c in BY_NAME else _encode_unknown(frame[c]) for c in frame.columns}
    out = pd.DataFrame(encoded, index=frame.index, columns=list(frame.columns))
    out.columns = [neutralised(str(c)) for c in out.columns]  # a header cell is a cell too
    # A carriage return inside a cell is only safe quoted, and pandas quotes it only if every cell is.
    carriage = any(out[c].dtype == object and out[c].str.contains("\r", regex=False).any() for c in out.columns)
    out.to_csv(
        path,
        index=True,
        index_label=INDEX,
        lineterminator="\n",
        encoding="utf-8",
        quoting=csv.QUOTE_ALL if carriage else csv.QUOTE_MINIMAL,
    )


def _encode_column(column: pd.Series) -> pd.Series:
    if column.dtype == object or column.dtype in ("boolean", bool) or isinstance(column.dtype, pd.StringDtype):
        return pd.Series([_encode_cell(v) for v in column.to_numpy(dtype=object)], index=column.index, dtype=object)
    return column


def _encode_unknown(column: pd.Series) -> pd.Series:
    """A column the schema does not know: numbers as they are, every other cell as it reads back."""
    if column.dtype.kind in "iuf":
        return column
    return pd.Series([_encode_unknown_cell(v) for v in column.to_numpy(dtype=object)], index=column.index, dtype=object)


def _encode_unknown_cell(value: Any) -> str:
    value = to_python(value)
    if value is None:
        return ""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if _reads_as_json(value) else neutralised(value)
    return json.dumps(value, ensure_ascii=False, default=str)


def _reads_as_json(text: str) -> bool:
    if not text:
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def neutralised(text: str) -> str:
    """``text`` as a spreadsheet shows it without running it: a ``'`` before a would-be formula."""
    return "'" + text if _FORMULA.match(text) else text


def restored(text: str) -> str:
    """The inverse of :func:`neutralised`."""
    return text[1:] if text.startswith("'") and _FORMULA.match(text[1:]) else text


def _encode_cell(value: Any) -> str:
    value = to_python(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, str):
        return neutralised(value)
    return str(value)


def read_csv(path: Any) -> pd.DataFrame:
    """A CSV written by :func:`export_csv` (or edited by hand) as a frame typed like ``to_frame()``.

    Example::

        frame = read_csv("sources.csv")   # typed exactly like to_frame()
        plan = client.sources.plan(frame)
    """
    return _read(path, ids_needed=True)


def read_named_csv(path: Any) -> pd.DataFrame:
    """A CSV of sources to match by name (``--key name``): :func:`read_csv`'s frame when the file
    has an ``id`` column; without one (a new site's names and settings), its rows are labelled
    by the line of the file each ends on, and the frame says so (``attrs["labels"] == "line"``),
    so that a message about a row names the line to look at."""
    return _read(path, ids_needed=False)


def _read(path: Any, *, ids_needed: bool) -> pd.DataFrame:
    """Read a CSV; its errors do not say "nothing was sent" (reading a file sends nothing)."""
    try:
        return _read_checked(path, ids_needed=ids_needed)
    except ValidationError as exc:
        raise ValidationError(exc.problems, what=exc.what, nothing_sent=False) from None


def _read_checked(path: Any, *, ids_needed: bool) -> pd.DataFrame:
    if not isinstance(path, (str, os.PathLike)) and not hasattr(path, "read"):
        raise ValidationError.one("read_csv needs a file path or an open file", value=type(path).__name__, what="CSV")
    what = f"CSV {os.fspath(path)!r}" if isinstance(path, (str, os.PathLike)) else "CSV"
    text = _read_text(path, what)
    separator = _separator(text)
    header, rows = _rows(text, separator, what)
    if INDEX not in header and (ids_needed or "name" not in header):
        needed = "an 'id'" if ids_needed else "an 'id' or a 'name'"
        raise ValidationError.one(
            f"no header row with {needed} column "
            f"(the first line must name the columns, as export_csv writes it); {_split_as(separator, header, text)}",
            value=header[:5],
            what=what,
        )
    dups = sorted({h for h in header if header.count(h) > 1})
    if dups or "" in header:
        raise ValidationError.one("column names must be unique and not empty", value=dups or header, what=what)
    records, problems = _records(header, rows, separator)
    if problems:
        raise ValidationError(problems, what=what)
    if INDEX not in header:
        frame = frame_from_records(records)
        frame.index = pd.Index([line for line, _ in rows], name=None)
        frame.attrs["labels"] = "line"
        return frame
    if not records:
        from .frames import empty_frame

        return empty_frame()[[c for c in header if c != INDEX and c in BY_NAME]]
    return frame_from_records(records)


def _rows(text: str, separator: str, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header's cells and each non-blank row with the line it ends on."""
    # newline="": a line may end with \n, \r\n or a lone \r (Excel for Mac's "CSV (Macintosh)");
    # strict: a stray or unclosed quote is an error, not cells silently merged across lines
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=separator, strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if header is None:
                header = [restored(cell.strip()) for cell in row]
                continue
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise ValidationError.one(
            f"line {reader.line_num}: not valid CSV ({exc}); check the quotes on this line and the ones before it",
            what=what,
        ) from None
    if header is None:
        raise ValidationError.one("the file is empty: no header and no rows", what=what)
    return header, rows


def _records(
    header: list[str], rows: list[tuple[int, list[str]]], separator: str
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Each row as a record (its line in place of the id when the file has no ids); every problem."""
    parsers = {name: _parser_for(name) for name in header}
    has_ids = INDEX in header
    records, problems = [], []
    for line, row in rows:
        sid = (row[header.index(INDEX)].strip() or None) if has_ids and len(row) > header.index(INDEX) else None
        if len(row) != len(header):
            problems.append(
                Problem(
                    sid,
                    None,
                    None,
                    f"line {line} has {plural(len(row), 'cell')}, the header has {len(header)} "
                    f"(cells separated by {SEPARATOR_NAMES[separator]})",
                )
            )
            continue
        record: dict[str, Any] = {}
        for col, (name, cell) in enumerate(zip(header, row, strict=True), start=1):
            try:
                record[name] = parsers[name](cell)
            except ValueError as exc:
                problems.append(Problem(sid, name, cell, f"line {line}, column {col}: {exc}"))
        if has_ids:
            value = record.get(INDEX, 1)  # absent: the id cell was unreadable, already reported
            reason = f"no source id ({ID_RULE})" if value is None else id_problem(value)
            if reason is not None:
                problems.append(Problem(None, INDEX, sid, f"line {line}: {reason}"))
        else:
            record[INDEX] = line
        records.append(record)
    return records, problems


#: The separators a CSV may use, as a message names them.
SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs"}


def _separator(text: str) -> str:
    """The separator of the header: of ``,``, ``;`` and a tab, the one that splits it into the
    most column names the toolkit knows (``id``, ``name``, the schema's fields); ``,`` on a tie."""
    first = next((line for line in text.splitlines() if line.strip()), "")

    def known(delimiter: str) -> int:
        return sum(c.strip().strip('"') in BY_NAME or c.strip().strip('"') == INDEX for c in first.split(delimiter))

    return max((",", ";", "\t"), key=lambda d: (known(d), d == ","))


def _split_as(separator: str, header: list[str], text: str) -> str:
    """How the header was read, and the other separators it holds: for a message about it."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    others = [SEPARATOR_NAMES[d] for d in (",", ";", "\t") if d != separator and d in first]
    said = f"split by {SEPARATOR_NAMES[separator]} it has {plural(len(header), 'column')}"
    if others:
        said += f"; it also holds {' and '.join(others)}, but split by those it names no known column either"
    return said


def _read_text(path: Any, what: str) -> str:
    data: str | bytes
    if hasattr(path, "read"):
        data = path.read()
    else:
        with open(path, "rb") as fh:
            data = fh.read()
    if isinstance(data, str):
        return data
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in data[:4096]:
        raise ValidationError.one(
            'the file is UTF-16 text (Excel\'s "Unicode Text"), not UTF-8: ' + _save_as_utf8("UTF-16"),
            what=what,
        )
    try:
        text: str = data.decode("utf-8-sig")
        return text
    except UnicodeDecodeError as exc:
        raise ValidationError.one(_not_utf8(data, exc), what=what) from None


def _save_as_utf8(encoding: str) -> str:
    """How to make a file of ``encoding`` UTF-8, for a message about one that is not."""
    return (
        'save it as "CSV UTF-8 (Comma delimited)" (Excel: File > Save As; LibreOffice: Character set '
        f"Unicode (UTF-8)), or convert it: iconv -f {encoding} -t UTF-8 FILE > FILE-utf8.csv"
    )


def _not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, how the line reads in Windows-1252 (what Excel writes in
    Western locales), and how to save it as UTF-8."""
    line = data.count(b"\n", 0, exc.start) + data.count(b"\r", 0, exc.start) - data.count(b"\r\n", 0, exc.start) + 1
    start = max(data.rfind(b"\n", 0, exc.start), data.rfind(b"\r", 0, exc.start)) + 1
    column = len(data[start : exc.start].decode("utf-8", errors="replace")) + 1
    head = f"line {line}, character {column}: not UTF-8 text (byte {data[exc.start]:#04x})"
    try:
        data.decode("cp1252")
    except UnicodeDecodeError:
        return f"{head}: {_save_as_utf8('ITS-ENCODING')}"
    end = min(i for i in (data.find(b"\n", exc.start), data.find(b"\r", exc.start), len(data)) if i >= 0)
    shown = data[start:end].decode("cp1252")[:80]
    return (
        f'{head}; it looks like Windows-1252 (Excel\'s plain "CSV" in Western locales), which reads '
        f"this line as {shown!r}: {_save_as_utf8('CP1252')}"
    )


def _parser_for(name: str) -> Callable[[str], Any]:
    field = BY_NAME.get(name)
    if field is None:
        return _parse_unknown
    return {
        "id": _parse_int,
        "int": _parse_int,
        "bool": _parse_bool,
        "str": _parse_text,
        "license": _parse_license,
        "list": _parse_list,
        "object": _parse_json,
    }[field.kind]


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
        if not -_INT64 <= int(text) < _UINT64:
            raise ValueError("too large a number")
        return int(text)
    try:
        number = float(text)
    except ValueError:
        raise ValueError("not a number") from None
    whole = whole_number(number)
    if whole is None:
        raise ValueError(
            "not a whole number"
            if not number.is_integer()
            else "too large a number to be exact in this notation; write its digits"
        )
    return whole


def _parse_text(cell: str) -> str | None:
    return restored(cell) if cell.strip() else None


def _parse_license(cell: str) -> str | None:
    """A license id as the one rule reads it (:func:`~neuroio_nb._values.license_number`):
    ``204.0`` (a float column saved by pandas or a spreadsheet) is ``"204"``; other text as written."""
    text = _parse_text(cell)
    number = None if text is None else license_number(text.strip())
    return text if number is None else str(number)


def _parse_unknown(cell: str) -> Any:
    """A cell of a column the schema does not know: JSON if it is valid JSON, else text as written."""
    if not cell:
        return None
    try:
        return json.loads(cell)
    except ValueError:
        return restored(cell)


def _parse_json(cell: str) -> Any:
    if not cell.strip():
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None


def _parse_list(cell: str) -> list[Any] | None:
    text = cell.strip()
    if not text:
        return None
    if text.startswith("["):
        value = _parse_json(text)
        if not isinstance(value, list):
            raise ValueError("not a JSON list")
        return value
    return [part.strip() for part in re.split(r"[,;]", text) if part.strip()]
