"""Bulk edit over the sandbox: plan, apply, conflicts, failures, interrupt, undo."""

from __future__ import annotations

import inspect
import queue
import signal
import sys
import threading
import time
from types import FrameType

import numpy as np
import pandas as pd
import pytest

from neuroio_nb._values import to_python
from neuroio_nb.errors import BulkInterrupted, ValidationError


@pytest.fixture
def big(make_sandbox, client_for):
    sb = make_sandbox(sources=1000)
    c = client_for(sb)
    return sb, c, c.sources.to_frame(progress=False)


def edit_200(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict[int, set[str]]]:
    """Change 200 sources: a threshold on all, a switch on every other, the list on every fifth."""
    edited = frame.copy()
    ids = edited.index[::5][:200]
    expected: dict[int, set[str]] = {}
    edited.loc[ids, "identify_facesize_threshold"] += 500
    for n, sid in enumerate(ids):
        expected[sid] = {"identify_facesize_threshold"}
        if n % 2 == 0:
            edited.loc[sid, "auto_create_persons"] = not edited.loc[sid, "auto_create_persons"]
            expected[sid].add("auto_create_persons")
        if n % 5 == 0:
            kept = set(edited.at[sid, "store_images_for_results"] or [])
            edited.at[sid, "store_images_for_results"] = ["det", "new"] if kept != {"det", "new"} else ["junk"]
            expected[sid].add("store_images_for_results")
    return edited, expected


def test_apply_200_of_1000(big):
    sb, c, frame = big
    edited, expected = edit_200(frame)
    plan = c.sources.plan(edited, base=frame)
    assert len(plan) == 200
    assert list(plan.changes.columns) == ["id", "name", "field", "old", "new"]
    assert (plan.changes["name"] == plan.changes["id"].map(frame["name"])).all()
    sb.clear_log()
    report = plan.apply(progress=False)
    assert report["status"].eq("updated").all() and len(report) == 200
    assert report.summary() == "200 updated"
    patches = sb.requests("PATCH")
    assert len(patches) == 200
    for record in patches:
        assert set(record.body) == expected[record.source_id]
    after = c.sources.to_frame(progress=False)
    pd.testing.assert_frame_equal(after, edited)
    assert len(c.sources.plan(edited, base=after)) == 0
    first = patches[0].source_id
    assert set(report.loc[first, "changes"]) == expected[first]


def test_conflict_check_costs_a_listing_not_a_get_per_source(big):
    sb, c, frame = big
    edited, _ = edit_200(frame)
    sb.clear_log()
    c.sources.bulk_update(edited, base=frame, progress=False)
    gets = sb.requests("GET")
    assert len(gets) <= 12 and all(g.path == "/v1/sources/" for g in gets)


def test_dry_run_sends_nothing(big):
    sb, c, frame = big
    edited, _ = edit_200(frame)
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, dry_run=True, progress=False)
    assert sb.log == []
    assert report["status"].eq("planned").all() and len(report) == 200
    assert c.sources.to_frame(progress=False).equals(frame)


def test_base_none_compares_with_server(big):
    """Without a base, the old side of each change is the server's value as it is now, read
    for just the frame's sources (one GET each), not the value in the frame."""
    sb, c, frame = big
    edited = frame.loc[[3, 4]].copy()
    edited.loc[3, "use_pps_time"] = not edited.loc[3, "use_pps_time"]
    sb.external_edit(4, identify_facesize_threshold=4242)  # the frame still holds the old value
    sb.clear_log()
    plan = c.sources.plan(edited)
    changes = {
        (sid, field): (old, new)
        for sid, field, old, new in plan.changes[["id", "field", "old", "new"]].itertuples(index=False)
    }
    assert changes == {
        (3, "use_pps_time"): (sb.source(3)["use_pps_time"], not sb.source(3)["use_pps_time"]),
        (4, "identify_facesize_threshold"): (4242, frame.loc[4, "identify_facesize_threshold"]),
    }
    assert sorted(r.path for r in sb.requests("GET")) == ["/v1/sources/3/", "/v1/sources/4/"]


