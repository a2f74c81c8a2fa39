"""The safety net (design.md, "The safety net"): every write conditional on what the plan saw,
``replaced`` what the write replaced, undo and resume settled by the journal plus one read of
the server, and what undo cannot reverse said before apply. Over the sandbox, on loopback."""

from __future__ import annotations

import _thread
import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
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


def two_namesakes(make_sandbox, *, space_1_first: bool = True):
    """Space 1 and space 3 each hold a source named "Twin" (the token's creates land in space 1).

    ``space_1_first``: the space-1 one has the lower id, so that its row comes first in a
    report, a journal run and an undo (else the space-3 one does)."""
    sb = make_sandbox(sources=60, seed=7)
    records = list(sb.sources.values())
    ones = [r for r in records if r["space_id"] == 1]
    threes = [r for r in records if r["space_id"] == 3]
    one = next(r for r in ones if r["id"] < threes[0]["id"]) if space_1_first else ones[-1]
    three = threes[0] if space_1_first else next(r for r in threes if r["id"] < one["id"])
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
    notice = plan._repr_html_().split('class="neuroio-tone-warn"')[1].split("</p>")[0]
    assert notice.count("cannot tell yet") == 1, "said once for the deletes it is true of"
    assert f"{one} Twin (space 1); {three} Twin (space 3)" in notice
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


def twins_seen_at_each_request(sb) -> list[dict[int, int]]:
    """As each request reaches ``sb`` from now on: the sources named "Twin" then, id -> space."""
    seen: list[dict[int, int]] = []

    def look(method: str, path: str) -> None:
        seen.append({i: s["space_id"] for i, s in sb.sources.items() if s["name"] == "Twin"})

    sb.before_request = look
    return seen


@pytest.mark.parametrize("space_1_first", [True, False], ids=["space-1-row-first", "space-3-row-first"])
@pytest.mark.parametrize("token_space", [1, 3], ids=["token-of-space-1", "token-of-space-3"])
@pytest.mark.parametrize("attempt", range(2))
def test_while_the_tokens_space_is_unknown_undo_never_lets_a_probe_take_a_name_a_row_restores(
    make_sandbox, client_for, tmp_path, space_1_first, token_space, attempt
):
    """Both rows of the undo are named "Twin": the probe that learns where creates land is a
    throwaway of another name, deleted at once and not in the report; only the POST of the row
    of the token's space carries the name, and no other source ever holds it."""
    sb, one, three = two_namesakes(make_sandbox, space_1_first=space_1_first)
    sb.creates_land_in = token_space
    mine, other = (one, three) if token_space == 1 else (three, one)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    assert list(report.index) == ([one, three] if space_1_first else [three, one])
    after = sb.sources
    c = client_for(sb, journal=folder)  # a new client: it does not know the token's space
    sb.clear_log()
    seen = twins_seen_at_each_request(sb)
    undone = c.sources.undo(report.attrs["run_id"], progress=False)
    sb.before_request = None
    (back,) = undone.index[undone["old_id"] == mine]
    assert sb.source(back)["space_id"] == token_space and sb.source(back)["name"] == "Twin"
    assert [r.body["name"] for r in sb.requests("POST")].count("Twin") == 1, "only that row sends its name"
    assert all(set(twins) <= {back} for twins in seen), "no moment where another source held the name"
    assert set(sb.sources) - set(after) == {back}, "the probe is gone"
    assert sorted(undone["old_id"].tolist()) == sorted([one, three]), "the report holds the rows, not the probe"
    assert undone.loc[undone["old_id"] == other, "status"].tolist() == ["failed"]
    history = c.sources.history()
    assert history.loc[history.index[0], ["created", "deleted", "failed"]].tolist() == [1, 0, 1]
    assert len(c.sources.history(history.index[0])) == 2, "the journal's report of the undo: no probe either"


UNDO_RUN = textwrap.dedent("""
    import sys
    from neuroio_nb import Client

    Client(max_workers=2).sources.undo(sys.argv[1], progress=False)
    print("FINISHED", flush=True)
""")


