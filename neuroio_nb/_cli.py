"""The ``neuroio-nb`` command: the notebook flow, from a shell.

    neuroio-nb export sources.csv            every source to CSV
    neuroio-nb plan edited.csv               what the edited CSV would change (exit 2 if anything)
    neuroio-nb apply edited.csv              show the plan, confirm, apply, report
    neuroio-nb plan edited.csv --out c.plan  save the plan; neuroio-nb apply c.plan sends exactly it
    neuroio-nb show c.plan                   a saved plan, as text, Markdown or JSON
    neuroio-nb get ID / neuroio-nb list      one source / every source, as JSON, a table or CSV
    neuroio-nb sandbox                       serve the embedded sandbox until Ctrl-C
    neuroio-nb history [RUN]                 the journal: every write run, or one run's report
    neuroio-nb undo RUN|REPORT.csv           put back what a run (or an apply report) changed
    neuroio-nb resume RUN                    finish an interrupted run
    neuroio-nb check --policy rules.toml     audit every source against rules (exit 2 if any breaks one)

The token comes only from ``$NEUROIO_API_TOKEN`` (an option would land in the
shell history) and never appears in any output; the URL from ``--url``, else
``$NEUROIO_API_URL``, else the public API. Errors are one line on stderr (plus
the server's field errors, or every problem of a bad CSV), never a traceback,
and each kind has its exit code (:data:`EXIT_CODES`).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from ._client import DEFAULT_URL, TOKEN_ENV, URL_ENV, Client
from ._jobs.bulk import refuse_irreversible
from ._jobs.csvio import read_csv, read_named_csv
from ._jobs.history import history_frame, prune, report_of, run_report
from ._jobs.parts import parts_of
from ._jobs.policy import Policy
from ._jobs.review import violation_lines
from ._jobs.saved import is_saved_plan, shown_plan
from ._journal import open_journal
from ._values import shown, to_python
from ._version import __version__
from ._views import plural
from .errors import (
    AuthenticationError,
    BulkInterrupted,
    ConfigurationError,
    JournalError,
    NeuroIOError,
    UnmatchedRowsWarning,
    ValidationError,
)
from .sandbox import cli as sandbox_cli

EXIT_OK = 0
EXIT_ROWS_FAILED = 1
EXIT_DRIFT = 2
EXIT_USAGE = 3
EXIT_AUTH = 4
EXIT_API = 5
EXIT_NOT_CONFIRMED = 6
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success (plan: nothing would change)",
    EXIT_ROWS_FAILED: "apply: some sources failed or conflicted (see the report)",
    EXIT_DRIFT: "plan: the CSV differs from the server (something would change, rows match no source, "
    "or the plan breaks --policy); check: sources break the policy; apply: refused, the plan breaks --policy",
    EXIT_USAGE: "bad usage or input: unknown option, unreadable or invalid CSV, file not found",
    EXIT_AUTH: f"authentication or configuration: no {TOKEN_ENV}, token refused (401/403), bad URL",
    EXIT_API: "the API failed: an error answer (404, 5xx, ...) or no connection after retries",
    EXIT_NOT_CONFIRMED: "apply: not confirmed (answered no, or stdin is not a terminal and no --yes)",
    sandbox_cli.EXIT_CANNOT_SERVE: "sandbox: cannot listen there (the port is taken, or the "
    "address is not this machine's)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C); apply prints and writes the partial report",
}

#: Columns of ``list --format table`` unless ``--columns`` says otherwise.
LIST_COLUMNS = ("space_id", "name", "license_id")
#: How a missing value is shown in tables.
EMPTY = "(empty)"


def _shown(value: Any) -> str:
    """A value in a terminal table: the one display rule (:func:`~neuroio_nb._values.shown`),
    spelt as the CSV and JSON files beside it spell it (``true``, ``["new", "ha"]``)."""
    return shown(value, missing=EMPTY, json_literals=True)


class UsageError(Exception):
    """A command was asked for something that cannot be (exit :data:`EXIT_USAGE`)."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors exit with :data:`EXIT_USAGE`."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