def test_unchanged_sources_not_in_report_and_nan_equals_nan(big):
    _sb, c, frame = big
    edited = frame.copy()
    edited["license_id"] = edited["license_id"].astype(object).where(edited["license_id"].notna(), np.nan)
    edited.at[10, "store_images_for_results"] = list(reversed(edited.at[10, "store_images_for_results"] or []))
    plan = c.sources.plan(edited, base=frame)
    assert len(plan) == 0
    assert len(plan.apply(progress=False)) == 0


def test_partial_failures_are_rows_with_server_message(big):
    _sb, c, frame = big
    edited = frame.copy()
    space = frame.loc[1, "space_id"]
    taken = frame[(frame["space_id"] == space)].index[:3]
    edited.loc[taken[1], "name"] = frame.loc[taken[0], "name"]  # duplicate name in the space
    edited.loc[taken[2], "identify_facesize_threshold"] = 1234
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.loc[taken[1], "status"] == "failed"
    assert "already exists" in report.loc[taken[1], "error"] and "name" in report.loc[taken[1], "error"]
    assert report.loc[taken[2], "status"] == "updated" and report.loc[taken[2], "error"] is None
    assert report.summary() == "1 updated, 1 failed"


def test_id_not_on_server_is_failed_not_a_crash(big):
    _sb, c, frame = big
    edited = frame.loc[[5]].copy()
    edited.loc[5, "use_pps_time"] = not edited.loc[5, "use_pps_time"]
    ghost = edited.rename(index={5: 999999})
    report = c.sources.bulk_update(pd.concat([edited, ghost]), progress=False)
    assert report.loc[999999, "status"] == "failed" and "not found" in report.loc[999999, "error"]
    assert report.loc[5, "status"] == "updated"


@pytest.mark.parametrize("on_conflict", ["skip", "overwrite"])
def test_conflicts(big, on_conflict):
    sb, c, frame = big
    edited = frame.copy()
    edited.loc[[7, 8], "identify_facesize_threshold"] = 11111
    edited.loc[8, "use_pps_time"] = not frame.loc[8, "use_pps_time"]
    sb.external_edit(7, identify_facesize_threshold=9999)  # someone else changed what we change
    sb.external_edit(8, manual_create_on_ha=not frame.loc[8, "manual_create_on_ha"])  # a field we don't touch
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, on_conflict=on_conflict, progress=False)
    assert report.loc[8, "status"] == "updated"
    if on_conflict == "skip":
        assert report.loc[7, "status"] == "conflict"
        assert "9999" in report.loc[7, "error"]
        assert sb.source(7)["identify_facesize_threshold"] == 9999
        assert [r.path for r in sb.requests("PATCH")] == ["/v1/sources/8/"]
    else:
        assert report.loc[7, "status"] == "updated"
        assert sb.source(7)["identify_facesize_threshold"] == 11111
    assert sb.source(8)["manual_create_on_ha"] is (not frame.loc[8, "manual_create_on_ha"])


def test_undo_restores_and_is_conflict_checked(big):
    sb, c, frame = big
    edited, _ = edit_200(frame)
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    touched = report.index[0]
    sb.external_edit(int(touched), identify_facesize_threshold=4242)  # changed again since our update
    undone = c.sources.undo(report, progress=False)
    assert undone.loc[touched, "status"] == "conflict"
    assert undone["status"].value_counts().to_dict() == {"updated": 199, "conflict": 1}
    after = c.sources.to_frame(progress=False)
    others = frame.index.drop(touched)
    pd.testing.assert_frame_equal(after.loc[others], frame.loc[others])
    assert after.loc[touched, "identify_facesize_threshold"] == 4242