@pytest.mark.parametrize("then", ["undo", "resume"])
@pytest.mark.parametrize("applied", [True, False], ids=["probe-applied", "probe-refused"])
def test_an_undo_killed_at_its_probes_post_leaves_no_probe_after_undo_or_resume(
    make_sandbox, client_for, tmp_path, applied, then
):
    sb, one, three = two_namesakes(make_sandbox, space_1_first=False)
    folder = tmp_path / "journal"
    deleter = client_for(sb, journal=folder)
    report = deleting(deleter, [one, three]).apply(irreversible=True, progress=False)
    deleter.close()  # its connections closed: the sandbox then waits only for the killed process's
    after = set(sb.sources)
    env = dict(os.environ, NEUROIO_API_TOKEN=sb.token, NEUROIO_API_URL=sb.url, NEUROIO_NB_JOURNAL=str(folder))
    proc = subprocess.Popen(
        [sys.executable, "-c", UNDO_RUN, report.attrs["run_id"]], env=env, stdout=subprocess.PIPE, text=True
    )

    def kill_at_the_first_post(method: str, path: str) -> None:
        if method == "POST":
            proc.kill()
            proc.wait()
            if not applied:
                raise RuntimeError("killed before the probe was made")

    sb.before_request = kill_at_the_first_post
    proc.wait(timeout=120)
    assert proc.returncode == -9, "the undo was not killed: it finished first"
    sb.wait_idle(closed=True)
    sb.before_request = None
    (probe,) = [r.body["name"] for r in sb.requests("POST")]
    assert probe != "Twin", "the first POST is the probe, not a row"
    assert len(set(sb.sources) - after) == (1 if applied else 0)
    c = client_for(sb, journal=folder)
    killed = c.sources.history().index[0]
    finished = getattr(c.sources, then)(killed, progress=False)
    made = set(sb.sources) - after
    assert not [i for i, s in sb.sources.items() if s["name"] == probe], "no probe is left behind"
    if then == "undo":
        assert not made, "the killed undo made nothing but its probe"
    else:
        (back,) = made
        assert sb.source(back)["name"] == "Twin" and sb.source(back)["space_id"] == 1
        assert finished.loc[back, "status"] == "created"
    assert probe not in set(finished["name"].dropna()), "the report shows no probe that was deleted"


def test_a_probe_whose_delete_fails_is_a_created_row_naming_it_and_undo_deletes_it(make_sandbox, client_for, tmp_path):
    sb, one, three = two_namesakes(make_sandbox)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    c = client_for(sb, journal=folder, max_retries=1)
    after = set(sb.sources)

    def refuse_deletes(method: str, path: str) -> None:
        if method == "DELETE":
            raise RuntimeError("the server cannot delete now")

    sb.before_request = refuse_deletes
    undone = c.sources.undo(report.attrs["run_id"], progress=False)
    sb.before_request = None
    (probe,) = set(sb.sources) - after - set(undone.index[undone["old_id"] == one])
    assert undone.loc[probe, "status"] == "created" and undone.loc[probe, "name"].startswith("neuroio-nb probe ")
    assert f"client.sources.delete({probe})" in undone.loc[probe, "error"]
    assert probe in c.sources.history(undone.attrs["run_id"]).index, "the journal's report shows it too"
    c.sources.undo(undone.attrs["run_id"], progress=False)
    assert probe not in sb.sources and not [s for s in sb.sources.values() if s["name"] == "Twin"]


def test_a_row_naming_no_space_is_the_probe_so_no_throwaway_is_made(make_sandbox, client_for):
    """A restore with two "Twin" rows of spaces 3 and 1 and a new row naming no space: the new
    row goes first and tells where creates land; no throwaway, no "Twin" POST of space 3."""
    sb = make_sandbox(sources=30, seed=7)
    c = client_for(sb)
    desired = pd.DataFrame({"name": ["Twin", "Twin", "Fresh"], "space_id": pd.array([3, 1, None], dtype="Int64")})
    report = c.sources.plan(desired, key="name", create=True).apply(progress=False)
    assert [r.body["name"] for r in sb.requests("POST")] == ["Fresh", "Twin"]
    assert not sb.requests("DELETE")
    assert report.set_index("row")["status"].to_dict() == {0: "failed", 1: "created", 2: "created"}
    assert {sb.source(i)["name"]: sb.source(i)["space_id"] for i in report.index.dropna()} == {"Twin": 1, "Fresh": 1}


