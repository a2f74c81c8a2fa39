"""Reliability: nothing lost, nothing doubled, whatever the network and the server do.

Every test runs the real client against the sandbox over HTTP on loopback, with
the sandbox failing, dropping, shifting or garbling what it answers; the
sandbox's own state and request log are the ground truth.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from collections import Counter

import pandas as pd
import pytest

from neuroio_nb._jobs import sending
from neuroio_nb._jobs.frames import frame_from_records
from neuroio_nb._schema import create_defaults
from neuroio_nb.errors import (
    BulkInterrupted,
    ListingChangedWarning,
    MalformedResponseError,
    NotFoundError,
    RateLimitError,
    ThrottledWarning,
    TransportError,
)

#: A bad day's weather: 20% 503, 5% 429 (Retry-After 0-1 s), 5% HTML 502, 3% dropped connections.
FAULTS = {"503": 0.2, "429": 0.05, "502": 0.05, "drop": 0.03}
#: Retries enough that a spurious failure is out of reach: with a third of the requests failing,
#: 17 failures in a row happen once in 10^8 requests. The backoff is the client's own (jittered
#: exponential from 0.2 s, capped at 10 s); only a request that failed many times waits long.
RETRIES = 16


def applied_patches(sb) -> Counter:
    """How many times the server acted on a PATCH for each id (answered 200, or applied and dropped)."""
    return Counter(r.source_id for r in sb.requests("PATCH") if r.status == 200 or r.fault == "drop_after_apply")


def server_frame(sb) -> pd.DataFrame:
    """The sandbox's state, typed as to_frame() types it."""
    return frame_from_records(list(sb.sources.values()))


def listing_reads(sb, client) -> int:
    """How many times the whole listing was read: each read starts with a page at offset 0 of
    the client's page size. (A read that finds rows slid back past a page re-reads the page
    before it, which may be offset 0 too, but asks for the rows a page brought: not a new read.)"""
    first = {"offset": "0", "limit": str(client.page_size)}
    return sum(
        1
        for r in sb.requests("GET")
        if r.path == "/v1/sources/" and first.items() <= r.params.items() and r.status == 200
    )


def edit_every_source(frame: pd.DataFrame) -> pd.DataFrame:
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    edited["auto_check_liveness"] = ~frame["auto_check_liveness"]
    every_third = edited.index[::3]
    edited.loc[every_third, "store_images_for_results"] = pd.Series(
        [
            ["new", "det"] if set(v or []) != {"new", "det"} else ["junk"]
            for v in frame.loc[every_third, "store_images_for_results"]
        ],
        index=every_third,
        dtype=object,
    )
    return edited


# ---- a bulk update under faults -----------------------------------------------------------------


@pytest.mark.parametrize(
    "retry_waits",
    ["bounded", pytest.param("real", marks=pytest.mark.slow)],
    indirect=True,
    ids=["bounded-clock", "full-weather"],
)
def test_1000_sources_under_faults_every_row_updated_exactly_once(make_sandbox, client_for):
    sb = make_sandbox(sources=1000, seed=11)
    c = client_for(sb, max_retries=RETRIES)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    sb.faults = FAULTS
    sb.clear_log()

    report = c.sources.bulk_update(edited, base=frame, progress=False)

    assert report.counts() == {"updated": 1000} and report.summary() == "1000 updated"
    assert sorted(report.index) == sorted(frame.index) and report["error"].isna().all()
    for sid in (1, 2, 500, 1000):
        expected = {"identify_facesize_threshold", "auto_check_liveness"} | (
            {"store_images_for_results"} if (sid - 1) % 3 == 0 else set()
        )
        assert set(report.loc[sid, "changes"]) == expected
    seen = Counter(r.fault for r in sb.log)
    assert all(seen[kind] > 0 for kind in FAULTS), seen  # the weather really was bad
    assert applied_patches(sb) == Counter(dict.fromkeys(frame.index, 1))  # nothing doubled, nothing lost
    pd.testing.assert_frame_equal(server_frame(sb), edited)  # the server holds exactly the edit
    # and the frame read back through the same weather is the edit too
    pd.testing.assert_frame_equal(c.sources.to_frame(progress=False), edited)


