"""The ``neuroio-nb`` command line against a sandbox over loopback HTTP.

Most tests run its entry function, ``neuroio_nb._cli.main`` (what the installed script
calls), in the test's own process (``cli_main``): the same arguments, environment variables,
exit codes and output, without Python, pandas and numpy starting again for every command.
What only a real process shows runs the installed script (``script``): that it is installed
and exits with the command's code, what it imports, a real terminal, Ctrl-C as a signal, a
pipe nobody reads, a stdout Python opened in another encoding, the sandbox served on its own.
"""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import requests
from pandas.testing import assert_frame_equal

from neuroio_nb import Client, read_csv
from neuroio_nb import _cli as cli
from neuroio_nb.sandbox import Sandbox

if TYPE_CHECKING:
    from conftest import CommandLine, ConsoleScript

THRESHOLD = "identify_facesize_threshold"

pytestmark = pytest.mark.sandbox(sources=60)


def exported(cli_main: CommandLine, sb: Sandbox, tmp_path: Path, name: str = "sources.csv") -> Path:
    """The sandbox's sources as ``neuroio-nb export`` writes them."""
    path = tmp_path / name
    done = cli_main.run(sb, "export", str(path))
    assert done.returncode == 0, done.stderr
    return path


def edit_csv(src: Path, dst: Path, edits: dict[tuple[int, str], str]) -> Path:
    """Edit cells as text, the way a spreadsheet would, and save."""
    frame = pd.read_csv(src, dtype=str, keep_default_na=False)
    for (sid, column), value in edits.items():
        frame.loc[frame["id"] == str(sid), column] = value
    frame.to_csv(dst, index=False)
    return dst


def bumped(sb: Sandbox, *ids: int) -> dict[tuple[int, str], str]:
    return {(i, THRESHOLD): str(sb.source(i)[THRESHOLD] + 1) for i in ids}


