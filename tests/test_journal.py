"""The journal: run files written before requests go, read back after any crash."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroio_nb import _journal as jn
from neuroio_nb._journal import Intent, Journal
from neuroio_nb.errors import (
    ConfigurationError,
    JournalError,
    NeuroIOError,
    RunsKeptWarning,
    TornLineWarning,
    UnreadableRunWarning,
)


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- the file format ---------------------------------------------------------------------------


def test_a_run_reads_back_with_intents_outcomes_and_state(tmp_path):
    journal = Journal(tmp_path / "j")
    run = journal.start("apply", "http://127.0.0.1:1")
    seqs = run.intend(
        [
            Intent(action="update", source_id=7, before={"name": "a"}, after={"name": "b"}, name="a"),
            Intent(action="update", source_id=8, before={"name": "c"}, after={"name": "d"}, name="c"),
            Intent(
                action="update",
                source_id=9,
                before={"name": "e"},
                after={"name": "f"},
                status="conflict",
                error="moved",
            ),
        ]
    )
    run.outcome(seqs[0], "updated", source_id=7)
    mid = journal.read(run.run_id)
    assert mid.state == "interrupted" and mid.counts() == {"updated": 1, "unknown": 1, "conflict": 1}
    run.outcome(seqs[1], "failed", error="HTTP 400: bad name", source_id=8)
    run.finish()
    record = journal.read(run.run_id)
    assert record.state == "complete" and record.finished is not None
    assert record.kind == "apply" and record.base_url == "http://127.0.0.1:1"
    assert [(e.source_id, e.status, e.before, e.after) for e in record.entries] == [
        (7, "updated", {"name": "a"}, {"name": "b"}),
        (8, "failed", {"name": "c"}, {"name": "d"}),
        (9, "conflict", {"name": "e"}, {"name": "f"}),
    ]
    assert record.entries[1].error == "HTTP 400: bad name"
    header = lines_of(run.path)[0]
    assert header["format"] == "neuroio-nb-journal" and header["version"] == 1 and header["run"] == run.run_id


def test_each_line_is_readable_json_a_person_can_grep(tmp_path):
    run = Journal(tmp_path).start("update", "https://api.example")
    run.intend([Intent(action="update", source_id=3, before={"name": "Porte Est"}, after={"name": "Porte Ouest"})])
    run.finish()
    text = run.path.read_text(encoding="utf-8")
    assert "Porte Ouest" in text and text.endswith("\n")
    assert [r.get("t") for r in lines_of(run.path)] == [None, "intent", "end"]


def test_intents_are_fsynced_before_intend_returns(tmp_path, monkeypatch):
    run = Journal(tmp_path).start("apply", "http://x")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(run.path.read_text()), real_fsync(fd)))
    run.intend([Intent(action="update", source_id=i, before={"x": 1}, after={"x": 2}) for i in range(50)])
    assert len(synced) == 1, "one fsync for the whole batch"
    assert synced[0].count('"t": "intent"') == 50, "every intent of the batch written before the fsync"
    run.outcome(1, "updated")
    assert len(synced) == 1, "outcomes are not fsynced one by one"
    assert '"t": "outcome"' in run.path.read_text(), "but they reach the file at once"
    run.finish()
    assert len(synced) == 2


def test_numpy_values_are_written_as_plain_json(tmp_path):
    run = Journal(tmp_path).start("apply", "http://x")
    run.intend(
        [
            Intent(
                action="update",
                source_id=int(np.int64(5)),
                before={"t": np.int64(3), "b": np.bool_(True)},
                after={"t": np.int64(4), "l": np.array(["a", "b"])},
            )
        ]
    )
    run.finish()
    entry = Journal(tmp_path).read(run.run_id).entries[0]
    assert entry.before == {"t": 3, "b": True} and entry.after == {"t": 4, "l": ["a", "b"]}


# ---- where, and who may read it -------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_folder_is_0700_and_files_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        folder = tmp_path / "deep" / "journal"
        run = Journal(folder).start("apply", "http://x")
        run.finish()
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(run.path.stat().st_mode) == 0o600


def test_default_folder_is_the_env_var_else_the_user_data_dir(tmp_path, monkeypatch):
    import platformdirs

    monkeypatch.setenv("NEUROIO_NB_JOURNAL", str(tmp_path / "mine"))
    assert jn.default_folder() == tmp_path / "mine"
    assert jn.open_journal(None).folder == tmp_path / "mine"
    assert jn.open_journal(tmp_path / "other").folder == tmp_path / "other"
    assert jn.open_journal(False) is None
    monkeypatch.delenv("NEUROIO_NB_JOURNAL")
    assert jn.default_folder() == Path(platformdirs.user_data_dir("neuroio-nb", appauthor=False)) / "journal"
    with pytest.raises(ValueError, match="journal must be"):
        jn.open_journal(3)


def test_the_test_suite_never_writes_to_the_real_user_folder():
    import platformdirs

    configured = Path(os.environ["NEUROIO_NB_JOURNAL"])
    assert not str(configured).startswith(platformdirs.user_data_dir("neuroio-nb", appauthor=False))


# ---- damaged and foreign files ------------------------------------------------------------------


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path):
    journal = Journal(tmp_path)
    run = journal.start("apply", "http://x")
    seqs = run.intend(
        [
            Intent(action="update", source_id=1, before={"a": 1}, after={"a": 2}),
            Intent(action="update", source_id=2, before={"a": 1}, after={"a": 2}),
        ]
    )
    run.outcome(seqs[0], "updated")
    run.close()
    with open(run.path, "ab") as f:
        f.write(b'{"t": "outcome", "seq": 2, "sta')
    with pytest.warns(TornLineWarning, match="cut short"):
        record = journal.read(run.run_id)
    assert record.state == "interrupted"
    assert [e.status for e in record.entries] == ["updated", None]
    with pytest.warns(TornLineWarning):
        assert [r.run_id for r in journal.runs()] == [run.run_id]


def test_an_empty_run_file_is_named_in_a_warning_not_fatal(tmp_path):
    journal = Journal(tmp_path)
    good = journal.start("apply", "http://x")
    good.finish()
    journal.path_of(jn.new_run_id()).write_bytes(b'{"format": "neuroio-nb-jo')
    with pytest.warns(TornLineWarning):
        runs = journal.runs()
    assert [r.run_id for r in runs] == [good.run_id]


@pytest.mark.parametrize(
    "content",
    [
        b"id,name\n1,Porte\n",
        b'{"format": "something-else", "version": 1}\n',
        b'{"t": "intent", "seq": 1}\n',
        b"[1, 2, 3]\n",
        b"\x00\x01\x02 binary\n",
    ],
)
def test_a_file_that_is_not_the_toolkits_is_refused(tmp_path, content):
    path = tmp_path / "foreign.jsonl"
    path.write_bytes(content)
    with pytest.raises(JournalError, match="not a neuroio-nb journal file"):
        Journal(tmp_path).read(path)


def test_a_newer_format_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "future.jsonl"
    path.write_text(json.dumps({"format": "neuroio-nb-journal", "version": 99}) + "\n")
    with pytest.raises(JournalError, match="upgrade neuroio-nb"):
        Journal(tmp_path).read(path)


def test_runs_are_found_by_id_unique_prefix_or_path(tmp_path):
    journal = Journal(tmp_path)
    a = journal.start("apply", "http://x")
    b = journal.start("apply", "http://x")
    a.finish()
    b.finish()
    assert journal.read(a.run_id).run_id == a.run_id
    assert journal.read(a.run_id[:-3]).run_id == a.run_id
    assert journal.read(str(b.path)).run_id == b.run_id
    common = a.run_id[:8]  # the day: both runs started on it
    with pytest.raises(JournalError, match="give more of it"):
        journal.read(common)
    with pytest.raises(JournalError, match="no run"):
        journal.read("19990101")


# ---- many writers ------------------------------------------------------------------------------


# ---- probes: known by the mark of their record, never by their name ----------------------------

#: The name a probe had in a run written before probes were marked (the probe prefix, a run id,
#: eight hex digits); a user's own source may be named so too (restored from an export).
PROBE_SHAPED = "neuroio-nb probe 20261205-145316-a1b2c3 0badf00d"


def test_a_probe_is_known_by_the_mark_of_its_record_never_by_its_name(tmp_path):
    journal = Journal(tmp_path / "j")
    run = journal.start("undo", "http://127.0.0.1:1")
    probe, prefixed, shaped, left = run.intend(
        [
            Intent(action="create", source_id=None, after={"name": "neuroio-nb probe x"}, name="x", probe=True),
            Intent(action="delete", source_id=5, before={"name": "neuroio-nb probe of gate 4"}, name="gate 4"),
            Intent(action="delete", source_id=6, before={"name": PROBE_SHAPED}, name=PROBE_SHAPED),
            Intent(action="delete", source_id=7, before={"name": "neuroio-nb probe y"}, name="y", probe=True),
        ]
    )
    run.outcome(probe, "created", source_id=9)
    run.outcome(probe, "deleted", source_id=9)
    run.outcome(prefixed, "deleted", source_id=5)
    run.outcome(shaped, "deleted", source_id=6)
    run.outcome(left, "failed", error="the server cannot delete now", source_id=7)
    run.finish()
    lines = lines_of(run.path)
    assert lines[0]["probe_marks"] is True
    assert [line.get("probe") for line in lines if line.get("t") == "intent"] == [True, None, None, True]
    entries = journal.read(run.run_id).entries
    assert [(e.source_id, e.probe) for e in entries] == [(5, False), (6, False), (7, True)], (
        "the users' sources are read whatever their names; a probe deleted again is not; one whose "
        "delete failed stays on the server, so it is read"
    )


def test_a_run_written_before_probes_were_marked_reads_as_it_did(tmp_path):
    """Its header has no ``probe_marks``: an entry of a probe's name as probes were named then
    is a probe (deleted again: not read back); a user's source merely starting with the probe
    prefix is read."""
    folder = tmp_path / "j"
    folder.mkdir(mode=0o700)
    run_id = "20261205-150000-abcdef"
    records = [
        {"format": "neuroio-nb-journal", "version": 1, "run": run_id, "kind": "undo", "parent": None,
         "base_url": "http://127.0.0.1:1", "started": "2026-12-05T15:00:00.000+00:00", "pid": 1},
        {"t": "intent", "seq": 1, "action": "create", "id": None, "name": PROBE_SHAPED, "before": {},
         "after": {"name": PROBE_SHAPED}, "holders": []},
        {"t": "intent", "seq": 2, "action": "delete", "id": 5, "name": "neuroio-nb probe of gate 4",
         "before": {"name": "neuroio-nb probe of gate 4"}, "after": {}},
        {"t": "outcome", "seq": 1, "status": "created", "error": None, "id": 9},
        {"t": "outcome", "seq": 1, "status": "deleted", "error": None, "id": 9},
        {"t": "outcome", "seq": 2, "status": "deleted", "error": None, "id": 5},
        {"t": "end", "state": "complete", "finished": "2026-12-05T15:00:01.000+00:00", "counts": {}},
    ]  # fmt: skip
    (folder / f"{run_id}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = Journal(folder).read(run_id)
    assert [(e.seq, e.name, e.probe) for e in run.entries] == [(2, "neuroio-nb probe of gate 4", False)]
    assert run.state == "complete" and run.counts() == {"deleted": 1}


def test_run_ids_never_collide_even_with_the_same_clock(tmp_path, monkeypatch):
    journal = Journal(tmp_path)
    first = journal.start("apply", "http://x")
    ids = iter([first.run_id, first.run_id, jn.new_run_id()])
    monkeypatch.setattr(jn, "new_run_id", lambda: next(ids))
    second = journal.start("apply", "http://x")
    assert second.run_id != first.run_id
    first.finish()
    second.finish()
    assert len(lines_of(first.path)) == 2 and len(lines_of(second.path)) == 2


def test_threads_recording_outcomes_never_interleave_lines(tmp_path):
    run = Journal(tmp_path).start("apply", "http://x")
    seqs = run.intend(
        [
            Intent(action="update", source_id=i, before={"name": "x" * 500}, after={"name": "y" * 500})
            for i in range(800)
        ]
    )

    def worker(part: list[int]) -> None:
        for seq in part:
            run.outcome(seq, "updated", error="e" * 300)

    threads = [threading.Thread(target=worker, args=(seqs[k::8],)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.finish()
    record = Journal(tmp_path).read(run.run_id)
    assert record.state == "complete" and record.counts() == {"updated": 800}


WRITER = textwrap.dedent("""
    import sys, threading
    from neuroio_nb._journal import Intent, Journal
    run = Journal(sys.argv[1]).start("apply", "http://x", details={"writer": sys.argv[2]})
    for batch in range(10):
        seqs = run.intend([Intent(action="update", source_id=batch * 100 + i, before={"v": 0}, after={"v": sys.argv[2]}) for i in range(100)])
        threads = [threading.Thread(target=lambda s=s: run.outcome(s, "updated")) for s in seqs]
        [t.start() for t in threads]
        [t.join() for t in threads]
    run.finish()
    print(run.run_id)