# ---- applied, then the connection dropped --------------------------------------------------------


def test_update_whose_answer_was_lost_converges(make_sandbox, client_for):
    sb = make_sandbox(sources=20, drop_after_apply=1.0)
    c = client_for(sb)
    patches = {"n": 0}

    def answer_from_the_second_try(method, path):
        if method == "PATCH":
            patches["n"] += 1
            sb.drop_after_apply = 1.0 if patches["n"] == 1 else 0.0

    sb.before_request = answer_from_the_second_try
    result = c.sources.update(5, identify_facesize_threshold=12345, use_pps_time=True)
    assert result["identify_facesize_threshold"] == 12345 and result["use_pps_time"] is True
    assert result == sb.source(5)
    assert [r.fault for r in sb.requests("PATCH")] == ["drop_after_apply", None]


def test_every_answer_lost_is_an_error_but_nothing_is_lost(make_sandbox, client_for):
    """No answer ever came: the user gets a TransportError, and planning again shows it was applied."""
    sb = make_sandbox(sources=20)
    c = client_for(sb, max_retries=2)
    frame = c.sources.to_frame(progress=False)
    sb.drop_after_apply = 1.0
    with pytest.raises(TransportError, match="lost before an answer"):
        c.sources.update(5, identify_facesize_threshold=12345)
    assert sb.source(5)["identify_facesize_threshold"] == 12345
    sb.drop_after_apply = 0.0
    edited = frame.copy()
    edited.loc[5, "identify_facesize_threshold"] = 12345
    sb.clear_log()
    assert len(c.sources.plan(edited)) == 0
    assert len(c.sources.bulk_update(edited, progress=False)) == 0 and sb.requests("PATCH") == []


def test_bulk_with_lost_answers_and_faults_ends_in_the_right_state(make_sandbox, client_for):
    sb = make_sandbox(sources=100, seed=4)
    c = client_for(sb, max_retries=RETRIES)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    sb.faults, sb.drop_after_apply = {"503": 0.1, "drop": 0.05}, 0.3
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"updated": 100}  # a write whose first answer was lost is still "updated"
    assert sum(r.fault == "drop_after_apply" for r in sb.log) > 10
    sb.faults, sb.drop_after_apply = {}, 0.0
    pd.testing.assert_frame_equal(server_frame(sb), edited)


def test_delete_whose_answer_was_lost_is_not_reported_missing(make_sandbox, client_for):
    sb = make_sandbox(sources=10, drop_after_apply=1.0)
    c = client_for(sb)
    assert c.sources.delete(5) is None  # deleted, answer lost; the retry finds it gone: success
    assert 5 not in sb.sources
    assert [(r.status, r.fault) for r in sb.requests("DELETE")] == [(None, "drop_after_apply"), (404, None)]
    with pytest.raises(NotFoundError):  # a source that really is not there is still reported
        c.sources.delete(5)


def names_count(sb, name: str) -> int:
    return sum(s["name"] == name for s in sb.sources.values())


def test_create_whose_answer_was_lost_makes_one_source(make_sandbox, client_for):
    sb = make_sandbox(sources=200, seed=2, drop_after_apply=1.0)
    c = client_for(sb)
    before = len(sb.sources)
    # "Main gate cam" is contained in many existing names: only the exact name counts
    names = ["Main gate cam", "Yard kiosk", "Dock upload", "Roof cam 7"]
    for name in names:
        made = c.sources.create(name, auto_create_persons=True, store_images_for_results=["new"])
        assert made == sb.source(made["id"]) and made["name"] == name and made["auto_create_persons"] is True
        assert names_count(sb, name) == 1
    assert len(sb.sources) == before + len(names)
    posts = sb.requests("POST")
    assert len(posts) == len(names) and all(r.fault == "drop_after_apply" for r in posts)