def test_report_and_plan_render_in_jupyter(big):
    _sb, c, frame = big
    edited = frame.copy()
    edited.loc[1, "identify_facesize_threshold"] = 31337
    plan = c.sources.plan(edited, base=frame)
    view = plan._repr_html_()
    assert "31337" in view and "&rarr;" in view and "use_pps_time" not in view
    report = plan.apply(progress=False)
    assert "1 updated" in report._repr_html_() and "neuroio-tone-good" in report._repr_html_()


# ---- validation: every problem at once, nothing sent ------------------------------------


def bad(frame: pd.DataFrame, column: str, value, sid: int = 1) -> pd.DataFrame:
    edited = frame.copy()
    if edited[column].dtype != object:
        edited[column] = edited[column].astype(object)
    edited.at[sid, column] = value
    return edited


def test_all_problems_reported_at_once(big):
    sb, c, frame = big
    edited = bad(bad(frame, "use_pps_time", "yes", 1), "identify_facesize_threshold", -5, 2)
    edited = pd.concat([edited, edited.loc[[3]]])
    edited["shoe_size"] = 42
    sb.clear_log()
    with pytest.raises(ValidationError) as info:
        c.sources.plan(edited, base=frame)
    text = str(info.value)
    assert "use_pps_time" in text and "identify_facesize_threshold" in text and "appears 2 times" in text
    assert "shoe_size: unknown column" in text and len(info.value.problems) == 4
    assert sb.log == []


def test_a_field_the_server_sent_that_the_schema_does_not_know_can_be_edited(big):
    sb, c, frame = big
    kept = frame.copy()
    kept["auto_check_angle_threshold"] = 45  # unknown to the schema, but the server sent it: fine
    plan = c.sources.plan(kept, base=frame)
    assert set(plan.changes["field"]) == {"auto_check_angle_threshold"}
    report = plan.apply(progress=False)
    assert report["status"].eq("updated").all()
    assert all(s["auto_check_angle_threshold"] == 45 for s in sb.sources.values())


def test_edited_subset_of_columns_only_compares_those(big):
    _sb, c, frame = big
    edited = frame[["name", "identify_facesize_threshold"]].copy()
    edited["identify_facesize_threshold"] += 1
    plan = c.sources.plan(edited, base=frame)
    assert len(plan) == 1000 and set(plan.changes["field"]) == {"identify_facesize_threshold"}
    assert all(to_python(v) is not None for v in plan.changes["new"])


# ---- undo puts back what each write replaced ---------------------------------------------


def test_undo_after_overwrite_puts_back_the_colleagues_value(big):
    sb, c, frame = big
    edited = frame.copy()
    edited.loc[[7, 9], "identify_facesize_threshold"] = 111
    sb.external_edit(7, identify_facesize_threshold=999)  # a colleague, after our base was read
    report = c.sources.bulk_update(edited, base=frame, on_conflict="overwrite", progress=False)
    assert report.loc[7, "status"] == "updated" and sb.source(7)["identify_facesize_threshold"] == 111
    assert report.loc[7, "replaced"] == {"identify_facesize_threshold": 999}
    undone = c.sources.undo(report, progress=False)
    assert undone.counts() == {"updated": 2}
    assert sb.source(7)["identify_facesize_threshold"] == 999  # the colleague's value, not the base's
    assert sb.source(9)["identify_facesize_threshold"] == frame.loc[9, "identify_facesize_threshold"]


def test_undo_skips_rows_where_nothing_was_sent(big):
    sb, c, frame = big
    edited = frame.copy()
    edited.loc[[11, 12], "identify_facesize_threshold"] = 222
    sb.external_edit(11, identify_facesize_threshold=222)  # the server already has our value
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"updated": 2}
    assert [r.path for r in sb.requests("PATCH")] == ["/v1/sources/12/"]
    assert report.loc[11, "replaced"] == {}
    sb.clear_log()
    undone = c.sources.undo(report, progress=False)
    assert list(undone.index) == [12]
    assert [r.path for r in sb.requests("PATCH")] == ["/v1/sources/12/"]
    assert sb.source(11)["identify_facesize_threshold"] == 222  # left as the colleague set it


