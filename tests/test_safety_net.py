"""The safety net (design.md, "The safety net"): every write conditional on what the plan saw,
``replaced`` what the write replaced, undo and resume settled by the journal plus one read of
the server, and what undo cannot reverse said before apply. Over the sandbox, on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from neuroio_nb.errors import ValidationError

# ---- 1. a plan always has a base -----------------------------------------------------------------


@pytest.fixture
def small(make_sandbox, client_for):
    sb = make_sandbox(sources=40, seed=3)
    c = client_for(sb)
    return sb, c, c.sources.to_frame(progress=False)


def test_a_plan_without_base_makes_a_colleagues_change_since_a_conflict(small):
    """The colleague changes a field while the user reads the plan (as at the CLI's "Apply?"
    prompt): applying leaves it, says so, and undo has nothing of it to put back."""
    sb, c, frame = small
    edited = frame.loc[[3, 4]].copy()
    edited["identify_facesize_threshold"] = 11111
    plan = c.sources.plan(edited)  # no base: the plan's own read is its base
    sb.external_edit(3, identify_facesize_threshold=9999)
    report = plan.apply(progress=False)
    assert report.loc[3, "status"] == "conflict" and "9999" in report.loc[3, "error"]
    assert sb.source(3)["identify_facesize_threshold"] == 9999, "the colleague's value stays"
    assert report.loc[4, "status"] == "updated"
    assert report.loc[4, "replaced"] == {"identify_facesize_threshold": frame.loc[4, "identify_facesize_threshold"]}
    c.sources.undo(report, progress=False)
    assert sb.source(3)["identify_facesize_threshold"] == 9999
    assert sb.source(4)["identify_facesize_threshold"] == frame.loc[4, "identify_facesize_threshold"]


@pytest.mark.parametrize("undo_from", ["report", "journal"])
def test_under_overwrite_replaced_is_the_value_on_the_server_right_before_the_write(small, undo_from):
    sb, c, frame = small
    edited = frame.loc[[3]].copy()
    edited["identify_facesize_threshold"] = 11111
    plan = c.sources.plan(edited)
    sb.external_edit(3, identify_facesize_threshold=9999)
    report = plan.apply(on_conflict="overwrite", progress=False)
    assert report.loc[3, "status"] == "updated" and sb.source(3)["identify_facesize_threshold"] == 11111
    assert report.loc[3, "replaced"] == {"identify_facesize_threshold": 9999}, "the re-read value, not the plan's"
    c.sources.undo(report if undo_from == "report" else report.attrs["run_id"], progress=False)
    assert sb.source(3)["identify_facesize_threshold"] == 9999, "undo puts back the colleague's value"


def test_bulk_update_without_base_is_conflict_checked_too(small):
    sb, c, frame = small
    edited = frame.loc[[5, 6]].copy()
    edited["use_pps_time"] = ~edited["use_pps_time"].astype(bool)
    sb.external_edit(5, use_pps_time=bool(edited.loc[5, "use_pps_time"]))  # already what the edit wants
    report = c.sources.bulk_update(edited, progress=False)
    assert set(report["status"]) == {"updated"}
    assert [r.source_id for r in sb.requests("PATCH")] == [6], "a source already holding the edit gets no PATCH"


# ---- 2. a lost create is settled from the holders recorded before the POST ----------------------

SYNC_ONE = textwrap.dedent("""
    import pandas as pd
    from neuroio_nb import Client

    client = Client(max_workers=2)
    desired = pd.DataFrame({"name": ["Gate X"], "identify_facesize_threshold": [5150]})
    client.sources.plan(desired, key="name", create=True, spaces_ids=[1]).apply(progress=False)
    print("FINISHED", flush=True)
""")


def stranger_in_space_2(make_sandbox):
    """A sandbox whose space 2 holds "Gate X" with the settings the sync creates it with."""
    sb = make_sandbox(sources=30, seed=5, latency=0.01)
    records = list(sb.sources.values())
    stranger = next(r for r in records if r["space_id"] == 2)
    stranger.update(name="Gate X", identify_facesize_threshold=5150)
    sb.reset(records)
    return sb, stranger["id"]


def killed_at_the_post(make_sandbox, folder: Path, *, applied: bool):
    """SIGKILL the syncer as its POST arrives; the POST is then applied (its answer never read)
    or refused. Returns the sandbox, the stranger's id, and the sources after the kill."""
    sb, stranger = stranger_in_space_2(make_sandbox)
    env = dict(os.environ, NEUROIO_API_TOKEN=sb.token, NEUROIO_API_URL=sb.url, NEUROIO_NB_JOURNAL=str(folder))
    proc = subprocess.Popen([sys.executable, "-c", SYNC_ONE], env=env, stdout=subprocess.PIPE, text=True)

    def hook(method: str, path: str) -> None:
        if method == "POST":
            proc.kill()
            proc.wait()
            if not applied:
                raise RuntimeError("killed before the create was applied")

    sb.before_request = hook
    proc.wait(timeout=120)
    assert proc.returncode == -9, "the syncer was not killed: it finished first"
    sb.wait_idle(closed=True)
    sb.before_request = None
    made = [i for i, s in sb.sources.items() if s["name"] == "Gate X" and i != stranger]
    assert len(made) == (1 if applied else 0)
    return sb, stranger, made


@pytest.mark.parametrize("applied", [True, False], ids=["create-applied", "create-refused"])
def test_undo_of_a_sync_killed_mid_create_never_deletes_a_namesake_of_another_space(
    make_sandbox, client_for, tmp_path, applied
):
    folder = tmp_path / "journal"
    sb, stranger, made = killed_at_the_post(make_sandbox, folder, applied=applied)
    c = client_for(sb, journal=folder)
    undone = c.sources.undo(c.sources.history().index[0], progress=False)
    assert stranger in sb.sources, "the namesake in space 2 that the run never touched stays"
    assert not [i for i in made if i in sb.sources], "the source the run made is deleted"
    assert [r.source_id for r in sb.requests("DELETE")] == made
    assert set(undone.index[undone["status"] == "deleted"]) == set(made)