def test_creates_under_faults_never_duplicate(make_sandbox, client_for):
    sb = make_sandbox(sources=100, seed=3)
    c = client_for(sb, max_retries=RETRIES)
    sb.faults = {"502": 0.25, "503": 0.1, "drop": 0.1}
    sb.drop_after_apply = 0.3
    names = [f"Fault line cam {n:02d}" for n in range(20)]
    made = [c.sources.create(name, identify_facesize_threshold=9000 + n) for n, name in enumerate(names)]
    sb.faults, sb.drop_after_apply = {}, 0.0
    assert [names_count(sb, name) for name in names] == [1] * len(names)
    assert len(sb.sources) == 100 + len(names)
    assert [m["name"] for m in made] == names and all(m == sb.source(m["id"]) for m in made)
    unknown = Counter(r.fault for r in sb.requests("POST") if r.fault in ("502", "drop", "drop_after_apply"))
    assert unknown["502"] + unknown["drop"] and unknown["drop_after_apply"]  # unknown outcomes of both kinds


def test_create_never_adopts_a_source_that_existed_before_it(make_sandbox, client_for):
    """The POST times out and the server did not act; a same-named source with the same settings
    already sat in another space. That one is not "the source this create made": it is sent again."""
    sb = make_sandbox(
        sources=[
            {"id": 1, "space_id": 1, "name": "Lobby", **create_defaults()},
            {"id": 2, "space_id": 2, "name": "Dock upload", **create_defaults()},
        ]
    )
    c = client_for(sb, timeout=2)
    posts = {"n": 0}
    answer = threading.Event()

    def first_post_times_out_unapplied(method, path):
        if method == "POST":
            posts["n"] += 1
            if posts["n"] == 1:
                answer.wait(timeout=60)  # past the client's timeout (held, however slow the machine) ...
                raise RuntimeError("... and then failed: nothing was created")

    sb.before_request = first_post_times_out_unapplied
    try:
        made = c.sources.create("Dock upload")
    finally:
        answer.set()
    assert made["id"] == 3 and made == sb.source(3) and made["space_id"] == 1  # new, in the default space
    assert sorted(s["space_id"] for s in sb.sources.values() if s["name"] == "Dock upload") == [1, 2]
    assert posts["n"] == 2


def test_timeout_on_a_write_says_it_may_have_been_applied(make_sandbox, client_for):
    sb = make_sandbox(sources=10)
    c = client_for(sb, timeout=2, max_retries=0)
    answer = threading.Event()

    def slow_writes(method, path):
        if method != "GET":
            answer.wait(timeout=60)  # no answer within the client's timeout, however slow the machine

    sb.before_request = slow_writes
    try:
        with pytest.raises(TransportError, match="may have been applied") as info:
            c.sources.update(3, identify_facesize_threshold=4321)
        assert "PATCH" in str(info.value)
        with pytest.raises(TransportError, match="may have been applied") as info:
            c.sources.create("Slow lane cam")
        assert str(info.value).startswith("POST")  # the create's own error, not its check's GET
    finally:
        answer.set()


@pytest.mark.real_clock  # the rate limit is waited out for real, as a server that counts would need
def test_throttling_alone_never_fails_a_row(make_sandbox, client_for):
    """A plain rate limit answers 429 with Retry-After: waited out on its own budget, even with
    max_retries=0, so every row is updated and none fails for throttling alone."""
    sb = make_sandbox(sources=200, seed=8)
    c = client_for(sb, max_retries=0)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    sb.rate_limit, sb.rate_burst = 50, 5
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"updated": 200}
    assert any(r.fault == "rate_limit" for r in sb.log)  # the limit really was hit
    sb.rate_limit = None
    pd.testing.assert_frame_equal(server_frame(sb), edited)


# ---- a run interrupted halfway ---------------------------------------------------------------------


