"""Values as a pandas user holds them, each case as the user meets it: plain pd.read_csv, merges, odd server data.

Every test seeds the sandbox with the data that shows the defect and drives the real client over
HTTP; the sandbox's state is the ground truth.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
import pytest

from neuroio_nb import Client, read_csv
from neuroio_nb.errors import ValidationError
from neuroio_nb.sandbox import Sandbox, generate_sources

UNKNOWN = "auto_check_angle_threshold"  # a field the sandbox's server has and the schema does not


def seeded(make_sandbox, client_for, rows: int = 12, **changes: dict[str, Any]) -> tuple[Sandbox, Client]:
    """A sandbox whose sources are generated, then changed per id: ``changes={"3": {...}}``."""
    records = generate_sources(rows, seed=3)
    for record in records:
        record.update(changes.get(str(record["id"]), {}))
    sb = make_sandbox(sources=records)
    return sb, client_for(sb)


def writes(sb: Sandbox) -> list[Any]:
    return [r for r in sb.log if r.method != "GET"]


def test_license_ids_read_by_plain_pandas_stay_whole_numbers(make_sandbox, client_for, tmp_path):
    """Integer license ids, some sources without one: pandas reads the column as float64."""
    records = generate_sources(12, seed=3)
    for n, record in enumerate(records):
        record["license_id"] = None if n % 3 == 0 else 200 + n
        record.pop("license", None)
    sb = make_sandbox(sources=records)
    c = client_for(sb)
    path = tmp_path / "s.csv"
    c.sources.export_csv(path)
    edited = pd.read_csv(path, index_col="id")
    assert edited["license_id"].dtype == float
    edited.loc[2, "use_pps_time"] = not edited.loc[2, "use_pps_time"]
    before = {i: s["license_id"] for i, s in sb.sources.items()}
    plan = c.sources.plan(edited)
    assert plan.changes[["id", "field"]].values.tolist() == [[2, "use_pps_time"]]
    assert plan.apply(progress=False).counts() == {"updated": 1}
    assert {i: s["license_id"] for i, s in sb.sources.items()} == before
    assert len(writes(sb)) == 1


def test_a_fractional_license_id_is_refused(make_sandbox, client_for):
    sb, c = seeded(make_sandbox, client_for)
    edited = c.sources.to_frame()
    edited["license_id"] = edited["license_id"].astype(object)
    edited.loc[3, "license_id"] = 204.5
    with pytest.raises(ValidationError, match="license_id"):
        c.sources.plan(edited)
    assert writes(sb) == []


TEXTS = ["007", "0420", "true", "1.50", "", "45", "null", "[1]", " padded ", "=1+1", "'=quoted", "-3", "@x"]


def test_unknown_text_fields_read_back_exactly(make_sandbox, client_for, tmp_path):
    """Text that looks like numbers or booleans, empty text, null and missing cells."""
    changes = {str(i + 1): {"custom_code": text} for i, text in enumerate(TEXTS)}
    changes["3"]["custom_code"] = None
    changes["4"]["custom_flag"] = True  # the other sources lack custom_flag altogether
    _, c = seeded(make_sandbox, client_for, rows=len(TEXTS) + 1, **changes)
    frame = c.sources.to_frame()
    path = tmp_path / "s.csv"
    c.sources.export_csv(path, frame)
    back = read_csv(path)
    pd.testing.assert_frame_equal(back, frame)
    assert back.loc[1, "custom_code"] == "007" and back.loc[4, "custom_code"] == "1.50"
    assert back.loc[5, "custom_code"] == "" and pd.isna(back.loc[3, "custom_code"])
    assert len(c.sources.plan(back)) == 0
    assert len(c.sources.plan(back, base=frame)) == 0


def test_formulas_are_neutralised_and_read_back(make_sandbox, client_for, tmp_path):
    """Names a spreadsheet would run as formulas (OWASP: =, +, -, @, tab, CR)."""
    names = ['=HYPERLINK("http://x")', "+1", "-2", "@SUM(A1)", "\tTab", "\rCR", "'=already", "''+two", "'plain"]
    changes = {str(i + 1): {"name": name} for i, name in enumerate(names)}
    _, c = seeded(make_sandbox, client_for, rows=len(names) + 1, **changes)
    frame = c.sources.to_frame()
    path = tmp_path / "s.csv"
    c.sources.export_csv(path, frame)
    cells = pd.read_csv(path, dtype=str, keep_default_na=False)["name"].tolist()
    assert not any(cell[:1] in ("=", "+", "-", "@", "\t", "\r") for cell in cells)
    assert cells[:4] == ['\'=HYPERLINK("http://x")', "'+1", "'-2", "'@SUM(A1)"]
    pd.testing.assert_frame_equal(read_csv(path), frame)
    plain = pd.read_csv(path, index_col="id")  # keeps the quotes: still no change, nothing renamed
    assert plain.loc[1, "name"] == '\'=HYPERLINK("http://x")'
    assert len(c.sources.plan(plain)) == 0 and len(c.sources.plan(plain, base=frame)) == 0


def test_semicolon_separated_csv_is_read(make_sandbox, client_for, tmp_path):
    """Excel in many European locales separates cells with ';'."""
    _, c = seeded(make_sandbox, client_for)
    frame = c.sources.to_frame()
    path = tmp_path / "s.csv"
    c.sources.export_csv(path, frame)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    semi = tmp_path / "semi.csv"
    raw.to_csv(semi, sep=";", index=False)
    pd.testing.assert_frame_equal(read_csv(semi), frame)


def test_unknown_whole_number_is_sent_as_an_integer(make_sandbox, client_for):
    """A source lacks the unknown field, so its column is float; an edit still goes out as 45."""
    records = generate_sources(6, seed=3)
    del records[0][UNKNOWN]
    sb = make_sandbox(sources=records)
    c = client_for(sb)
    edited = c.sources.to_frame()
    assert edited[UNKNOWN].dtype == float
    edited.loc[2, UNKNOWN] = 45
    report = c.sources.bulk_update(edited, progress=False)
    assert report.counts() == {"updated": 1}
    assert sb.sources[2][UNKNOWN] == 45 and type(sb.sources[2][UNKNOWN]) is int
    undone = c.sources.undo(report, progress=False)
    assert undone.counts() == {"updated": 1} and type(sb.sources[2][UNKNOWN]) is int


def test_missing_in_a_setting_with_a_default_is_refused_before_sending(make_sandbox, client_for):
    """The common slip edited["x"] = edited["space_id"].map({2: True})."""
    sb, c = seeded(make_sandbox, client_for)
    edited = c.sources.to_frame()
    edited["auto_create_persons"] = edited["space_id"].map({2: True})
    with pytest.raises(ValidationError) as info:
        c.sources.plan(edited)
    off_space = set(edited.index[edited["space_id"] != 2])
    assert {p.id for p in info.value.problems} == off_space
    assert all(p.field == "auto_create_persons" and "may not be missing" in p.reason for p in info.value.problems)
    assert writes(sb) == []


def test_bad_values_the_server_holds_do_not_block_other_edits(make_sandbox, client_for):
    """A newer list value, a threshold above our cap, a null name; untouched, carried through."""
    sb, c = seeded(
        make_sandbox,
        client_for,
        **{
            "1": {"store_images_for_results": ["new", "face_mask"]},
            "2": {"identify_facesize_threshold": 20_000_000},
            "3": {"name": None, "use_pps_time": None},
        },
    )
    edited = c.sources.to_frame()
    edited.loc[5, "manual_create_on_ha"] = not edited.loc[5, "manual_create_on_ha"]
    plan = c.sources.plan(edited)
    assert plan.changes[["id", "field"]].values.tolist() == [[5, "manual_create_on_ha"]]
    assert plan.apply(progress=False).counts() == {"updated": 1}
    assert sb.sources[1]["store_images_for_results"] == ["new", "face_mask"]
    edited.loc[2, "identify_facesize_threshold"] = 30_000_000  # an edit to a bad value is still refused
    with pytest.raises(ValidationError, match="must be at most 10,000,000"):
        c.sources.plan(edited)


def test_read_only_column_changed_by_the_server_is_not_an_edit(make_sandbox, client_for):
    """Without a base, a source moved to another space (the frame is older) plans nothing."""
    _, c = seeded(make_sandbox, client_for)
    stale = c.sources.to_frame()
    stale.loc[3, "space_id"] = stale.loc[3, "space_id"] + 1
    stale["license"] = stale["license"].map(lambda v: {**v, "name": "old"} if isinstance(v, dict) else v)
    assert len(c.sources.plan(stale)) == 0
    with pytest.raises(ValidationError, match="read-only"):  # against a base it is the user's edit
        c.sources.plan(stale, base=c.sources.to_frame())


def test_ids_that_went_through_floats_are_refused(make_sandbox, client_for):
    """Above 2**53 a float id is a neighbour's id; never sent."""
    big = 2**53 + 1
    records = generate_sources(3, seed=3)
    records[0]["id"], records[1]["id"] = big, big + 2
    sb = make_sandbox(sources=records)
    c = client_for(sb)
    frame = c.sources.to_frame()
    # an outer merge with a table that lacks one source: the id column goes through float64
    notes = pd.DataFrame({"id": frame.index[1:], "note": "checked"})
    merged = frame.reset_index().merge(notes, how="outer", on="id").astype({"id": float})
    edited = merged.drop(columns="note").set_index("id")
    edited["use_pps_time"] = ~edited["use_pps_time"]
    with pytest.raises(ValidationError) as info:
        c.sources.plan(edited)
    assert "float column" in str(info.value) and len(info.value.problems) == 2
    assert writes(sb) == []