""")


def test_two_processes_writing_at_once_leave_two_whole_runs(tmp_path):
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], stdout=subprocess.PIPE, text=True)
        for name in ("one", "two")
    ]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] != outs[1]
    runs = {r.details["writer"]: r for r in Journal(tmp_path).runs()}
    assert set(runs) == {"one", "two"}
    for name, record in runs.items():
        assert record.state == "complete" and record.counts() == {"updated": 1000}
        assert {e.after["v"] for e in record.entries} == {name}
        assert [e.source_id for e in record.entries] == list(range(1000))


# ---- over the sandbox: every write journaled ---------------------------------------------------


def test_history_lists_runs_newest_first_and_a_run_reads_back_as_its_report(sb, client_for, tmp_path):
    c = client_for(sb, journal=tmp_path)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited.loc[edited.index[:5], "identify_facesize_threshold"] += 1
    first = c.sources.bulk_update(edited, base=frame, progress=False)
    c.sources.update(int(frame.index[9]), name="Renamed")
    runs = client_for(sb, journal=tmp_path).sources.history()
    assert list(runs["kind"]) == ["update", "apply"]
    assert list(runs["state"]) == ["complete", "complete"]
    assert runs.iloc[1]["updated"] == 5 and runs.iloc[0]["updated"] == 1
    assert set(runs["base_url"]) == {sb.url}
    assert runs.index[1] == first.attrs["run_id"]
    again = c.sources.history(first.attrs["run_id"])
    assert list(again.index) == list(first.index) and list(again["status"]) == list(first["status"])
    assert [again.loc[i, "changes"] for i in again.index] == [first.loc[i, "changes"] for i in first.index]
    assert "2 runs" in runs._repr_html_() and "<table" in runs._repr_html_()


def test_single_create_update_delete_are_journaled_and_undone(sb, client_for, tmp_path):
    c = client_for(sb, journal=tmp_path)
    before = sb.source(4)
    c.sources.update(4, name="Gate B", identify_facesize_threshold=321)
    runs = c.sources.history()
    run = Journal(tmp_path).read(runs.index[0])
    assert run.entries[0].before == {
        "name": before["name"],
        "identify_facesize_threshold": before["identify_facesize_threshold"],
    }
    c.sources.undo(runs.index[0])
    assert sb.source(4) == before
    made = c.sources.create("Brand new")
    c.sources.delete(5)
    kinds = list(c.sources.history()["kind"])
    assert kinds[:2] == ["delete", "create"]
    entries = {r.kind: r.entries[0] for r in Journal(tmp_path).runs()}
    assert entries["create"].result_id == made["id"] and entries["create"].status == "created"
    assert entries["delete"].before["id"] == 5 and entries["delete"].status == "deleted"


@pytest.mark.parametrize("by", ["run_id", "report"])
def test_a_conflict_checked_runs_journal_records_what_was_sent_and_replaced(sb, client_for, tmp_path, by):
    """A conflict-checked update (checked as the pages arrive): one source already held the new
    value (nothing sent), one a colleague had changed (overwritten), one as planned. Undo by run
    id, from the journal, does what undo of the report does: leaves the first alone, puts back the
    colleague's value, and the base's where the write replaced it."""
    c = client_for(sb, journal=tmp_path)
    frame = c.sources.to_frame(progress=False)
    there, theirs, plain = (int(i) for i in frame.index[:3])
    old = {sid: int(frame.at[sid, "identify_facesize_threshold"]) for sid in (there, theirs, plain)}
    edited = frame.copy()
    edited.loc[[there, theirs, plain], "identify_facesize_threshold"] += 100
    sb.external_edit(there, identify_facesize_threshold=old[there] + 100)  # the same edit, made by someone else
    sb.external_edit(theirs, identify_facesize_threshold=old[theirs] + 7)
    report = c.sources.bulk_update(edited, base=frame, on_conflict="overwrite", progress=False)
    assert report.counts() == {"updated": 3}
    sb.clear_log()
    c.sources.undo(report.attrs["run_id"] if by == "run_id" else report)
    now = {sid: sb.source(sid)["identify_facesize_threshold"] for sid in (there, theirs, plain)}
    assert now == {there: old[there] + 100, theirs: old[theirs] + 7, plain: old[plain]}
    assert sorted(r.source_id for r in sb.log if r.method == "PATCH") == sorted([theirs, plain])


def test_journal_false_writes_nothing(sb, client_for, tmp_path):
    default = Path(os.environ["NEUROIO_NB_JOURNAL"])
    before = sorted(default.glob("*"))
    folder = tmp_path / "never"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROIO_NB_JOURNAL", str(folder))
        c = client_for(sb, journal=False)
        frame = c.sources.to_frame(progress=False)
        edited = frame.copy()
        edited["identify_facesize_threshold"] += 1
        c.sources.bulk_update(edited, base=frame, progress=False)
        c.sources.update(3, name="x")
        c.sources.create("y")
        c.sources.delete(3)
    assert not folder.exists()
    assert sorted(default.glob("*")) == before
    with pytest.raises(ConfigurationError, match="journal=False"):
        c.sources.history()


def test_the_token_is_never_written_to_the_journal(make_sandbox, client_for, tmp_path):
    token = "journal-SECRET-token-42"
    sb = make_sandbox(sources=30, fault_rate=0.3, token=token)
    c = client_for(sb, journal=tmp_path)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    c.sources.bulk_update(edited, base=frame, progress=False)
    c.sources.update(3, name="x")
    sb.fault_rate = 0
    failing = client_for(sb, journal=tmp_path, max_retries=0)
    sb.faults = {"503": 1.0}
    with pytest.raises(NeuroIOError):
        failing.sources.update(4, name="y")
    sb.faults = {}
    c.sources.history()
    files = list(tmp_path.glob("*.jsonl"))
    assert len(files) >= 2
    for path in files:
        assert token.encode() not in path.read_bytes()


# ---- the crash test: SIGKILL mid-apply, then history, undo and resume from another process -----

EDIT = textwrap.dedent("""
    def edit(frame):
        '''400 changes: a threshold on each of the first 400 sources, a new name on every third.'''
        edited = frame.copy()
        ids = edited.index[:400]
        edited.loc[ids, "identify_facesize_threshold"] += 1000
        edited.loc[ids[::3], "name"] = edited.loc[ids[::3], "name"] + " (moved)"
        return edited