# ---- the commands ---------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    """Write every source (matching --q / --space) to a CSV file, or to stdout for ``-``."""
    to_stdout = args.path == "-"
    if not to_stdout:
        _check_writable(args.path)
    with _client(args) as client:
        frame = client.sources.to_frame(q=args.q, spaces_ids=args.space, progress=_progress())
        if to_stdout:
            _write_csv_to_stdout(client, frame)
        else:
            client.sources.export_csv(args.path, frame)
    where = "stdout" if to_stdout else args.path
    print(f"Wrote {plural(len(frame), 'source')} to {where}", file=sys.stderr if to_stdout else sys.stdout)
    return EXIT_OK


def _read_desired(args: argparse.Namespace) -> Any:
    """The CSV as a frame; with ``--key name`` it may have no ``id`` column (a new site's
    names and settings): its rows are then labelled by their line in the file."""
    if args.key != "name":
        if args.create:
            raise UsageError(
                "--create makes the rows that match no source, and rows match by name: "
                f"you probably mean --key name (neuroio-nb {args.command} {args.path} --key name --create)"
            )
        return read_csv(args.path)
    return read_named_csv(args.path)


def cmd_plan(args: argparse.Namespace) -> int:
    """Show what the edited CSV would change; exit 2 if anything would."""
    args.policy = Policy.from_toml(args.policy) if args.policy else None  # a bad rule: said before any request
    edited = _read_desired(args)
    base = read_csv(args.base) if args.base else None
    if args.out:
        _check_writable(args.out)
    with _client(args) as client:
        plan = _plan(client, edited, base, args)
    _show_plan(plan, args.format)
    if args.out:
        plan.save(args.out)
        print(f"Plan saved to {args.out}: neuroio-nb apply {args.out} sends exactly these writes.", file=sys.stderr)
    return EXIT_DRIFT if plan else EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    """Show a saved plan (no server or token needed)."""
    plan, document = shown_plan(args.path)
    if args.format == "text":
        made = document.get("made_with") or {}
        asked = ", ".join(f"{k}={v}" for k, v in made.items() if v not in (None, False))
        print(
            f"Saved plan for {document['base_url']}, saved {document.get('saved')} by neuroio-nb "
            f"{document.get('toolkit')}" + (f" ({asked})" if asked else "") + ":"
        )
    _show_plan(plan, args.format)
    return EXIT_OK


#: Options that make a plan: a saved plan is applied as it was saved, so they cannot apply to it.
PLANNING_OPTIONS = {
    "base": None,
    "key": "id",
    "create": False,
    "delete": False,
    "q": None,
    "space": None,
    "policy": None,
}


def _refuse_planning_options(args: argparse.Namespace) -> None:
    given = [f"--{name}" for name, default in PLANNING_OPTIONS.items() if getattr(args, name) != default]
    if given:
        raise UsageError(
            f"{args.path} is a saved plan, applied exactly as it was saved: {', '.join(given)} cannot change it "
            "(plan the CSV again to change what is sent)"
        )


def _show_plan(plan: Any, form: str) -> None:
    """The plan as a table (``text``), for a ticket (``markdown``) or for a program (``json``, every change)."""
    if form == "markdown":
        print(plan.to_markdown(), end="")
    elif form == "json":
        print(plan.to_json())
    else:
        _print_plan(plan)


def _plan(client: Client, edited: Any, base: Any, args: argparse.Namespace) -> Any:
    with warnings.catch_warnings():  # the plan printed says which rows match no source, and how to create them
        warnings.simplefilter("ignore", UnmatchedRowsWarning)
        return client.sources.plan(
            edited,
            base,
            key=args.key,
            create=args.create,
            delete=args.delete,
            q=args.q,
            spaces_ids=args.space,
            policy=args.policy,
        )


def cmd_apply(args: argparse.Namespace) -> int:
    """Show the plan (of a CSV, or a saved one), confirm, apply it, print (and maybe write) the report."""
    saved = is_saved_plan(args.path)
    if saved:
        _refuse_planning_options(args)
    args.policy = Policy.from_toml(args.policy) if args.policy else None  # a bad rule: said before any request
    edited = None if saved else _read_desired(args)
    base = read_csv(args.base) if args.base else None
    if args.report:
        _check_writable(args.report)
    with _client(args) as client:
        plan: Any = client.sources.load_plan(args.path) if saved else _plan(client, edited, base, args)
        _print_plan(plan)
        stop = _why_not_apply(args, client, plan)
        if stop is not None:
            return stop
        report = _applied(args, plan)
        if report is None:
            return EXIT_INTERRUPTED
    with _interrupts_deferred():  # everything was sent: keep its report whatever comes
        if args.report:
            _write_report(report, args.report)
        print(report.summary())
        _print_run(report)
        _print_not_updated(report, parts_of(plan).job.names)
    failed = report["status"].isin(["failed", "conflict"]).any()
    return EXIT_ROWS_FAILED if failed else EXIT_OK