def test_ids_above_2_63_stay_positive_and_reach_their_source(make_sandbox, client_for, tmp_path):
    """Ids between 2**63 and 2**64."""
    huge = 2**63 + 5
    records = generate_sources(3, seed=3)
    records[2]["id"] = huge
    sb = make_sandbox(sources=records)
    c = client_for(sb)
    frame = c.sources.to_frame()
    assert huge in frame.index and (frame.index >= 0).all()
    path = tmp_path / "s.csv"
    c.sources.export_csv(path, frame)
    pd.testing.assert_frame_equal(read_csv(path), frame)
    edited = frame.copy()
    edited.loc[huge, "use_pps_time"] = not frame.loc[huge, "use_pps_time"]
    report = c.sources.bulk_update(edited, progress=False)
    assert report.index.tolist() == [huge] and report.counts() == {"updated": 1}
    assert sb.sources[huge]["use_pps_time"] == (not frame.loc[huge, "use_pps_time"])


def test_frame_whose_sources_were_all_deleted_is_not_found(make_sandbox, client_for):
    """Every source of the frame deleted: "not found", not "unknown column" for the server's own unknown field."""
    sb, c = seeded(make_sandbox, client_for, rows=4)
    frame = c.sources.to_frame()
    edited = frame.loc[[1, 2]].copy()
    edited["use_pps_time"] = ~edited["use_pps_time"]
    for sid in (1, 2):
        sb.remove_source(sid)
    plan = c.sources.plan(edited)
    assert len(plan) == 0 and plan.summary().endswith("; 2 ids not found")
    assert [row["id"] for row in json.loads(plan.to_json())["not_found"]] == [1, 2]