""")
namespace: dict = {}
exec(EDIT, namespace)
edit = namespace["edit"]

APPLIER = EDIT + textwrap.dedent("""
    import os, sys, time
    from neuroio_nb import Client

    client = Client(max_workers=4)
    if os.environ.get("HOLD_BEFORE_END"):
        def hold(kind):  # the journal's hook: called before each batch of lines is written
            if kind == "end":
                print("HOLDING", flush=True)
                time.sleep(600)
        client.journal.hook = hold
    frame = client.sources.to_frame(progress=False)
    client.sources.plan(edit(frame), base=frame).apply(progress=False)
    print("FINISHED", flush=True)
""")


def killed_apply(make_sandbox, folder: Path, kill: str) -> tuple:
    """Run the applier in a subprocess against a fresh sandbox and SIGKILL it at ``kill``.

    ``first``: as the first PATCH arrives (refused, so nothing is applied); ``third``: as the
    134th PATCH arrives (it and the others in flight are applied, their answers never read);
    ``last``: after every outcome is written, before the run is marked complete.
    Returns the sandbox, the sources before, and the ids the sandbox applied a PATCH to.
    """
    sb = make_sandbox(sources=600, latency=0.01)
    original = sb.sources
    env = dict(os.environ, NEUROIO_API_TOKEN=sb.token, NEUROIO_API_URL=sb.url, NEUROIO_NB_JOURNAL=str(folder))
    if kill == "last":
        env["HOLD_BEFORE_END"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", APPLIER], env=env, stdout=subprocess.PIPE, text=True)
    patches = {"n": 0}
    lock = threading.Lock()
    target = {"first": 1, "third": 134}.get(kill)

    def hook(method: str, path: str) -> None:
        if method != "PATCH" or target is None:
            return
        with lock:
            patches["n"] += 1
            if patches["n"] == target:
                proc.kill()
                proc.wait()
        if kill == "first":  # this write and the others already in flight are refused
            raise RuntimeError("killed before any write was applied")

    sb.before_request = hook
    if kill == "last":
        assert proc.stdout is not None and proc.stdout.readline().strip() == "HOLDING"
        proc.kill()
    proc.wait(timeout=120)
    assert proc.returncode == -9, "the applier was not killed: it finished first"
    settle_sandbox(sb)
    sb.before_request = None
    # What reached the server is what it holds: a request cut off mid-body by the kill
    # is dropped by the sandbox unprocessed, as a real server drops it.
    applied = changed_ids(sb, original)
    edited, now = edit(pd_frame(original)), pd_frame(sb.sources)
    for sid in applied:
        assert now.loc[sid].equals(edited.loc[sid]), "each write is applied whole or not at all"
    return sb, original, applied


def settle_sandbox(sb) -> None:
    """Wait until the sandbox has handled every request the dead process sent: each of its
    connections is closed only after the requests already in it were read and answered."""
    sb.wait_idle(closed=True)


def changed_ids(sb, original: dict) -> set[int]:
    return {i for i, s in sb.sources.items() if s != original[i]}


@pytest.mark.parametrize("kill", ["first", "third", "last"])
def test_killed_apply_can_be_undone_or_resumed_from_another_process(make_sandbox, client_for, tmp_path, kill):
    folder = tmp_path / "journal"
    sb, original, applied = killed_apply(make_sandbox, folder, kill)
    expected_applied = {"first": 0, "last": 400}.get(kill)
    if expected_applied is not None:
        assert len(applied) == expected_applied
    else:
        assert 130 <= len(applied) < 150, "about a third reached the sandbox"

    c = client_for(sb, journal=folder)
    runs = c.sources.history()
    assert len(runs) == 1
    run = runs.iloc[0]
    assert (run["state"], run["kind"], run["base_url"]) == ("interrupted", "apply", sb.url)
    assert run["updated"] + run["unknown"] == 400 and run["updated"] <= len(applied)
    assert b"Token" not in (folder / f"{runs.index[0]}.jsonl").read_bytes()
    assert sb.token.encode() not in (folder / f"{runs.index[0]}.jsonl").read_bytes()

    sb.clear_log()
    undone = c.sources.undo(runs.index[0])
    assert {r.source_id for r in sb.requests("PATCH")} == applied, "undo puts back exactly the sources that changed"
    assert len(sb.requests("PATCH")) == len(applied)
    assert sb.sources == original
    assert set(undone["status"]) <= {"updated"}
    kinds = c.sources.history()
    assert list(kinds["kind"][:2]) == ["undo", "apply"] and kinds["parent"].iloc[0] == runs.index[0]

    # The same scenario on a fresh copy, finished with resume instead.
    folder2 = tmp_path / "journal2"
    sb2, original2, applied2 = killed_apply(make_sandbox, folder2, kill)
    c2 = client_for(sb2, journal=folder2)
    run_id = c2.sources.history().index[0]
    sb2.clear_log()
    report = c2.sources.resume(run_id)
    resent = [r.source_id for r in sb2.requests("PATCH")]
    assert len(resent) == len(set(resent)), "no source is sent twice"
    assert set(resent) == set(edit(pd_frame(original2)).index[:400]) - applied2, (
        "resume sends exactly what had not reached the server"
    )
    assert len(report) == 400 and set(report["status"]) == {"updated"}
    pd.testing.assert_frame_equal(c2.sources.to_frame(progress=False), edit(pd_frame(original2)))
    runs2 = c2.sources.history()
    assert runs2.loc[run_id, "state"] == "interrupted"
    assert runs2["kind"].iloc[0] == "resume" and runs2["parent"].iloc[0] == run_id
    assert runs2.loc[run_id, "followed_by"] == f"resume {runs2.index[0]}"


def pd_frame(sources: dict):
    from neuroio_nb._jobs.frames import frame_from_records

    return frame_from_records([sources[i] for i in sorted(sources)])


def test_cli_history_undo_and_resume(sb, client_for, tmp_path, monkeypatch, capsys):
    from neuroio_nb._cli import main

    monkeypatch.setenv("NEUROIO_NB_JOURNAL", str(tmp_path))
    monkeypatch.setenv("NEUROIO_API_TOKEN", sb.token)
    monkeypatch.setenv("NEUROIO_API_URL", sb.url)
    c = client_for(sb)
    original = sb.sources
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited.loc[edited.index[:4], "identify_facesize_threshold"] += 9
    c.sources.export_csv(tmp_path / "edited.csv", edited)
    assert main(["apply", str(tmp_path / "edited.csv"), "--yes", "--report", str(tmp_path / "report.csv")]) == 0
    run_id = c.sources.history().index[0]
    assert f"neuroio-nb undo {run_id}" in capsys.readouterr().out
    assert main(["history"]) == 0
    out = capsys.readouterr().out
    assert run_id in out and "4 updated" in out and "complete" in out
    assert main(["history", run_id[:-2]]) == 0
    assert "4 updated" in capsys.readouterr().out
    assert main(["undo", run_id]) == 6, "no --yes and stdin not a terminal: not confirmed, nothing sent"
    assert main(["undo", run_id, "--yes"]) == 0
    assert sb.sources == original
    assert main(["apply", str(tmp_path / "edited.csv"), "--yes"]) == 0
    assert main(["undo", str(tmp_path / "report.csv"), "--yes"]) == 0
    assert sb.sources == original
    sb.clear_log()
    assert main(["resume", run_id, "--yes"]) == 0, "a complete run: nothing left to send"
    assert sb.requests("PATCH") == []
    capsys.readouterr()
    assert main(["history", "no-such-run"]) == 3
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_a_sync_is_journaled_and_undone_by_its_run_id(make_sandbox, client_for, tmp_path):
    sb = make_sandbox(sources=80, seed=9)
    c = client_for(sb, journal=tmp_path)
    before = c.sources.to_frame(progress=False)
    space_1 = before[before["space_id"] == 1]
    unique = space_1["name"].map(before["name"].value_counts()).eq(1)
    doomed = space_1.index[unique][:3]
    desired = space_1.drop(index=doomed).copy()
    desired.loc[desired.index[:2], "identify_facesize_threshold"] = 31000
    desired = pd.concat(
        [desired.reset_index(drop=True), pd.DataFrame({"name": ["Journal cam A", "Journal cam B"]})], ignore_index=True
    )
    report = c.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1]).apply(
        progress=False, irreversible=True
    )
    assert report.counts() == {"deleted": 3, "created": 2, "updated": 2}

    later = client_for(sb, journal=tmp_path)  # as another process would: only the journal is shared
    runs = later.sources.history()
    assert runs.iloc[0]["kind"] == "sync" and runs.iloc[0]["state"] == "complete"
    assert (runs.iloc[0]["deleted"], runs.iloc[0]["created"], runs.iloc[0]["updated"]) == (3, 2, 2)
    undone = later.sources.undo(runs.index[0], progress=False)
    assert undone.counts() == {"deleted": 2, "created": 3, "updated": 2}

    def settings(frame: pd.DataFrame) -> pd.DataFrame:
        flat = frame.reset_index().drop(columns=["id", "license", "license_id"], errors="ignore")
        return flat.set_index(["space_id", "name"]).sort_index()

    pd.testing.assert_frame_equal(settings(pd_frame(sb.sources)), settings(before))


def test_a_forms_save_is_journaled_and_can_be_undone(sb, client_for, tmp_path):
    c = client_for(sb, journal=tmp_path)
    was = sb.source(2)
    form = c.sources.form(2)
    form.inputs["auto_create_facesize_threshold"].value = "31000"
    form.save_button.click()
    assert sb.source(2)["auto_create_facesize_threshold"] == 31000
    runs = c.sources.history()
    entry = Journal(tmp_path).read(runs.index[0]).entries[0]
    assert (entry.source_id, entry.status) == (2, "updated")
    assert entry.before == {"auto_create_facesize_threshold": was["auto_create_facesize_threshold"]}
    assert entry.after == {"auto_create_facesize_threshold": 31000}
    c.sources.undo(runs.index[0])
    assert sb.source(2) == was


def test_old_runs_are_removed_only_on_request(sb, client_for, tmp_path):
    c = client_for(sb, journal=tmp_path)
    old_id = jn.new_run_id(jn.dt.datetime(2020, 1, 2, tzinfo=jn.dt.timezone.utc))
    header = {
        "format": "neuroio-nb-journal",
        "version": 1,
        "run": old_id,
        "kind": "apply",
        "base_url": sb.url,
        "started": "2020-01-02T00:00:00.000+00:00",
        "parent": None,
    }
    (tmp_path / f"{old_id}.jsonl").write_text(json.dumps(header) + "\n")
    c.sources.update(3, name="Kept")
    assert len(c.sources.history()) == 2
    removed = c.sources.history(prune_before="2021-01-01")
    assert list(removed.index) == [old_id]
    assert list(c.sources.history()["kind"]) == ["update"]
    assert len(c.sources.history(prune_before="2021-01-01")) == 0
    with pytest.raises(ValueError, match="prune_before"):
        c.sources.history(prune_before="not a date")


def old_run(folder: Path, url: str, *, day: int, kind: str = "apply", parent=None, end: bool = True) -> str:
    """A run file started on 2020-01-``day``: one update intent, its outcome and an end line
    (without them, ``end=False``: the run was interrupted, or is still running elsewhere)."""
    run_id = jn.new_run_id(jn.dt.datetime(2020, 1, day, tzinfo=jn.dt.timezone.utc))
    started = f"2020-01-{day:02d}T00:00:00.000+00:00"
    lines = [
        {
            "format": "neuroio-nb-journal",
            "version": 1,
            "run": run_id,
            "kind": kind,
            "base_url": url,
            "started": started,
            "parent": parent,
        },
        {"t": "intent", "seq": 1, "action": "update", "id": 3, "name": "a", "before": {"x": 1}, "after": {"x": 2}},
    ]
    if end:
        lines += [
            {"t": "outcome", "seq": 1, "status": "updated", "error": None, "id": 3},
            {"t": "end", "state": "complete", "finished": started},
        ]
    (folder / f"{run_id}.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return run_id


def test_pruning_never_removes_a_run_that_is_interrupted_or_still_running_without_saying_so(
    sb, client_for, tmp_path, script
):
    """Pruning keeps each old run that is not settled (interrupted, or still running in another
    process: on disk they look alike) and names it in a warning with what to do; an interrupted
    run that a complete resume (or undo) followed is settled, and goes with the rest."""
    c = client_for(sb, journal=tmp_path)
    done = old_run(tmp_path, sb.url, day=2)
    open_run = old_run(tmp_path, sb.url, day=3, end=False)
    resumed = old_run(tmp_path, sb.url, day=4, end=False)
    its_resume = old_run(tmp_path, sb.url, day=5, kind="resume", parent=resumed)
    with pytest.warns(RunsKeptWarning, match=rf"kept 1 run .*not settled: {open_run} .*resume.*undo") as caught:
        removed = c.sources.history(prune_before="2021-01-01")
    assert caught[0].filename == __file__, "the warning points at the caller's line"
    assert sorted(removed.index) == sorted([done, resumed, its_resume])
    assert list(c.sources.history().index) == [open_run]
    proc = script.run(
        sb, "history", "--prune-before", "2021-01-01", env=script.env(sb, NEUROIO_NB_JOURNAL=str(tmp_path))
    )
    assert proc.returncode == 0 and open_run in proc.stderr and "Removed 0 runs" in proc.stdout
    assert list(c.sources.history().index) == [open_run]


def test_a_run_stopped_with_ctrl_c_reads_interrupted_and_resume_finishes_it(
    make_sandbox, client_for, ctrl_c_at, tmp_path
):
    from neuroio_nb.errors import BulkInterrupted

    sb = make_sandbox(sources=200, latency=0.01)
    c = client_for(sb, max_workers=4, journal=tmp_path)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["auto_check_liveness"] = ~frame["auto_check_liveness"]
    ctrl_c_at(sb, "PATCH", 40)
    with pytest.raises(BulkInterrupted) as info:
        c.sources.bulk_update(edited, base=frame, progress=False)
    sb.before_request = None
    run_id = info.value.report.attrs["run_id"]
    runs = c.sources.history()
    assert runs.loc[run_id, "state"] == "interrupted"
    assert runs.loc[run_id, "updated"] == (info.value.report["status"] == "updated").sum()
    assert runs.loc[run_id, "unknown"] == 200 - runs.loc[run_id, "updated"]
    sb.clear_log()
    report = c.sources.resume(run_id)
    assert len(sb.requests("PATCH")) == 200 - runs.loc[run_id, "updated"]
    assert report.counts() == {"updated": 200}
    pd.testing.assert_frame_equal(c.sources.to_frame(progress=False), edited)


# ---- a sync (creates and deletes) SIGKILLed mid-apply, resumed from another process ------------

SYNCER = textwrap.dedent("""
    import pandas as pd
    from neuroio_nb import Client

    client = Client(max_workers=4)
    frame = client.sources.to_frame(progress=False)
    space_1 = frame[frame["space_id"] == 1]
    site = pd.DataFrame(
        {"name": [f"Site 9 camera {i:03d}" for i in range(60)], "identify_facesize_threshold": range(5000, 5060)}
    )
    desired = pd.concat([space_1.iloc[30:].reset_index(drop=True), site], ignore_index=True)
    client.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1]).apply(
        progress=False, irreversible=True
    )
    print("FINISHED", flush=True)