def read_report(path: Path) -> dict[int, dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows == [] or list(rows[0]) == ["id", "action", "status", "name", "changes", "replaced", "error"]
    return {int(r["id"]): r for r in rows}


# -- help and usage --------------------------------------------------------------------


def test_the_installed_script_runs_the_commands_and_exits_with_their_codes(
    script: ConsoleScript, cli_main: CommandLine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console script a user installs is the entry function the other tests run: the same
    help, word for word, and bad usage's exit code 3 (the other codes: terminal, Ctrl-C and pipe
    tests below)."""
    monkeypatch.setenv("COLUMNS", "100")  # argparse's width, in this process and in the script's
    proc = script.run(None, "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: neuroio-nb") and "NEUROIO_API_TOKEN" in proc.stdout
    assert proc.stdout == cli_main.run(None, "--help").stdout
    proc = script.run(None, "frobnicate")
    assert proc.returncode == 3
    assert "usage:" in proc.stderr and proc.stdout == ""


def test_help_lists_commands_env_and_exit_codes_and_offers_no_token_option(cli_main: CommandLine) -> None:
    proc = cli_main.run(None, "--help")
    assert proc.returncode == 0
    for word in (
        "export",
        "plan",
        "apply",
        "get",
        "list",
        "sandbox",
        "NEUROIO_API_TOKEN",
        "NEUROIO_API_URL",
        "exit codes",
        "130",
    ):
        assert word in proc.stdout
    for command in ("export", "plan", "apply", "get", "list"):
        sub = cli_main.run(None, command, "--help")
        assert sub.returncode == 0 and "--url" in sub.stdout
        assert "--token" not in sub.stdout
    assert "--latency" in cli_main.run(None, "sandbox", "--help").stdout


def imported_modules(stderr: str) -> set[str]:
    """The modules a process imported, from what ``PYTHONPROFILEIMPORTTIME=1`` made it write."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            found.add(line.rpartition("|")[2].strip())
    return found


def test_the_command_line_never_imports_widgets(script: ConsoleScript, sb: Sandbox) -> None:
    """ipywidgets (and IPython with it) is a notebook's business: importing it costs every
    command a noticeable start-up, so neither `--help` nor a command that talks to the
    server loads it."""
    for sandbox, args in ((None, ["--help"]), (sb, ["list", "--format", "csv"])):
        proc = script.run(sandbox, *args, env=script.env(sandbox, PYTHONPROFILEIMPORTTIME="1"))
        assert proc.returncode == 0, proc.stderr
        imported = imported_modules(proc.stderr)
        assert "neuroio_nb._cli" in imported  # the check sees the command's own imports
        assert not {m for m in imported if m.split(".")[0] in ("ipywidgets", "IPython")}, args


@pytest.mark.parametrize("args", [["frobnicate"], [], ["get", "seven"], ["apply", "x.csv", "--on-conflict", "maybe"]])
def test_bad_usage_exits_3(cli_main: CommandLine, args: list[str]) -> None:
    proc = cli_main.run(None, *args)
    assert proc.returncode == 3
    assert "usage:" in proc.stderr


# -- export and plan -------------------------------------------------------------------


def test_export_writes_every_source_and_an_unchanged_plan_exits_0(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    proc = cli_main.run(sb, "export", str(tmp_path / "all.csv"))
    assert proc.returncode == 0 and "60 sources" in proc.stdout
    frame = read_csv(tmp_path / "all.csv")
    assert sorted(frame.index) == sorted(sb.sources)
    assert frame.loc[7, "name"] == sb.source(7)["name"]

    space = sb.source(1)["space_id"]
    in_space = sorted(i for i, s in sb.sources.items() if s["space_id"] == space)
    proc = cli_main.run(sb, "export", str(tmp_path / "space.csv"), "--space", str(space))
    assert proc.returncode == 0 and f"{len(in_space)} source" in proc.stdout
    assert sorted(read_csv(tmp_path / "space.csv").index) == in_space

    sb.clear_log()
    proc = cli_main.run(sb, "plan", str(tmp_path / "all.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "Nothing would change" in proc.stdout
    assert sb.requests("PATCH") == []


def test_plan_of_an_edited_csv_exits_2_and_shows_old_to_new(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    source = exported(cli_main, sb, tmp_path)
    old3, flag5 = sb.source(3)[THRESHOLD], sb.source(5)["use_pps_time"]
    edited = edit_csv(
        source, tmp_path / "edited.csv", {(3, THRESHOLD): "12345", (5, "use_pps_time"): str(not flag5).lower()}
    )
    sb.clear_log()
    proc = cli_main.run(sb, "plan", str(edited))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "field", "old", "→", "new"]
    row3 = next(line for line in lines if line.startswith("3 "))
    assert sb.source(3)["name"] in row3 and THRESHOLD in row3 and f"{old3} → 12345" in row3
    row5 = next(line for line in lines if line.startswith("5 "))
    assert f"{str(flag5).lower()} → {str(not flag5).lower()}" in row5
    assert "2 sources would change" in proc.stdout
    assert sb.requests("PATCH") == []
    assert sb.source(3)[THRESHOLD] == old3


# -- apply -----------------------------------------------------------------------------


def test_apply_yes_sends_exactly_the_changes(cli_main: CommandLine, sb: Sandbox, tmp_path: Path, patches) -> None:
    source = exported(cli_main, sb, tmp_path)
    stored = sb.source(8)["store_images_for_results"]
    edited = edit_csv(
        source,
        tmp_path / "edited.csv",
        {
            **bumped(sb, 2, 9),
            (8, "store_images_for_results"): json.dumps(sorted(set(stored) ^ {"det"})),
            (4, "store_images_for_results"): json.dumps(list(reversed(sb.source(4)["store_images_for_results"]))),
        },
    )
    expected = {2: sb.source(2)[THRESHOLD] + 1, 9: sb.source(9)[THRESHOLD] + 1}
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(edited), "--yes", "--report", str(tmp_path / "report.csv"))
    assert proc.returncode == 0, proc.stderr
    assert "3 updated" in proc.stdout
    assert patches() == {
        2: [{THRESHOLD: expected[2]}],
        9: [{THRESHOLD: expected[9]}],
        8: [{"store_images_for_results": sorted(set(stored) ^ {"det"})}],
    }  # reordering a set-like list (source 4) is no change
    for sid, value in expected.items():
        assert sb.source(sid)[THRESHOLD] == value
    report = read_report(tmp_path / "report.csv")
    assert {i: r["status"] for i, r in report.items()} == {2: "updated", 9: "updated", 8: "updated"}
    assert json.loads(report[2]["changes"]) == {THRESHOLD: [expected[2] - 1, expected[2]]}
    assert report[2]["error"] == ""
    assert cli_main.run(sb, "plan", str(edited)).returncode == 0


def test_apply_refuses_when_stdin_is_not_a_terminal(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, 2))
    before = sb.source(2)
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(edited))
    assert proc.returncode == 6
    assert "not a terminal" in proc.stderr and "--yes" in proc.stderr
    assert THRESHOLD in proc.stdout  # the plan was shown
    assert sb.requests("PATCH") == [] and sb.source(2) == before


@pytest.mark.parametrize("answer, code", [("y", 0), ("n", 6)])
def test_apply_asks_on_a_terminal(
    script: ConsoleScript, cli_main: CommandLine, sb: Sandbox, tmp_path: Path, answer: str, code: int
) -> None:
    """A real terminal (a pty) on which the user types the answer."""
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, 2, 3))
    sb.clear_log()
    returncode, _out, err = script.on_a_terminal(sb, "apply", str(edited), answer=answer)
    assert returncode == code, err
    assert "Apply 2 changes to 2 sources? [y/N]" in err
    assert len(sb.requests("PATCH")) == (2 if answer == "y" else 0)