def test_when_the_probe_cannot_tell_where_creates_land_no_namesake_row_is_sent(make_sandbox, client_for, tmp_path):
    """The server refuses every create: the probe fails, so neither "Twin" row is sent (either
    could take the other's name); each says why and what to do, and nothing is left behind."""
    sb, one, three = two_namesakes(make_sandbox)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    after = set(sb.sources)
    c = client_for(sb, journal=folder, max_retries=1)

    def refuse_creates(method: str, path: str) -> None:
        if method == "POST":
            raise RuntimeError("the server cannot create now")

    sb.before_request = refuse_creates
    undone = c.sources.undo(report.attrs["run_id"], progress=False)
    sb.before_request = None
    assert "Twin" not in [r.body["name"] for r in sb.requests("POST")], "only the probe was tried"
    assert undone["status"].tolist() == ["failed", "failed"] and set(sb.sources) == after
    for error in undone["error"]:
        assert "could not be learned" in error and "creating a probe source failed" in error and "try again" in error


# ---- 3b. a probe is known by its journal record, never by its name --------------------------------

#: Names a user may give a source (typed, or from a CSV): the probe's own prefix, and the very
#: shape of a probe's name (as a restore of an export taken while a probe was left would give).
PROBE_LIKE = ["neuroio-nb probe of gate 4", "neuroio-nb probe 20261205-101010-abcdef 1a2b3c4d"]


def named_like_a_probe(make_sandbox, name):
    """A sandbox whose first source of space 1 (the token's) is named ``name``; its id."""
    sb = make_sandbox(sources=30, seed=7)
    records = list(sb.sources.values())
    mine = next(r for r in records if r["space_id"] == 1)
    mine["name"] = name
    sb.reset(records)
    return sb, mine["id"]


@pytest.mark.parametrize("name", PROBE_LIKE, ids=["probe-prefix", "probe-shaped"])
def test_a_users_source_named_like_a_probe_is_reported_in_history_and_undone(make_sandbox, client_for, tmp_path, name):
    sb, mine = named_like_a_probe(make_sandbox, name)
    folder = tmp_path / "journal"
    c = client_for(sb, journal=folder)
    report = deleting(c, [mine]).apply(irreversible=True, progress=False)
    assert report.loc[mine, ["status", "name"]].tolist() == ["deleted", name], "the report shows the delete"
    run = report.attrs["run_id"]
    assert c.sources.history(run).loc[mine, ["status", "name"]].tolist() == ["deleted", name]
    assert c.sources.history().loc[run, "deleted"] == 1
    undone = client_for(sb, journal=folder).sources.undo(run, progress=False)
    (back,) = undone.index[undone["old_id"] == mine]
    assert undone.loc[back, "status"] == "created" and sb.source(back)["name"] == name, "undo brings it back"
    again = c.sources.undo(undone.attrs["run_id"], progress=False)
    assert again.loc[back, ["status", "name"]].tolist() == ["deleted", name] and back not in sb.sources
    assert c.sources.history(again.attrs["run_id"]).loc[back, "status"] == "deleted"


@pytest.mark.parametrize("name", PROBE_LIKE[:1], ids=["probe-prefix"])
def test_resume_sends_the_delete_of_a_users_source_named_like_a_probe(
    make_sandbox, client_for, tmp_path, monkeypatch, name
):
    from neuroio_nb._jobs import sending
    from neuroio_nb.errors import BulkInterrupted

    sb, mine = named_like_a_probe(make_sandbox, name)
    c = client_for(sb, journal=tmp_path / "journal")
    plan = deleting(c, [mine])

    def ctrl_c_before_the_first_is_handed(moment, key):
        if moment == "handing":
            raise KeyboardInterrupt

    monkeypatch.setattr(sending, "send_hook", ctrl_c_before_the_first_is_handed)
    with pytest.raises(BulkInterrupted) as info:
        plan.apply(irreversible=True, progress=False)
    monkeypatch.setattr(sending, "send_hook", None)
    assert mine in sb.sources and not sb.requests("DELETE")
    run = info.value.report.attrs["run_id"]
    assert c.sources.history(run).loc[mine, "status"] == "unknown"
    resumed = c.sources.resume(run, progress=False)
    assert mine not in sb.sources, "resume sent the delete"
    assert resumed.loc[mine, ["status", "name"]].tolist() == ["deleted", name]