def test_interrupted_under_faults_report_is_exact_and_resume_finishes(make_sandbox, client_for, ctrl_c_at):
    sb = make_sandbox(sources=250, seed=6, latency=0.005)
    c = client_for(sb, max_retries=RETRIES, max_workers=6)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    sb.faults = FAULTS
    sb.clear_log()
    ctrl_c_at(sb, "PATCH", 60)
    with pytest.raises(BulkInterrupted) as info:
        c.sources.bulk_update(edited, base=frame, progress=False)
    sb.before_request = None
    partial = info.value.report
    applied = applied_patches(sb)

    assert 60 <= len(applied) < 250
    assert set(applied.values()) == {1}
    assert partial.counts() == {"updated": len(applied)}  # exact: every row the server acted on, no other
    assert set(partial.index) == set(applied)
    state = server_frame(sb)
    pd.testing.assert_frame_equal(state.loc[sorted(applied)], edited.loc[sorted(applied)])
    untouched = frame.index.difference(list(applied))
    pd.testing.assert_frame_equal(state.loc[untouched], frame.loc[untouched])

    rest = c.sources.plan(edited, base=c.sources.to_frame(progress=False))
    assert sorted(rest.changes["id"].unique()) == sorted(untouched)  # planning again shows exactly the remainder
    report = rest.apply(progress=False)
    assert report.counts() == {"updated": len(untouched)}
    assert applied_patches(sb) == Counter(dict.fromkeys(frame.index, 1))  # over both runs: once each
    sb.faults = {}
    pd.testing.assert_frame_equal(server_frame(sb), edited)


def test_ctrl_c_stops_a_loop_that_catches_exception(make_sandbox, client_for, ctrl_c_at):
    """A notebook's ``except Exception:`` around a bulk update must not swallow Ctrl-C; the
    partial report stays reachable on the interrupt."""
    sb = make_sandbox(sources=120, latency=0.01)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    ctrl_c_at(sb, "PATCH", 10)
    tries = 0
    with pytest.raises(BulkInterrupted) as info:
        for _ in range(3):
            tries += 1
            try:
                c.sources.bulk_update(edited, base=frame, progress=False)
            except Exception:
                continue
    assert tries == 1
    assert info.value.report.counts() == {"updated": len(applied_patches(sb))}


def test_ctrl_c_while_results_are_being_recorded(make_sandbox, client_for, ctrl_c_at, monkeypatch):
    """Ctrl-C lands while results are being recorded. The notebook's main thread is slow to show
    results (a busy progress bar): while it shows the first, a dozen more writes finish and wait
    to be shown; it is showing the next when the Ctrl-C comes (a real one, as the 40th PATCH
    arrives), and the writes still in flight record their outcomes while it is handled. The
    partial report and the journal's run hold exactly the sources the server acted on, and
    planning again shows exactly the rest."""
    sb = make_sandbox(sources=120, latency=0.02)
    c = client_for(sb, max_workers=8)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    every_write_handed, first_shown = threading.Event(), threading.Event()
    seen = Counter()

    def busy_notebook(moment, key):
        """Every write handed to the pool is counted; showing the first result takes until 12 more
        writes were answered, showing the next until the Ctrl-C (a busy progress bar)."""
        seen[moment] += 1
        if moment == "handed" and seen["handed"] == len(edited):
            every_write_handed.set()
        if moment == "showing":
            first_shown.set()
            until = len(sb.requests("PATCH")) + 12 if seen["showing"] == 1 else len(edited)
            while len(sb.requests("PATCH")) < until:
                time.sleep(0.005)

    monkeypatch.setattr(sending, "send_hook", busy_notebook)
    sb.clear_log()
    ctrl_c_at(sb, "PATCH", 40)  # 8 at a time: well after the first result was shown
    ctrl_c, arrived, lock = sb.before_request, [], threading.Lock()

    def one_result_then_many(method, path):
        """The first PATCH is answered once every write was handed to the pool, the others once
        its result is being shown: results come one, then many, to the loop that takes them."""
        if method == "PATCH":
            with lock:
                arrived.append(path)
                first = len(arrived) == 1
            (every_write_handed if first else first_shown).wait(timeout=60)
        ctrl_c(method, path)

    sb.before_request = one_result_then_many
    with pytest.raises(BulkInterrupted) as info:
        c.sources.bulk_update(edited, progress=False)
    sb.before_request = None
    monkeypatch.undo()
    assert seen["showing"] >= 1 and seen["handed"] == len(edited)  # the send loop went through both
    partial = info.value.report
    applied = applied_patches(sb)
    assert set(partial.index) == set(applied) and partial.counts() == {"updated": len(applied)}
    run_id = partial.attrs["run_id"]
    assert c.sources.history().loc[run_id, ["state", "updated"]].tolist() == ["interrupted", len(applied)]
    journaled = c.sources.history(run_id)
    assert set(journaled.index[journaled["status"] == "updated"]) == set(applied)
    rest = c.sources.plan(edited)
    assert sorted(rest.changes["id"].unique()) == sorted(frame.index.difference(list(applied)))