# ---- Ctrl-C pressed again, any exception while sending ------------------------------------


def _waiting_in(function: str) -> FrameType | None:
    """The main thread's ``threading.Condition.wait`` frame, when it waits there on its lock
    (or has just woken) inside ``function``; else None."""
    frame = sys._current_frames().get(threading.main_thread().ident)
    if frame is None or frame.f_code is not _CONDITION_WAIT or frame.f_lineno <= _CONDITION_WAIT_TRY:
        return None
    caller = frame.f_back
    while caller is not None and caller.f_code.co_name != function:
        caller = caller.f_back
    return frame if caller is not None else None


_CONDITION_WAIT = threading.Condition.wait.__code__
_lines, _first = inspect.getsourcelines(threading.Condition.wait)
#: The ``try:`` of ``Condition.wait``: past it, the thread is blocked on its lock (or just woke).
_CONDITION_WAIT_TRY = _first + next(n for n, line in enumerate(_lines) if line.strip().startswith("try:"))


class _ImpatientUser:
    """Presses Ctrl-C as the 20th PATCH arrives, then twice more while the requests in flight
    are held at the server (``hook``, the sandbox's ``before_request``), each press a real
    SIGINT to the run's thread (``main``); ``ctrl_c`` is the run's SIGINT handler."""

    def __init__(self, main: int) -> None:
        self.main = main
        self.received: queue.SimpleQueue[int] = queue.SimpleQueue()  # a press, as the run's thread gets it
        self.held: queue.SimpleQueue[threading.Event] = queue.SimpleQueue()
        self.let_go = threading.Event()
        self.twentieth = threading.Event()
        self.trouble: list[str] = []
        self.rounds: list[int] = []
        self.seen = 0
        self.lock = threading.Lock()

    def ctrl_c(self, signum, stack):
        self.received.put(signum)
        raise KeyboardInterrupt  # as Python's own handler does

    def hook(self, method, path):
        if method != "PATCH" or self.let_go.is_set():
            return
        with self.lock:
            self.seen += 1
            n = self.seen
        if n >= 19:  # the 19th, the 20th and any sent after them stay in flight until let go
            if n == 20:
                self.twentieth.set()
            release = threading.Event()
            self.held.put(release)
            if not self.let_go.is_set():
                release.wait(timeout=120)

    def press(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            signal.pthread_kill(self.main, signal.SIGINT)
            try:
                self.rounds.append(self.received.get(timeout=0.5))
                return
            except queue.Empty:  # it came just before the thread blocked, so it waits for a wake-up
                continue
        raise AssertionError("a Ctrl-C never reached the run")

    def presses(self) -> None:
        """The user's thread: the three presses, then every held request let go."""
        try:
            if not self.twentieth.wait(timeout=60):
                raise AssertionError("the 20th PATCH never came")
            self.press()
            last: FrameType | None = None
            for _ in range(2):  # impatient: again, while the requests in flight finish
                last = self.wait_anew_for_the_requests_in_flight(last)
                self.press()
        except Exception as exc:  # reported by the test, once everything was let go
            self.trouble.append(repr(exc))
        finally:
            self.let_go.set()
            while not self.held.empty():
                self.held.get().set()

    @staticmethod
    def wait_anew_for_the_requests_in_flight(last: FrameType | None) -> FrameType:
        """The run's frame waiting for the requests in flight, once it is not ``last`` (a new wait)."""
        deadline = time.monotonic() + 60
        while (waiting := _waiting_in("_finish_in_flight")) is None or waiting is last:
            if time.monotonic() > deadline:
                raise AssertionError("the run never waited for the requests in flight")
            time.sleep(0.005)
        return waiting


def test_a_second_and_third_ctrl_c_keep_the_partial_report(make_sandbox, client_for):
    """Ctrl-C as the 20th PATCH arrives, then twice more while the requests in flight are held
    at the server. Each press is a real SIGINT to the run's thread, as a terminal sends it (a
    simulated one, ``_thread.interrupt_main``, does not wake a thread blocked in a wait); the
    later ones are sent once that thread waits anew for the requests in flight, and nothing is
    let go before the run received all three: no press comes too late, whatever the load."""
    sb = make_sandbox(sources=200)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["auto_check_liveness"] = ~frame["auto_check_liveness"]
    main = threading.main_thread().ident
    assert main is not None
    user = _ImpatientUser(main)

    sb.before_request = user.hook
    previous = signal.signal(signal.SIGINT, user.ctrl_c)
    presses = threading.Thread(target=user.presses, daemon=True)
    try:
        presses.start()
        with pytest.raises(BulkInterrupted) as info:
            c.sources.bulk_update(edited, base=frame, progress=False)
    finally:
        user.let_go.set()
        presses.join(timeout=120)
        signal.signal(signal.SIGINT, previous)
        sb.before_request = None
    assert not user.trouble and len(user.rounds) == 3  # each press reached the run while requests were in flight
    applied = {r.source_id for r in sb.requests("PATCH") if r.status == 200}
    partial = info.value.report
    assert 20 <= len(applied) < 200
    assert set(partial.index) == applied and partial.counts() == {"updated": len(applied)}


def test_an_unexpected_error_while_sending_one_source_is_a_failed_row(big, monkeypatch):
    sb, c, frame = big
    edited = frame.copy()
    edited["identify_facesize_threshold"] = 4321
    real_update = type(c.sources)._send_update  # the REST verb a job's writes go through

    def update_that_breaks_on_40(self, source_id, fields):
        if source_id == 40:  # a bug deep in the stack, as a scalar error_codes once gave
            raise TypeError("'int' object is not iterable")
        return real_update(self, source_id, fields)

    monkeypatch.setattr(type(c.sources), "_send_update", update_that_breaks_on_40)
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"updated": 999, "failed": 1}
    assert report.loc[40, "status"] == "failed" and "not iterable" in report.loc[40, "error"]
    assert sum(s["identify_facesize_threshold"] == 4321 for s in sb.sources.values()) == 999