def test_a_row_the_server_refuses_fails_exits_1_and_is_reported(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    sources = sb.sources
    a, b = next((i, j) for i in sources for j in sources if i < j and sources[i]["space_id"] == sources[j]["space_id"])
    taken = sources[a]["name"]
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", {(b, "name"): taken, **bumped(sb, 10)})
    report_path = tmp_path / "out" / "report.csv"
    report_path.parent.mkdir()
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(edited), "--yes", "--report", str(report_path))
    assert proc.returncode == 1, proc.stderr
    assert "1 updated, 1 failed" in proc.stdout
    assert "already exists" in proc.stdout  # the server's field error, next to its row
    assert sb.source(b)["name"] != taken and sb.source(10)[THRESHOLD] == sources[10][THRESHOLD] + 1
    report = read_report(report_path)
    assert report[b]["status"] == "failed" and "name: source with this name already exists" in report[b]["error"]
    assert json.loads(report[b]["changes"]) == {"name": [sources[b]["name"], taken]}
    assert report[10]["status"] == "updated"


def test_an_id_missing_on_the_server_is_a_failed_row(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    source = exported(cli_main, sb, tmp_path)
    frame = pd.read_csv(source, dtype=str, keep_default_na=False).head(2)
    frame.loc[1, "id"] = "999"
    frame.to_csv(tmp_path / "edited.csv", index=False)
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(tmp_path / "edited.csv"), "--report", str(tmp_path / "r.csv"))
    assert proc.returncode == 1, proc.stderr  # nothing to confirm: nothing is sent
    assert "Not found" in proc.stdout and "999: failed: not found on the server" in proc.stdout
    assert read_report(tmp_path / "r.csv")[999]["status"] == "failed"
    assert sb.requests("PATCH") == []


def test_with_base_a_value_changed_meanwhile_is_a_conflict(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path, patches
) -> None:
    base = exported(cli_main, sb, tmp_path)
    edited = edit_csv(base, tmp_path / "edited.csv", bumped(sb, 2, 3))
    sb.external_edit(2, **{THRESHOLD: 4242})
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(edited), "--base", str(base), "--yes", "--report", str(tmp_path / "r.csv"))
    assert proc.returncode == 1, proc.stderr
    assert "1 updated, 1 conflict" in proc.stdout and "4242" in proc.stdout
    assert set(patches()) == {3} and sb.source(2)[THRESHOLD] == 4242
    assert read_report(tmp_path / "r.csv")[2]["status"] == "conflict"

    proc = cli_main.run(sb, "apply", str(edited), "--base", str(base), "--yes", "--on-conflict", "overwrite")
    assert proc.returncode == 0, proc.stderr
    assert sb.source(2)[THRESHOLD] != 4242


