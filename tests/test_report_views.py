"""What a person reads of a sync: creates said by what they set, changes one field a line,
history as the live report, and a sandbox's runs kept out of the user's journal.

Each test drives the real client against the sandbox over loopback; the HTML is read as a
person reads it (its text, tags stripped), the browser test measures how it lays out.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest

from neuroio_nb import Client, non_defaults, read_csv
from neuroio_nb.sandbox import EXTRA_FIELDS, Sandbox

pytestmark = pytest.mark.sandbox(sources=60, seed=3)

#: A new site, as notebook 05 provisions it: every row sets three settings.
SITE = pd.DataFrame(
    {
        "name": [f"Harbour office cam {n:02d}" for n in range(1, 9)],
        "identify_facesize_threshold": [9000] * 4 + [12000] * 4,
        "auto_check_liveness": [True] * 8,
        "store_images_for_results": [["new", "det"]] * 8,
    }
)
#: Fields the sandbox's server fills that the toolkit knows no default for: a default when the
#: server gave it, said when a row (a backup's) sets it.
SERVER_ONLY = set(EXTRA_FIELDS)


def is_missing(value: object) -> bool:
    return pd.api.types.is_scalar(value) and bool(pd.isna(value))


def text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def rows_of(view: str) -> list[list[str]]:
    """Each body row's cells (inner HTML)."""
    body = view.split("<tbody>", 1)[1]
    return [re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]


def header_of(view: str) -> list[str]:
    return [text(h) for h in re.findall(r"<th[^>]*>(.*?)</th>", view.split("<tbody>", 1)[0])]


def listed(cell: str) -> tuple[list[str], str, list[str]]:
    """A changes cell: its lines outside the fold, the fold's summary, the lines inside it."""
    folded = re.search(r"<details[^>]*><summary>(.*?)</summary>(.*?)</details>", cell)
    outside = cell[: folded.start()] + cell[folded.end() :] if folded else cell
    lines = [text(line) for line in re.findall(r'<div class="neuroio-change">(.*?)</div>', outside)]
    pieces = re.findall(r'<span class="neuroio-value"><span[^>]*>([^<]*)</span> (?:<b>)?<span[^>]*>([^<]*)<', outside)
    lines += [text(f"{field} {value}") for field, value in pieces]
    if not folded:
        return lines, "", []
    inside = [text(line) for line in re.findall(r'<div class="neuroio-change">(.*?)</div>', folded.group(2))]
    return lines, text(folded.group(1)), inside


def test_a_create_report_says_what_each_row_set_and_folds_the_defaults(sb: Sandbox, client: Client) -> None:
    report = client.sources.plan(SITE, key="name", create=True).apply(progress=False)
    assert report.counts() == {"created": 8}
    view = report._repr_html_()
    assert header_of(view) == ["", "id", "name", "status", "changes"]  # no error column: no row has one
    for cells in rows_of(view):
        row = SITE.set_index("name").loc[text(cells[2])]
        lines, summary, inside = listed(cells[4])
        said = {line.split(": ", 1)[0] for line in lines}
        assert said == {"identify_facesize_threshold", "auto_check_liveness", "store_images_for_results"}
        assert f"identify_facesize_threshold: {row['identify_facesize_threshold']}" in lines
        assert "store_images_for_results: new, det" in lines
        source = sb.source(int(text(cells[1])))
        defaults = {f for f in source if f not in said | {"id", "space_id", "name"} and source[f] is not None}
        assert summary == f"+ {len(defaults)} defaults" and {line.split(": ")[0] for line in inside} == defaults
    for changes, defaults in zip(report["changes"], report["defaults"], strict=True):  # it keeps every value
        assert {"name", "manual_identify_asm", "use_pps_time", "auto_check_liveness", *SERVER_ONLY} <= set(changes)
        assert set(defaults) == set(changes) - set(SITE.columns)  # what the server gave, the row did not set


def test_history_shows_a_run_as_its_live_report_did(sb: Sandbox, client: Client) -> None:
    plan = client.sources.plan(SITE, key="name", create=True)
    report = plan.apply(progress=False)
    again = client.sources.history(report.attrs["run_id"])
    assert again._repr_html_() == report._repr_html_()
    assert again["changes"].tolist() == report["changes"].tolist()


def test_changes_are_listed_one_field_a_line_never_split(sb: Sandbox, client: Client) -> None:
    frame = client.sources.to_frame(progress=False)
    edited = frame.copy()
    ten = edited.index[:10]
    edited.loc[ten, "identify_facesize_threshold"] += 1
    edited.loc[ten, "auto_check_liveness"] = ~edited.loc[ten, "auto_check_liveness"]
    report = client.sources.bulk_update(edited, base=frame, progress=False)
    for sid, cells in zip(ten, rows_of(report._repr_html_()), strict=True):
        lines, _, _ = listed(cells[3])
        assert lines == [
            f"identify_facesize_threshold: {frame.at[sid, 'identify_facesize_threshold']} → "
            f"{frame.at[sid, 'identify_facesize_threshold'] + 1}",
            f"auto_check_liveness: {frame.at[sid, 'auto_check_liveness']} → {not frame.at[sid, 'auto_check_liveness']}",
        ]
        # a field's name and each value are kept whole: only the spaces between them may break
        spans = re.findall(r'<span style="([^"]*)">([^<]*)</span>', cells[3])
        assert [s for s, _ in spans] == ["white-space:nowrap"] * 6 and "<wbr>" not in cells[3]


