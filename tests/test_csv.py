"""CSV export and import: lossless round trip, hand-edited files, unreadable cells."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroio_nb import read_csv
from neuroio_nb._jobs.csvio import read_named_csv
from neuroio_nb.errors import ValidationError


@pytest.fixture
def exported(make_sandbox, client_for, tmp_path):
    sb = make_sandbox(sources=300)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    path = tmp_path / "sources.csv"
    c.sources.export_csv(path, frame)
    return sb, c, frame, path


def test_round_trip_is_exact(exported):
    _sb, c, frame, path = exported
    back = read_csv(path)
    pd.testing.assert_frame_equal(back, frame)
    assert len(c.sources.plan(back, base=frame)) == 0


def test_export_without_frame_reads_every_source(exported, tmp_path):
    _sb, c, frame, _ = exported
    path = tmp_path / "all.csv"
    c.sources.export_csv(path)
    pd.testing.assert_frame_equal(read_csv(path), frame)


def test_encoding_is_documented_text(exported):
    _sb, _c, frame, path = exported
    text = path.read_text(encoding="utf-8")
    header, _first = text.splitlines()[:2]
    assert header.startswith("id,space_id,name,license_id,license,")
    assert header.endswith(",auto_check_angle_threshold")  # the unknown field is kept
    assert ",true," in text and ",false," in text and "True" not in text
    assert '"[""' in text  # lists are JSON in a quoted cell
    with_license = frame[frame["license"].notna()].index[0]
    line = next(line for line in text.splitlines() if line.startswith(f"{with_license},"))
    assert '{""id""' in line


def test_missing_values_are_empty_cells(make_sandbox, client_for, tmp_path):
    sb = make_sandbox(sources=20)
    c = client_for(sb)
    sb.external_edit(3, license_id=None, store_images_for_results=None)
    frame = c.sources.to_frame(progress=False)
    path = tmp_path / "s.csv"
    c.sources.export_csv(path, frame)
    line = next(line for line in path.read_text().splitlines() if line.startswith("3,"))
    cells = line.split(",")
    assert cells[3] == ""  # license_id
    back = read_csv(path)
    assert pd.isna(back.loc[3, "license_id"]) and back.loc[3, "store_images_for_results"] is None
    pd.testing.assert_frame_equal(back, frame)


def test_hand_edited_spreadsheet_csv(exported, tmp_path):
    _sb, c, frame, path = exported
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    row1 = raw.index[raw["id"] == "1"][0]
    row2 = raw.index[raw["id"] == "2"][0]
    # a spreadsheet's habits: TRUE/False/1/0, reordered columns, a blank line, a list as plain text
    raw.loc[row1, "use_pps_time"] = "TRUE" if not frame.loc[1, "use_pps_time"] else "False"
    raw.loc[row1, "auto_create_persons"] = "1" if not frame.loc[1, "auto_create_persons"] else "0"
    raw.loc[row2, "store_images_for_results"] = "new; exact"
    raw.loc[row2, "identify_facesize_threshold"] = "8000"
    untouched = [c for c in raw.columns if c.startswith("auto") and c != "auto_create_persons"]
    for col in untouched:  # a spreadsheet writes its own spelling of booleans everywhere
        raw[col] = raw[col].map({"true": "TRUE", "false": "FALSE", "": "", "30": "30"}).fillna(raw[col])
    reordered = raw[list(reversed(header))]
    text = reordered.to_csv(index=False, lineterminator="\r\n")
    body = text.splitlines(keepends=True)
    edited_path = tmp_path / "edited.csv"
    edited_path.write_text(body[0] + "\r\n" + "".join(body[1:]) + "\r\n", encoding="utf-8-sig")
    plan = c.sources.plan(read_csv(edited_path), base=frame)
    got = {(r.id, r.field): (r.old, r.new) for r in plan.changes.itertuples()}
    expected = {
        (1, "use_pps_time"): (bool(frame.loc[1, "use_pps_time"]), not frame.loc[1, "use_pps_time"]),
        (1, "auto_create_persons"): (
            bool(frame.loc[1, "auto_create_persons"]),
            not frame.loc[1, "auto_create_persons"],
        ),
    }
    if set(frame.loc[2, "store_images_for_results"] or []) != {"new", "exact"}:
        expected[(2, "store_images_for_results")] = (frame.loc[2, "store_images_for_results"], ["new", "exact"])
    if frame.loc[2, "identify_facesize_threshold"] != 8000:
        expected[(2, "identify_facesize_threshold")] = (int(frame.loc[2, "identify_facesize_threshold"]), 8000)
    assert got == expected


def test_unreadable_cells_name_line_and_column(exported, tmp_path):
    _sb, _c, _frame, path = exported
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    col_bool = list(raw.columns).index("use_pps_time") + 1
    col_int = list(raw.columns).index("identify_facesize_threshold") + 1
    raw.loc[0, "use_pps_time"] = "maybe"
    raw.loc[0, "identify_facesize_threshold"] = "12.5"
    bad = tmp_path / "bad.csv"
    raw.to_csv(bad, index=False)
    with pytest.raises(ValidationError) as info:
        read_csv(bad)
    text = str(info.value)
    assert f"line 2, column {col_bool}" in text and "maybe" in text
    assert f"line 2, column {col_int}" in text and "whole number" in text
    assert len(info.value.problems) == 2


def test_an_export_saved_with_carriage_returns_only_reads_back(exported, tmp_path):
    """Excel for Mac's "CSV (Macintosh)" ends each line with a lone carriage return."""
    _sb, _c, frame, path = exported
    mac = tmp_path / "mac.csv"
    mac.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    pd.testing.assert_frame_equal(read_csv(mac), frame)