def _why_not_apply(args: argparse.Namespace, client: Client, plan: Any) -> int | None:
    """The exit code when the plan shown is not to be applied (it breaks the policy, it has
    nothing to send, or it is not confirmed), else None. Deletes undo could not bring back
    are refused here, before any question (an error, unless --irreversible)."""
    if len(plan.violations) and not args.allow_violations:
        _error("not applied: the plan breaks the policy (listed above); fix the CSV, or pass --allow-violations")
        return EXIT_DRIFT
    if not len(plan) and not parts_of(plan).job.missing:  # rows that match no source: nothing to send
        return EXIT_OK
    if not args.irreversible:
        refuse_irreversible(parts_of(plan).job, client.sources.landing_space)
    return None if _plan_confirmed(args, plan) else EXIT_NOT_CONFIRMED


def _plan_confirmed(args: argparse.Namespace, plan: Any) -> bool:
    """Deletions are confirmed on their own, then the creates and changes (``--yes``: all)."""
    if len(plan.deletes) and not _confirmed(
        args,
        f"Delete the {plural(len(plan.deletes), 'source')} listed above? [y/N] ",
        "delete the sources listed above",
        "Not applied: nothing was deleted, created or updated.",
    ):
        return False
    if not len(plan) - len(plan.deletes):
        return True
    parts = [f"create {plural(len(plan.creates), 'source')}"] if len(plan.creates) else []
    if len(plan.changes):
        parts.append(f"apply {plural(len(plan.changes), 'change')} to {plural(plan.changes['id'].nunique(), 'source')}")
    return _confirmed(args, f"{' and '.join(parts).capitalize()}? [y/N] ", "apply the plan above", "Not applied.")


def _applied(args: argparse.Namespace, plan: Any) -> Any:
    """The plan applied: its report; None when Ctrl-C stopped it (the partial report is then
    printed, and written with --report). A journal that cannot be written stops the run too:
    what was sent is said and written, and its error raised."""
    try:
        with _first_interrupt_only():  # the first Ctrl-C stops the run; more cannot cut it short
            return plan.apply(
                on_conflict=args.on_conflict,
                progress=_progress(),
                allow_violations=args.allow_violations,
                irreversible=args.irreversible,
            )
    except BulkInterrupted as exc:
        with _interrupts_deferred():
            done = exc.report.summary() if len(exc.report) else "no source was updated"
            if args.report:
                _write_report(exc.report, args.report)
            print(f"Interrupted: {done}; the other sources were not sent (plan again to see what is left).")
            _print_run(exc.report, interrupted=True)
            _print_not_updated(exc.report, parts_of(plan).job.names)
        return None
    except JournalError as exc:  # the journal could not be written: the run stopped; say what was sent
        if exc.report is None:
            raise
        with _interrupts_deferred():
            if args.report:
                _write_report(exc.report, args.report)
            print(f"Stopped: {exc.report.summary() if len(exc.report) else 'no source was updated'}.")
            _print_not_updated(exc.report, parts_of(plan).job.names)
        raise


def cmd_get(args: argparse.Namespace) -> int:
    """Print one source as JSON or as a field/value table."""
    with _client(args) as client:
        source = client.sources.get(args.id)
    if args.format == "json":
        print(json.dumps(source, indent=2, ensure_ascii=not _stdout_is_unicode()))
    else:
        print(_table(["field", "value"], [[k, _shown(v)] for k, v in source.items()]))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    """Print every source (matching --q / --space) as a table, JSON or CSV."""
    with _client(args) as client:
        if args.format == "json":
            records = list(client.sources.iter(q=args.q, spaces_ids=args.space))
            print(json.dumps(records, indent=2, ensure_ascii=not _stdout_is_unicode()))
            return EXIT_OK
        frame = client.sources.to_frame(q=args.q, spaces_ids=args.space, progress=_progress())
        if args.format == "csv":
            _write_csv_to_stdout(client, frame)
            return EXIT_OK
    columns = list(frame.columns) if args.columns == ["all"] else args.columns or list(LIST_COLUMNS)
    unknown = [c for c in columns if c not in frame.columns and c != "id"]
    if unknown and len(frame):
        raise UsageError(f"--columns: no column {', '.join(unknown)}; the sources have: " + ", ".join(frame.columns))
    present = [c for c in columns if c in frame.columns]
    rows = [[str(sid), *(_shown(frame.at[sid, c]) for c in present)] for sid in frame.index]
    print(_table(["id", *present], rows) if rows else "No sources.")
    if rows:
        print(f"({plural(len(rows), 'source')})")
    return EXIT_OK