def ctrl_c_at_the_first_post(sb):
    """Ctrl-C in this (the notebook's) thread as the first POST reaches ``sb``."""
    pressed = []

    def press(method: str, path: str) -> None:
        if method == "POST" and not pressed:
            pressed.append(True)
            _thread.interrupt_main()

    return press


def refusing_deletes(then=None):
    def hook(method: str, path: str) -> None:
        if then is not None:
            then(method, path)
        if method == "DELETE":
            raise RuntimeError("the server cannot delete now")

    return hook


@pytest.mark.parametrize("delete_fails", [True, False], ids=["its-delete-fails", "its-delete-succeeds"])
def test_ctrl_c_while_the_probe_is_out_leaves_it_in_the_partial_report_only_if_it_stays(
    make_sandbox, client_for, tmp_path, delete_fails
):
    """Ctrl-C as the probe's POST reaches the server: the probe's request finishes (made, then
    deleted again); the partial report shows it exactly when it stays on the server, as the
    final report would (a ``created`` row naming its id and how to delete it), and so does
    ``history(run)``; undo of the interrupted run deletes it."""
    from neuroio_nb.errors import BulkInterrupted

    sb, one, three = two_namesakes(make_sandbox)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    after = set(sb.sources)
    c = client_for(sb, journal=folder, max_retries=1)
    press = ctrl_c_at_the_first_post(sb)
    sb.before_request = refusing_deletes(press) if delete_fails else press
    with pytest.raises(BulkInterrupted) as info:
        c.sources.undo(report.attrs["run_id"], progress=False)
    sb.before_request = None
    partial = info.value.report
    made = set(sb.sources) - after
    (probe,) = [r.body["name"] for r in sb.requests("POST")]
    assert probe.startswith("neuroio-nb probe ") and "Twin" not in partial["name"].tolist()
    if delete_fails:
        (left,) = made
        assert partial.loc[left, ["status", "name"]].tolist() == ["created", probe]
        assert f"client.sources.delete({left})" in partial.loc[left, "error"]
        history = c.sources.history(partial.attrs["run_id"])
        assert history.loc[left, ["status", "name"]].tolist() == ["created", probe]
        c.sources.undo(partial.attrs["run_id"], progress=False)
        assert left not in sb.sources
    else:
        assert not made and probe not in partial["name"].tolist(), "deleted again: no row"
        assert probe not in c.sources.history(partial.attrs["run_id"])["name"].tolist()


@pytest.mark.parametrize("then", ["undo", "resume"])
@pytest.mark.parametrize("made", [True, False], ids=["probe-made", "probe-not-made"])
def test_a_probe_whose_answer_is_lost_is_the_same_row_in_the_report_and_history_and_undo_settles_it(
    make_sandbox, client_for, tmp_path, made, then
):
    """The probe's POST ends with no answer (the connection dropped after it was applied, or
    before) and the server cannot be read to settle it: ``apply()``'s report shows the row
    ``history(run)`` shows, saying it may have been made; undo and resume of that run delete
    the probe that exists and send nothing for one that never got made."""
    sb, one, three = two_namesakes(make_sandbox)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    after = set(sb.sources)
    c = client_for(sb, journal=folder, max_retries=1)

    def lose_the_probes_answer(method: str, path: str) -> None:
        if sb.requests("POST"):  # nor can the server be read to settle the POST
            sb.drop_after_apply = 0.0
            raise RuntimeError("the server cannot answer now")
        if method == "POST" and made:
            sb.drop_after_apply = 1.0  # applied, then the connection drops

    if not made:  # every POST is dropped unprocessed
        sb.fault_methods, sb.faults = {"POST"}, {"drop": 1.0}
    sb.before_request = lose_the_probes_answer
    undone = c.sources.undo(report.attrs["run_id"], progress=False)
    sb.before_request, sb.faults, sb.drop_after_apply = None, {}, 0.0
    probe = next(r.body["name"] for r in sb.requests("POST"))
    assert len(set(sb.sources) - after) == (1 if made else 0)
    row = undone[undone["name"] == probe]
    assert row["status"].tolist() == ["failed"] and "may have been made" in row["error"].iloc[0]
    assert f"client.sources.undo({undone.attrs['run_id']!r})" in row["error"].iloc[0], "how to settle it"
    history = c.sources.history(undone.attrs["run_id"])
    shown = history[history["name"] == probe]
    columns = ["action", "status", "name", "changes", "error"]
    assert shown[columns].to_dict("records") == row[columns].to_dict("records"), "the same row"
    sb.clear_log()
    finished = getattr(c.sources, then)(undone.attrs["run_id"], progress=False)
    assert not [s for s in sb.sources.values() if s["name"] == probe], "no probe is left"
    assert len(sb.requests("DELETE")) == (1 if made else 0), "a probe never made is not deleted"
    assert probe not in finished["name"].tolist()


