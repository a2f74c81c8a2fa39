"""Properties over generated server data, seeded into the sandbox and read over real HTTP.

The data is what a real server may hold and our fixed fixtures do not: fields the schema
does not know (text that looks like numbers, booleans or formulas; numbers; switches;
missing and null cells), license ids as integers and as texts, odd and formula-like names
and column names, nulls in settings, ids beyond 2**53 and 2**63. The frames are edited the
ways pandas users edit them: ``.at`` with numpy scalars, a ``merge``, ``reset_index``, and a
CSV read back with plain ``pd.read_csv``.

Properties: an export reads back equal; the plan of an untouched export is empty; apply,
then planning again, is empty; nothing outside the edited cells changes; undo restores the
server exactly.

Example counts are modest and the run is derandomized, so CI sees the same cases each time.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from neuroio_nb import Client, read_csv
from neuroio_nb._schema import FIELDS, EntryResult
from neuroio_nb._values import same
from neuroio_nb.sandbox import TRICKY_TEXTS, VARIETY_FIELDS, Sandbox

#: No shrinking: each example starts a sandbox, and on 2 cores a shrink can take many minutes;
#: a failure is reported as generated (derandomized, so it comes back on every run).
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Text a type-guessing reader is tempted to turn into something else: the sandbox's own
#: (numbers, booleans, nulls, hex, a formula, leading blanks), and text that is JSON of another type.
LOOKALIKES = [text for text in TRICKY_TEXTS if text] + ["45", "[1]", "{}", '"quoted"']
FORMULAS = ["=1+2", "+33", "-5", "@SUM(A1)", "\tTab", "\rCR", "'=quoted", "''+twice", '=HYPERLINK("x")']
WORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=10)
#: Text a type-guessing reader is tempted to turn into something else, and plain words.
TEXTS = st.one_of(st.sampled_from(LOOKALIKES + FORMULAS + [""]), WORDS)
#: Column names a server may send that the schema does not know: the sandbox's newer fields, and
#: names a spreadsheet would run or a reader would take for a number.
UNKNOWN_NAMES = [*VARIETY_FIELDS, "custom field", "=col", "1", "ünïcode", "ratio"]
IDS = st.one_of(st.integers(1, 10**6), st.integers(2**53 - 3, 2**53 + 3), st.integers(2**63, 2**64 - 1))
LICENSE_IDS = st.one_of(st.none(), st.integers(1, 10**6), st.sampled_from(["lic-204", "007", "A-17", "0x1F"]))
KINDS = [r.value for r in EntryResult]
SETTINGS = [f for f in FIELDS if f.writable and f.kind in ("bool", "int")]


def _unknown_value(kind: str) -> st.SearchStrategy[Any]:
    return {
        "text": TEXTS,
        "int": st.integers(-(10**6), 10**6),
        "fraction": st.floats(-1e6, 1e6, allow_nan=False).filter(lambda x: not x.is_integer()),
        "bool": st.booleans(),
    }[kind]


@st.composite
def servers(draw: st.DrawFn) -> list[dict[str, Any]]:
    """1-7 sources as a server may send them."""
    ids = draw(st.lists(IDS, min_size=1, max_size=7, unique=True))
    unknown = draw(
        st.dictionaries(
            st.sampled_from(UNKNOWN_NAMES), st.sampled_from(["text", "int", "fraction", "bool"]), max_size=3
        )
    )
    names: set[str] = set()
    records = []
    for n, sid in enumerate(ids):
        name = draw(st.one_of(st.sampled_from(LOOKALIKES + FORMULAS), WORDS).filter(lambda s: s.strip()))
        if name in names:
            name = f"{name} #{n}"
        names.add(name)
        record: dict[str, Any] = {
            "id": sid,
            "space_id": draw(st.integers(1, 3)),
            "name": name,
            "license_id": draw(LICENSE_IDS),
        }
        if draw(st.booleans()):
            record["license"] = {"id": record["license_id"], "name": draw(WORDS)}
        for field in SETTINGS:
            if field.kind == "bool":
                record[field.name] = draw(st.one_of(st.booleans(), st.booleans(), st.none()))
            else:  # sometimes above the schema's cap, or null: values the server holds
                record[field.name] = draw(st.one_of(st.integers(0, 10**7), st.just(2 * 10**7), st.none()))
        record["store_images_for_results"] = draw(
            st.one_of(st.none(), st.lists(st.sampled_from([*KINDS, "face_mask"]), unique=True, max_size=3))
        )
        for column, kind in unknown.items():  # absent, null, or a value of the column's kind
            choice = draw(st.integers(0, 5))
            if choice:
                record[column] = None if choice == 1 else draw(_unknown_value(kind))
        records.append(record)
    return records


def start(records: list[dict[str, Any]]) -> tuple[Sandbox, Client]:
    sb = Sandbox(sources=copy.deepcopy(records)).start()
    return sb, Client(sb.token, sb.url, max_retries=2)


@PROPERTY
@given(records=servers())
def test_an_export_reads_back_equal_and_plans_nothing(records, tmp_path_factory):
    sb, c = start(records)
    try:
        frame = c.sources.to_frame(progress=False)
        path = tmp_path_factory.mktemp("csv") / "export.csv"
        c.sources.export_csv(path, frame)
        back = read_csv(path)
        pd.testing.assert_frame_equal(back, frame)
        assert len(c.sources.plan(back)) == 0
        assert len(c.sources.plan(back, base=frame)) == 0
        assert len(c.sources.plan(frame.reset_index())) == 0  # ids as a column, as reset_index leaves them
    finally:
        c.close()
        sb.stop()


@PROPERTY
@given(records=servers())
def test_plain_pandas_read_of_an_export_plans_nothing(records, tmp_path_factory):
    """Known fields read by plain ``pd.read_csv``: float license ids, JSON text lists, quoted formulas.

    Columns the schema does not know are left out: plain pandas guesses their types (007 -> 7),
    which is why ``neuroio_nb.read_csv`` exists; so does a text license id of digits ("007" -> 7)."""
    assume(not any(isinstance(r["license_id"], str) and r["license_id"].isdigit() for r in records))
    sb, c = start(records)
    try:
        path = tmp_path_factory.mktemp("csv") / "export.csv"
        frame = c.sources.export_csv(path)
        plain = pd.read_csv(path, index_col="id")
        known = [col for col in plain.columns if col in frame.columns and col in {f.name for f in FIELDS}]
        names = plain["name"].astype(object)
        # pandas reads a name as a number or NA ("NaN", "null", "1e3" in every row): not a CSV of ours
        assume(not names.isna().any() and all(isinstance(n, str) for n in names))
        assert len(c.sources.plan(plain[known])) == 0
    finally:
        c.close()
        sb.stop()


@st.composite
def edits(draw: st.DrawFn, records: list[dict[str, Any]]) -> list[tuple[int, str, Any]]:
    """Up to three cells to change, each to a value the server takes."""
    out: dict[tuple[int, str], Any] = {}
    for _ in range(draw(st.integers(1, 3))):
        record = draw(st.sampled_from(records))
        kinds = ["bool", "int", "name", "list"] + [
            c
            for c in record
            if c.startswith(("site", "ret", "custom"))
            and isinstance(record[c], (str, int))
            and record[c] is not True
            and record[c] is not False
        ]
        kind = draw(st.sampled_from(kinds))
        # a setting the server holds as null or above the cap is left alone: the API takes neither,
        # so no undo could put it back (the undo's row for that source would fail, as it should)
        if kind == "bool":
            field = draw(st.sampled_from([f.name for f in SETTINGS if f.kind == "bool"]))
            value: Any = record[field] is not True
            if record[field] is None:
                continue
        elif kind == "int":
            field = draw(st.sampled_from([f.name for f in SETTINGS if f.kind == "int"]))
            value = draw(st.integers(0, 10**7).filter(lambda v, old=record[field]: v != old))
            if record[field] is None or record[field] > 10**7:
                continue
        elif kind == "name":
            field, value = "name", draw(st.sampled_from(FORMULAS + LOOKALIKES[:6])) + f" {record['id']}"
        elif kind == "list":
            field = "store_images_for_results"
            value = draw(st.lists(st.sampled_from(KINDS), unique=True, min_size=1, max_size=3))
            if set(value) == set(record[field] or []) or "face_mask" in (record[field] or []):
                continue  # (a newer kind the server holds: the API takes it from no client, nor from undo)
        else:
            field, old = kind, record[kind]
            value = draw(TEXTS) if isinstance(old, str) else draw(st.integers(-(10**6), 10**6))
            if value == old:
                continue
        out[(record["id"], field)] = value
    return [(sid, field, value) for (sid, field), value in out.items()]


def edited_like_pandas(frame: pd.DataFrame, changes: list[tuple[int, str, Any]], how: str) -> pd.DataFrame:
    """``frame`` with ``changes`` made as a user would: ``.at`` with numpy scalars, or a merge."""
    if how == "at":
        edited = frame.copy()
        for sid, field, value in changes:
            if isinstance(value, bool):
                value = np.bool_(value)
            elif isinstance(value, int):
                value = np.int64(value)
            if isinstance(value, list) or (edited[field].dtype != object and not _fits(edited[field], value)):
                edited[field] = edited[field].astype(object)
            edited.at[sid, field] = value
        return edited
    table = frame.reset_index()
    for field in dict.fromkeys(f for _, f, _ in changes):
        patch = pd.DataFrame(
            {
                "id": pd.Series([s for s, f, _ in changes if f == field], dtype=frame.index.dtype),
                "new": pd.Series([v for _, f, v in changes if f == field], dtype=object),
            }
        )
        table = table.merge(patch, on="id", how="left")
        table[field] = [
            n if m else o
            for o, n, m in zip(table[field].astype(object), table["new"], table["id"].isin(patch["id"]), strict=True)
        ]
        table = table.drop(columns="new")
    return table


def _fits(column: pd.Series, value: Any) -> bool:
    try:
        return bool(pd.Series([value]).astype(column.dtype).iloc[0] == value)
    except (TypeError, ValueError, OverflowError):
        return False


@PROPERTY
@given(data=st.data(), records=servers(), how=st.sampled_from(["at", "merge"]), with_base=st.booleans())
def test_apply_replans_empty_touches_nothing_else_and_undo_restores(data, records, how, with_base):
    changes = data.draw(edits(records))
    assume(changes)
    sb, c = start(records)
    try:
        before = sb.sources
        frame = c.sources.to_frame(progress=False)
        edited = edited_like_pandas(frame, changes, how)
        plan = c.sources.plan(edited, base=frame if with_base else None)
        assert set(zip(plan.changes["id"].tolist(), plan.changes["field"].tolist(), strict=True)) == {
            (sid, field) for sid, field, _ in changes
        }
        report = plan.apply(progress=False)
        assert report.counts() == {"updated": len({sid for sid, _, _ in changes})}, report["error"].tolist()
        after = sb.sources
        wanted = {(sid, field): value for sid, field, value in changes}
        for sid, source in before.items():
            for field, value in source.items():
                if (sid, field) in wanted:
                    assert same(field, after[sid][field], wanted[(sid, field)]), (sid, field)
                else:
                    assert after[sid][field] == value and type(after[sid][field]) is type(value), (sid, field)
        assert len(c.sources.plan(edited)) == 0
        c.sources.undo(report, progress=False)
        assert sb.sources == before
    finally:
        c.close()
        sb.stop()


@pytest.mark.parametrize("how", ["at", "merge"])
def test_the_pandas_ways_of_editing_make_the_same_plan(how):
    """The two edit helpers above make the plan they are asked for (so the property tests them)."""
    records = [
        {
            "id": 5,
            "space_id": 1,
            "name": "Gate",
            "license_id": 204,
            "use_pps_time": False,
            "identify_facesize_threshold": 7000,
            "store_images_for_results": None,
            "site_code": "007",
        }
    ]
    sb, c = start(records)
    try:
        frame = c.sources.to_frame(progress=False)
        edited = edited_like_pandas(frame, [(5, "use_pps_time", True), (5, "site_code", "0420")], how)
        plan = c.sources.plan(edited)
        changes = plan.changes[["id", "field", "old", "new"]].itertuples(index=False, name=None)
        assert sorted(changes) == [(5, "site_code", "007", "0420"), (5, "use_pps_time", False, True)]
    finally:
        c.close()
        sb.stop()