@pytest.mark.parametrize("applied", [True, False], ids=["create-applied", "create-refused"])
def test_resume_of_a_sync_killed_mid_create_creates_in_its_space_what_was_not_made(
    make_sandbox, client_for, tmp_path, applied
):
    folder = tmp_path / "journal"
    sb, stranger, _ = killed_at_the_post(make_sandbox, folder, applied=applied)
    c = client_for(sb, journal=folder)
    sb.clear_log()
    report = c.sources.resume(c.sources.history().index[0], progress=False)
    assert len(sb.requests("POST")) == (0 if applied else 1), "created once, never twice"
    ours = [i for i, s in sb.sources.items() if s["name"] == "Gate X" and i != stranger]
    assert len(ours) == 1 and sb.source(ours[0])["space_id"] == 1
    assert report.counts() == {"created": 1}
    assert list(report.index) == ours, "the report names the source made for the row, not the stranger"


# ---- 3. what undo cannot reverse is said before apply --------------------------------------------


def two_namesakes(make_sandbox):
    """Space 1 and space 3 each hold a source named "Twin" (the token's creates land in space 1)."""
    sb = make_sandbox(sources=60, seed=7)
    records = list(sb.sources.values())
    one = next(r for r in records if r["space_id"] == 1)
    three = next(r for r in records if r["space_id"] == 3)
    one["name"] = three["name"] = "Twin"
    sb.reset(records)
    return sb, one["id"], three["id"]


def deleting(c, ids):
    frame = c.sources.to_frame(progress=False)
    return c.sources.plan(frame.drop(index=ids), delete=True)


def test_the_plan_shows_each_deletes_space_and_that_it_cannot_tell_yet_and_apply_refuses(make_sandbox, client_for):
    sb, one, three = two_namesakes(make_sandbox)
    c = client_for(sb)
    plan = deleting(c, [one, three])
    deletes = plan.deletes.set_index("id")
    assert deletes.loc[[one, three], "space_id"].tolist() == [1, 3]
    assert deletes["undo"].tolist() == ["cannot tell yet", "cannot tell yet"]
    assert "undo cannot tell yet" in repr(plan) and "irreversible=True" in repr(plan)
    assert f"{three} " in repr(plan) and "(space 3; undo cannot tell yet)" in repr(plan)
    assert "cannot tell yet" in plan._repr_html_() and "irreversible=True" in plan._repr_html_()
    before = sb.sources
    with pytest.raises(ValidationError) as refused:
        plan.apply(progress=False)
    assert "irreversible=True" in str(refused.value) and str(three) in str(refused.value)
    assert sb.sources == before and not sb.requests("DELETE"), "refused before the first request"
    report = plan.apply(irreversible=True, progress=False)
    assert report.counts() == {"deleted": 2}


def test_once_the_tokens_space_is_known_the_plan_says_which_deletes_undo_cannot_bring_back(make_sandbox, client_for):
    sb, one, three = two_namesakes(make_sandbox)
    c = client_for(sb)
    made = c.sources.create("Scratch")  # the client learns where its creates land
    c.sources.delete(made["id"])
    plan = deleting(c, [one, three])
    deletes = plan.deletes.set_index("id")
    assert deletes.loc[one, "undo"] == "can restore"
    assert deletes.loc[three, "undo"].startswith("cannot restore")
    with pytest.raises(ValidationError):
        plan.apply(progress=False)
    only_space_1 = deleting(c, [one])
    assert only_space_1.apply(progress=False).counts() == {"deleted": 1}, "nothing irreversible: no refusal"


@pytest.mark.parametrize("attempt", range(5))
def test_undo_of_two_namesakes_deleted_in_two_spaces_brings_back_the_tokens_one_every_time(
    make_sandbox, client_for, tmp_path, attempt
):
    sb, one, three = two_namesakes(make_sandbox)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    after = sb.sources
    c = client_for(sb, journal=folder)  # a new client: it does not know the token's space
    sb.clear_log()
    undone = c.sources.undo(report.attrs["run_id"], progress=False)
    twins = {i: s for i, s in sb.sources.items() if s["name"] == "Twin"}
    assert [s["space_id"] for s in twins.values()] == [1], "the space-1 source comes back"
    assert undone.loc[undone["old_id"] == one, "status"].tolist() == ["created"]
    assert undone.loc[undone["old_id"] == three, "status"].tolist() == ["failed"]
    assert "space 3" in undone.loc[undone["old_id"] == three, "error"].iloc[0]
    assert set(sb.sources) - set(after) == set(twins)
    assert len(sb.requests("POST")) <= 2, "at most one probe, deleted again before anything else is sent"
    assert len(sb.requests("DELETE")) == len(sb.requests("POST")) - 1


def test_once_the_tokens_space_is_known_undo_creates_nothing_it_must_delete_again(make_sandbox, client_for):
    sb, one, three = two_namesakes(make_sandbox)
    c = client_for(sb)
    report = deleting(c, [one, three]).apply(irreversible=True, progress=False)
    c.sources.delete(c.sources.create("Scratch")["id"])  # the client learns where its creates land
    sb.clear_log()
    undone = c.sources.undo(report, progress=False)
    assert len(sb.requests("POST")) == 1 and not sb.requests("DELETE")
    assert undone.counts() == {"created": 1, "failed": 1}