def cmd_sandbox(args: argparse.Namespace) -> int:
    """Serve the embedded sandbox until Ctrl-C, printing its URL and token."""
    return sandbox_cli.run(args)


def cmd_history(args: argparse.Namespace) -> int:
    """The journal: every run (newest first), one run's report, or pruning old runs."""
    journal = open_journal(None, os.environ.get(URL_ENV))  # a sandbox serving in this process: its own
    if journal is None:  # open_journal(None) is never None; this satisfies the type checker
        return EXIT_USAGE
    if args.prune_before:
        removed = prune(journal, args.prune_before)
        print(f"Removed {plural(len(removed), 'run')} started before {args.prune_before} from {journal.folder}.")
        return EXIT_OK
    if args.run:
        report = run_report(journal.read(args.run))
        print(f"Run {report.attrs['run_id']}: {report.summary()}")
        for sid, status, changes, error in report[["status", "changes", "error"]].itertuples(name=None):
            text = "; ".join(f"{f}: {_shown(o)} -> {_shown(n)}" for f, (o, n) in (changes or {}).items())
            print(f"  {sid}: {status}" + (f": {text}" if text else "") + (f" ({error})" if error else ""))
        return EXIT_OK
    frame = history_frame(journal.runs())
    if not len(frame):
        print(f"No runs in the journal at {journal.folder}.")
        return EXIT_OK
    counted = [c for c in ("updated", "created", "deleted", "conflict", "failed", "unknown") if frame[c].any()]
    rows = [
        [
            run,
            f"{r.started:%Y-%m-%d %H:%M:%S}",
            r.kind,
            r.state,
            ", ".join(f"{r[c]} {c}" for c in counted if r[c]) or "-",
            r.base_url,
            r.followed_by if isinstance(r.followed_by, str) else "",
        ]
        for run, r in frame.iterrows()
    ]
    print(_table(["run", "started (UTC)", "kind", "state", "counts", "url", "followed by"], rows))
    print(f"\nJournal: {journal.folder}")
    return EXIT_OK


def cmd_undo(args: argparse.Namespace) -> int:
    """Put back what a journaled run (or an apply report CSV) changed."""
    target = args.target
    report_file = target.lower().endswith(".csv")
    with _client(args) as client:
        if report_file:
            report = _read_report(target)
            what = f"the {plural(int((report['status'] == 'updated').sum()), 'source')} updated in {target}"
        else:
            run = report_of(client.sources, target)
            what = f"run {run.attrs['run_id']} ({run.summary()})"
            target = run.attrs["run_id"]
        if not _confirmed(args, f"Undo {what}? [y/N] "):
            return EXIT_NOT_CONFIRMED
        result = client.sources.undo(
            report if report_file else target, on_conflict=args.on_conflict, progress=_progress()
        )
    print(f"Undone: {result.summary()}" + (f" (run {result.attrs['run_id']})" if "run_id" in result.attrs else ""))
    _print_not_updated(result, {})
    return EXIT_ROWS_FAILED if result["status"].isin(["failed", "conflict"]).any() else EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    """Finish an interrupted run: send exactly what it did not."""
    with _client(args) as client:
        run = report_of(client.sources, args.run)
        if not _confirmed(args, f"Resume run {run.attrs['run_id']} ({run.summary()})? [y/N] "):
            return EXIT_NOT_CONFIRMED
        result = client.sources.resume(run.attrs["run_id"], on_conflict=args.on_conflict, progress=_progress())
    print(f"Run {run.attrs['run_id']} now: {result.summary()}")
    _print_not_updated(result, {})
    return EXIT_ROWS_FAILED if result["status"].isin(["failed", "conflict"]).any() else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    """Audit every source (matching --q / --space) against a policy; exit 2 if any breaks a rule."""
    policy = Policy.from_toml(args.policy)  # a bad rule: said before any request
    with _client(args) as client:
        violations = client.sources.check(policy, q=args.q, spaces_ids=args.space, progress=_progress())
    if not len(violations):
        print(f"Every source meets the {plural(len(policy), 'rule')} of {args.policy}.")
        return EXIT_OK
    _print_violations(violations)
    return EXIT_DRIFT