""")
SITE = [f"Site 9 camera {i:03d}" for i in range(60)]


def killed_sync(make_sandbox, folder: Path, method: str, n: int) -> tuple:
    """Run the syncer (30 deletes, then 60 creates) in a subprocess and SIGKILL it as the n-th
    ``method`` request arrives: that request and the others in flight are applied, their answers
    never read, so the journal has their intents and no outcome. Returns the sandbox, the sources
    before and the ids the sync deletes."""
    sb = make_sandbox(sources=200, seed=14, latency=0.01)
    original = sb.sources
    doomed = sorted(i for i, s in original.items() if s["space_id"] == 1)[:30]
    env = dict(os.environ, NEUROIO_API_TOKEN=sb.token, NEUROIO_API_URL=sb.url, NEUROIO_NB_JOURNAL=str(folder))
    proc = subprocess.Popen([sys.executable, "-c", SYNCER], env=env, stdout=subprocess.PIPE, text=True)
    seen = {"n": 0}
    lock = threading.Lock()

    def hook(request_method: str, path: str) -> None:
        if request_method == method:
            with lock:
                seen["n"] += 1
                if seen["n"] == n:
                    proc.kill()
                    proc.wait()

    sb.before_request = hook
    proc.wait(timeout=120)
    assert proc.returncode == -9, "the syncer was not killed: it finished first"
    settle_sandbox(sb)
    sb.before_request = None
    return sb, original, doomed


@pytest.mark.parametrize(("method", "n"), [("DELETE", 12), ("POST", 25)], ids=["mid-deletes", "mid-creates"])
def test_a_killed_sync_resumes_creating_nothing_twice_and_deleting_the_rest(
    make_sandbox, client_for, tmp_path, method, n
):
    folder = tmp_path / "journal"
    sb, original, doomed = killed_sync(make_sandbox, folder, method, n)
    made_before = {s["name"]: i for i, s in sb.sources.items() if s["name"] in SITE}
    gone_before = set(doomed) - set(sb.sources)
    assert len(made_before) < 60 and (method == "POST" or len(gone_before) < 30), "the kill came mid-sync"

    c = client_for(sb, journal=folder)
    runs = c.sources.history()
    run_id = runs.index[0]
    assert (runs.loc[run_id, "kind"], runs.loc[run_id, "state"]) == ("sync", "interrupted")
    assert runs.loc[run_id, "unknown"] > 0, "some writes were in flight at the kill: their outcome is unknown"
    assert runs.loc[run_id, "created"] <= len(made_before) and runs.loc[run_id, "deleted"] <= len(gone_before)

    sb.clear_log()
    report = c.sources.resume(run_id)
    now = sb.sources
    names = Counter(s["name"] for s in now.values())
    assert all(names[name] == 1 for name in SITE), "every name exists exactly once"
    assert not set(doomed) & set(now), "every delete happened"
    assert set(original) - set(doomed) <= set(now), "nothing else was deleted"
    posted = [r.body["name"] for r in sb.requests("POST")]
    assert sorted(posted) == sorted(set(SITE) - set(made_before)), "resume creates only what was not made"
    deleted = [r.source_id for r in sb.requests("DELETE") if r.status == 202]
    assert sorted(deleted) == sorted(set(doomed) - gone_before), "resume deletes only what was not deleted"

    assert report.counts() == {"deleted": 30, "created": 60}
    created = report[report["action"] == "create"]
    assert {int(i): name for i, name in zip(created.index, created["name"], strict=True)} == {
        i: s["name"] for i, s in now.items() if s["name"] in SITE
    }, "each created row carries the id of the source made for it, once"
    assert set(report.index[report["action"] == "delete"]) == set(doomed)
    later = client_for(sb, journal=folder)
    runs = later.sources.history()
    assert list(runs["kind"]) == ["resume", "sync"] and runs["parent"].iloc[0] == run_id, "one run for the rest"
    assert runs.iloc[0]["created"] + runs.iloc[0]["deleted"] == len(posted) + len(deleted)
    frame = later.sources.to_frame(progress=False)
    desired = pd.concat(
        [
            frame[frame["space_id"] == 1].reset_index(drop=True),
            pd.DataFrame({"name": SITE, "identify_facesize_threshold": range(5000, 5060)}),
        ],
        ignore_index=True,
    ).drop_duplicates("name", keep="first")
    assert len(later.sources.plan(desired, key="name", create=True, delete=True, spaces_ids=[1])) == 0


def test_a_killed_syncs_delete_of_a_source_changed_since_is_a_conflict_when_resumed(make_sandbox, client_for, tmp_path):
    folder = tmp_path / "journal"
    sb, _, doomed = killed_sync(make_sandbox, folder, "DELETE", 12)
    left = sorted(set(doomed) & set(sb.sources))
    assert len(left) > 1
    sb.external_edit(left[0], identify_facesize_threshold=12345)  # a colleague changed it meanwhile
    c = client_for(sb, journal=folder)
    run_id = c.sources.history().index[0]
    report = c.sources.resume(run_id)
    assert report.loc[left[0], "status"] == "conflict" and "12345" in report.loc[left[0], "error"]
    assert left[0] in sb.sources and not (set(doomed) - {left[0]}) & set(sb.sources)
    assert report.counts() == {"deleted": 29, "conflict": 1, "created": 60}


@pytest.mark.parametrize(("method", "n"), [("DELETE", 12), ("POST", 25)], ids=["mid-deletes", "mid-creates"])
def test_a_killed_sync_is_undone_exactly_from_another_process(make_sandbox, client_for, tmp_path, method, n):
    """Undo settles the writes in flight at the kill by reading the server: a source made for an
    unanswered create is deleted, a source gone after an unanswered delete is made again."""
    folder = tmp_path / "journal"
    sb, original, doomed = killed_sync(make_sandbox, folder, method, n)
    made = {i for i, s in sb.sources.items() if s["name"] in SITE}
    gone = set(doomed) - set(sb.sources)
    c = client_for(sb, journal=folder)
    undone = c.sources.undo(c.sources.history().index[0], progress=False)
    assert undone.counts() == {k: v for k, v in {"deleted": len(made), "created": len(gone)}.items() if v}
    assert set(undone.index[undone["status"] == "deleted"]) == made
    assert set(undone.loc[undone["status"] == "created", "old_id"]) == gone

    def settings(sources: dict) -> pd.DataFrame:
        flat = pd_frame(sources).reset_index().drop(columns=["id", "license"], errors="ignore")
        return flat.set_index(["space_id", "name"]).sort_index()

    pd.testing.assert_frame_equal(settings(sb.sources), settings(original))


# ---- the journal never blocks the truth: a full disk, an unusable folder, a bad record -----------


def full_disk_after(calls: int):
    """A ``Journal(write=...)`` that writes ``calls`` times, then fails as a full disk does."""
    made = []

    def write(fd: int, data) -> int:
        made.append(len(data))
        if len(made) > calls:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    return write


def says_the_way_out(message: str) -> None:
    assert "journal=False" in message and "NEUROIO_NB_JOURNAL" in message, message
    assert "Traceback" not in message


@pytest.mark.parametrize("with_base", [False, True], ids=["batch", "checked as pages arrive"])
def test_a_journal_write_that_fails_mid_apply_stops_the_run_and_keeps_the_partial_report(
    make_sandbox, client_for, tmp_path, with_base
):
    """The disk fills up after the run's header, its intents and a dozen more lines: the run
    stops before its next write (only the requests already in flight finish), and the error,
    a JournalError naming the run file and the way out, holds the exact partial report. The
    run reads back interrupted; resumed with a journal that works, it finishes the rest."""
    sb = make_sandbox(sources=200, latency=0.01)
    c = client_for(sb, max_workers=4, journal=Journal(tmp_path, write=full_disk_after(14)))
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    original = sb.sources
    with pytest.raises(JournalError) as info:
        c.sources.bulk_update(edited, base=frame if with_base else None, progress=False)
    error = info.value
    run_file = next(tmp_path.glob("*.jsonl"))
    assert str(run_file) in str(error) and error.path == run_file
    assert "No space left on device" in str(error)
    says_the_way_out(str(error))
    changed = {sid for sid, s in sb.sources.items() if s != original[sid]}
    patches = [r.source_id for r in sb.log if r.method == "PATCH"]
    assert 0 < len(patches) <= 14 + 4, "no write starts once the journal failed (4 may be in flight)"
    report = error.report
    assert set(report.index[report["status"] == "updated"]) == changed == set(patches)
    assert set(report["status"]) == {"updated"}
    run = Journal(tmp_path).read(run_file)
    assert run.state == "interrupted" and run.counts()["unknown"] == 200 - run.counts().get("updated", 0)
    resumed = client_for(sb, journal=tmp_path).sources.resume(run.run_id, progress=False)
    assert resumed.counts() == {"updated": 200}
    pd.testing.assert_frame_equal(c.sources.to_frame(progress=False), edited)


def full_disk_at(kind: str, nth: int):
    """A ``Journal(write=...)`` whose ``nth`` write of ``kind`` lines (``amend``...) fails as a
    full disk does: a failure at that very step, however the requests are timed."""
    seen = []

    def write(fd: int, data) -> int:
        if bytes(data[:40]).startswith(f'{{"t": "{kind}"'.encode()):
            seen.append(1)
            if len(seen) >= nth:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    return write


@pytest.mark.parametrize("how", ["bulk_update with base", "sync by name"])
def test_a_journal_that_fails_while_the_pages_are_checked_stops_the_run_without_blaming_the_server(
    make_sandbox, client_for, tmp_path, how
):
    """The write that fails is the one recording what a page's checked writes send (before they
    go): the run stops there, as for any journal write. The rest is not reported as 'could not
    be read' from the server: the report holds exactly the writes sent, all updated."""
    sb = make_sandbox(sources=250, latency=0.01, page_cap=50)
    c = client_for(sb, max_workers=4, journal=Journal(tmp_path, write=full_disk_at("amend", 3)))
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    original = sb.sources
    with pytest.raises(JournalError, match="No space left on device") as info:
        if how == "sync by name":
            c.sources.plan(edited, key="name", create=True).apply(progress=False)
        else:
            c.sources.bulk_update(edited, base=frame, progress=False)
    changed = {sid for sid, s in sb.sources.items() if s != original[sid]}
    report = info.value.report
    assert 0 < len(changed) < 250
    assert set(report["status"]) == {"updated"}, report["error"].dropna().unique()[:3]
    assert set(report.index) == changed