def test_ctrl_c_while_the_work_is_being_queued_stops_everything(make_sandbox, client_for, monkeypatch):
    """Ctrl-C can land while the PATCHes are still being queued: what was queued is not sent behind
    the user's back, and the partial report is exact."""
    sb = make_sandbox(sources=300, latency=0.01)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)

    handed = Counter()

    def ctrl_c_at_the_150th(moment, key):
        handed[moment] += 1
        if moment == "handed" and handed[moment] == 150:  # the 150th is queued, but never handed back
            raise KeyboardInterrupt

    monkeypatch.setattr(sending, "send_hook", ctrl_c_at_the_150th)
    sb.clear_log()
    with pytest.raises(BulkInterrupted) as info:
        c.sources.bulk_update(edited, base=frame, progress=False)
    applied = applied_patches(sb)
    time.sleep(0.3)  # room for anything still queued to go out, if something were still sending
    assert applied_patches(sb) == applied and len(applied) < 150
    partial = info.value.report
    assert set(partial.index) == set(applied) and partial.counts() == {"updated": len(applied)}


def test_ctrl_c_inside_the_pools_submit_still_waits_for_that_request(make_sandbox, client_for, monkeypatch):
    """Ctrl-C can land inside the pool's submit, after the write was queued and a worker took it
    (an idle pool starts it at once) but before the future came back: the partial report still
    waits for that request and holds it. (The CLI's one-Ctrl-C test lost such a row under load.)"""
    sb = make_sandbox(sources=60, latency=0.01)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    orphan: dict[str, int] = {}

    handed = Counter()

    def ctrl_c_once_the_third_was_taken(moment, key):
        handed[moment] += 1
        if handed[moment] == 3 and moment == "handing":
            orphan["id"] = key[1]
        if handed[moment] == 3 and moment == "handed":  # queued and started, never handed back
            raise KeyboardInterrupt

    def slow_orphan(method, path):
        if method == "PATCH" and path.rstrip("/").endswith(f"/{orphan.get('id')}"):
            time.sleep(0.5)  # still in flight when the others are done

    monkeypatch.setattr(sending, "send_hook", ctrl_c_once_the_third_was_taken)
    sb.clear_log()
    sb.before_request = slow_orphan
    with pytest.raises(BulkInterrupted) as info:
        c.sources.bulk_update(edited, base=frame, progress=False)
    sb.wait_idle()  # let the sandbox finish what it was sent
    applied = applied_patches(sb)
    assert orphan["id"] in applied and len(applied) == 3
    partial = info.value.report
    assert set(partial.index) == set(applied) and partial.counts() == {"updated": 3}


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("name", sending.STEPS)
def test_a_second_ctrl_c_at_any_step_of_winding_down_keeps_the_partial_report(
    make_sandbox, client_for, ctrl_c_at, monkeypatch, name, when
):
    """The partial report is a notebook user's only record of what was sent: a second Ctrl-C,
    whichever step of stopping it lands on (stopping the reads, waiting for the requests in
    flight, making the partial report, ending the journal run; just before a step runs or just
    after it returned), still gives the exact partial report, on the run's journal too. The
    presses come through the sender's documented seam, ``sending.wind_down_hook``."""
    sb = make_sandbox(sources=120, latency=0.01)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    pressed: list[str] = []

    def pressed_again(step: str, moment: str) -> None:
        winding_down = isinstance(sys.exc_info()[1], KeyboardInterrupt)  # the first press is being handled
        if winding_down and not pressed and (step, moment) == (name, when):
            pressed.append(step)
            raise KeyboardInterrupt

    monkeypatch.setattr(sending, "wind_down_hook", pressed_again)
    sb.clear_log()
    ctrl_c_at(sb, "PATCH", 20)
    try:
        c.sources.bulk_update(edited, base=frame, progress=False)
    except BulkInterrupted as exc:
        partial = exc.report
    except KeyboardInterrupt:  # a plain one would stop pytest itself: say what it means instead
        pytest.fail("a plain KeyboardInterrupt came back: the partial report was lost")
    else:
        pytest.fail("the run was not interrupted")
    sb.before_request = None
    monkeypatch.undo()
    assert pressed == [name]  # the second press did land there
    applied = applied_patches(sb)
    assert len(applied) >= 20
    assert set(partial.index) == set(applied) and partial.counts() == {"updated": len(applied)}
    run = c.sources.history().loc[partial.attrs["run_id"]]
    assert run["state"] == "interrupted" and run["updated"] == len(applied)
    journaled = c.sources.history(partial.attrs["run_id"])  # the rest: not sent, so no outcome
    assert set(journaled.index[journaled["status"] == "updated"]) == set(applied)
    assert set(journaled.index[journaled["status"] == "unknown"]) == set(frame.index) - set(applied)