# ---- the conflict check's reads: as few as needed, and not in the way ----------------------
def test_patches_start_while_the_listing_is_still_being_read(make_sandbox, client_for, listing_waits_for_a_patch):
    sb = make_sandbox(sources=3000, page_cap=50, latency=0.01)
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited.loc[frame.index[::10], "identify_facesize_threshold"] += 5
    sb.clear_log()
    listing_waits_for_a_patch(sb, 30)
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    sb.before_request = None
    assert report.counts() == {"updated": 300}
    listing = [r for r in sb.log if r.method == "GET"]
    patches = [r for r in sb.log if r.method == "PATCH"]
    assert min(p.started for p in patches) < max(g.ended for g in listing)  # no wait for the whole listing
    assert len(listing) <= 3000 // 49 + 2 and all(g.path == "/v1/sources/" for g in listing)
    pd.testing.assert_frame_equal(c.sources.to_frame(progress=False), edited)


def test_the_conflict_check_reads_only_the_spaces_the_plan_touches(make_sandbox, client_for):
    sb = make_sandbox(sources=2000, page_cap=50)
    c = client_for(sb)
    frame = c.sources.to_frame(progress=False)
    smallest = int(frame["space_id"].value_counts().idxmin())
    in_space = frame.index[frame["space_id"] == smallest]
    edited = frame.copy()
    edited.loc[in_space[:60], "identify_facesize_threshold"] += 5
    sb.external_edit(int(in_space[0]), identify_facesize_threshold=4242)  # a conflict: seen in the spaces read
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"updated": 59, "conflict": 1}
    listing = [r for r in sb.log if r.method == "GET"]
    assert {r.params.get("spaces_ids") for r in listing} == {str(smallest)}
    assert len(listing) <= len(in_space) // 49 + 2 < 2000 // 50