@pytest.mark.parametrize("interrupts", [1, 4], ids=["one-ctrl-c", "more-while-requests-finish"])
def test_ctrl_c_during_apply_writes_the_partial_report_and_exits_130(
    script: ConsoleScript, cli_main: CommandLine, sb: Sandbox, tmp_path: Path, journal_folder: Path, interrupts: int
) -> None:
    """Ctrl-C stops the run; more Ctrl-Cs while the requests in flight finish (each held
    open a moment by the server) still leave the partial report, exact, on disk. The run is
    journaled where the tests' processes journal, never in the user's folder."""
    journaled = set(journal_folder.iterdir())
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, *sb.sources))
    report_path = tmp_path / "partial.csv"
    started: queue.Queue[subprocess.Popen[str]] = queue.Queue(maxsize=1)
    arrived = {"patches": 0}
    lock = threading.Lock()

    def interrupt_while_in_flight(method: str, path: str) -> None:
        if method != "PATCH":
            return
        with lock:
            arrived["patches"] += 1
            n = arrived["patches"]
        if n <= interrupts:
            proc = started.get(timeout=10)
            started.put(proc)
            proc.send_signal(signal.SIGINT)
            if interrupts > 1:
                time.sleep(0.3)  # still in flight when the next Ctrl-C comes

    sb.clear_log()
    sb.latency = 0.1
    sb.before_request = interrupt_while_in_flight
    proc = script.start(sb, "apply", str(edited), "--yes", "--report", str(report_path))
    started.put(proc)
    out, err = proc.communicate(timeout=60)
    script.assert_clean(out, err, sb)
    assert proc.returncode == 130, err
    assert "Interrupted:" in out
    assert arrived["patches"] >= interrupts
    report = read_report(report_path)
    applied = {r.source_id for r in sb.requests("PATCH") if r.status == 200}
    assert 0 < len(report) < 60
    assert set(report) == applied and {r["status"] for r in report.values()} == {"updated"}
    assert len(set(journal_folder.iterdir()) - journaled) == 1


def read_pipe_until_the_writer_exits(pipe: Path, proc: subprocess.Popen[str]) -> str:
    """Everything written to the named pipe, read without blocking on a writer that died."""
    fd = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    chunks: list[bytes] = []
    try:
        for _ in range(600):
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:  # a writer holds the pipe open: more may come
                time.sleep(0.05)
                continue
            if chunk:
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
            else:
                time.sleep(0.05)
    finally:
        os.close(fd)
    return b"".join(chunks).decode("utf-8")


def waits_for_a_reader(wchan: str) -> bool:
    """A process's kernel wait channel says it is blocked opening a named pipe no one reads:
    ``fifo_open`` on older kernels, ``wait_for_partner`` on newer ones."""
    return "fifo" in wchan or wchan == "wait_for_partner"


def test_ctrl_c_while_the_report_is_written_still_writes_all_of_it(
    script: ConsoleScript, cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    """The report goes to a pipe nobody reads yet, so the CLI is stuck writing it when the
    Ctrl-Cs come: every source was sent, and the whole report still arrives."""
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, 2, 3, 4))
    pipe = tmp_path / "report.pipe"
    os.mkfifo(pipe)
    sb.clear_log()
    proc = script.start(sb, "apply", str(edited), "--yes", "--report", str(pipe))
    try:
        wchan = Path(f"/proc/{proc.pid}/wchan")
        for _ in range(200):  # until it waits for a reader of the pipe
            if len(sb.requests("PATCH")) == 3 and (not wchan.exists() or waits_for_a_reader(wchan.read_text())):
                break
            time.sleep(0.1)
        time.sleep(0.2)
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        written = read_pipe_until_the_writer_exits(pipe, proc)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    script.assert_clean(out, err, sb)
    assert proc.returncode == 0, err
    rows = list(csv.DictReader(io.StringIO(written)))
    assert {int(r["id"]): r["status"] for r in rows} == {2: "updated", 3: "updated", 4: "updated"}
    assert "3 updated" in out


