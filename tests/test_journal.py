"""The journal: run files written before requests go, read back after any crash."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from neuroio_nb import journal as jn
from neuroio_nb.journal import Intent, Journal, JournalError, TornLineWarning


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---- the file format ---------------------------------------------------------------------------

def test_a_run_reads_back_with_intents_outcomes_and_state(tmp_path):
    journal = Journal(tmp_path / "j")
    run = journal.start("apply", "http://127.0.0.1:1")
    seqs = run.intend([Intent("update", 7, {"name": "a"}, {"name": "b"}, name="a"),
                       Intent("update", 8, {"name": "c"}, {"name": "d"}, name="c"),
                       Intent("update", 9, {"name": "e"}, {"name": "f"}, status="conflict", error="moved")])
    run.outcome(seqs[0], "updated", source_id=7)
    mid = journal.read(run.run_id)
    assert mid.state == "interrupted" and mid.counts() == {"updated": 1, "unknown": 1, "conflict": 1}
    run.outcome(seqs[1], "failed", error="HTTP 400: bad name", source_id=8)
    run.finish()
    record = journal.read(run.run_id)
    assert record.state == "complete" and record.finished is not None
    assert record.kind == "apply" and record.base_url == "http://127.0.0.1:1"
    assert [(e.source_id, e.status, e.before, e.after) for e in record.entries] == [
        (7, "updated", {"name": "a"}, {"name": "b"}), (8, "failed", {"name": "c"}, {"name": "d"}),
        (9, "conflict", {"name": "e"}, {"name": "f"})]
    assert record.entries[1].error == "HTTP 400: bad name"
    header = lines_of(run.path)[0]
    assert header["format"] == "neuroio-nb-journal" and header["version"] == 1 and header["run"] == run.run_id


def test_each_line_is_readable_json_a_person_can_grep(tmp_path):
    run = Journal(tmp_path).start("update", "https://api.example")
    run.intend([Intent("update", 3, {"name": "Porte Est"}, {"name": "Porte Ouest"})])
    run.finish()
    text = run.path.read_text(encoding="utf-8")
    assert "Porte Ouest" in text and text.endswith("\n")
    assert [r.get("t") for r in lines_of(run.path)] == [None, "intent", "end"]


def test_intents_are_fsynced_before_intend_returns(tmp_path, monkeypatch):
    run = Journal(tmp_path).start("apply", "http://x")
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(jn.os, "fsync", lambda fd: (synced.append(run.path.read_text()), real_fsync(fd)))
    run.intend([Intent("update", i, {"x": 1}, {"x": 2}) for i in range(50)])
    assert len(synced) == 1, "one fsync for the whole batch"
    assert synced[0].count('"t": "intent"') == 50, "every intent of the batch written before the fsync"
    run.outcome(1, "updated")
    assert len(synced) == 1, "outcomes are not fsynced one by one"
    assert '"t": "outcome"' in run.path.read_text(), "but they reach the file at once"
    run.finish()
    assert len(synced) == 2


def test_numpy_values_are_written_as_plain_json(tmp_path):
    run = Journal(tmp_path).start("apply", "http://x")
    run.intend([Intent("update", int(np.int64(5)), {"t": np.int64(3), "b": np.bool_(True)},
                       {"t": np.int64(4), "l": np.array(["a", "b"])})])
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
    with pytest.raises(JournalError, match="journal must be"):
        jn.open_journal(3)


def test_the_test_suite_never_writes_to_the_real_user_folder():
    import platformdirs

    configured = Path(os.environ["NEUROIO_NB_JOURNAL"])
    assert not str(configured).startswith(platformdirs.user_data_dir("neuroio-nb", appauthor=False))


# ---- damaged and foreign files ------------------------------------------------------------------

def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path):
    journal = Journal(tmp_path)
    run = journal.start("apply", "http://x")
    seqs = run.intend([Intent("update", 1, {"a": 1}, {"a": 2}), Intent("update", 2, {"a": 1}, {"a": 2})])
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


@pytest.mark.parametrize("content", [
    b"id,name\n1,Porte\n",
    b'{"format": "something-else", "version": 1}\n',
    b'{"t": "intent", "seq": 1}\n',
    b"[1, 2, 3]\n",
    b"\x00\x01\x02 binary\n",
])
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
    common = os.path.commonprefix([a.run_id, b.run_id])
    with pytest.raises(JournalError, match="give more of it"):
        journal.read(common)
    with pytest.raises(JournalError, match="no run"):
        journal.read("19990101")


# ---- many writers ------------------------------------------------------------------------------

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
    seqs = run.intend([Intent("update", i, {"name": "x" * 500}, {"name": "y" * 500}) for i in range(800)])

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
    from neuroio_nb.journal import Intent, Journal
    run = Journal(sys.argv[1]).start("apply", "http://x", details={"writer": sys.argv[2]})
    for batch in range(10):
        seqs = run.intend([Intent("update", batch * 100 + i, {"v": 0}, {"v": sys.argv[2]}) for i in range(100)])
        threads = [threading.Thread(target=lambda s=s: run.outcome(s, "updated")) for s in seqs]
        [t.start() for t in threads]
        [t.join() for t in threads]
    run.finish()
    print(run.run_id)
""")


def test_two_processes_writing_at_once_leave_two_whole_runs(tmp_path):
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), name], stdout=subprocess.PIPE,
                              text=True) for name in ("one", "two")]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] != outs[1]
    runs = {r.details["writer"]: r for r in Journal(tmp_path).runs()}
    assert set(runs) == {"one", "two"}
    for name, record in runs.items():
        assert record.state == "complete" and record.counts() == {"updated": 1000}
        assert {e.after["v"] for e in record.entries} == {name}
        assert [e.source_id for e in record.entries] == list(range(1000))