def test_ctrl_c_as_the_last_write_was_answered_gives_the_whole_report_and_a_complete_run(
    make_sandbox, client_for, monkeypatch
):
    """Ctrl-C that lands once every write was answered, while the run is being finished: it still
    stops the caller (``BulkInterrupted``), its report holds every row, and the journal holds the
    run as complete (nothing is left for ``resume``), not as interrupted."""
    sb = make_sandbox(sources=40, latency=0.005)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_source(frame)
    pressed: list[str] = []

    def ctrl_c_once_all_were_answered(step: str, moment: str) -> None:
        if (step, moment) == ("finish", "before") and not pressed:  # every write was answered
            pressed.append(step)
            raise KeyboardInterrupt

    monkeypatch.setattr(sending, "wind_down_hook", ctrl_c_once_all_were_answered)
    with pytest.raises(BulkInterrupted) as info:
        c.sources.bulk_update(edited, base=frame, progress=False)
    monkeypatch.undo()
    report = info.value.report
    assert report.counts() == {"updated": 40} and applied_patches(sb) == Counter(dict.fromkeys(frame.index, 1))
    assert c.sources.history().loc[report.attrs["run_id"], "state"] == "complete"
    assert len(c.sources.plan(edited)) == 0


# ---- sources added and deleted while the listing is read -----------------------------------------


def delete_and_add(*deleted: int, name: str):
    def action(sb):
        for sid in deleted:
            sb.remove_source(sid)
        return [sb.add_source(name=name)["id"]]

    return action


def test_listing_that_changes_while_read_warns_and_has_no_duplicates(make_sandbox, client_for, churn):
    sb = make_sandbox(sources=600, page_cap=50, latency=0.003)
    c = client_for(sb, max_workers=4)
    initial = set(sb.sources)
    added = churn(
        sb,
        {
            3: delete_and_add(10, name="Night shift cam"),
            6: delete_and_add(300, 301, name="Late kiosk"),
            9: delete_and_add(590, name="Last minute upload"),
        },
    )
    with pytest.warns(ListingChangedWarning, match="consistent=True"):
        frame = c.sources.to_frame(progress=False)
    assert frame.index.is_unique
    assert set(frame.index) <= initial | set(added)
    assert set(frame.index) != set(sb.sources)  # what the warning is about: the frame is not the server