def _print_violations(violations: Any) -> None:
    """Every violation, one line each (a terminal or a CI log shows them all), then the count."""
    sources = violations["id"].nunique() + int(violations["id"].isna().sum())
    rules = violations["rule"].nunique()
    print(
        f"{plural(len(violations), 'policy violation')} ({plural(sources, 'source')}, {plural(rules, 'rule')} broken):"
    )
    with pd.option_context("display.max_rows", None):
        for line in violation_lines(violations):
            print(line)


def _print_run(report: Any, interrupted: bool = False) -> None:
    run_id = report.attrs.get("run_id")
    if run_id:
        then = f"neuroio-nb resume {run_id} sends the rest; " if interrupted else ""
        print(f"Journal run {run_id}: {then}neuroio-nb undo {run_id} puts back what it changed.")


def _confirmed(
    args: argparse.Namespace, question: str, doing: str = "send anything", declined: str = "Nothing was sent."
) -> bool:
    """``--yes``, or the user's yes; a refusal (or nobody to answer) is said on the way out."""
    if args.yes:
        return True
    answer = _confirm(question)
    if answer is None:
        _error(f"refusing to {doing} without confirmation: stdin is not a terminal; pass --yes to go ahead")
    elif not answer:
        print(declined)
    return bool(answer)