#: Text a spreadsheet or pandas would take for something else: numbers, booleans, dates, JSON.
LOOKS_LIKE = st.sampled_from(["007", "1e5", "-3", "1,5", "3.0", "true", "nan", "null", "2024-01-02", "[1]", '"q"'])
NAMES = st.one_of(
    LOOKS_LIKE,
    st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1, max_size=12),
).filter(lambda n: n.strip() == n and n and not n.startswith("'"))


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(NAMES, st.integers(0, 10**6), LOOKS_LIKE), min_size=1, max_size=6, unique_by=lambda r: r[0]
    ),
    separator=st.sampled_from([",", ";", "\t"]),
    ending=st.sampled_from(["\n", "\r\n", "\r"]),
    bom=st.booleans(),
    blank_lines=st.booleans(),
)
def test_a_file_of_names_without_ids_is_read_whatever_its_separator_and_line_ends(
    tmp_path_factory, rows, separator, ending, bom, blank_lines
):
    out = io.StringIO()
    writer = csv.writer(out, delimiter=separator, lineterminator=ending)
    writer.writerow(["name", "identify_facesize_threshold", "gate_label"])
    for row in rows:
        writer.writerow(row)
        if blank_lines:
            out.write(ending)
    path = tmp_path_factory.mktemp("names") / "site.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8"))
    frame = read_named_csv(path)
    assert frame["name"].tolist() == [name for name, _, _ in rows]
    assert frame["identify_facesize_threshold"].tolist() == [threshold for _, threshold, _ in rows]
    # a column the toolkit does not know: each cell as read_csv reads it (JSON if it is JSON, else text)
    got = [None if isinstance(v, float) and v != v else v for v in frame["gate_label"].tolist()]  # NaN: missing
    assert got == [_as_read(label) for _, _, label in rows]
    # each row is labelled by its line in the file, and the frame says so
    step = 2 if blank_lines else 1
    assert frame.index.tolist() == [2 + step * k for k in range(len(rows))]
    assert frame.attrs["labels"] == "line"


def _as_read(cell: str) -> object:
    try:
        return json.loads(cell)
    except ValueError:
        return cell


@pytest.mark.parametrize("encoding", ["cp1252", "utf-16"])
def test_a_file_of_names_that_is_not_utf8_is_refused_with_the_way_to_save_it(tmp_path, encoding):
    path = tmp_path / "site.csv"
    path.write_bytes("name;use_pps_time\nCaf\u00e9 Nord;true\n".encode(encoding))
    with pytest.raises(ValidationError) as info:
        read_named_csv(path)
    message = str(info.value)
    assert "not UTF-8" in message and "CSV UTF-8" in message and "iconv" in message
    assert ("line 2, character 4" in message) if encoding == "cp1252" else ("UTF-16" in message)


def test_a_file_of_names_says_which_line_column_and_cells_and_no_id(tmp_path):
    path = tmp_path / "site.csv"
    path.write_text("name;identify_facesize_threshold\n\nGate;7000\nDoor;lots\nDock\n", encoding="utf-8")
    with pytest.raises(ValidationError) as info:
        read_named_csv(path)
    message = str(info.value)
    assert "line 4, column 2: not a number" in message
    assert "line 5 has 1 cell, the header has 2 (cells separated by semicolons)" in message
    assert "id" not in message.replace("identify", "")


def test_a_license_id_written_as_a_float_is_that_license_as_in_the_form(make_sandbox, client_for, tmp_path):
    """`204.0` (how pandas and spreadsheets show a float column) is license 204, in a CSV as in the form."""
    sb = make_sandbox(sources=5)
    sb.external_edit(1, license_id=204)
    sb.external_edit(2, license_id=300)
    c = client_for(sb)
    path = tmp_path / "sources.csv"
    c.sources.export_csv(path)
    text = path.read_text(encoding="utf-8").replace(",204,", ",204.0,").replace(",300,", ",205.0,")
    path.write_text(text, encoding="utf-8")
    plan = c.sources.plan(read_csv(path))
    assert plan.changes[["id", "field"]].values.tolist() == [[2, "license_id"]]  # 204.0 is 204: no change
    plan.apply(progress=False)
    assert [r.body for r in sb.requests("PATCH")] == [{"license_id": 205}]  # the integer, as the form sends it