def test_plain_read_csv_list_cell_hints_at_neuroio_read_csv(make_sandbox, client_for, tmp_path):
    """An untouched JSON text cell is no change; an edited one says what it is and what reads it."""
    sb, c = seeded(make_sandbox, client_for)
    path = tmp_path / "s.csv"
    c.sources.export_csv(path)
    edited = pd.read_csv(path, index_col="id")
    assert len(c.sources.plan(edited)) == 0
    edited.loc[4, "store_images_for_results"] = '["new", "ha", "exact"]'
    with pytest.raises(ValidationError) as info:
        c.sources.plan(edited)
    assert "JSON text" in str(info.value) and "neuroio_nb.read_csv" in str(info.value)
    assert writes(sb) == []


def test_multiindex_columns_are_a_validation_error(make_sandbox, client_for):
    sb, c = seeded(make_sandbox, client_for, rows=3)
    frame = c.sources.to_frame()
    edited = pd.concat({"settings": frame}, axis=1)
    sb.clear_log()
    with pytest.raises(ValidationError, match="MultiIndex"):
        c.sources.plan(edited)
    with pytest.raises(ValidationError, match="MultiIndex"):
        c.sources.plan(edited, base=frame)
    assert sb.log == []


def test_csv_from_a_string_buffer_with_every_shape(make_sandbox, client_for):
    """Hand-written unknown cells read as JSON when they are JSON, else as text."""
    text = 'id,name,colour,size\n1,Gate,red,45\n2,Door,007,\n3,Yard,"""true""",1.5\n'
    frame = read_csv(io.StringIO(text))
    assert frame["colour"].tolist() == ["red", "007", "true"]
    assert frame.loc[1, "size"] == 45 and np.isnan(frame.loc[2, "size"]) and frame.loc[3, "size"] == 1.5


def test_undo_puts_a_null_back(make_sandbox, client_for):
    """Found by tests/test_properties.py: undo of a change from null sent NaN (pandas 3 made the
    undo's old values a text column) and failed the row."""
    _, c = seeded(make_sandbox, client_for, rows=3, **{"2": {"store_images_for_results": None}})
    sb_sources = c.sources.to_frame()
    edited = sb_sources.copy()
    edited.at[2, "store_images_for_results"] = ["new"]
    edited.at[2, "name"] = "Renamed"
    report = c.sources.bulk_update(edited, progress=False)
    undone = c.sources.undo(report, progress=False)
    assert undone.counts() == {"updated": 1}, undone["error"].tolist()
    assert c.sources.get(2)["store_images_for_results"] is None
    assert c.sources.get(2)["name"] == sb_sources.loc[2, "name"]