def test_a_journal_that_fails_before_a_create_is_sent_stops_the_run_with_no_row_for_it(
    make_sandbox, client_for, tmp_path
):
    """A create records the name's holders before its POST: when that record cannot be
    written, the POST is not sent, the run stops, and the create has no row (it is not a
    'failed' write: nothing was sent); the report holds exactly the sources made."""
    sb = make_sandbox(sources=30, latency=0.01)
    c = client_for(sb, max_workers=4, journal=Journal(tmp_path, write=full_disk_at("holders", 2)))
    site = pd.DataFrame({"name": [f"Full disk cam {i}" for i in range(12)]})
    before = set(sb.sources)
    with pytest.raises(JournalError, match="No space left on device") as info:
        c.sources.plan(site, key="name", create=True).apply(progress=False)
    made = set(sb.sources) - before
    report = info.value.report
    assert len(made) >= 1 and len(sb.requests("POST")) == len(made)
    assert set(report["status"]) == {"created"} and set(report.index) == made


def test_a_single_write_whose_outcome_cannot_be_journaled_says_it_was_made(sb, client_for, tmp_path):
    c = client_for(sb, journal=Journal(tmp_path, write=full_disk_after(2)))  # the header, the intent
    with pytest.raises(JournalError) as info:
        c.sources.update(3, name="Made anyway")
    assert sb.source(3)["name"] == "Made anyway" and info.value.report["name"] == "Made anyway"
    says_the_way_out(str(info.value))