def _read_report(path: str) -> Any:
    """A report CSV as ``apply --report`` writes it, back as a frame ``undo`` takes."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or not {"id", "status", "changes"} <= set(rows[0]):
        raise UsageError(
            f"{path} is not a report written by 'neuroio-nb apply --report' (columns id, status, changes, error)"
        )
    try:
        changes = [{f: tuple(pair) for f, pair in json.loads(r["changes"] or "{}").items()} for r in rows]
        ids = [int(r["id"]) for r in rows]
    except (ValueError, TypeError, AttributeError):
        raise UsageError(f"{path}: a row's id or changes cannot be read; was the report edited?") from None
    return pd.DataFrame(
        {"status": [r["status"] for r in rows], "changes": changes, "error": [r.get("error") or None for r in rows]},
        index=pd.Index(ids, name="id"),
    )


# ---- the parser -----------------------------------------------------------------


def _connection_options() -> _Parser:
    """Where the API is: --url, --allow-insecure."""
    connection = _Parser(add_help=False)
    connection.add_argument("--url", help=f"API base URL (default: ${URL_ENV}, else {DEFAULT_URL})")
    connection.add_argument(
        "--allow-insecure",
        action="store_true",
        help="allow a plain http:// URL that is not this machine (the token then crosses the network unencrypted)",
    )
    return connection


def _selection_options() -> _Parser:
    """Which sources: --q, --space."""
    selection = _Parser(add_help=False)
    selection.add_argument("--q", metavar="TEXT", help="only sources whose name contains TEXT")
    selection.add_argument(
        "--space", metavar="ID", type=int, nargs="+", action="extend", help="only sources of these spaces (repeatable)"
    )
    return selection


def _edit_options() -> _Parser:
    """An edited CSV (or, for apply, a saved plan) and how to plan it: --base, --key, --create, --delete, --policy."""
    edits = _Parser(add_help=False)
    edits.add_argument(
        "path", metavar="EDITED_CSV", help="a CSV as export writes it, edited (apply: or a plan saved with plan --out)"
    )
    edits.add_argument(
        "--base",
        metavar="CSV",
        help="the export the edits started from: compare with it instead of the "
        "server now, so that values changed on the server meanwhile are conflicts",
    )
    edits.add_argument(
        "--key",
        choices=("id", "name"),
        default="id",
        help="match rows to sources by id (default) or by name (then the CSV's ids may be anything, e.g. a backup's)",
    )
    edits.add_argument("--create", action="store_true", help="with --key name: create the rows that match no source")
    edits.add_argument(
        "--delete",
        action="store_true",
        help="delete the sources in scope (--q, --space; default every source) that no row "
        "matches; apply lists them and asks about them on their own",
    )
    edits.add_argument(
        "--policy",
        metavar="TOML",
        help="check the state the plan would leave against these rules ([[rule]] tables of name, where, "
        "require); apply refuses a plan that breaks one unless --allow-violations",
    )
    return edits


def _format_options() -> _Parser:
    """How plan and show print a plan: --format."""
    formats = _Parser(add_help=False)
    formats.add_argument(
        "--format",
        choices=("text", "markdown", "json"),
        default="text",
        help="text: tables (default); markdown: for a ticket or pull request (long plans cut as pandas "
        "cuts them); json: every change, uncut",
    )
    return formats


def _answering(yes: str, conflict: str) -> _Parser:
    """``--yes`` and ``--on-conflict``: the answers a writing command would otherwise ask for."""
    answers = _Parser(add_help=False)
    answers.add_argument("--yes", "-y", action="store_true", help=yes)
    answers.add_argument("--on-conflict", choices=("skip", "overwrite"), default="skip", help=conflict)
    return answers


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:>3}  {meaning}" for code, meaning in EXIT_CODES.items())
    parser = _Parser(
        prog="neuroio-nb",
        description="The sources of a NeuroIO account from the shell: export to CSV, "
        "plan and apply CSV edits, get and list sources, run a local sandbox.",
        epilog=f"environment:\n  {TOKEN_ENV}  the API token (required; there is no --token option)\n"
        f"  {URL_ENV}    the API URL (default {DEFAULT_URL}; --url overrides it)\n\n"
        f"exit codes:\n{codes}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    connection, selection, edits = _connection_options(), _selection_options(), _edit_options()

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], text: str, parents: list[_Parser]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text, parents=parents)
        p.set_defaults(handler=handler)
        return p

    p = command("export", cmd_export, "Write every source to a CSV file.", [connection, selection])
    p.add_argument("path", metavar="CSV", help="the file to write; - writes to stdout (UTF-8)")

    formats = _format_options()
    p = command(
        "plan",
        cmd_plan,
        "Show what an edited CSV would change (exit 2 if anything would).",
        [connection, selection, edits, formats],
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="also save the plan there (e.g. change.plan): 'neuroio-nb apply FILE' then sends exactly "
        "its writes, each conditional on what this plan saw",
    )

    applying = _answering(
        "apply without asking (deletions included)",
        "with --base: what to do with a source changed on the server meanwhile (default: skip and report it)",
    )
    p = command(
        "apply",
        cmd_apply,
        "Show the plan, ask, then apply an edited CSV, or a plan saved with 'plan --out' (exactly its writes).",
        [connection, selection, edits, applying],
    )
    p.add_argument(
        "--allow-violations", action="store_true", help="with --policy: apply even if the plan breaks a rule"
    )
    p.add_argument(
        "--report",
        metavar="CSV",
        help="write the report here (columns id,action,status,name,changes,replaced,error; "
        "changes and replaced as JSON)",
    )
    p.add_argument(
        "--irreversible",
        action="store_true",
        help="also delete sources that undo could not re-create (another space than the one this "
        "token creates in), or cannot tell yet (the plan says which)",
    )

    p = command("show", cmd_show, "Show a plan saved with 'plan --out' (no token needed).", [formats])
    p.add_argument("path", metavar="PLAN", help="the saved plan, e.g. change.plan")

    p = command("get", cmd_get, "Print one source.", [connection])
    p.add_argument("id", type=int, help="the source's id")
    p.add_argument("--format", choices=("json", "table"), default="json")

    p = command("list", cmd_list, "Print every source.", [connection, selection])
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument(
        "--columns",
        type=lambda s: [c.strip() for c in s.split(",") if c.strip()],
        help=f"table columns, comma-separated, or 'all' (default: {','.join(LIST_COLUMNS)})",
    )

    p = command("history", cmd_history, "List the journaled runs (newest first), or show one run.", [])
    p.add_argument("run", metavar="RUN", nargs="?", help="a run id (or its start): show that run's report")
    p.add_argument("--prune-before", metavar="DATE", help="remove the runs started before DATE (e.g. 2026-01-31)")

    redoing = _answering(
        "do it without asking",
        "a source changed on the server meanwhile: skip and report it (default), or overwrite it",
    )
    p = command(
        "undo", cmd_undo, "Put back what a journaled run, or an apply report CSV, changed.", [connection, redoing]
    )
    p.add_argument("target", metavar="RUN|REPORT.csv", help="a run id from 'history', or a report CSV")
    p = command(
        "resume", cmd_resume, "Finish an interrupted run: send exactly what it did not send.", [connection, redoing]
    )
    p.add_argument("run", metavar="RUN", help="a run id from 'history'")

    p = command(
        "check",
        cmd_check,
        "Audit every source against a policy's rules (exit 2 if any source breaks one).",
        [connection, selection],
    )
    p.add_argument("--policy", metavar="TOML", required=True, help="the rules: [[rule]] tables of name, where, require")

    p = command("sandbox", cmd_sandbox, "Serve a local NeuroIO sandbox until Ctrl-C.", [])
    sandbox_cli.add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    _never_fail_on_characters()
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            code: int = args.handler(args)
        except (KeyboardInterrupt, NeuroIOError, UsageError, OSError) as exc:
            return _stopped_by(exc)
        return code


def _stopped_by(exc: BaseException) -> int:
    """Say in one line what stopped a command (a reader that closed the pipe: nothing); its exit code."""
    if isinstance(exc, BrokenPipeError):
        _silence_stdout()
        return EXIT_OK
    message, code = _said_of(exc)
    _error(message)
    return code


def _said_of(exc: BaseException) -> tuple[str, int]:
    """What the terminal is told of an error that stopped a command, and the exit code."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", EXIT_INTERRUPTED
    if isinstance(exc, (ValidationError, UsageError, JournalError)):
        return str(exc), EXIT_USAGE
    if isinstance(exc, ConfigurationError):
        return str(exc).replace("pass allow_insecure=True", "pass --allow-insecure"), EXIT_AUTH
    if isinstance(exc, AuthenticationError):
        first, *rest = str(exc).splitlines()
        return "\n".join([f"{first}: the token was refused; check {TOKEN_ENV} and the URL", *rest]), EXIT_AUTH
    if isinstance(exc, OSError) and not isinstance(exc, NeuroIOError):  # a file that cannot be read or written
        return (f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc)), EXIT_USAGE
    return str(exc), EXIT_API


