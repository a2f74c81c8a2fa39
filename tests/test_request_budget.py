"""What a job sends, counted in the sandbox's log: no request that a read already made
needless, and never more requests at once than the client allows."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

import pandas as pd
import pytest

from neuroio_nb._schema import create_defaults


def site(n: int, prefix: str = "Site 7 cam") -> pd.DataFrame:
    return pd.DataFrame({"name": [f"{prefix} {i:03d}" for i in range(n)], "identify_facesize_threshold": 9000})


def name_lookups(sb, names) -> Counter:
    """GETs that searched for exactly one of ``names`` (a create's own look-up of its name)."""
    wanted = set(names)
    return Counter(r.params.get("q") for r in sb.log if r.method == "GET" and r.params.get("q") in wanted)


@pytest.mark.parametrize(
    "scope",
    [{}, {"q": "Site 7"}, {"spaces_ids": [1]}],
    ids=["unscoped", "q-the-names-contain", "some-spaces-then-one-listing"],
)
def test_a_syncs_creates_send_no_lookup_per_create(make_sandbox, client_for, scope):
    """The listing read before the first POST already says who holds each name: 200 creates
    send 200 POSTs and no GET of their own (a scope that may miss a holder, some spaces only,
    costs one unscoped listing instead)."""
    sb = make_sandbox(sources=300, seed=7)
    c = client_for(sb)
    new = site(200)
    plan = c.sources.plan(new, key="name", create=True, **scope)
    assert len(plan.creates) == 200
    sb.clear_log()
    report = plan.apply(progress=False)
    assert report.counts() == {"created": 200}
    assert sum(r.method == "POST" for r in sb.log) == 200
    assert name_lookups(sb, new["name"]) == Counter()
    gets = [r for r in sb.log if r.method == "GET"]
    listings = 2 if "spaces_ids" in scope else 1  # the scope's, and then the whole account's
    assert len(gets) <= listings * 4  # 300 sources (or fewer, in scope) at 100 a page, each page once
    assert Counter(s["name"] for s in sb.sources.values() if s["name"] in set(new["name"])) == dict.fromkeys(
        new["name"], 1
    )


def test_a_q_the_names_do_not_contain_falls_back_to_a_safe_read(make_sandbox, client_for):
    """A listing searched with a ``q`` that a name does not contain (as the server matches,
    case aside) may miss that name's holders: they are read from elsewhere, never assumed none."""
    sb = make_sandbox(sources=50, seed=7)
    c = client_for(sb)
    new = site(3, prefix="SITE 7 cam")  # q="site 7" matches them on this server, ignoring case
    plan = c.sources.plan(new, key="name", create=True, q="site 7")
    sb.clear_log()
    assert plan.apply(progress=False).counts() == {"created": 3}
    assert name_lookups(sb, new["name"]) == Counter(dict.fromkeys(new["name"], 1))  # few: one look-up each


def test_unknown_outcomes_are_settled_once_against_the_holders_read_before(make_sandbox, client_for):
    """Every POST's answer is lost after it was applied. Each create asks the server once, after
    its POST, and adopts the source it made: never a namesake with the same settings that sat
    in another space before (out of the plan's scope, so the plan creates the name)."""
    namesakes = [f"Dock cam {i:02d}" for i in range(12)]
    others = [{"id": 100 + i, "space_id": 2, "name": name, **create_defaults()} for i, name in enumerate(namesakes)]
    sb = make_sandbox(sources=[{"id": 1, "space_id": 1, "name": "Lobby", **create_defaults()}, *others])
    c = client_for(sb)
    plan = c.sources.plan(pd.DataFrame({"name": namesakes}), key="name", create=True, spaces_ids=[1])
    assert len(plan.creates) == len(namesakes)
    sb.drop_after_apply = 1.0
    sb.clear_log()
    report = plan.apply(progress=False)
    sb.drop_after_apply = 0.0

    assert report.counts() == {"created": len(namesakes)}
    made = {int(sid): name for sid, name in zip(report.index, report["name"], strict=True)}
    assert not set(made) & {s["id"] for s in others}  # none of the namesakes
    assert {sb.source(sid)["space_id"] for sid in made} == {1} and sorted(made.values()) == namesakes
    for name in namesakes:
        assert sorted(s["space_id"] for s in sb.sources.values() if s["name"] == name) == [1, 2]
    posts = [r for r in sb.log if r.method == "POST"]
    assert len(posts) == len(namesakes) and all(r.fault == "drop_after_apply" for r in posts)
    lookups = [r for r in sb.log if r.method == "GET" and r.params.get("q") in set(namesakes)]
    assert Counter(r.params["q"] for r in lookups) == dict.fromkeys(namesakes, 1)  # one settling read each
    post_ended = {r.body["name"]: r.ended for r in posts}
    assert all(r.started >= post_ended[r.params["q"]] for r in lookups)  # after its POST, never before


# ---- how many at once ------------------------------------------------------------------------------

READS = ("GET", "HEAD")


def most_at_once(records) -> int:
    """The most of ``records`` the server was handling at the same moment."""
    edges = sorted([(r.started, 1) for r in records] + [(r.ended, -1) for r in records])  # an end before a start
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


def edit_every_10th(frame: pd.DataFrame) -> pd.DataFrame:
    edited = frame.copy()
    edited.loc[frame.index[::10], "identify_facesize_threshold"] += 5
    return edited


def test_reads_and_writes_each_keep_to_their_budget(make_sandbox, client_for):
    """A conflict-checked update reads the listing while it sends PATCHes: never more than
    ``max_readers`` reads nor ``max_workers`` writes at once, and both together."""
    sb = make_sandbox(sources=2000, page_cap=50, latency=0.02)
    c = client_for(sb, max_workers=3, max_readers=2)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_10th(frame)
    sb.clear_log()
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    assert report.counts() == {"updated": 200}
    reads = [r for r in sb.log if r.method in READS]
    writes = [r for r in sb.log if r.method not in READS]
    assert len(reads) > 2 * 2000 // 50 // 3  # a listing, read two pages at a time
    assert most_at_once(reads) <= 2 and most_at_once(writes) <= 3
    pd.testing.assert_frame_equal(c.sources.to_frame(progress=False), edited)


def test_writes_never_wait_behind_reads(make_sandbox, client_for):
    """The server holds a listing's pages until a PATCH arrives; the reads take every place
    they are allowed. A PATCH sent meanwhile on the same client still goes at once: writes
    have a budget of their own, so the held reads are released by it, not by a timeout."""
    sb = make_sandbox(sources=600, page_cap=50, latency=0.01)
    c = client_for(sb, max_workers=2, max_readers=2, journal=False)  # no journal: the PATCH alone
    gets, held, patched = {"n": 0}, threading.Semaphore(0), threading.Event()
    waited_out: list[str] = []
    lock = threading.Lock()

    def hold_pages_until_a_patch(method, path):
        if method == "PATCH":
            patched.set()
        elif method == "GET":
            with lock:
                gets["n"] += 1
                first = gets["n"] == 1
            if not first:
                held.release()
                if not patched.wait(timeout=5):
                    waited_out.append(path)

    sb.before_request = hold_pages_until_a_patch
    reader = threading.Thread(target=lambda: c.sources.to_frame(progress=False), daemon=True)
    reader.start()
    assert held.acquire(timeout=10) and held.acquire(timeout=10)  # two reads in flight, held
    made = c.sources.update(1, identify_facesize_threshold=4321)
    reader.join(timeout=30)
    sb.before_request = None
    assert made["identify_facesize_threshold"] == 4321
    assert waited_out == []  # the PATCH did not wait for a read to give up its place


def test_a_429_storm_on_the_reads_slows_the_writes_too(make_sandbox, client_for):
    """Every request is answered 429 until the server has refused eight: the listing's reads
    take them all. The back-off is shared: afterwards the PATCHes, too, start one at a time,
    spaced, before speeding up again; nothing fails."""
    sb = make_sandbox(sources=400, page_cap=50, latency=0.02, retry_after=(0, 0))
    c = client_for(sb, max_workers=4)
    frame = c.sources.to_frame(progress=False)
    edited = edit_every_10th(frame)
    calm: dict[str, float] = {}

    def end_the_storm_after_eight():
        while sum(r.status == 429 for r in sb.log) < 8:
            time.sleep(0.002)
        sb.faults = {}
        calm["at"] = time.monotonic()

    sb.clear_log()
    sb.faults = {"429": 1.0}
    storm = threading.Thread(target=end_the_storm_after_eight, daemon=True)
    storm.start()
    report = c.sources.bulk_update(edited, base=frame, progress=False)
    storm.join(timeout=10)
    assert report.counts() == {"updated": 40}
    refused = [r for r in sb.log if r.status == 429]
    assert len(refused) >= 8 and all(r.method == "GET" for r in refused)  # the storm met the reads only
    after = [r for r in sb.log if r.started > calm["at"]]
    first_writes = [r for r in after if r.method == "PATCH"][:3]
    first_reads = [r for r in after if r.method == "GET"][:3]
    assert len(first_writes) == 3 and most_at_once(first_writes) == 1
    assert most_at_once(first_reads) == 1
    pd.testing.assert_frame_equal(c.sources.to_frame(progress=False), edited)


# ---- a sync reads its scope while it writes -------------------------------------------------------


def damaged_backup(sb, c, deleted: int, changed: int):
    """An account's backup, then ``deleted`` of its unique names removed and ``changed`` edited."""
    backup = c.sources.to_frame(progress=False)
    unique = backup[~backup["name"].duplicated(keep=False) & (backup["space_id"] == 1)]
    for sid in unique.index[:deleted]:
        sb.remove_source(int(sid))
    for sid in backup.index.difference(unique.index[:deleted])[:changed]:
        sb.external_edit(int(sid), identify_facesize_threshold=4444)
    return backup


def test_a_syncs_updates_start_while_its_scope_is_read_and_creates_once_it_is(
    make_sandbox, client_for, listing_waits_for_a_patch
):
    """A restore re-reads the account before writing: each PATCH starts as soon as the page holding
    its source arrives, and the creates once the whole account was read (a name may be held on
    any page)."""
    sb = make_sandbox(sources=2000, page_cap=50, latency=0.01, seed=2)
    c = client_for(sb, max_workers=4)
    backup = damaged_backup(sb, c, deleted=20, changed=200)
    plan = c.sources.plan(backup, key="name", create=True)
    assert plan.summary() == "20 sources to create, 200 to update (200 values)"
    sb.clear_log()
    listing_waits_for_a_patch(sb, 20)
    report = plan.apply(progress=False)
    sb.before_request = None
    assert report.counts() == {"created": 20, "updated": 200}
    listing = [r for r in sb.log if r.method == "GET"]
    patches = [r for r in sb.log if r.method == "PATCH"]
    posts = [r for r in sb.log if r.method == "POST"]
    assert min(p.started for p in patches) < max(g.ended for g in listing)  # no wait for the whole listing
    assert min(p.started for p in posts) > max(g.ended for g in listing)  # the creates wait for all of it
    assert len(listing) <= 2000 // 49 + 2
    again = c.sources.plan(backup, key="name", create=True)
    assert len(again) == 0


def test_a_syncs_scope_that_cannot_be_read_midway_leaves_exact_failed_rows(make_sandbox, client_for):
    """The server fails every read after the third while a restore re-reads the account: the
    writes already checked go through, every other row is a failed row saying why (no create is
    sent unchecked), nothing is raised, and planning again shows exactly what was not done."""
    sb = make_sandbox(sources=600, page_cap=50, seed=2)
    c = client_for(sb, max_workers=2, max_retries=1)
    backup = damaged_backup(sb, c, deleted=5, changed=600)
    plan = c.sources.plan(backup, key="name", create=True)
    gets = {"n": 0}
    lock = threading.Lock()

    def fail_reads_after_the_third(method, path):
        if method == "GET":
            with lock:
                gets["n"] += 1
                if gets["n"] > 3:
                    raise RuntimeError("the listing broke")

    sb.clear_log()
    sb.before_request = fail_reads_after_the_third
    report = plan.apply(progress=False)
    sb.before_request = None
    counts = report.counts()
    assert set(counts) == {"updated", "failed"} and counts["updated"] + counts["failed"] == 600
    assert 0 < counts["updated"] < 595 and not any(r.method == "POST" for r in sb.log)
    failed = report[report["status"] == "failed"]
    assert failed["error"].str.startswith("not sent: the server's sources could not be read").all()
    assert sum(r.method == "PATCH" for r in sb.log) == counts["updated"]
    again = c.sources.plan(backup, key="name", create=True)
    assert len(again.creates) == 5 and set(again.changes["id"]) == set(failed.index[failed["action"] == "update"])


def test_a_syncs_re_read_asks_for_every_page_at_once_when_the_plan_read_the_scope(make_sandbox, client_for):
    """The plan's own read says how many pages the scope has, so applying asks for them all
    with the first page, not a round trip after it: the first request to arrive is held at the
    server until another has (ten seconds at most), and some later page must have started
    before the first page ended."""
    sb = make_sandbox(sources=400, page_cap=50, seed=2)
    c = client_for(sb, max_readers=8)
    backup = damaged_backup(sb, c, deleted=3, changed=30)
    plan = c.sources.plan(backup, key="name", create=True)
    another = threading.Event()
    gets = {"n": 0}
    lock = threading.Lock()

    def first_page_waits_for_another(method, path):
        if method == "GET":
            with lock:
                gets["n"] += 1
                first = gets["n"] == 1
            if first:
                another.wait(timeout=10)
            else:
                another.set()

    sb.clear_log()
    sb.before_request = first_page_waits_for_another
    report = plan.apply(progress=False)
    sb.before_request = None
    assert report.counts() == {"created": 3, "updated": 30}
    listing = [r for r in sb.log if r.method == "GET"]
    first = [r for r in listing if r.params.get("offset", "0") in ("", "0")]
    assert len(first) == 1 and any(r.started < first[0].ended for r in listing if r is not first[0])
    assert len(listing) <= 400 // 49 + 1  # each page once: the plan's page size (the server's cap) was kept
    assert len(c.sources.plan(backup, key="name", create=True)) == 0


@pytest.mark.parametrize("since", ["grown", "shrunk"])
def test_the_plans_page_count_is_only_a_guess_when_applying(make_sandbox, client_for, since):
    """Applying asks first for the pages the plan's read implies, but reads what the server has
    now: a name taken since the plan on a page past the old end is a conflict, and sources
    deleted since then (every page after them shifted) make no update go unchecked or missed."""
    sb = make_sandbox(sources=120, seed=4)
    c = client_for(sb, page_size=20)
    backup = damaged_backup(sb, c, deleted=2, changed=25)
    late = pd.DataFrame({"name": ["Late cam"], "use_pps_time": [True], "space_id": [1]})
    plan = c.sources.plan(pd.concat([backup.reset_index(), late], ignore_index=True), key="name", create=True)
    assert plan.summary() == "3 sources to create, 25 to update (25 values)"
    if since == "grown":
        for n in range(45):
            sb.add_source(name=f"Filler {n}")
        taken = sb.add_source(name="Late cam")["id"]  # listed last: past every page the plan saw
    else:
        edited = set(plan.changes["id"])
        for sid in [i for i in sorted(sb.sources) if i not in edited][:40]:
            sb.remove_source(sid)
    report = plan.apply(progress=False)
    if since == "grown":
        assert report.counts() == {"created": 2, "updated": 25, "conflict": 1}
        assert report[report["status"] == "conflict"].index.tolist() == [taken]
        assert [s["name"] for s in sb.sources.values()].count("Late cam") == 1
    else:
        assert report.counts() == {"created": 3, "updated": 25}
    assert all(sb.source(sid)["identify_facesize_threshold"] != 4444 for sid in plan.changes["id"].unique())


def spread_damage(sb, c, deleted: int, changed: int):
    """Like :func:`damaged_backup`, but the edited sources are spread over the whole listing."""
    backup = c.sources.to_frame(progress=False)
    unique = backup[~backup["name"].duplicated(keep=False) & (backup["space_id"] == 1)]
    kept = backup.index.difference(unique.index[:deleted])
    for sid in unique.index[:deleted]:
        sb.remove_source(int(sid))
    for sid in kept[:: len(kept) // changed][:changed]:
        sb.external_edit(int(sid), identify_facesize_threshold=4444)
    return backup


def test_a_syncs_writes_start_with_whichever_page_of_its_scope_comes_first(make_sandbox, client_for, monkeypatch):
    """Applying a sync writes as soon as any page of its scope arrives, not once the first
    page (offset 0) did: that page is held in the client, before it is sent, until a PATCH
    has reached the server (ten seconds at most, else the test fails)."""
    sb = make_sandbox(sources=400, page_cap=50, seed=2)
    c = client_for(sb, max_readers=4)
    backup = spread_damage(sb, c, deleted=3, changed=30)
    plan = c.sources.plan(backup, key="name", create=True)
    assert plan.summary() == "3 sources to create, 30 to update (30 values)"
    patched = threading.Event()
    sb.before_request = lambda method, path: patched.set() if method == "PATCH" else None
    listing = c.sources.list
    waited: list[bool] = []

    def first_page_after_a_patch(q=None, spaces_ids=None, limit=20, offset=0):
        if offset == 0:
            waited.append(patched.wait(timeout=10))
        return listing(q, spaces_ids, limit, offset)

    monkeypatch.setattr(c.sources, "list", first_page_after_a_patch)
    report = plan.apply(progress=False)
    assert waited == [True]
    assert report.counts() == {"created": 3, "updated": 30}
    assert len(c.sources.plan(backup, key="name", create=True)) == 0


def test_a_syncs_scope_is_asked_for_while_its_journal_run_is_written(make_sandbox, client_for, monkeypatch):
    """A read needs no journal: applying a sync asks for its scope before writing its journal
    run to disk, so the pages are on their way meanwhile (that every write waits for the run is
    test_journal.py's). Each fsync is held until a GET has reached the server (ten seconds at most)."""
    sb = make_sandbox(sources=200, page_cap=50, seed=3)
    c = client_for(sb)
    backup = spread_damage(sb, c, deleted=2, changed=10)
    plan = c.sources.plan(backup, key="name", create=True)
    asked = threading.Event()
    sb.before_request = lambda method, path: asked.set() if method == "GET" else None
    fsync = os.fsync
    waited: list[bool] = []

    def fsync_once_a_page_was_asked_for(fd: int) -> None:
        waited.append(asked.wait(timeout=10))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync_once_a_page_was_asked_for)
    report = plan.apply(progress=False)
    monkeypatch.undo()
    assert waited and waited[0] is True
    assert report.counts() == {"created": 2, "updated": 10}
    assert len(c.sources.plan(backup, key="name", create=True)) == 0