@pytest.mark.parametrize("calls", [0, 1], ids=["header", "intents"])
def test_a_journal_that_fails_before_the_first_write_sends_nothing(sb, client_for, tmp_path, calls):
    c = client_for(sb, journal=Journal(tmp_path, write=full_disk_after(calls)))
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    sb.clear_log()
    with pytest.raises(JournalError, match="No space left on device") as info:
        c.sources.bulk_update(edited, progress=False)
    assert "Nothing was sent" in str(info.value) or "nothing was sent" in str(info.value)
    says_the_way_out(str(info.value))
    assert [r for r in sb.log if r.method in ("PATCH", "POST", "DELETE")] == []
    assert list(tmp_path.glob("*.jsonl")) == [], "a run that sent nothing leaves no file to undo or resume"


def unusable_folders(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    return {"a file": a_file, "under a file": a_file / "journal"}


@pytest.mark.parametrize("how", ["a file", "under a file"])
@pytest.mark.parametrize("write", ["bulk", "sync", "single"])
def test_an_unusable_journal_folder_is_refused_before_the_first_write(sb, client_for, tmp_path, how, write):
    folder = unusable_folders(tmp_path)[how]
    c = client_for(sb, journal=folder)
    frame = c.sources.to_frame(progress=False)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    sb.clear_log()
    with pytest.raises(JournalError) as info:
        if write == "bulk":
            c.sources.bulk_update(edited, base=frame, progress=False)
        elif write == "sync":
            site = pd.DataFrame({"name": ["Journal-less cam"]})
            c.sources.plan(site, key="name", create=True).apply(progress=False)
        else:
            c.sources.update(3, name="x")
    assert str(folder) in str(info.value) and "nothing was sent" in str(info.value)
    says_the_way_out(str(info.value))
    assert [r for r in sb.log if r.method in ("PATCH", "POST", "DELETE")] == []


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="POSIX permissions, which root ignores")
def test_a_folder_the_user_cannot_write_is_refused_before_the_first_write(sb, client_for, tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o500)
    c = client_for(sb, journal=folder)
    with pytest.raises(JournalError, match="cannot be written") as info:
        c.sources.update(3, name="x")
    says_the_way_out(str(info.value))
    assert sb.source(3)["name"] != "x"