# ---- helpers --------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    if not os.environ.get(TOKEN_ENV):
        raise ConfigurationError(
            f"no API token: set the {TOKEN_ENV} environment variable "
            "(there is no --token option: it would end up in the shell history)"
        )
    return Client(base_url=args.url, allow_insecure=args.allow_insecure)


def _print_plan(plan: Any) -> None:
    parts = parts_of(plan)  # what the CLI says besides the plan's public face: bodies, ids not found, unmatched
    if len(plan.deletes):
        print(f"To delete ({plural(len(plan.deletes), 'source')}):")
        print(
            _table(
                ["", "id", "space", "name"],
                [
                    ["-", str(sid), _shown(space), _shown(name)]
                    for sid, space, name in plan.deletes[["id", "space_id", "name"]].itertuples(index=False, name=None)
                ],
            )
        )
    if len(plan.creates):
        print(f"To create ({plural(len(plan.creates), 'source')}):")
        print(
            _table(
                ["", "name", "settings"],
                [
                    [
                        "+",
                        _shown(body.get("name")),
                        ", ".join(f"{f}={_shown(v)}" for f, v in body.items() if f != "name"),
                    ]
                    for body in parts.job.bodies.values()
                ],
            )
        )
    if len(plan.changes) or not (len(plan.deletes) or len(plan.creates)):
        _print_changes(plan)
    missing = parts.job.missing
    if missing:
        print(
            f"Not found ({plural(len(missing), 'id')}; apply reports them as failed): "
            + ", ".join(str(i) for i in missing)
        )
    for line in parts.unmatched.command_line():
        print(line)
    if len(plan.violations):
        _print_violations(plan.violations)


def _print_changes(plan: Any) -> None:
    arrow = _arrow()
    rows = [
        [str(sid), _shown(name), field, f"{_shown(old)} {arrow} {_shown(new)}"]
        for sid, name, field, old, new in plan.changes[["id", "name", "field", "old", "new"]].itertuples(
            index=False, name=None
        )
    ]
    if rows:
        print(_table(["id", "name", "field", f"old {arrow} new"], rows))
        print(f"{plural(len(plan), 'source')} would change, {plural(len(rows), 'value')} in all.")
    else:
        print("Nothing would change.")