# -- errors ------------------------------------------------------------------------------


def test_a_bad_csv_exits_3_naming_line_and_column(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", {(5, THRESHOLD): "lots"})
    sb.clear_log()
    proc = cli_main.run(sb, "plan", str(edited))
    assert proc.returncode == 3
    assert "line 6, column 6" in proc.stderr and THRESHOLD in proc.stderr and "not a number" in proc.stderr
    assert proc.stderr.count("\n") == 2  # one line, plus the problem
    assert sb.log == []

    proc = cli_main.run(sb, "apply", str(tmp_path / "missing.csv"), "--yes")
    assert proc.returncode == 3 and "missing.csv" in proc.stderr

    ranged = edit_csv(
        exported(cli_main, sb, tmp_path), tmp_path / "ranged.csv", {(5, THRESHOLD): "-1", (6, "name"): ""}
    )
    proc = cli_main.run(sb, "apply", str(ranged), "--yes")
    assert proc.returncode == 3
    assert "must be 0 or more" in proc.stderr and "is required" in proc.stderr  # every problem listed
    assert sb.requests("PATCH") == []


def test_the_token_pasted_into_a_csv_is_masked_in_what_the_cli_says(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    """A token pasted into a cell by mistake (the clipboard held it) is quoted back in the
    problem's message as "***", never as itself: the command's output lands in terminals, logs
    and tickets. (``cli_main`` fails the test if the token shows anywhere in what it printed.)"""
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", {(5, THRESHOLD): sb.token})
    proc = cli_main.run(sb, "plan", str(edited))
    assert proc.returncode == 3 and f"{THRESHOLD} = '***'" in proc.stderr and "not a number" in proc.stderr
    assert sb.requests("PATCH") == []


def test_no_token_exits_4_naming_the_variable(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    env = cli_main.env(None, NEUROIO_API_URL=sb.url)
    proc = cli_main.run(sb, "list", env=env)
    assert proc.returncode == 4
    assert "NEUROIO_API_TOKEN" in proc.stderr and len(proc.stderr.splitlines()) == 1
    assert sb.log == []


def test_a_refused_token_exits_4(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    env = cli_main.env(sb, NEUROIO_API_TOKEN="not-the-right-token-123")
    proc = cli_main.run(sb, "export", str(tmp_path / "x.csv"), env=env)
    assert proc.returncode == 4
    assert "401" in proc.stderr and "NEUROIO_API_TOKEN" in proc.stderr
    assert not (tmp_path / "x.csv").exists()


def test_an_api_error_or_no_connection_exits_5(cli_main: CommandLine, sb: Sandbox, free_port: int) -> None:
    proc = cli_main.run(sb, "get", "9999")
    assert proc.returncode == 5
    assert "404" in proc.stderr and proc.stdout == ""

    proc = cli_main.run(sb, "get", "1", "--url", f"http://127.0.0.1:{free_port}")
    assert proc.returncode == 5
    assert "could not connect" in proc.stderr and len(proc.stderr.splitlines()) == 1


# -- get and list --------------------------------------------------------------------------


def test_get_prints_json_or_a_table(cli_main: CommandLine, sb: Sandbox) -> None:
    proc = cli_main.run(sb, "get", "7")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == sb.source(7)
    elsewhere = cli_main.env(sb, NEUROIO_API_URL="http://127.0.0.1:9")  # --url wins over the variable
    proc = cli_main.run(sb, "get", "7", "--format", "table", "--url", sb.url, env=elsewhere)
    assert proc.returncode == 0, proc.stderr
    rows = {line.split(None, 1)[0]: line.split(None, 1)[1:] for line in proc.stdout.splitlines()[2:]}
    assert rows["name"] == [sb.source(7)["name"]]
    assert rows[THRESHOLD] == [str(sb.source(7)[THRESHOLD])]


def test_list_as_table_json_and_csv(cli_main: CommandLine, sb: Sandbox) -> None:
    proc = cli_main.run(sb, "list")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["id", "space_id", "name", "license_id"] and "(60 sources)" in lines[-1]
    assert len(lines) == 2 + 60 + 1

    space = sb.source(1)["space_id"]
    proc = cli_main.run(sb, "list", "--format", "json", "--space", str(space))
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == [s for s in sb.sources.values() if s["space_id"] == space]

    word = sb.source(1)["name"].split()[0]
    proc = cli_main.run(sb, "list", "--format", "csv", "--q", word)
    assert proc.returncode == 0
    frame = read_csv(io.StringIO(proc.stdout))
    assert sorted(frame.index) == sorted(i for i, s in sb.sources.items() if word.lower() in s["name"].lower())

    proc = cli_main.run(sb, "list", "--columns", f"name,{THRESHOLD}")
    assert proc.stdout.splitlines()[0].split() == ["id", "name", THRESHOLD]
    assert cli_main.run(sb, "list", "--columns", "nope").returncode == 3


def test_error_pages_that_echo_the_token_and_scalar_error_codes_are_failed_rows(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    """A firewall page that shows the request's headers (the token among them) and an error
    body with scalar codes: each is a failed row with what the server said, the run goes on,
    and neither the token nor any start of it is printed or written."""
    ids = list(range(1, 31))
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, *ids))
    before = sb.sources
    sb.fault_methods = {"PATCH"}
    sb.faults = {"echo_headers": 0.3, "scalar_error": 0.3}
    report_path = tmp_path / "report.csv"
    proc = cli_main.run(sb, "apply", str(edited), "--yes", "--report", str(report_path))
    assert proc.returncode == 1, proc.stderr
    written = report_path.read_text(encoding="utf-8")
    for shown in (proc.stdout, proc.stderr, written):
        assert not any(sb.token[:n] in shown for n in range(8, len(sb.token) + 1))
    report = read_report(report_path)
    assert set(report) == set(ids)
    failed = {i: r["error"] for i, r in report.items() if r["status"] == "failed"}
    assert any("Source is locked by another operation." in e for e in failed.values())
    assert any("Request Rejected" in e for e in failed.values())
    assert {r["status"] for r in report.values()} == {"updated", "failed"}
    faulted = {r.source_id for r in sb.requests("PATCH") if r.fault}
    assert set(failed) <= faulted
    for sid in ids:
        expected = before[sid][THRESHOLD] + (0 if sid in failed else 1)
        assert sb.source(sid)[THRESHOLD] == expected, sid


# -- terminals, pipes and encodings ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "latin-1"])
def test_a_stdout_that_is_not_utf8_gets_no_traceback_and_loses_no_data(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path, encoding: str
) -> None:
    name = "Caf\u00e9 \u6771\u4eac \u2192 gate"
    sb.external_edit(7, name=name)
    env = cli_main.env(sb, PYTHONIOENCODING=encoding)
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, 7))

    plan = cli_main.run(sb, "plan", str(edited), env=env)
    assert plan.returncode == 2, plan.stderr
    assert plan.stdout.splitlines()[0].split() == ["id", "name", "field", "old", "->", "new"]
    assert f"{sb.source(7)[THRESHOLD]} -> {sb.source(7)[THRESHOLD] + 1}" in plan.stdout

    table = cli_main.run(sb, "list", env=env)
    assert table.returncode == 0 and "gate" in table.stdout  # what it cannot show is a "?"

    got = cli_main.run(sb, "get", "7", env=env)
    assert got.returncode == 0 and json.loads(got.stdout)["name"] == name  # JSON escapes it

    for args in (["list", "--format", "csv"], ["export", "-"]):
        proc = cli_main.run(sb, *args, env=env)
        assert proc.returncode == 0, proc.stderr
        assert read_csv(io.BytesIO(proc.stdout_bytes)).loc[7, "name"] == name  # data stays UTF-8


def test_a_real_stdout_opened_in_ascii_gets_no_traceback_and_loses_no_data(
    script: ConsoleScript, cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    """The stdout Python itself opens in the encoding ``PYTHONIOENCODING`` (or the locale) names,
    strict about what it cannot encode: the script's plan still shows, and its CSV stays UTF-8."""
    name = "Caf\u00e9 \u6771\u4eac \u2192 gate"
    sb.external_edit(7, name=name)
    env = script.env(sb, PYTHONIOENCODING="ascii")
    edited = edit_csv(exported(cli_main, sb, tmp_path), tmp_path / "edited.csv", bumped(sb, 7))

    plan = script.run(sb, "plan", str(edited), env=env)
    assert plan.returncode == 2, plan.stderr
    assert f"{sb.source(7)[THRESHOLD]} -> {sb.source(7)[THRESHOLD] + 1}" in plan.stdout
    assert "Caf? ?? ? gate" in plan.stdout

    proc = subprocess.run(
        [str(script.path), "export", "-"], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=60
    )
    assert proc.returncode == 0 and b"Traceback" not in proc.stderr
    assert read_csv(io.BytesIO(proc.stdout)).loc[7, "name"] == name


def test_export_to_stdout_writes_the_csv_and_says_so_on_stderr(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    proc = cli_main.run(sb, "export", "-")
    assert proc.returncode == 0, proc.stderr
    assert_frame_equal(read_csv(io.StringIO(proc.stdout)), read_csv(exported(cli_main, sb, tmp_path)))
    assert proc.stderr == "Wrote 60 sources to stdout\n"
    assert not Path("-").exists()


def test_progress_bars_stay_off_a_stderr_that_is_not_a_terminal(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Nothing on the command's stderr, nor on the process's own (file descriptor 2, where a
    bar that found its own way to the terminal would go)."""
    sb.page_cap = 10  # many pages: a bar would be drawn for them
    source = exported(cli_main, sb, tmp_path)
    edited = edit_csv(source, tmp_path / "edited.csv", bumped(sb, *range(1, 31)))
    report = tmp_path / "report.csv"
    for args in (
        ["export", str(tmp_path / "again.csv")],
        ["list"],
        ["list", "--format", "csv"],
        ["apply", str(edited), "--yes", "--report", str(report)],
        ["undo", str(report), "--yes"],
    ):
        proc = cli_main.run(sb, *args)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == "", (args, proc.stderr)
        assert capfd.readouterr().err == "", args
    assert cli_main.run(sb, "plan", str(source)).returncode == 0  # undone: the export plans nothing


def test_resume_draws_no_progress_bar_on_a_stderr_that_is_not_a_terminal(
    cli_main: CommandLine,
    client: Client,
    sb: Sandbox,
    ctrl_c_at: Callable[[Sandbox, str, int], None],
    capfd: pytest.CaptureFixture[str],
) -> None:
    """As ``undo`` above: ``resume`` of a run stopped by Ctrl-C sends the rest and writes nothing to
    a stderr that is not a terminal."""
    from neuroio_nb.errors import BulkInterrupted

    frame = client.sources.to_frame(progress=False)
    edited = frame.copy()
    edited[THRESHOLD] = frame[THRESHOLD] + 1
    ctrl_c_at(sb, "PATCH", 5)
    with pytest.raises(BulkInterrupted) as stopped:
        client.sources.bulk_update(edited, progress=False)
    sb.before_request = None
    capfd.readouterr()
    proc = cli_main.run(sb, "resume", stopped.value.report.attrs["run_id"], "--yes")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert capfd.readouterr().err == ""
    assert_frame_equal(client.sources.to_frame(progress=False), edited)  # resumed: every change sent


def test_plain_http_elsewhere_is_refused_with_advice_the_cli_can_follow(
    cli_main: CommandLine, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = cli_main.run(None, "list", "--url", "http://sources.example", env=cli_main.env(None, NEUROIO_API_TOKEN="t"))
    assert proc.returncode == 4
    assert "--allow-insecure" in proc.stderr and "allow_insecure=True" not in proc.stderr
    assert "--allow-insecure" in cli_main.run(None, "list", "--help").stdout

    monkeypatch.setenv("NEUROIO_API_TOKEN", "t")
    args = cli.build_parser().parse_args(["list", "--url", "http://sources.example", "--allow-insecure"])
    with cli._client(args) as client:  # built without a request: nothing leaves loopback
        assert client.base_url == "http://sources.example"


# -- sandbox ---------------------------------------------------------------------------------

#: The two ways to start a sandbox from a shell.
SANDBOX_COMMANDS = {
    "neuroio-nb sandbox": lambda script: [str(script.path), "sandbox"],
    "python -m neuroio_nb.sandbox": lambda script: [sys.executable, "-m", "neuroio_nb.sandbox"],
}


@pytest.mark.parametrize("command", SANDBOX_COMMANDS)
def test_sandbox_command_prints_url_and_token_and_serves_until_interrupted(
    script: ConsoleScript, serve_in_subprocess, command: str
) -> None:
    argv = [*SANDBOX_COMMANDS[command](script), "--port", "0", "--sources", "20"]
    with serve_in_subprocess(*argv, env=script.env(None)) as served:
        r = requests.get(served.url + "/v1/sources/", headers={"Authorization": f"Token {served.token}"}, timeout=10)
        assert r.status_code == 200 and r.json()["count"] == 20
        assert "Ctrl-C" in served.lines.get(timeout=5)
        hint = served.lines.get(timeout=5)  # a client in another process: how to keep its runs apart
        folder = Path(hint.split("NEUROIO_NB_JOURNAL=", 1)[1].split(" (", 1)[0])
        assert folder.is_dir() and folder != Path(os.environ["NEUROIO_NB_JOURNAL"])
        code, err = served.interrupt()
        assert code == 0
        assert "Traceback" not in err
    assert not folder.exists()  # the sandbox's journal goes with it


@pytest.mark.parametrize("command", SANDBOX_COMMANDS)
def test_sandbox_on_a_taken_port_exits_7(script: ConsoleScript, command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        argv = [*SANDBOX_COMMANDS[command](script), "--port", str(taken.getsockname()[1]), "--sources", "5"]
        proc = subprocess.run(
            argv, env=script.env(None), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 7, proc.stderr
    assert "cannot serve on 127.0.0.1:" in proc.stderr and "in use" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_site_csv_matched_by_name_is_read_as_a_spreadsheet_saved_it_or_refused_with_the_way_out(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    site = tmp_path / "site.csv"
    # Excel in a semicolon locale, saved as "CSV (Macintosh)": semicolons and lone carriage returns, no id
    site.write_bytes(b"name;auto_check_liveness\rDock cam 1;true\rDock cam 2;false\r")
    proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
    assert proc.returncode == 2, proc.stderr
    assert "Dock cam 1" in proc.stdout and "Dock cam 2" in proc.stdout

    sb.clear_log()
    for encoding, says in (("cp1252", "Windows-1252"), ("utf-16", "UTF-16")):
        site.write_bytes("name,auto_check_liveness\nCaf\u00e9 cam,true\n".encode(encoding))
        proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
        assert proc.returncode == 3, proc.stderr
        assert says in proc.stderr and "CSV UTF-8" in proc.stderr, proc.stderr
    assert sb.requests() == []  # refused before the first request

    site.write_text("name,identify_facesize_threshold\nDock cam 1,7000\n\nDock cam 2,-5\n", encoding="utf-8")
    proc = cli_main.run(sb, "plan", str(site), "--key", "name", "--create")
    assert proc.returncode == 3
    assert "line 4, identify_facesize_threshold = -5" in proc.stderr, proc.stderr  # the file's line, no id
    assert "id 4" not in proc.stderr and "id 3" not in proc.stderr

    sb.clear_log()
    proc = cli_main.run(sb, "plan", str(site), "--create")
    assert proc.returncode == 3 and "--key name" in proc.stderr, proc.stderr
    assert sb.requests() == []
