"""Desired state over the sandbox: provision, restore and sync (create, update, delete), undo,
faults and interrupts. The sandbox's state and request log are the ground truth."""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections import Counter
from html import escape

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from neuroio_nb import Client, read_csv
from neuroio_nb._jobs.frames import frame_from_records
from neuroio_nb._jobs.parts import parts_of
from neuroio_nb.errors import (
    BulkInterrupted,
    NearDuplicateNamesWarning,
    NotEmptiedWarning,
    UnmatchedRowsWarning,
    ValidationError,
)
from neuroio_nb.sandbox import Sandbox
from neuroio_nb.sandbox.fields import server_fields

FAULTS = {"503": 0.2, "429": 0.05, "502": 0.05, "drop": 0.03}
WRITES = ("POST", "PATCH", "DELETE")
#: Compared after a restore: everything but the id and what the server alone decides.
SERVER_DECIDES = ["id", "license"]


def server_frame(sb) -> pd.DataFrame:
    return frame_from_records(list(sb.sources.values()))


def by_name(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` keyed by (space, name), without the columns the server alone decides."""
    flat = frame.reset_index()
    return (
        flat.drop(columns=[c for c in SERVER_DECIDES if c in flat.columns]).set_index(["space_id", "name"]).sort_index()
    )


def writes(sb) -> list:
    return [r for r in sb.log if r.method in WRITES]


def account_unique(frame: pd.DataFrame, space: int) -> pd.Index:
    """Ids of ``space`` whose names no other source has: safe to delete and create again
    (a created source lands in the token's own space, the sandbox's first)."""
    counts = frame["name"].value_counts()
    return frame.index[(frame["space_id"] == space) & frame["name"].map(counts).eq(1)]


def new_site(n: int) -> pd.DataFrame:
    """A site to provision: names and a few settings, a RangeIndex, no ids."""
    return pd.DataFrame(
        {
            "name": [f"Site 7 camera {i:03d}" for i in range(n)],
            "identify_facesize_threshold": [5000 + 5 * i for i in range(n)],
            "auto_create_persons": [i % 2 == 0 for i in range(n)],
            "store_images_for_results": [["new", "det"] if i % 3 else [] for i in range(n)],
        }
    )


def test_restore_from_a_backup(make_sandbox, client_for, tmp_path):
    sb = make_sandbox(sources=2000, seed=4)
    c = client_for(sb)
    backup_path = tmp_path / "backup.csv"
    original = c.sources.export_csv(backup_path)
    deleted = account_unique(original, space=1)[:50]
    changed = original.index.difference(deleted)[::19][:100]
    assert len(deleted) == 50 and len(changed) == 100
    for sid in deleted:
        sb.remove_source(int(sid))
    for n, sid in enumerate(changed):
        flag = "auto_check_liveness" if n % 2 else "use_pps_time"
        sb.external_edit(int(sid), identify_facesize_threshold=4444, **{flag: not original.at[sid, flag]})

    plan = c.sources.plan(read_csv(backup_path), key="name", create=True)
    assert plan.summary() == "50 sources to create, 100 to update (200 values)"
    assert set(plan.creates["name"]) == set(original.loc[deleted, "name"])
    assert set(plan.changes["id"]) == set(changed) and len(plan.deletes) == 0
    report = plan.apply(progress=False)
    assert report.counts() == {"created": 50, "updated": 100}
    created = report[report["action"] == "create"]
    assert set(created.index) == set(sb.sources) - set(original.index)  # every new id, in the report

    pd.testing.assert_frame_equal(by_name(c.sources.to_frame(progress=False)), by_name(original))
    again = c.sources.plan(read_csv(backup_path), key="name", create=True)
    assert len(again) == 0 and not again


def test_restore_empties_what_was_empty_in_the_backup(make_sandbox, client_for, tmp_path):
    """A license assigned since the backup, "keep images for" set where the backup had none: a
    restore puts back the backup's empty values too, so the export equals the backup."""
    sb = make_sandbox(sources=300, seed=5, license_ids="int")
    c = client_for(sb)
    path = tmp_path / "backup.csv"
    original = c.sources.export_csv(path)
    unlicensed = original.index[original["license_id"].isna()][:6]
    unkept = original.index[original["store_images_for_results"].isna()][:6]
    assert len(unlicensed) == 6 and len(unkept) == 6
    for sid in unlicensed:
        sb.external_edit(int(sid), license_id=1234)
    for sid in unkept:
        sb.external_edit(int(sid), store_images_for_results=["new", "det"])

    plan = c.sources.plan(read_csv(path), key="name", create=True)
    emptied = plan.changes[plan.changes["new"].isna()]
    assert sorted(emptied["id"]) == sorted([*unlicensed, *unkept])
    report = plan.apply(progress=False)
    assert report.counts() == {"updated": len(set(unlicensed) | set(unkept))}
    pd.testing.assert_frame_equal(by_name(c.sources.to_frame(progress=False)), by_name(original))
    assert len(c.sources.plan(read_csv(path), key="name", create=True)) == 0


def test_a_site_csv_without_space_ids_still_leaves_its_empty_cells_as_they_are(make_sandbox, client_for, tmp_path):
    """A row that names no space (a site's CSV, not an export) sets only what it fills."""
    sb = make_sandbox(sources=50, seed=5, license_ids="int")
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    licensed = frame.index[frame["license_id"].notna()][:3]
    site = pd.DataFrame(
        {
            "name": frame.loc[licensed, "name"].tolist(),
            "license_id": pd.Series([None] * 3, dtype="string"),
            "identify_facesize_threshold": [4321] * 3,
        }
    )
    plan = c.sources.plan(site, key="name")
    assert set(plan.changes["field"]) == {"identify_facesize_threshold"}


#: A restore's generated account: names unique, all in the token's space (where creates land).
RESTORE_KINDS = ["new", "reinit", "exact", "ha", "junk", "nm", "det"]
#: Every field a source the sandbox creates has, at its default: a seeded source has them too.
ALL_FIELDS = {f.name: f.default for f in server_fields() if f.writable}


@st.composite
def backups_and_drifts(draw: st.DrawFn) -> tuple[list[dict], dict[int, str]]:
    """An account whose empty cells vary (license, kept images, a field the schema does not
    know), and what happens to each source after the backup."""
    n = draw(st.integers(3, 9))
    records = []
    for sid in range(1, n + 1):
        record = {
            **ALL_FIELDS,
            "id": sid,
            "space_id": 1,
            "name": f"Restore cam {sid}",
            "license_id": draw(st.one_of(st.none(), st.integers(1000, 1999))),
            "identify_facesize_threshold": draw(st.integers(0, 50000)),
            "auto_check_liveness": draw(st.booleans()),
            "store_images_for_results": draw(
                st.one_of(st.none(), st.lists(st.sampled_from(RESTORE_KINDS), unique=True, max_size=3))
            ),
            "site_code": draw(st.one_of(st.none(), st.sampled_from(["A-17", "007", "Gate 3"]))),
        }
        records.append(record)
    records.append({**records[0], "id": n + 1, "name": "Restore cam null", "site_code": None})
    records.append({**records[0], "id": n + 2, "name": "Restore cam text", "site_code": "B-2"})
    drifts = {
        r["id"]: draw(
            st.sampled_from(["none", "license", "unlicense", "keep", "unkeep", "code", "uncode", "threshold", "delete"])
        )
        for r in records
    }
    return records, drifts


DRIFT = {
    "license": {"license_id": 1777},
    "unlicense": {"license_id": None},
    "keep": {"store_images_for_results": ["nm"]},
    "unkeep": {"store_images_for_results": None},
    "code": {"site_code": "Z-9"},
    "uncode": {"site_code": None},
    "threshold": {"identify_facesize_threshold": 77},
}


#: Each example starts a sandbox: few examples, the same ones every run, no deadline, no shrinking.
RESTORES = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)


@RESTORES
@given(case=backups_and_drifts())
def test_after_a_restore_an_export_equals_the_backup(case, tmp_path_factory):
    """Whatever the backup held empty or filled, and whatever happened since (a value set where
    it was empty, emptied where it was set, changed, the source deleted): after the restore an
    export equals the backup in every column but id (and the read-only license object, which
    the server alone writes), and planning again is empty."""
    records, drifts = case
    with Sandbox(sources=records) as sb:
        c = Client(sb.token, sb.url, max_retries=2)
        try:
            path = tmp_path_factory.mktemp("restore") / "backup.csv"
            original = c.sources.export_csv(path)
            for sid, drift in drifts.items():
                if drift == "delete":
                    sb.remove_source(sid)
                elif drift in DRIFT:
                    sb.external_edit(sid, **DRIFT[drift])
            c.sources.plan(read_csv(path), key="name", create=True).apply(progress=False)
            restored = c.sources.to_frame(progress=False)
            pd.testing.assert_frame_equal(by_name(restored), by_name(original), check_like=True)
            assert len(c.sources.plan(read_csv(path), key="name", create=True)) == 0
        finally:
            c.close()


def test_a_restore_says_before_apply_which_empty_values_the_api_cannot_empty(make_sandbox, client_for, tmp_path):
    """A switch the server left null in the backup, switched on since: the API takes no null
    for a setting with a default, so the restore cannot empty it. The plan says so when it is
    made (naming the source, the field and the value it keeps), and plans no change for it."""
    records = [dict(s) for s in make_sandbox(sources=20, seed=5).sources.values()]
    records[2]["auto_check_liveness"] = None
    sb2 = make_sandbox(sources=records)
    c2 = client_for(sb2)
    path = tmp_path / "backup.csv"
    c2.sources.export_csv(path)
    sid = records[2]["id"]
    sb2.external_edit(sid, auto_check_liveness=True, identify_facesize_threshold=4242)
    with pytest.warns(
        NotEmptiedWarning,
        match=rf"no null for auto_check_liveness.*{sid} \({re.escape(repr(records[2]['name']))}\) keeps auto_check_liveness=True",
    ) as caught:
        plan = c2.sources.plan(read_csv(path), key="name", create=True)
    assert caught[0].filename == __file__
    assert plan.changes[["id", "field"]].values.tolist() == [[sid, "identify_facesize_threshold"]]


@pytest.mark.parametrize("backup_of", ["the account", "space 1"])
def test_restore_brings_back_a_source_whose_name_another_space_uses_and_leaves_that_one_alone(
    make_sandbox, client_for, tmp_path, backup_of
):
    """Names are unique per space only. A backup row of space 1 whose source was deleted is
    created again in space 1, never matched to (and overwriting) its namesake in another space,
    whether or not the backup holds the namesake's own row."""
    sb = make_sandbox(sources=600, seed=4)
    c = client_for(sb)
    path = tmp_path / "backup.csv"
    original = c.sources.to_frame(progress=False)
    c.sources.export_csv(path, original if backup_of == "the account" else original[original["space_id"] == 1])
    counts = original["name"].value_counts()
    space_1 = original[original["space_id"] == 1]  # the token's space: where creates land
    shared = space_1.index[space_1["name"].map(counts).gt(1)][:20]
    deleted = shared.union(space_1.index[space_1["name"].map(counts).eq(1)][:5])
    namesakes = original.index[original["name"].isin(original.loc[shared, "name"]) & (original["space_id"] != 1)]
    changed = original.index.difference(deleted.union(namesakes))[::13][:30]
    assert len(deleted) == 25 and len(namesakes) >= 20 and len(changed) == 30
    for sid in deleted:
        sb.remove_source(int(sid))
    for sid in changed:
        sb.external_edit(int(sid), identify_facesize_threshold=int(original.at[sid, "identify_facesize_threshold"]) + 1)
    before = sb.sources

    plan = c.sources.plan(read_csv(path), key="name", create=True)
    backed_up = changed if backup_of == "the account" else changed[original.loc[changed, "space_id"] == 1]
    n = len(backed_up)
    assert plan.summary() == f"25 sources to create, {n} to update ({n} values)"
    assert sorted(plan.creates["name"]) == sorted(original.loc[deleted, "name"])
    assert set(plan.changes["id"]) == set(backed_up)
    report = plan.apply(progress=False)
    assert report.counts() == {"created": 25, "updated": n}
    assert all(sb.source(int(sid)) == before[int(sid)] for sid in namesakes)  # untouched
    restored = c.sources.to_frame(progress=False)
    if backup_of == "space 1":  # the other spaces' changes were not in the backup: they stay
        restored, original = (f[f["space_id"] == 1] for f in (restored, original))
    pd.testing.assert_frame_equal(by_name(restored), by_name(original))
    assert len(c.sources.plan(read_csv(path), key="name", create=True)) == 0


def test_a_backup_row_of_another_space_than_the_tokens_is_never_made_elsewhere_nor_matched_to_a_namesake(
    make_sandbox, client_for, tmp_path
):
    """A deleted source of space 2, restored with a token whose creates land in space 1: it cannot
    come back there. Each such row is a failed create that says why and what to do; nothing is made
    in space 1 (a source made there is deleted again), and the namesake in space 1 is not updated."""
    sb = make_sandbox(sources=600, seed=4)
    c = client_for(sb, max_workers=4)
    path = tmp_path / "backup.csv"
    original = c.sources.export_csv(path)
    names_in_1 = set(original.loc[original["space_id"] == 1, "name"])
    space_2 = original[original["space_id"] == 2]
    deleted = space_2.index[space_2["name"].isin(names_in_1)][:4].union(
        space_2.index[~space_2["name"].isin(names_in_1)][:4]
    )
    assert len(deleted) == 8
    for sid in deleted:
        sb.remove_source(int(sid))
    before = sb.sources

    with pytest.warns(UnmatchedRowsWarning, match="^8 rows of the frame match no source"):
        updates_only = c.sources.plan(read_csv(path), key="name")
    assert len(updates_only) == 0  # not a change to the namesake in space 1
    assert sorted(updates_only.unmatched["name"]) == sorted(original.loc[deleted, "name"])
    plan = c.sources.plan(read_csv(path), key="name", create=True)
    assert sorted(plan.creates["name"]) == sorted(original.loc[deleted, "name"]) and len(plan.changes) == 0
    report = plan.apply(progress=False)
    assert report.counts() == {"failed": 8}
    assert sorted(report["name"]) == sorted(original.loc[deleted, "name"])
    assert report["error"].str.contains("not created in space 2, which the row names").all()
    assert report["error"].str.contains("land in the token's own space, 1").all()
    assert sb.sources == before  # nothing left in space 1, no namesake changed
    assert len(sb.requests("PATCH")) == 0
    again = c.sources.plan(read_csv(path), key="name", create=True)
    assert sorted(again.creates["name"]) == sorted(original.loc[deleted, "name"]) and len(again.changes) == 0


def test_a_space_id_that_is_not_one_or_outside_spaces_ids_is_refused_before_anything_is_sent(make_sandbox, client_for):
    sb = make_sandbox(sources=100, seed=6)
    c = client_for(sb)
    desired = pd.DataFrame({"name": ["Gate 1", "Gate 2", "Gate 3"], "space_id": ["two", 2, 1]})
    sb.clear_log()
    with pytest.raises(ValidationError) as info:
        c.sources.plan(desired, key="name", create=True, spaces_ids=[1])
    assert {(p.id, p.field) for p in info.value.problems} == {(0, "space_id"), (1, "space_id")}
    assert "whole number" in str(info.value) and "outside the scope spaces_ids=[1]" in str(info.value)
    assert writes(sb) == []


def test_provision_500_names_each_created_once_under_faults_with_100_deletes(make_sandbox, client_for):
    sb = make_sandbox(sources=500, seed=5, latency=0.002, drop_after_apply=0.05)
    c = client_for(sb, max_retries=16)
    frame = c.sources.to_frame(progress=False)
    space_1 = frame[frame["space_id"] == 1]
    dropped = space_1.index[::2][:100]
    assert len(dropped) == 100
    kept = space_1.drop(index=dropped).reset_index(drop=True)  # ids gone: matched by name
    site = new_site(500)
    desired = pd.concat([kept, site], ignore_index=True)
    plan = c.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1])
    assert plan.summary() == "100 sources to delete, 500 to create"
    assert set(plan.deletes["id"]) == set(dropped)
    sb.faults = FAULTS
    sb.clear_log()
    report = plan.apply(progress=False, irreversible=True)  # the token's space is not known yet
    sb.faults = {}

    assert report.counts() == {"deleted": 100, "created": 500}
    names = Counter(s["name"] for s in sb.sources.values())
    assert all(names[n] == 1 for n in site["name"])  # each created exactly once, faults or not
    now = sb.sources
    assert not set(dropped) & set(now)  # every delete happened
    assert set(frame.index.difference(dropped)) <= set(now)  # nothing else was deleted
    made = report[report["action"] == "create"]
    assert sorted(made["name"]) == sorted(site["name"]) and made.index.notna().all()
    assert {now[int(sid)]["name"] for sid in made.index} == set(site["name"])
    assert dict(zip(made["row"], made["name"], strict=True)) == desired.loc[len(kept) :, "name"].to_dict()
    for sid, row in zip(made.index, made["row"], strict=True):  # row: the desired frame's label
        assert now[int(sid)]["identify_facesize_threshold"] == desired.at[row, "identify_facesize_threshold"]
    unknown = Counter(r.fault for r in sb.log if r.method in ("POST", "DELETE") and r.fault)
    assert unknown["drop"] + unknown["502"] and unknown["drop_after_apply"]  # the test met unknown outcomes
    assert len(c.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1])) == 0


def test_nothing_is_deleted_unless_asked_nor_outside_the_scope(make_sandbox, client_for):
    sb = make_sandbox(sources=300, seed=2)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    few = frame.iloc[:10]
    assert len(c.sources.plan(few, key="name").deletes) == 0
    assert len(c.sources.plan(few).deletes) == 0
    space_2 = frame[frame["space_id"] == 2]
    plan = c.sources.plan(space_2.iloc[:5], delete=True, spaces_ids=[2])
    assert set(plan.deletes["id"]) == set(space_2.index[5:])
    kiosks = frame[frame["name"].str.contains("kiosk")]
    plan = c.sources.plan(kiosks.iloc[3:].reset_index(drop=True), key="name", delete=True, q="kiosk")
    assert set(plan.deletes["id"]) == set(kiosks.index[:3])
    sb.clear_log()
    report = plan.apply(progress=False, irreversible=True)
    assert report.counts() == {"deleted": 3}
    assert set(sb.sources) == set(frame.index) - set(kiosks.index[:3])
    assert sorted(r.method for r in writes(sb)) == ["DELETE"] * 3


def test_ambiguity_is_one_validation_error_before_anything_is_sent(make_sandbox, client_for):
    sb = make_sandbox(sources=400, seed=3)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    counts = frame["name"].value_counts()
    shared = counts.index[counts > 1][0]  # a name two spaces use
    desired = pd.DataFrame(
        {
            "name": [shared, "Gate 9", "Gate 9", None, "Dock 4"],
            "identify_facesize_threshold": [7000, 7000, 7000, 7000, -5],
        }
    )
    sb.clear_log()
    with pytest.raises(ValidationError) as info:
        c.sources.plan(desired, key="name", create=True)
    found = {(p.id, p.field) for p in info.value.problems}
    assert found == {(0, "name"), (2, "name"), (3, "name"), (4, "identify_facesize_threshold")}
    text = str(info.value)
    assert "narrow the scope" in text and "2 times" in text and "without a name" in text
    assert writes(sb) == []
    # the frame's space_id says which one is meant
    space = int(frame.loc[frame["name"] == shared, "space_id"].iloc[0])
    one = pd.DataFrame({"name": [shared], "space_id": [space], "use_pps_time": [True]})
    plan = c.sources.plan(one, key="name")
    assert len(plan.creates) == 0 and plan.changes["id"].isin(frame.index[frame["space_id"] == space]).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"key": "colour"},
        {"key": "id", "create": True},
        {"create": "yes"},
        {"q": 5, "key": "name"},
        {"spaces_ids": ["x"], "key": "name"},
    ],
)
def test_bad_arguments(make_sandbox, client_for, bad):
    sb = make_sandbox(sources=20)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    sb.clear_log()
    with pytest.raises(ValidationError):
        c.sources.plan(frame, **bad)
    assert sb.log == []


@pytest.mark.parametrize("q", ["", "  "], ids=["empty", "blank"])
@pytest.mark.parametrize("key", ["id", "name"])
def test_an_empty_q_with_delete_is_refused_not_a_plan_to_delete_everything_else(make_sandbox, client_for, key, q):
    """``--q "$SITE"`` with the variable unset: the scope would be every source, and every
    source the frame does not list would be deleted. It is refused before anything is read."""
    sb = make_sandbox(sources=20)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False).iloc[:3]
    sb.clear_log()
    with pytest.raises(ValidationError, match=r"q.*is empty: with delete=True") as info:
        c.sources.plan(frame, key=key, delete=True, q=q)
    assert "leave q out (None)" in str(info.value)
    assert sb.log == []
    with warnings.catch_warnings():  # a blank q leaves the rows outside the scope: said, not the point here
        warnings.simplefilter("ignore", UnmatchedRowsWarning)
        assert len(c.sources.plan(frame, key=key, q=q)) == 0, "without delete=True an empty q is harmless"


def test_the_cli_refuses_an_empty_q_with_delete(make_sandbox, cli_main, tmp_path):
    sb = make_sandbox(sources=20)
    site = tmp_path / "site.csv"
    site.write_text("name\nZeta cam 1\n")
    proc = cli_main.run(sb, "apply", str(site), "--key", "name", "--delete", "--q", "", "--yes")
    assert proc.returncode == 3 and "is empty: with delete=True" in proc.stderr
    assert writes(sb) == [] and len(sb.sources) == 20


@pytest.mark.parametrize("with_base", [False, True], ids=["no base", "base"])
def test_a_source_renamed_between_plan_and_apply_is_a_conflict_not_updated(make_sandbox, client_for, with_base):
    """Matched by name, a row means the source of that name. Renamed by a colleague between
    plan and apply (and its old name given to a new source), the source the plan found is no
    longer the one the row describes: a conflict, its settings untouched; overwrite updates it
    anyway, without renaming it back."""
    sb = make_sandbox(sources=40, seed=3)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    space_1 = frame[frame["space_id"] == 1]
    renamed, plain = (int(i) for i in space_1.index[:2])
    name, threshold = frame.at[renamed, "name"], int(frame.at[renamed, "identify_facesize_threshold"])
    desired = space_1.loc[[renamed, plain]].reset_index(drop=True)
    desired["identify_facesize_threshold"] = [4444, 5555]
    plans = [c.sources.plan(desired, frame if with_base else None, key="name") for _ in range(2)]
    sb.external_edit(renamed, name=f"{name} (old)")
    newcomer = sb.add_source(name=name)["id"]

    report = plans[0].apply(progress=False)
    assert report.loc[plain, "status"] == "updated"
    assert report.loc[renamed, "status"] == "conflict"
    assert "renamed" in report.loc[renamed, "error"] and f"{name} (old)" in report.loc[renamed, "error"]
    assert sb.source(renamed)["identify_facesize_threshold"] == threshold
    assert sb.source(newcomer)["identify_facesize_threshold"] != 4444

    report = plans[1].apply(on_conflict="overwrite", progress=False)
    assert report.loc[renamed, "status"] == "updated"
    assert sb.source(renamed)["identify_facesize_threshold"] == 4444 and sb.source(renamed)["name"] == f"{name} (old)"


def test_conflicts_of_deletes_and_creates(make_sandbox, client_for):
    sb = make_sandbox(sources=200, seed=8)
    c = client_for(sb)
    base = c.sources.to_frame(progress=False)
    space_1 = base[base["space_id"] == 1]
    keep = space_1.iloc[3:]
    plan = c.sources.plan(
        pd.concat([keep, new_site(3).set_index(pd.Index([-1, -2, -3]))]).reset_index(drop=True),
        base,
        key="name",
        create=True,
        delete=True,
        spaces_ids=[1],
    )
    changed, gone, deleted = (int(i) for i in space_1.index[:3])
    sb.external_edit(changed, identify_facesize_threshold=12345)  # changed since the base: not deleted
    sb.remove_source(gone)  # already gone: deleted
    taken = sb.add_source(name="Site 7 camera 001", use_pps_time=True)["id"]  # someone made it meanwhile
    report = plan.apply(progress=False, irreversible=True)
    assert report.loc[changed, "status"] == "conflict" and "12345" in report.loc[changed, "error"]
    assert report.loc[gone, "status"] == "deleted" and report.loc[deleted, "status"] == "deleted"
    conflict = report[(report["action"] == "create") & (report["status"] == "conflict")]
    assert list(conflict["name"]) == ["Site 7 camera 001"] and list(conflict.index) == [taken]
    assert report.counts() == {"deleted": 2, "created": 2, "conflict": 2}
    assert changed in sb.sources and deleted not in sb.sources
    assert sb.source(taken)["use_pps_time"] is True

    again = c.sources.plan(
        pd.DataFrame({"name": ["Site 7 camera 001"], "use_pps_time": [False]}), key="name", create=True
    )
    assert len(again.creates) == 0  # now the name is on the server: an update, not a second source
    sb.remove_source(taken)
    late = c.sources.plan(pd.DataFrame({"name": ["Late cam"], "use_pps_time": [True]}), key="name", create=True)
    other = sb.add_source(name="Late cam")["id"]
    report = late.apply(on_conflict="overwrite", progress=False)
    assert report.loc[other, "status"] == "updated" and sb.source(other)["use_pps_time"] is True
    assert [s["name"] for s in sb.sources.values()].count("Late cam") == 1


def test_undo_of_a_sync(make_sandbox, client_for):
    sb = make_sandbox(sources=150, seed=9)
    c = client_for(sb)
    before = c.sources.to_frame(progress=False)
    space_1 = before[before["space_id"] == 1]
    doomed = account_unique(before, 1)[:4]
    desired = space_1.drop(index=doomed).copy()
    desired.loc[desired.index[:5], "identify_facesize_threshold"] = 31000
    desired = pd.concat([desired.reset_index(drop=True), new_site(6)], ignore_index=True)
    report = c.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1]).apply(
        progress=False, irreversible=True
    )
    assert report.counts() == {"deleted": 4, "created": 6, "updated": 5}

    undone = c.sources.undo(report, progress=False)
    assert undone.counts() == {"deleted": 6, "created": 4, "updated": 5}
    recreated = undone[undone["status"] == "created"]
    assert set(recreated["old_id"]) == set(doomed)  # old id -> new id
    for new_id, old_id in zip(recreated.index, recreated["old_id"], strict=True):
        assert sb.source(int(new_id))["name"] == before.at[old_id, "name"]
    pd.testing.assert_frame_equal(by_name(server_frame(sb)), by_name(before))


def test_undo_of_a_delete_in_another_space_than_the_tokens_is_refused_not_made_in_the_wrong_space(
    make_sandbox, client_for
):
    """Undo re-creates a deleted source in its own space or not at all: the report of the delete
    keeps its space, and a source of space 2 cannot be made again by a token whose creates land
    in space 1."""
    sb = make_sandbox(sources=150, seed=9)
    c = client_for(sb)
    before = c.sources.to_frame(progress=False)
    space_2 = before[before["space_id"] == 2]
    doomed = space_2.index[:3]
    report = c.sources.plan(space_2.drop(index=doomed), delete=True, spaces_ids=[2]).apply(
        progress=False, irreversible=True
    )
    assert report.counts() == {"deleted": 3}
    assert [r["space_id"] for r in report["replaced"]] == [2, 2, 2]
    after_delete = sb.sources

    undone = c.sources.undo(report, progress=False)
    assert undone.counts() == {"failed": 3}
    assert undone["error"].str.contains("not created in space 2").all() and set(undone["old_id"]) == set(doomed)
    assert sb.sources == after_delete  # nothing left in space 1


def test_undo_of_a_sync_is_conflict_checked(make_sandbox, client_for):
    sb = make_sandbox(sources=60, seed=10)
    c = client_for(sb)
    report = c.sources.plan(new_site(2), key="name", create=True).apply(progress=False)
    first, second = (int(i) for i in report.index)
    sb.external_edit(first, use_pps_time=True)  # a colleague started using it
    undone = c.sources.undo(report, progress=False)
    assert undone.loc[first, "status"] == "conflict" and undone.loc[second, "status"] == "deleted"
    assert first in sb.sources and second not in sb.sources


def test_interrupt_mid_sync_gives_an_exact_report_and_planning_again_shows_the_rest(
    make_sandbox, client_for, ctrl_c_at
):
    sb = make_sandbox(sources=100, seed=11, latency=0.01)
    c = client_for(sb, max_workers=4)
    site = new_site(200)
    plan = c.sources.plan(site, key="name", create=True)
    ctrl_c_at(sb, "POST", 40)
    with pytest.raises(BulkInterrupted) as info:
        plan.apply(progress=False)
    sb.before_request = None
    partial = info.value.report
    made = {s["id"]: s["name"] for s in sb.sources.values() if s["name"].startswith("Site 7")}
    assert 40 <= len(made) < 200
    assert partial.counts() == {"created": len(made)}
    assert dict(zip(partial.index, partial["name"], strict=True)) == made
    rest = c.sources.plan(site, key="name", create=True)
    assert set(rest.creates["name"]) == set(site["name"]) - set(made.values())
    assert rest.apply(progress=False).counts() == {"created": 200 - len(made)}
    assert Counter(s["name"] for s in sb.sources.values() if s["name"].startswith("Site 7")) == Counter(
        dict.fromkeys(site["name"], 1)
    )


def test_plan_view_leads_with_deletions(make_sandbox, client_for):
    sb = make_sandbox(sources=50, seed=12)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    space_1 = frame[frame["space_id"] == 1]
    desired = space_1.iloc[1:].copy()
    desired.iloc[0, desired.columns.get_loc("identify_facesize_threshold")] = 1234
    desired = pd.concat([desired.reset_index(drop=True), new_site(1)], ignore_index=True)
    plan = c.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1])
    assert plan.summary() == "1 source to delete, 1 to create, 1 to update (1 value)"
    view = plan._repr_html_()
    assert view.index(str(space_1.index[0])) < view.index("Site 7 camera 000") < view.index("1234")
    marks = [line.split()[0] for line in repr(plan).splitlines()[1:]]
    assert [mark for mark in marks if mark in ("-", "+", "~")] == ["-", "+", "~"]
    text = repr(plan)
    assert text.index("- ") < text.index("+ ")


def plan_warned(c, desired, **options):
    """The plan of ``desired`` and the :class:`UnmatchedRowsWarning`s planning it raised."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        plan = c.sources.plan(desired, **options)
    return plan, [w for w in seen if issubclass(w.category, UnmatchedRowsWarning)]


@pytest.mark.parametrize("read", ["plain pd.read_csv", "reset_index"])
def test_rows_that_match_no_source_are_warned_kept_and_shown_not_dropped(make_sandbox, client_for, tmp_path, read):
    """``key="name"`` without ``create=True``: a row whose name is on no source (a typo, a
    stray space, a camera not made yet) is not dropped in silence. Planning warns once,
    naming them; the plan keeps them as the frame held them; its summary, text and HTML say
    how many match no source and that create=True would create them; nothing is created."""
    sb = make_sandbox(sources=60, seed=14)
    c = client_for(sb)
    path = tmp_path / "backup.csv"
    frame = c.sources.export_csv(path)
    desired = pd.read_csv(path) if read == "plain pd.read_csv" else frame.reset_index()
    assert isinstance(desired.index, pd.RangeIndex) and "id" in desired.columns
    original_name = desired.at[3, "name"]
    desired.loc[3, "name"] = original_name + " "  # a stray space: another name
    desired.loc[7, "name"] = "Gate 99, not made yet"
    desired.loc[10, "identify_facesize_threshold"] = 4321  # matched: an update
    lost = [3, 7]

    plan, warned = plan_warned(c, desired, key="name")
    assert len(warned) == 1  # one warning, not one per row
    message = str(warned[0].message)
    assert message.startswith("2 rows of the frame match no source: ")
    assert f"{original_name + ' '!r}, 'Gate 99, not made yet'" in message
    assert "plan.unmatched" in message
    assert warned[0].filename == __file__  # points at the line that planned
    if read == "plain pd.read_csv":  # its list column is JSON text, which create=True refuses: not said to create
        assert "would create" not in message
        assert (
            "create=True (CLI --create) refuses them for bad values: store_images_for_results must be a list, "
            "not JSON text" in message
        )
        assert (
            "To create them, fix their values (a CSV: read it with neuroio_nb.read_csv, not plain pd.read_csv)"
            in message
        )
        note = "2 rows match no source (not created; create=True refuses them: bad values)"
    else:
        assert "create=True (CLI --create) would create them" in message
        note = "2 rows match no source (not created: plan with create=True to create them)"

    pd.testing.assert_frame_equal(plan.unmatched, desired.loc[lost])  # the rows as the frame held them
    assert plan.summary() == f"1 source to update (1 value); {note}"
    assert plan.changes[["id", "field", "new"]].values.tolist() == [
        [int(desired.at[10, "id"]), "identify_facesize_threshold", 4321]
    ]
    header, names, *_ = repr(plan).splitlines()
    assert note in header and "'Gate 99, not made yet'" in names and repr(original_name + " ") in names
    view = plan._repr_html_()
    assert view.index(note) < view.index("Gate 99, not made yet") < view.index("<table")
    warn = re.search(r'<p class="neuroio-tone-warn" style="([^"]*)">([^<]*)', view)
    assert warn and "Matching no source" in warn.group(2)
    assert "color:" not in warn.group(1) and "rgba(" in warn.group(1)  # a tint; the text keeps the theme's colour

    sb.clear_log()
    assert plan.apply(progress=False).counts() == {"updated": 1}
    assert [r.method for r in writes(sb)] == ["PATCH"]  # nothing created

    # asked to create: refused exactly as said (plain pd.read_csv's JSON text), else no warning
    if read == "plain pd.read_csv":
        with pytest.raises(ValidationError) as refusal, pytest.warns(NearDuplicateNamesWarning):
            c.sources.plan(desired, key="name", create=True)
        assert {(p.id, p.field) for p in refusal.value.problems} == {(k, "store_images_for_results") for k in lost}
    plan, warned = plan_warned(c, desired.drop(columns="store_images_for_results"), key="name", create=True)
    assert warned == [] and len(plan.unmatched) == 0
    assert sorted(plan.creates["name"]) == sorted(desired.loc[lost, "name"])


def test_many_rows_that_match_no_source_are_named_cut_as_pandas_cuts(make_sandbox, client_for):
    sb = make_sandbox(sources=30, seed=15)
    c = client_for(sb)
    site = new_site(70)  # nothing of the site exists yet
    plan, warned = plan_warned(c, site, key="name", q="Site 7")
    assert len(warned) == 1 and len(plan) == 0 and plan  # nothing to change, but not in sync either
    names = [repr(n) for n in site["name"]]
    cut = ", ".join([*names[:5], "... 60 more names ...", *names[-5:]])
    message = str(warned[0].message)
    assert message.startswith(f"70 rows of the frame match no source in scope (q='Site 7'): {cut}. ")
    assert names[5] not in message
    assert (
        plan.summary()
        == "nothing to change; 70 rows match no source (not created: plan with create=True to create them)"
    )
    assert cut in repr(plan).splitlines()[1]
    view = plan._repr_html_()
    assert "70 rows match no source" in view and "... 60 more names ..." in view and "plan.unmatched</code>" in view
    with pd.option_context("display.max_rows", 100):  # every name, as pandas would show every row
        assert all(n in plan_warned(c, site, key="name")[1][0].message.args[0] for n in names)
    pd.testing.assert_frame_equal(plan.unmatched, site)

    # the rows create=True refuses for their values: each problem's names cut, and the problems too
    site["store_images_for_results"] = [f'["new", "x{i}"]' for i in range(70)]  # JSON text, as plain pd.read_csv
    site["identify_facesize_threshold"] = [-1 - i for i in range(70)]  # one problem each: cut as rows are
    plan, warned = plan_warned(c, site, key="name", q="Site 7")
    message = str(warned[0].message)
    assert (
        f"store_images_for_results must be a list, not JSON text (plain pd.read_csv leaves it as text; neuroio_nb.read_csv reads it as a list): {cut}"
        in message
    )
    assert f"identify_facesize_threshold must be 0 or more: {cut}" in message  # same reason: one group
    site["store_images_for_results"] = [[f"bad {i}"] for i in range(70)]  # a reason of its own each
    plan, warned = plan_warned(c, site.drop(columns="identify_facesize_threshold"), key="name", q="Site 7")
    told = parts_of(plan).unmatched.refused_for_values()
    assert "... 60 more problems ..." in told and "unknown value(s) ['bad 4']" in told and "['bad 5']" not in told
    assert told in str(warned[0].message) and told in repr(plan)


def test_rows_outside_the_scope_are_told_why_create_would_refuse_them_not_that_it_would_create_them(
    make_sandbox, client_for
):
    """With ``q`` / ``spaces_ids`` and without ``create=True``, a row that matches no source
    because its name lacks ``q`` or its ``space_id`` is not in ``spaces_ids`` is one that
    ``create=True`` refuses (and the plan with it). The one warning, the summary, the text
    and HTML views say so, why, and what to do; they say create=True would create only the
    rows it does create. Each hint is checked against what planning with create=True does."""
    sb = make_sandbox(sources=40, seed=13)
    c = client_for(sb)
    scope = {"q": "cam", "spaces_ids": [1, 2]}
    server = c.sources.to_frame(progress=False, **scope)
    known = server.index[0]
    desired = pd.DataFrame(
        {
            "name": [server.at[known, "name"], "Gate 99 cam", "Gate 98 cam", "Kiosk 12", "Dock 7 cam", "Kiosk 13"],
            "space_id": pd.array([server.at[known, "space_id"], 1, None, 1, 3, 4], dtype="Int64"),
            "use_pps_time": [not server.at[known, "use_pps_time"], True, False, True, True, False],
        },
        index=["known", "new", "new, no space", "off q", "off spaces", "off both"],
    )
    creatable, off_q, off_spaces = ["new", "new, no space"], ["off q", "off both"], ["off spaces", "off both"]
    refused = ["off q", "off spaces", "off both"]
    names = desired["name"]

    def quoted(labels):
        return ", ".join(repr(names[label]) for label in labels)

    plan, warned = plan_warned(c, desired, key="name", **scope)
    assert len(warned) == 1  # one warning for the plan, not one per row or per reason
    message = str(warned[0].message)
    assert message.startswith(
        f"5 rows of the frame match no source in scope (q='cam', spaces_ids=[1, 2]): {quoted(desired.index[1:])}. "
    )
    assert "would create them" not in message  # not every row: three of them it refuses
    assert f"create=True (CLI --create) would create 2 of them ({quoted(creatable)})" in message
    assert "refuses 3 outside the scope, and the plan with them" in message
    assert f"names without q='cam': {quoted(off_q)}" in message
    assert f"space_id not in spaces_ids=[1, 2]: {quoted(off_spaces)}" in message
    assert "To create them, widen or drop q / spaces_ids, or fix their name / space_id" in message
    pd.testing.assert_frame_equal(plan.unmatched, desired.iloc[1:])  # unchanged: every row that matches no source

    note = "5 rows match no source (not created; create=True would create 2 but refuses 3 outside the scope)"
    assert plan.summary() == f"1 source to update (1 value); {note}"
    text = repr(plan)
    assert note in text and "plan with create=True to create" not in text
    assert f"names without q='cam': {quoted(off_q)}" in text
    view = plan._repr_html_()
    assert note in view and "plan with create=True to create" not in view
    assert escape(f"names without q='cam': {quoted(off_q)}") in view

    # the hints are true: create=True refuses exactly the rows said to be outside, for the reasons said ...
    with pytest.raises(ValidationError) as refusal:
        c.sources.plan(desired, key="name", create=True, **scope)
    assert {p.id for p in refusal.value.problems} == set(refused)
    assert {p.id for p in refusal.value.problems if "q='cam'" in p.reason} == set(off_q)
    assert {p.id for p in refusal.value.problems if "spaces_ids=[1, 2]" in p.reason} == set(off_spaces)
    # ... and, with them left out, creates exactly the rows said to be created
    plan = c.sources.plan(desired.drop(index=refused), key="name", create=True, **scope)
    assert sorted(plan.creates["name"]) == sorted(names[creatable])

    # every row outside the scope: nothing said about create=True creating any
    plan, warned = plan_warned(c, desired.loc[refused], key="name", **scope)
    message = str(warned[0].message)
    assert "would create" not in message and "create=True (CLI --create) refuses them, as outside the scope" in message
    assert (
        plan.summary()
        == "nothing to change; 3 rows match no source (not created; create=True refuses them: outside the scope)"
    )


def test_rows_whose_values_create_would_refuse_are_told_so_not_that_it_would_create_them(
    make_sandbox, client_for, tmp_path
):
    """Without ``create=True``, a row that matches no source and holds a value ``create=True``
    refuses (a plain ``pd.read_csv`` frame's list column is JSON text, a negative threshold, one
    above the cap) is not said to be one create=True would create: the one warning, the summary,
    the text and HTML views name those rows by field and problem and say what to do. Each hint is
    checked against what create=True does: it refuses exactly those rows for those reasons, and
    once they are fixed, or left out, it creates exactly the rows said to be created."""
    sb = make_sandbox(sources=40, seed=13)
    c = client_for(sb)
    path = tmp_path / "backup.csv"
    c.sources.export_csv(path)
    desired = pd.read_csv(path)  # plain pandas: store_images_for_results is JSON text
    own_space = desired.index[desired["space_id"] == 1][:4].tolist()  # created where the token's creates land
    json_text, negative, too_big, creatable = own_space
    for label in own_space:
        desired.loc[label, "name"] = f"Renamed {label}"
    desired.loc[negative, "identify_facesize_threshold"] = -5
    desired.loc[[too_big, creatable], "store_images_for_results"] = None  # empty: the server's default
    desired.loc[too_big, "auto_create_facesize_threshold"] = 20_000_000
    refused = [json_text, negative, too_big]
    names = desired["name"]

    def quoted(labels):
        return ", ".join(repr(names[label]) for label in labels)

    json_reason = (
        "must be a list, not JSON text (plain pd.read_csv leaves it as text; neuroio_nb.read_csv reads it as a list)"
    )
    groups = [  # grouped by field and problem, in the frame's column order, as create=True's error groups them
        f"identify_facesize_threshold must be 0 or more: {quoted([negative])}",
        f"auto_create_facesize_threshold must be at most 10,000,000: {quoted([too_big])}",
        f"store_images_for_results {json_reason}: {quoted([json_text, negative])}",
    ]
    told = (
        "; ".join(groups)
        + ". To create them, fix their values (a CSV: read it with neuroio_nb.read_csv, not plain pd.read_csv)"
    )

    plan, warned = plan_warned(c, desired, key="name")
    assert len(warned) == 1  # one warning for the plan, not one per row or per reason
    message = str(warned[0].message)
    assert message.startswith(f"4 rows of the frame match no source: {quoted(own_space)}. ")
    assert "would create them" not in message and "would create it" not in message
    assert f"create=True (CLI --create) would create 1 of them ({quoted([creatable])})" in message
    assert f"but refuses 3 for bad values, and the plan with them: {told}; to create the rest" in message
    pd.testing.assert_frame_equal(plan.unmatched, desired.loc[own_space])  # unchanged: every row that matches no source
    assert parts_of(plan).unmatched.refused() == refused

    note = "4 rows match no source (not created; create=True would create 1 but refuses 3 for bad values)"
    assert plan.summary() == f"nothing to change; {note}"
    text = repr(plan)
    assert note in text and f"bad values (create=True refuses them): {told}" in text
    view = plan._repr_html_()
    assert note in view and escape(f"Bad values, which create=True refuses: {told}.") in view

    # the hints are true: create=True refuses exactly the rows said to be refused, for the reasons said ...
    with pytest.raises(ValidationError) as refusal:
        c.sources.plan(desired, key="name", create=True)
    said = {
        (label, f, r)
        for f, r, labels in (
            ("store_images_for_results", json_reason, [json_text, negative]),
            ("identify_facesize_threshold", "must be 0 or more", [negative]),
            ("auto_create_facesize_threshold", "must be at most 10,000,000", [too_big]),
        )
        for label in labels
    }
    assert {(p.id, p.field, p.reason) for p in refusal.value.problems} == said
    # ... with them left out, it creates exactly the row said to be created ...
    plan = c.sources.plan(desired.drop(index=refused), key="name", create=True)
    assert list(plan.creates["name"]) == [names[creatable]]
    # ... and with their values fixed (the CSV read as neuroio_nb.read_csv reads it), every one
    fixed = read_csv(path).reset_index()
    fixed.loc[own_space, "name"] = names[own_space]
    report = c.sources.plan(fixed, key="name", create=True).apply(progress=False)
    assert report.counts() == {"created": 4}
    assert sorted(report["name"]) == sorted(names[own_space])

    assert_a_column_create_does_not_know_refuses_every_row_and_is_said_so(c)


def assert_a_column_create_does_not_know_refuses_every_row_and_is_said_so(c) -> None:
    site = pd.DataFrame({"name": ["Zeta cam 1", "Zeta cam 2"], "notes": ["north door", None]})
    plan, warned = plan_warned(c, site, key="name")
    message = str(warned[0].message)
    assert "would create" not in message and "create=True (CLI --create) refuses them for bad values" in message
    assert (
        "notes: unknown column: not a field of the schema nor of the server's sources. To create them, drop that column"
        in message
    )
    assert (
        plan.summary()
        == "nothing to change; 2 rows match no source (not created; create=True refuses them: bad values)"
    )
    with pytest.raises(ValidationError, match="notes: unknown column"):
        c.sources.plan(site, key="name", create=True)
    assert len(c.sources.plan(site.drop(columns="notes"), key="name", create=True).creates) == 2


#: Hypothesis for a test that drives one sandbox: few examples, the same ones every run, no deadline.
ON_A_SANDBOX = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)

#: Values a row to create may hold, good and bad, as object cells (a frame edited by hand).
THRESHOLDS = st.sampled_from([None, 0, 5000, 10_000_000, -1, 10_000_001, 7000.0, "7000", 2.5])
KEEP_IMAGES = st.sampled_from([None, [], ["new", "det"], '["new"]', "new", ["bogus"], ("ha",)])
FLAGS = st.sampled_from([None, True, False, "yes", 1])


def test_each_hint_of_what_create_would_do_with_an_unmatched_row_is_what_it_does(make_sandbox, client_for):
    """Generated rows that match no source, beside rows that do, with good and bad values of
    every kind, some outside ``q``: the rows the warning says create=True refuses are exactly
    those it refuses, for the problems said (field and reason, or the scope); with them left
    out it creates exactly the rest."""
    sb = make_sandbox(sources=30, seed=17)
    c = client_for(sb)
    counts = Counter(s["name"] for s in sb.sources.values())
    held_once = sorted(name for name, n in counts.items() if n == 1)

    @ON_A_SANDBOX
    @given(
        known=st.lists(st.sampled_from(held_once), unique=True, max_size=3),
        new=st.lists(st.tuples(st.booleans(), THRESHOLDS, KEEP_IMAGES, FLAGS), min_size=1, max_size=6),
        q=st.sampled_from([None, "new"]),
    )
    def check(known, new, q):
        rows = [(name, None, None, None) for name in known if q is None or q in name.casefold()]
        rows += [(f"{'New' if in_q else 'Kiosk'} {n}", *values) for n, (in_q, *values) in enumerate(new)]
        desired = pd.DataFrame(
            rows,
            columns=["name", "identify_facesize_threshold", "store_images_for_results", "use_pps_time"],
            dtype=object,
        )
        plan, warned = plan_warned(c, desired, key="name", q=q)
        assert len(warned) == 1 and len(plan.unmatched) == len(new)
        message = str(warned[0].message)
        said = parts_of(plan).unmatched.refused()
        try:
            c.sources.plan(desired, key="name", create=True, q=q)
            refused = []
        except ValidationError as exc:
            refused = exc.problems
        assert said == sorted({p.id for p in refused})
        for_values = {(p.id, p.field, p.reason) for p in refused if "outside the scope" not in p.reason}
        assert for_values == {(p.id, p.field, p.reason) for p in parts_of(plan).unmatched.refused_values}
        for p in refused:
            assert repr(desired.at[p.id, "name"]) in message
            assert f"{p.field} {p.reason}: " in message or re.search(f"names? without q={q!r}: ", message)
        note = plan.summary()
        assert ("bad values" in note) == bool(for_values)
        assert ("outside the scope" in note) == any("outside the scope" in p.reason for p in refused)
        if said:
            assert "would create them" not in message and "would create it" not in message
        else:
            assert "would create them" in message or "would create it" in message
        if len(said) < len(desired):  # with the refused rows left out, exactly the rest is created
            created = c.sources.plan(desired.drop(index=said), key="name", create=True, q=q).creates
            assert sorted(created["name"]) == sorted(plan.unmatched.drop(index=said)["name"])

    check()


#: Names an operator's frame may hold that no source has: look-alikes of numbers, booleans and
#: formulas, blanks around a word, other scripts; drawn beside names the server holds once.
ODD_NAMES = st.one_of(
    st.sampled_from(["45", "007", "1e3", "True", "nan", "None", "=A1", "+33", " Gate 1", "Gate 1 ", "ü", "東京 cam"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12),
).filter(lambda name: bool(name.strip()))


def test_exactly_the_rows_whose_name_no_source_has_are_unmatched(make_sandbox, client_for):
    """Generated frames (names the server holds and odd ones it does not, any index, object or
    string dtype): ``plan.unmatched`` is exactly the rows whose name no source has, as the frame
    holds them; one warning names each of them, and only when there are some."""
    sb = make_sandbox(sources=80, seed=16)
    c = client_for(sb)
    counts = Counter(s["name"] for s in sb.sources.values())
    held_once = sorted(name for name, n in counts.items() if n == 1)

    @ON_A_SANDBOX
    @given(
        known=st.lists(st.sampled_from(held_once), unique=True, max_size=6),
        odd=st.lists(ODD_NAMES.filter(lambda name: name not in counts), unique=True, max_size=8),
        order=st.randoms(use_true_random=False),
        labels=st.sampled_from(["range", "text", "negative"]),
        dtype=st.sampled_from([object, "string"]),
    )
    def check(known, odd, order, labels, dtype):
        names = known + odd
        if not names:
            return
        order.shuffle(names)
        index = {
            "range": pd.RangeIndex(len(names)),
            "text": pd.Index([f"row {n}" for n in range(len(names))]),
            "negative": pd.Index([-n for n in range(len(names))]),
        }[labels]
        desired = pd.DataFrame({"name": pd.Series(names, index=index, dtype=dtype)})
        plan, warned = plan_warned(c, desired, key="name")
        lost = desired[~desired["name"].isin(known)]
        pd.testing.assert_frame_equal(plan.unmatched, lost)
        assert len(plan) == 0 and bool(plan) == bool(odd)
        assert len(warned) == (1 if odd else 0)
        if odd:
            message = str(warned[0].message)
            assert message.startswith(f"{len(odd)} row{'s' if len(odd) > 1 else ''} of the frame match")
            assert all(repr(name) in message for name in odd)
            assert plan.summary().endswith(
                f"match{'es' if len(odd) == 1 else ''} no source (not created: plan with create=True to create {'it' if len(odd) == 1 else 'them'})"
            )

    check()


# ---- the command line ------------------------------------------------------------------------


def test_cli_provisions_a_site_from_a_csv_of_names_and_deletes_only_when_confirmed(make_sandbox, cli_main, tmp_path):
    sb = make_sandbox(sources=40, seed=13)
    site = tmp_path / "site.csv"
    site.write_text("name,identify_facesize_threshold,use_pps_time\nZeta cam 1,5000,true\nZeta cam 2,,\n")
    proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
    assert proc.returncode == 2 and "To create (2 sources)" in proc.stdout and "Zeta cam 2" in proc.stdout
    sb.clear_log()
    proc = cli_main.run(
        sb, "apply", str(site), "--key", "name", "--create", "--yes", "--report", str(tmp_path / "r.csv")
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 created" in proc.stdout and [r.method for r in writes(sb)] == ["POST", "POST"]
    report = pd.read_csv(tmp_path / "r.csv")
    assert list(report["action"]) == ["create", "create"] and set(report["id"]) == set(sb.sources) - set(range(1, 41))
    assert cli_main.run(sb, "plan", str(site), "--key", "name", "--create").returncode == 0  # nothing left to do

    only_dock = tmp_path / "only_dock.csv"
    only_dock.write_text("name\nZeta cam 1\n")
    args = ["apply", str(only_dock), "--key", "name", "--delete", "--q", "zeta", "--irreversible"]
    sb.clear_log()
    proc = cli_main.run(sb, *args)  # stdin is not a terminal and no --yes: nothing at all
    assert proc.returncode == 6 and "To delete (1 source)" in proc.stdout and writes(sb) == []
    for answer, code, deleted in (("n", 6, 0), ("y", 0, 1)):
        returncode, _out, err = cli_main.on_a_terminal(sb, *args, answer=answer)
        assert returncode == code, err
        assert "Delete the 1 source listed above? [y/N]" in err
        assert len(sb.requests("DELETE")) == deleted
    assert [s["name"] for s in sb.sources.values()].count("Zeta cam 2") == 0
    assert [s["name"] for s in sb.sources.values()].count("Zeta cam 1") == 1


def test_cli_says_which_rows_match_no_source_and_that_create_would_create_them(make_sandbox, cli_main, tmp_path):
    sb = make_sandbox(sources=40, seed=13)
    known, flag = sb.source(5)["name"], str(not sb.source(5)["use_pps_time"]).lower()
    site = tmp_path / "site.csv"
    site.write_text(f"name,use_pps_time\n{known},{flag}\nZeta cam 1,true\nZeta cam 2,\n")
    line = "2 rows match no source (not created: plan with --create to create them): 'Zeta cam 1', 'Zeta cam 2'"
    proc = cli_main.run(sb, "plan", str(site), "--key", "name")
    assert proc.returncode == 2, proc.stderr  # the CSV and the server differ
    assert line in proc.stdout.splitlines()
    assert "warning" not in proc.stderr  # said once, with the plan, not again as a warning
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(site), "--key", "name", "--yes")
    assert proc.returncode == 0 and line in proc.stdout.splitlines()
    assert [r.method for r in writes(sb)] == ["PATCH"] and sb.source(5)["use_pps_time"] == (flag == "true")
    proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
    assert "match no source" not in proc.stdout and "To create (2 sources)" in proc.stdout

    only_missing = tmp_path / "missing.csv"
    only_missing.write_text("name\nZeta cam 3\n")
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(only_missing), "--key", "name")  # nothing to send: nothing asked
    assert proc.returncode == 0 and writes(sb) == []
    assert "1 row matches no source (not created: plan with --create to create it): 'Zeta cam 3'" in proc.stdout


def test_cli_says_which_rows_are_outside_the_scope_that_create_refuses_and_what_to_do(make_sandbox, cli_main, tmp_path):
    """``--q`` / ``--space`` without ``--create``: a row outside them is not said to be one
    ``--create`` would create; the plan names it, why ``--create`` refuses it, and what to do."""
    sb = make_sandbox(sources=40, seed=13)
    site = tmp_path / "site.csv"
    site.write_text("name,space_id\nGate 99 cam,1\nKiosk 12,1\nDock 7 cam,3\n")
    scope = ["--key", "name", "--q", "cam", "--space", "1", "2"]
    proc = cli_main.run(sb, "plan", str(site), *scope)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        "3 rows match no source (not created; --create would create 1 but refuses 2 outside the scope): "
        "'Gate 99 cam', 'Kiosk 12', 'Dock 7 cam'"
    ) in lines
    assert (
        "Outside the scope (--create refuses them): name without --q 'cam': 'Kiosk 12'; "
        "space_id not in --space 1 2: 'Dock 7 cam'. To create them, widen or drop --q / --space, "
        "or fix their name / space_id."
    ) in lines
    assert "to create them" not in proc.stdout and "warning" not in proc.stderr
    # true: --create refuses exactly those two, and creates the other once they are left out
    proc = cli_main.run(sb, "plan", str(site), *scope, "--create")
    assert proc.returncode != 0 and "To create" not in proc.stdout
    said = proc.stdout + proc.stderr
    assert "is outside the scope q='cam'" in said and "is outside the scope spaces_ids=[1, 2]" in said
    site.write_text("name,space_id\nGate 99 cam,1\n")
    proc = cli_main.run(sb, "plan", str(site), *scope, "--create")
    assert proc.returncode == 2 and "To create (1 source)" in proc.stdout and "Gate 99 cam" in proc.stdout


def test_cli_says_which_rows_create_refuses_for_their_values_and_what_to_do(make_sandbox, cli_main, tmp_path):
    """``--key name`` without ``--create``: a row that matches no source and holds a value
    ``--create`` refuses is not said to be one it would create; the plan names the row by field
    and problem and says what to do; ``--create`` then refuses exactly it, and creates the rest."""
    sb = make_sandbox(sources=40, seed=13)
    site = tmp_path / "site.csv"
    site.write_text("name,identify_facesize_threshold\nZeta cam 1,5000\nZeta cam 2,-5\nZeta cam 3,\n")
    proc = cli_main.run(sb, "plan", str(site), "--key", "name")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    assert (
        "3 rows match no source (not created; --create would create 2 but refuses 1 for bad values): "
        "'Zeta cam 1', 'Zeta cam 2', 'Zeta cam 3'"
    ) in lines
    assert (
        "Bad values (--create refuses it): identify_facesize_threshold must be 0 or more: 'Zeta cam 2'. "
        "To create it, fix its value."
    ) in lines
    assert "to create them" not in proc.stdout and "warning" not in proc.stderr
    proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
    assert proc.returncode != 0 and "To create" not in proc.stdout
    assert "identify_facesize_threshold = -5: must be 0 or more" in proc.stdout + proc.stderr
    site.write_text("name,identify_facesize_threshold\nZeta cam 1,5000\nZeta cam 3,\n")
    proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
    assert proc.returncode == 2 and "To create (2 sources)" in proc.stdout


def test_cli_names_ids_not_found_also_when_the_plan_only_deletes(make_sandbox, client_for, cli_main, tmp_path):
    """``--delete`` with ids the server does not have and no value changed: the deletions are
    listed and so are the ids not found (apply reports them as failed)."""
    sb = make_sandbox(sources=40, seed=13)
    c = client_for(sb)
    space_2 = c.sources.to_frame(spaces_ids=[2], progress=False)
    gone = space_2.iloc[[1]].rename(index={space_2.index[1]: 99999})  # a row whose source is not there
    path = tmp_path / "space2.csv"
    c.sources.export_csv(path, pd.concat([space_2.drop(index=space_2.index[0]), gone]))
    proc = cli_main.run(sb, "plan", str(path), "--delete", "--space", "2")
    assert proc.returncode == 2 and "To delete (1 source)" in proc.stdout
    assert "Not found (1 id; apply reports them as failed): 99999" in proc.stdout


def test_problems_of_a_frame_matched_by_name_name_its_rows_not_ids(sb, client):
    """A frame matched by name has no ids: its labels are rows (a RangeIndex, another account's ids)."""
    known = server_frame(sb).iloc[0]
    desired = pd.DataFrame(
        {
            "name": ["Dock cam 1", known["name"], "Dock cam 1"],
            "identify_facesize_threshold": [7000, -5, 7000],
        }
    )
    with pytest.raises(ValidationError) as info:
        client.sources.plan(desired, key="name", create=True)
    message = str(info.value)
    assert "row 1, identify_facesize_threshold = -5" in message  # the row matched a source: still its row
    assert "rows 0, 2" in message  # the name twice
    assert not re.search(r"\bids? \d", message), message
    assert info.value.labels == "row" and {p.id for p in info.value.problems} >= {1, 2}


#: Names a person cannot tell from a source's, each with what differs.
LOOK_ALIKES = {
    "dock cam 1": ("Dock cam 1", "upper and lower case"),
    "Gate\u00a0A": ("Gate A", "non-breaking"),
    "Gate A ": ("Gate A", "spaces at the start or end"),
    "Cafe\u0301 Nord": ("Caf\u00e9 Nord", "NFC"),
    "\uff27ate B": ("Gate B", "NFKC"),
    "Dock\u200b cam 2": ("Dock cam 2", "invisible"),
}


@pytest.mark.parametrize("create", [True, False])
def test_a_name_that_only_looks_like_a_sources_is_warned_about_and_matching_stays_exact(
    make_sandbox, client_for, create
):
    originals = ["Dock cam 1", "Gate A", "Caf\u00e9 Nord", "Gate B", "Dock cam 2"]
    sb = make_sandbox(sources=[{"id": n, "name": name} for n, name in enumerate(originals, start=1)])
    desired = pd.DataFrame({"name": [*LOOK_ALIKES, "Brand new", "Dock cam 2"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = client_for(sb).sources.plan(desired, key="name", create=create)
    near = [w for w in caught if issubclass(w.category, NearDuplicateNamesWarning)]
    assert len(near) == 1 and near[0].filename == __file__  # one warning, pointing at the user's line
    message = str(near[0].message)
    assert message.startswith("6 rows match no source by name, but each looks like one: ")
    for label, (typed, (source, differs)) in enumerate(LOOK_ALIKES.items()):
        assert f"row {label} {typed!r} ~ source {originals.index(source) + 1} {source!r}" in message
        assert differs in message.split(f"row {label} ")[1].split(";")[0]
    assert "row 6" not in message and "row 7" not in message  # a new name; an exact one
    # matching stays exact: the look-alikes are rows to create (or unmatched), never updates of the sources
    assert len(plan.changes) == 0
    assert len(plan.creates if create else plan.unmatched) == 7


@given(
    name=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp", "Zs")), min_size=1, max_size=12
    ),
    disguise=st.sampled_from(
        [
            str.upper,
            str.lower,
            lambda s: f" {s}",
            lambda s: s + "\u00a0",
            lambda s: "\u200b" + s,
            lambda s: s.replace("e", "\uff45"),
        ]
    ),
)
def test_a_disguised_name_is_a_near_duplicate_and_an_exact_one_never(name, disguise):
    from neuroio_nb._jobs.names import near_duplicates

    sources = [{"id": 1, "name": name}]
    assert near_duplicates([(0, name)], sources) == []  # exact: a match, not a look-alike
    typed = disguise(name)
    found = near_duplicates([(0, typed)], sources)
    if typed == name:
        assert found == []
    elif (
        unicodedata.normalize("NFKC", typed).casefold().strip()
        == unicodedata.normalize("NFKC", name).casefold().strip()
    ):
        assert [(d.label, d.source_id) for d in found] == [(0, 1)] and found[0].differences