def test_the_cli_names_an_unusable_journal_folder_and_the_way_out(sb, script, tmp_path):
    folder = unusable_folders(tmp_path)["a file"]
    frame = pd_frame(sb.sources)
    edited = frame.copy()
    edited["identify_facesize_threshold"] += 1
    from neuroio_nb._jobs.csvio import write_csv

    write_csv(edited, tmp_path / "edited.csv")
    proc = script.run(
        sb, "apply", str(tmp_path / "edited.csv"), "--yes", env=script.env(sb, NEUROIO_NB_JOURNAL=str(folder))
    )
    assert proc.returncode == 3
    assert str(folder) in proc.stderr
    says_the_way_out(proc.stderr)
    assert sb.requests("PATCH") == []
    proc = script.run(sb, "history", env=script.env(sb, NEUROIO_NB_JOURNAL=str(folder)))
    assert proc.returncode == 3 and f"the journal folder {folder} is a file" in proc.stderr, "not 'no runs'"


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_an_existing_folder_open_to_others_is_narrowed_to_0700_or_refused(tmp_path):
    mine = tmp_path / "journal"
    mine.mkdir()
    mine.chmod(0o755)
    Journal(mine).start("apply", "http://x").finish()
    Journal(mine).start("apply", "http://x").finish()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
    mine.chmod(0o755)  # runs alone: narrowed again
    Journal(mine).start("apply", "http://x").finish()
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("someone else's")
    shared.chmod(0o755)
    with pytest.raises(JournalError, match=r"mode 0755.*notes\.txt.*a folder of its own") as info:
        Journal(shared).start("apply", "http://x")
    says_the_way_out(str(info.value))
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755, "someone's folder is never changed"
    assert list(shared.glob("*.jsonl")) == []