def _print_not_updated(report: Any, names: Mapping[Any, Any]) -> None:
    left = report[~report["status"].isin(["updated", "created", "deleted"])]
    report_names = left["name"] if "name" in left.columns else pd.Series(None, index=left.index, dtype=object)
    for (sid, status, error), known in zip(left[["status", "error"]].itertuples(name=None), report_names, strict=True):
        name = known if known is not None else names.get(sid)
        head = f"  {'' if pd.isna(sid) else sid}" + (f" ({name})" if name else "") + f": {status}"
        lines = str(error or "").splitlines() or [""]
        print(f"{head}: {lines[0]}" if lines[0] else head)
        for line in lines[1:]:
            print(f"    {line.strip()}")


def _write_report(report: Any, path: str) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["id", "action", "status", "name", "changes", "replaced", "error"])
        for sid, action, status, name, changes, replaced, error in report[
            ["action", "status", "name", "changes", "replaced", "error"]
        ].itertuples(name=None):
            as_json = {field: [to_python(old), to_python(new)] for field, (old, new) in (changes or {}).items()}
            writer.writerow(
                [
                    "" if pd.isna(sid) else sid,
                    action,
                    status,
                    "" if name is None else name,
                    json.dumps(as_json, ensure_ascii=False, default=str),
                    json.dumps(to_python(replaced or {}), ensure_ascii=False, default=str),
                    error or "",
                ]
            )
    print(f"Report written to {path}")


def _confirm(question: str) -> bool | None:
    """The user's answer; None when nobody can answer (stdin is not a terminal)."""
    if not sys.stdin or not sys.stdin.isatty():
        return None
    print(question, end="", file=sys.stderr, flush=True)
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _check_writable(path: str) -> None:
    """Fail before any request if ``path`` cannot be written."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise IsADirectoryError(21, "is a directory", path)
    if not folder.is_dir():
        raise FileNotFoundError(2, "no such directory", str(folder))
    if not os.access(folder, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise PermissionError(13, "cannot write", path)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _error(message: str) -> None:
    print(f"neuroio-nb: error: {_redacted(message)}", file=sys.stderr)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    print(f"neuroio-nb: warning: {_redacted(str(message))}", file=sys.stderr)


def _redacted(text: str) -> str:
    token = os.environ.get(TOKEN_ENV)
    return text.replace(token, "***") if token else text


def _progress() -> bool:
    """Progress bars only for a person watching: never into a file, a pipe or a CI log."""
    return bool(sys.stderr and sys.stderr.isatty())


def _stdout_is_unicode() -> bool:
    return _encodable("\u2192\u00e9\u6771", sys.stdout)


def _encodable(text: str, stream: Any) -> bool:
    try:
        text.encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _arrow() -> str:
    """ "→" where stdout can show it, else "->"."""
    return "\u2192" if _encodable("\u2192", sys.stdout) else "->"


def _never_fail_on_characters() -> None:
    """A terminal or pipe that is not UTF-8 (``LANG=C``, a Windows code page) gets
    ``?`` for a character it cannot show, never a ``UnicodeEncodeError``. Data
    (``export -``, ``list --format csv``) goes out as UTF-8 bytes, losslessly; JSON
    escapes what the stream cannot carry."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="replace")


def _write_csv_to_stdout(client: Client, frame: Any) -> None:
    sys.stdout.flush()
    client.sources.export_csv(getattr(sys.stdout, "buffer", sys.stdout), frame)
    sys.stdout.flush()


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C is ignored inside (the main thread only; elsewhere nothing to do)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _first_interrupt_only() -> Iterator[None]:
    """The first Ctrl-C inside raises ``KeyboardInterrupt`` (the bulk run then stops and
    hands back its partial report); every later one, until the report is written, is
    ignored, so that none lands between the run's end and the writing of its report."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def first(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, first)
    interrupted = False
    try:
        yield
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        if not interrupted:  # after an interrupt, Ctrl-C stays ignored until the report is out
            signal.signal(signal.SIGINT, previous)


def _silence_stdout() -> None:
    """After a closed pipe (``neuroio-nb list | head``): no second error at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    raise SystemExit(main())