def full_disk_at_the_probes_outcome(fd, data):
    """``os.write``, but the disk is full when the first outcome line (the probe's ``created``) comes."""
    if b'"t": "outcome"' in bytes(data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return os.write(fd, data)


def test_a_probe_the_journal_stops_before_its_delete_is_in_the_partial_report_and_undo_deletes_it(
    make_sandbox, client_for, tmp_path
):
    """The journal cannot record that the probe was made: the run stops before its next write,
    the probe's delete too. The error's partial report shows the probe as the final report
    would (a ``created`` row naming its id and how to delete it); undo of the run, with a
    journal that works, deletes it."""
    from neuroio_nb._journal import Journal
    from neuroio_nb.errors import JournalError

    sb, one, three = two_namesakes(make_sandbox)
    folder = tmp_path / "journal"
    report = deleting(client_for(sb, journal=folder), [one, three]).apply(irreversible=True, progress=False)
    after = set(sb.sources)
    c = client_for(sb, journal=Journal(folder, write=full_disk_at_the_probes_outcome))
    sb.clear_log()
    with pytest.raises(JournalError) as info:
        c.sources.undo(report.attrs["run_id"], progress=False)
    (left,) = set(sb.sources) - after
    assert not sb.requests("DELETE") and "Twin" not in [r.body["name"] for r in sb.requests("POST")]
    partial = info.value.report
    assert partial.loc[left, "status"] == "created" and partial.loc[left, "name"].startswith("neuroio-nb probe ")
    assert f"client.sources.delete({left})" in partial.loc[left, "error"]
    (run,) = [r for r in client_for(sb, journal=folder).sources.history().index if r != report.attrs["run_id"]]
    client_for(sb, journal=folder).sources.undo(run, progress=False)
    assert left not in sb.sources and set(sb.sources) == after


def test_a_restores_probe_is_named_in_no_row_when_it_is_gone(make_sandbox, client_for, tmp_path):
    """A restore from a CSV by a client that does not know its space, with two "Twin" rows of
    spaces 1 and 3: its probe is a throwaway, deleted again; its name is in no row, no error,
    no history (of the run or the list), and nothing of it is left on the server."""
    from neuroio_nb import read_csv

    sb = make_sandbox(sources=30, seed=7)
    before = set(sb.sources)
    path = tmp_path / "site.csv"
    pd.DataFrame({"id": [901, 902], "name": ["Twin", "Twin"], "space_id": [1, 3]}).to_csv(path, index=False)
    c = client_for(sb, journal=tmp_path / "journal")
    report = c.sources.plan(read_csv(path), key="name", create=True).apply(progress=False)
    (probe,) = [r.body["name"] for r in sb.requests("POST") if r.body["name"] != "Twin"]
    (back,) = set(sb.sources) - before
    assert sb.source(back)["name"] == "Twin" and sb.source(back)["space_id"] == 1
    assert report["status"].tolist() == ["created", "failed"] and report["name"].tolist() == ["Twin", "Twin"]
    shown = [c.sources.history(report.attrs["run_id"]), report]
    assert not any(probe in str(value) for frame in shown for value in frame.to_numpy().ravel())
    assert c.sources.history().loc[report.attrs["run_id"], ["created", "deleted", "failed"]].tolist() == [1, 0, 1]