WRONG_SHAPES = {
    "outcome seq as text": {"t": "outcome", "seq": "1", "status": "updated"},
    "intent before a list": {"t": "intent", "seq": 9, "action": "update", "id": 3, "before": [1], "after": {}},
    "intent of no action": {"t": "intent", "seq": 9, "action": "explode", "id": 3},
    "end finished not a time": {"t": "end", "state": "complete", "finished": "yesterday"},
    "outcome status a number": {"t": "outcome", "seq": 1, "status": 5},
    "amend without seq": {"t": "amend", "before": {}, "after": {}},
    "holders not ids": {"t": "holders", "seq": 1, "ids": ["7"], "space": 1},
    "holders of no list": {"t": "holders", "seq": 1, "ids": 7},
}


@pytest.mark.parametrize("bad", list(WRONG_SHAPES), ids=list(WRONG_SHAPES))
def test_a_record_of_the_wrong_shape_hides_only_its_own_run(sb, client_for, tmp_path, bad):
    c = client_for(sb, journal=tmp_path)
    c.sources.update(3, name="Kept A")
    c.sources.update(4, name="Damaged")
    c.sources.update(5, name="Kept B")
    runs = c.sources.history()
    damaged = runs.index[1]
    with open(Journal(tmp_path).path_of(damaged), "a") as f:
        f.write(json.dumps(WRONG_SHAPES[bad]) + "\n")
    with pytest.warns(UnreadableRunWarning, match=rf"{damaged}\.jsonl: line \d+ .*left out of the history"):
        shown = c.sources.history()
    assert list(shown.index) == [runs.index[0], runs.index[2]]
    with pytest.raises(JournalError, match="line"):
        c.sources.history(damaged)


def test_a_damaged_header_hides_only_its_run_in_the_cli_too(sb, client_for, tmp_path, script):
    c = client_for(sb, journal=tmp_path)
    c.sources.update(3, name="Kept")
    c.sources.update(4, name="Damaged")
    kept, damaged = c.sources.history().index[1], c.sources.history().index[0]
    path = Journal(tmp_path).path_of(damaged)
    lines = path.read_text().splitlines()
    header = json.loads(lines[0]) | {"started": 5}
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    proc = script.run(sb, "history", env=script.env(sb, NEUROIO_NB_JOURNAL=str(tmp_path)))
    assert proc.returncode == 0
    assert kept in proc.stdout and damaged not in proc.stdout
    assert damaged in proc.stderr and "left out" in proc.stderr


def _can_mount_a_tmpfs() -> bool:
    if os.name != "posix" or os.geteuid() != 0 or not Path("/proc/filesystems").exists():
        return False
    return "tmpfs" in Path("/proc/filesystems").read_text()


@pytest.fixture
def small_disk(tmp_path):
    """A real file system of 1 MiB (tmpfs), mounted for the test: a full disk without a seam."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.skipif(not _can_mount_a_tmpfs(), reason="needs root and tmpfs to fill a real disk")
def test_the_cli_on_a_disk_that_fills_up_mid_apply_prints_and_writes_the_partial_report(
    make_sandbox, script, tmp_path, small_disk
):
    """``neuroio-nb apply`` with its journal on a real disk that fills up halfway through the
    outcomes: it stops, prints what was sent, writes the partial report CSV, names the journal
    file and the way out on stderr (exit 3, no traceback); the CSV lists exactly what changed."""
    edited_csv = tmp_path / "edited.csv"

    def apply(folder: Path) -> tuple[Any, Any, dict]:
        sb = make_sandbox(sources=300, seed=21)
        frame = pd_frame(sb.sources)
        edited = frame.copy()
        edited["identify_facesize_threshold"] += 1
        from neuroio_nb._jobs.csvio import write_csv

        write_csv(edited, edited_csv)
        before = sb.sources
        args = ["apply", str(edited_csv), "--yes", "--report", str(tmp_path / "report.csv")]
        return sb, script.run(sb, *args, env=script.env(sb, NEUROIO_NB_JOURNAL=str(folder))), before

    measured = tmp_path / "measured"
    apply(measured)
    (run_file,) = measured.glob("*.jsonl")
    lines = run_file.read_bytes().splitlines(keepends=True)
    intents = sum(len(line) for line in lines if b'"t": "outcome"' not in line and b'"t": "end"' not in line)
    outcomes = sum(len(line) for line in lines if b'"t": "outcome"' in line)
    journal = small_disk / "journal"
    journal.mkdir(mode=0o700)
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    (small_disk / "filler").write_bytes(b"\0" * (free - intents - outcomes // 2))

    sb, proc, before = apply(journal)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    (run_file,) = journal.glob("*.jsonl")
    assert str(run_file) in proc.stderr and "No space left on device" in proc.stderr
    says_the_way_out(proc.stderr)
    changed = {sid for sid, s in sb.sources.items() if s != before[sid]}
    assert 0 < len(changed) < 300
    assert f"Stopped: {len(changed)} updated" in proc.stdout
    report = pd.read_csv(tmp_path / "report.csv")
    assert set(report["id"]) == changed and set(report["status"]) == {"updated"}


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=8,
)
RECORD_KEYS = [
    "t",
    "ids",
    "holders",
    "space",
    "seq",
    "action",
    "id",
    "name",
    "before",
    "after",
    "changes",
    "status",
    "error",
    "maybe_applied",
    "state",
    "finished",
    "counts",
    "at",
]
KINDS_OF_RECORD = st.sampled_from(["intent", "amend", "holders", "outcome", "end", "something new"])


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    record=st.fixed_dictionaries({"t": KINDS_OF_RECORD})
    | st.fixed_dictionaries({"t": KINDS_OF_RECORD, "seq": st.integers(0, 3)}),
    extra=st.dictionaries(st.sampled_from(RECORD_KEYS[1:]), JSON_VALUES, max_size=6),
)
def test_any_json_record_appended_to_a_run_never_breaks_the_history(tmp_path_factory, record, extra):
    """Whatever well-formed JSON object a line holds, the history lists every other run, and
    the run holding it is either read (its report made) or left out with a warning naming it."""
    from neuroio_nb._jobs.history import history_frame, run_report

    folder = tmp_path_factory.mktemp("j")
    journal = Journal(folder)
    runs = []
    for n in range(2):
        run = journal.start("apply", "http://x")
        (seq,) = run.intend(
            [Intent(action="update", source_id=7 + n, before={"a": 1}, after={"a": 2}, name=f"cam {n}")]
        )
        run.outcome(seq, "updated", source_id=7 + n)
        run.finish()
        runs.append(run)
    with open(runs[0].path, "a") as f:
        f.write(json.dumps({**record, **extra}) + "\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read = journal.runs()
    ids = [r.run_id for r in read]
    assert runs[1].run_id in ids
    if runs[0].run_id not in ids:
        assert any(runs[0].path.name in str(w.message) for w in caught)
    history_frame(read)
    for run in read:
        run_report(run)