@pytest.mark.parametrize("first_change", [2, 3], ids=["before-every-later-page", "as-pages-arrive"])
def test_consistent_rereads_until_it_equals_the_server(make_sandbox, client_for, churn, first_change):
    """Two reads: the first changes under it, the second equals the server. With the first
    change at the 2nd request, every later page lacks the first page's last row, so the read
    goes back to offset 0 (the case that made the test fail under load when the page at
    offset 49 happened to arrive after the 3rd request): still one read."""
    sb = make_sandbox(sources=600, page_cap=50, latency=0.003)
    c = client_for(sb, max_workers=4)
    churn(
        sb,
        {
            first_change: delete_and_add(10, name="Night shift cam"),
            6: delete_and_add(300, 301, name="Late kiosk"),
            9: delete_and_add(590, name="Last minute upload"),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frame = c.sources.to_frame(progress=False, consistent=True)
    pd.testing.assert_frame_equal(frame, server_frame(sb))
    assert listing_reads(sb, c) == 2


def test_consistent_gives_up_on_an_account_that_never_settles(make_sandbox, client_for, churn):
    sb = make_sandbox(sources=300, page_cap=50)
    c = client_for(sb, max_workers=2)
    churn(sb, {n: delete_and_add(name=f"Busy cam {n}") for n in range(2, 200, 3)})
    with pytest.warns(ListingChangedWarning, match="did not settle after 3 reads"):
        frame = c.sources.to_frame(progress=False, consistent=True, attempts=3)
    assert frame.index.is_unique and listing_reads(sb, c) == 3


# ---- a server that answers garbage ---------------------------------------------------------------

GARBAGE = {"truncated": "not JSON", "results_not_list": "no list of results", "missing_id": "without a whole-number id"}


@pytest.mark.parametrize("mode", GARBAGE)
@pytest.mark.parametrize("read", ["to_frame", "iter", "list", "plan_against_server"])
def test_garbage_listing_is_a_clear_api_error(make_sandbox, client_for, mode, read):
    sb = make_sandbox(sources=150)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    sb.corrupt = mode
    calls = {
        "to_frame": lambda: c.sources.to_frame(progress=False),
        "iter": lambda: list(c.sources.iter()),
        "list": lambda: c.sources.list(),
        "plan_against_server": lambda: c.sources.plan(frame),
    }
    with pytest.raises(MalformedResponseError, match=GARBAGE[mode]) as info:
        calls[read]()
    assert info.value.path == "v1/sources/"


@pytest.mark.parametrize("mode", GARBAGE)
def test_garbage_midway_gives_no_half_built_frame_and_no_writes(make_sandbox, client_for, churn, mode):
    sb = make_sandbox(sources=500, page_cap=50)
    c = client_for(sb, max_workers=2)
    frame = c.sources.to_frame(progress=False)

    def go_bad(sb):
        sb.corrupt = mode

    churn(sb, {4: go_bad})
    sb.clear_log()
    with pytest.raises(MalformedResponseError, match=GARBAGE[mode]):
        c.sources.to_frame(progress=False)
    read = [r for r in sb.requests("GET") if r.path == "/v1/sources/"]
    assert len(read) >= 4 and all(r.status == 200 for r in read[:3])  # good pages came first: midway
    sb.clear_log()
    edited = edit_every_source(frame)
    # The conflict check reads the listing: nothing is sent, and every row says why.
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"failed": len(frame)}
    assert report["error"].str.startswith("not sent: the server's sources could not be read to check it").all()
    assert sb.requests("PATCH") == []


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory) -> tuple[str, str]:
    """A certificate for 127.0.0.1 that no CA signed, and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            key,
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_an_untrusted_certificate_names_the_certificate_and_the_way_out_and_sends_nothing(
    make_sandbox, client_for, self_signed, monkeypatch
) -> None:
    sb = make_sandbox(sources=20, tls=self_signed)
    before = sb.sources
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    src = client_for(sb, journal=False).sources
    writes = (lambda: src.update(1, use_pps_time=True), lambda: src.create("Gate"), lambda: src.delete(2))
    for call in (lambda: src.get(1), *writes):
        with pytest.raises(TransportError) as info:
            call()
        message = str(info.value)
        assert "certificate" in message and "REQUESTS_CA_BUNDLE" in message, message
        assert "may have been applied" not in message  # the handshake failed: nothing was sent
        assert info.value.maybe_sent is False
    assert sb.requests() == [] and sb.sources == before  # not one request reached the server

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", self_signed[0])  # the way out the message names
    assert client_for(sb).sources.get(1)["id"] == 1


@pytest.mark.parametrize("call", ["get", "list", "create", "update", "delete"])
def test_a_single_call_under_persistent_429s_gives_control_back_within_a_minute_and_says_so_once(
    make_sandbox, client_for, monkeypatch, call
) -> None:
    sb = make_sandbox(sources=5, faults={"429": 1.0}, retry_after=(20, 20))  # the server never lets up
    client = client_for(sb)  # the defaults a person gets (journal on: update and delete read first)
    slept: list[float] = []
    monkeypatch.setattr(client, "retry_sleep", slept.append)  # the client's own waits, counted, not waited
    calls = {
        "get": lambda: client.sources.get(1),
        "list": lambda: client.sources.list(),
        "create": lambda: client.sources.create("Gate"),
        "update": lambda: client.sources.update(1, use_pps_time=True),
        "delete": lambda: client.sources.delete(2),
    }
    with warnings.catch_warnings(record=True) as caught, pytest.raises(RateLimitError) as info:
        warnings.simplefilter("always")
        calls[call]()
    assert 50 <= sum(slept) <= client.max_throttled_wait == 60  # about a minute in all, every request of the call
    assert "max_throttled_wait=60" in str(info.value) and "try again later" in str(info.value)
    notices = [w for w in caught if issubclass(w.category, ThrottledWarning)]
    assert len(notices) == 1 and notices[0].filename == __file__, [str(w.message) for w in caught]
    assert "max_throttled_wait" in str(notices[0].message)
    assert sb.sources == make_sandbox(sources=5).sources  # nothing was written


def test_a_job_under_persistent_429s_keeps_its_longer_budget_and_says_nothing_per_request(
    make_sandbox, client_for, monkeypatch
) -> None:
    sb = make_sandbox(sources=5, faults={"429": 1.0}, retry_after=(20, 20))
    client = client_for(sb)
    slept: list[float] = []
    monkeypatch.setattr(client, "retry_sleep", slept.append)
    with warnings.catch_warnings(record=True) as caught, pytest.raises(RateLimitError) as info:
        warnings.simplefilter("always")
        client.sources.to_frame(progress=False)
    assert 250 <= sum(slept) <= client.job_throttled_wait == 300
    assert "job_throttled_wait=300" in str(info.value)
    assert not [w for w in caught if issubclass(w.category, ThrottledWarning)]


def test_a_throttled_jobs_progress_bar_says_throttled_and_no_row_is_lost(make_sandbox, client_for, capsys) -> None:
    sb = make_sandbox(sources=60, rate_limit=20)  # a token bucket: 20 requests a second
    client = client_for(sb)
    base = client.sources.to_frame(progress=False)
    edited = base.copy()
    edited["use_pps_time"] = ~edited["use_pps_time"]
    capsys.readouterr()
    report = client.sources.bulk_update(edited, base=base, progress=True)
    assert report["status"].eq("updated").all() and len(report) == 60
    assert any(r.status == 429 for r in sb.requests())  # it was throttled ...
    assert "throttled" in capsys.readouterr().err  # ... and its bar said so, not a stuck job


def test_a_forms_save_under_persistent_429s_gives_control_back_within_a_minute(
    make_sandbox, client_for, monkeypatch
) -> None:
    from neuroio_nb._form_state import FormState

    sb = make_sandbox(sources=5, retry_after=(20, 20))
    client = client_for(sb)
    state = FormState(client.sources, 1)
    state.values["use_pps_time"] = not state.values["use_pps_time"]
    sb.faults = {"429": 0.75}  # from now on most requests are throttled: each gets through in the end
    slept: list[float] = []
    monkeypatch.setattr(client, "retry_sleep", slept.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ThrottledWarning)
        saved = state.save()  # its re-read, the journal's read and the PATCH: one budget
    assert sum(slept) <= 60, (slept, state.message, [(r.method, r.status) for r in sb.requests()])
    assert saved or "max_throttled_wait" in state.message, state.message