def test_a_restore_plan_shows_for_creates_what_the_backup_sets_differently_from_the_defaults(
    sb: Sandbox, client: Client, tmp_path: Path
) -> None:
    client.sources.export_csv(tmp_path / "backup.csv")
    backup = read_csv(tmp_path / "backup.csv")
    gone = backup.index[:3]
    for sid in gone:
        sb.remove_source(int(sid))
    restore = client.sources.plan(backup, key="name", create=True)
    view = restore._repr_html_()
    assert header_of(view) == ["", "name", "changes"]  # not a column for each of the 19 fields (nor empty ids)
    differ = non_defaults(backup.loc[gone])
    for sid, cells in zip(gone, rows_of(view), strict=True):
        assert text(cells[1]) == backup.at[sid, "name"]
        lines, summary, inside = listed(cells[2])
        said = {line.split(": ", 1)[0] for line in lines}
        no_default = {"license_id", "store_images_for_results", *SERVER_ONLY}  # said whenever the backup has one
        expected = set(differ.loc[[sid], "field"]) if sid in differ.index else set()
        expected |= {f for f in no_default if f in backup and not is_missing(backup.at[sid, f])}
        assert said == expected
        assert summary == f"+ {len(inside)} defaults" and len(said) + len(inside) == len(restore.creates.columns) - 1
    for line in repr(restore).splitlines()[1:]:
        assert line.startswith("  + ") and re.search(r"\(\+ \d+ defaults\)$", line)


def test_history_leads_with_what_each_run_did_and_leaves_out_empty_columns(sb: Sandbox, client: Client) -> None:
    report = client.sources.plan(SITE, key="name", create=True).apply(progress=False)
    client.sources.undo(report.attrs["run_id"], progress=False)
    history = client.sources.history()
    view = history._repr_html_()
    # what each run did and how it ended, then when; the run each undid or was followed by
    assert header_of(view) == ["run", "kind", "sources", "state", "started", "parent", "followed_by"]
    assert [[text(c) for c in cells[1:4]] for cells in rows_of(view)] == [
        ["undo", "8 deleted", "complete"],
        ["sync", "8 created", "complete"],
    ]
    assert f"against {sb.url} (times in UTC)" in text(view.split("<table>")[0])  # one URL: said once, on top
    client.sources.update(3, use_pps_time=True)
    alone = client.sources.history().iloc[:1]  # a run no other run follows: no parent, no followed_by
    assert header_of(alone._repr_html_()) == ["run", "kind", "sources", "state", "started"]
    assert list(alone.columns) == list(history.columns)  # the frame keeps every column


def test_a_sandboxs_runs_stay_in_the_sandbox(make_sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A client of a sandbox journals into the sandbox's own folder, gone when it stops."""
    real = tmp_path / "the users journal"
    monkeypatch.setenv("NEUROIO_NB_JOURNAL", str(real))
    sb = make_sandbox(sources=20)
    demo = Client(sb.token, sb.url)
    demo.sources.update(3, use_pps_time=True)
    report = demo.sources.plan(SITE, key="name", create=True).apply(progress=False)
    assert not real.exists() or not list(real.iterdir())
    assert len(demo.sources.history()) == 2
    assert len(Client(sb.token, sb.url.replace("127.0.0.1", "localhost")).sources.history()) == 2
    again = Client(sb.token, sb.url)  # another client of it finds them
    assert again.sources.undo(report.attrs["run_id"], progress=False).counts() == {"deleted": 8}
    folder = sb.journal_folder
    assert folder is not None and folder.is_dir()

    chosen = Client(sb.token, sb.url, journal=tmp_path / "chosen")  # a journal asked for by name is used
    chosen.sources.update(3, use_pps_time=False)
    assert len(chosen.sources.history()) == 1

    sb.stop()
    assert not folder.exists()
    other = make_sandbox(sources=5)
    assert len(Client(other.token, other.url).sources.history()) == 0
    assert not real.exists() or not list(real.iterdir())


def test_non_defaults_shows_switches_as_true_or_false(client: Client) -> None:
    changed = non_defaults(client.sources.to_frame(progress=False))
    switches = changed[changed["field"].isin(["use_pps_time", "auto_check_liveness", "manual_identify_asm"])]
    assert len(switches) and {type(v) for v in switches["value"]} == {bool} == {type(v) for v in switches["default"]}
    thresholds = changed[changed["field"] == "identify_facesize_threshold"]
    assert len(thresholds) and {type(v) for v in thresholds["value"]} == {int}
    assert "True" in changed.to_string() and "False" in changed._repr_html_()


def test_a_rows_error_comes_under_its_changes_in_one_column() -> None:
    from neuroio_nb import _views as views

    rows = [
        (4, "Roof", "failed", {"use_pps_time": (False, True)}, "400: Source is locked\n  settings: locked"),
        (1, "Lobby", "updated", {"use_pps_time": (False, True)}, None),
    ]
    view = views.report_html("1 updated, 1 failed", rows)
    assert header_of(view) == ["id", "name", "status", "changes / error"]
    failed, updated = rows_of(view)
    assert text(failed[3]) == "use_pps_time: False → True400: Source is locked" + "settings: locked"
    assert '<div class="neuroio-why"' in failed[3] and "neuroio-why" not in updated[3]
