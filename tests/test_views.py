"""Long outputs read like pandas: cut to display.max_rows, summary on top, one line per kind of problem."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pandas as pd
import pytest

from neuroio_nb import _views as views
from neuroio_nb._jobs.bulk import Job, deletes_frame
from neuroio_nb._jobs.parts import PlanParts
from neuroio_nb._jobs.plan import CHANGE_COLUMNS, Plan
from neuroio_nb.errors import Problem, ValidationError


def rows_of(html: str) -> list[str]:
    return re.findall(r"<tr>(.*?)</tr>", html.split("<tbody>", 1)[1])


# ---- truncation ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "total,max_rows,min_rows,head,tail",
    [
        (0, 60, 10, 0, 0),
        (5, 60, 10, 5, 0),
        (60, 60, 10, 60, 0),
        (61, 60, 10, 5, 5),
        (1000, 60, 10, 5, 5),
        (1000, 60, None, 30, 30),
        (1000, 20, 40, 10, 10),
        (1001, 10, 7, 4, 3),
        (1000, 0, 10, 1000, 0),
    ],
)
def test_window_is_what_pandas_shows(total, max_rows, min_rows, head, tail):
    win = views.window(total, max_rows, min_rows if min_rows is not None else 0)
    assert (len(win.head), len(win.tail)) == (head, tail)
    assert win.shown <= (max_rows or total)
    assert list(win.head) == list(range(head))
    assert list(win.tail) == list(range(total - tail, total))


def test_window_follows_the_pandas_options():
    with pd.option_context("display.max_rows", 8, "display.min_rows", 4):
        win = views.window(9)
    assert (list(win.head), list(win.tail)) == ([0, 1], [7, 8])
    assert views.showing(win, "plan.changes", "sources") == "showing 4 of 9 sources; all rows in `plan.changes`"


def test_a_frame_as_pandas_would_cut_it_agrees():
    """Same head and tail as pandas' own HTML view of a frame of that length."""
    frame = pd.DataFrame({"x": range(1234)})
    with pd.option_context("display.max_rows", 60, "display.min_rows", 10):
        shown_by_pandas = [int(v) for v in re.findall(r"<td>(\d+)</td>", frame._repr_html_())]
        win = views.window(len(frame))
    assert shown_by_pandas == win.positions()


# ---- grouping -----------------------------------------------------------------------
def bad_threshold_problems(n: int) -> list[Problem]:
    return [Problem(i, "identify_facesize_threshold", -1, "must be 0 or more") for i in range(1, n + 1)]


def test_one_bad_column_over_1000_sources_is_one_line():
    err = ValidationError(bad_threshold_problems(1000))
    lines = str(err).splitlines()
    assert lines == [
        "1,000 problems in the edited frame; nothing was sent:",
        "  identify_facesize_threshold = -1: must be 0 or more; 1,000 sources: ids 1, 2, 3 ... 1000",
    ]
    html = err._repr_html_()
    assert len(rows_of(html)) == 1
    assert "1,000 sources: ids 1, 2, 3 ... 1000" in html


def test_different_values_for_one_reason_are_one_line_naming_each_shown_value():
    problems = [Problem(i, "name", v, "must be text") for i, v in [(1, 5), (2, 7.5), (3, True)]]
    assert (
        str(ValidationError(problems)).splitlines()[1]
        == "  name: must be text; 3 sources: id 1 = 5, id 2 = 7.5, id 3 = True"
    )


def test_single_problems_keep_their_own_line():
    err = ValidationError(
        [
            Problem(3, "use_pps_time", "yes", "must be true or false"),
            Problem(None, "colour", None, "unknown column"),
            Problem(7, "id", 7, "duplicate id"),
        ]
    )
    assert str(err).splitlines()[1:] == [
        "  id 3, use_pps_time = 'yes': must be true or false",
        "  colour: unknown column",
        "  id 7: duplicate id",
    ]


def test_many_kinds_of_problem_are_cut_like_pandas_with_the_count_on_top():
    problems = [Problem(i, f"field_{i}", i, "is wrong") for i in range(200)]
    with pd.option_context("display.max_rows", 60, "display.min_rows", 10):
        text = str(ValidationError(problems))
        html = ValidationError(problems)._repr_html_()
    lines = text.splitlines()
    assert len(lines) == 1 + 10 + 1
    assert "... 190 more lines ..." in lines[6]
    assert lines[-1].startswith("  id 199, field_199")
    assert len(rows_of(html)) == 11  # 5 + the ellipsis row + 5
    top = html.split("<table>", 1)[0]
    assert "200 problems" in top and "showing 10 of 200 lines" in top


def test_words():
    assert views.plural(1, "source") == "1 source"
    assert views.plural(1000, "source") == "1,000 sources"
    assert views.plural(0, "value") == "0 values"
    assert views.ids_text([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]) == "ids 1, 2, 3 ... 11"
    assert views.ids_text([4]) == "id 4"
    assert views.shown(None) == "—" and views.shown(["new", "nm"]) == "new, nm"


# ---- plan and report views ------------------------------------------------------------
def test_report_puts_failed_and_conflict_first_with_names_and_left_aligned_text():
    rows = [
        (1, "Lobby", "updated", {"use_pps_time": (False, True)}, None),
        (2, "Gate", "conflict", {"use_pps_time": (False, True)}, "changed on the server"),
        (3, "Dock", "updated", {"use_pps_time": (False, True)}, None),
        (4, "Roof", "failed", {"use_pps_time": (False, True)}, "not found"),
    ]
    html = views.report_html("2 updated, 1 conflict, 1 failed", rows)
    order = [int(re.search(r">(\d+)</td>", r).group(1)) for r in rows_of(html)]
    assert order == [4, 2, 1, 3]
    assert "Roof" in rows_of(html)[0]
    assert 'style="text-align:left' in rows_of(html)[0].split("</td>")[1]


def test_coloured_cells_keep_the_theme_text_colour():
    """No fixed text colour anywhere, and no opaque background (the contrast is the theme's)."""
    html = (
        views.changes_html("Plan", "1 source", [(1, "Lobby", {"use_pps_time": (False, True)})], ["use_pps_time"])
        + views.report_html("1 failed", [(1, "x", "failed", {}, "boom")])
        + ValidationError(bad_threshold_problems(2))._repr_html_()
    )
    assert "color:" not in html.replace("background:", "")
    assert not re.search(r"background:\s*#", html)


def a_sync_plan(deletes: int, creates: int, updates: int) -> Plan:
    """A plan as ``plan(..., key="name", create=True, delete=True)`` makes it (no server needed to show it)."""
    changes = pd.DataFrame(
        [(1000 + i, f"cam {i}", "use_pps_time", False, True) for i in range(updates)], columns=CHANGE_COLUMNS
    )
    job = Job(
        changes=changes,
        names={1000 + i: f"cam {i}" for i in range(updates)},
        creates=pd.DataFrame({"name": [f"new {i}" for i in range(creates)], "use_pps_time": True}),
        deletes=deletes_frame(list(range(1, deletes + 1)), [1] * deletes, [f"old {i}" for i in range(deletes)]),
    )
    # Showing a plan never calls the server; it knows the token creates in space 1.
    return Plan(PlanParts(SimpleNamespace(landing_space=1), job))  # type: ignore[arg-type]


def test_a_long_plan_says_what_its_text_cuts_as_its_html_view_does():
    plan = a_sync_plan(deletes=300, creates=300, updates=400)
    with pd.option_context("display.max_rows", 60, "display.min_rows", 10):
        lines = repr(plan).splitlines()
        html = plan._repr_html_()
    assert lines[0] == (
        "<Plan: 300 sources to delete, 300 to create, 400 to update (400 values); "
        "showing 10 of 1,000 sources; all rows in `plan.deletes`, `plan.creates` and `plan.changes`>"
    )
    assert len(lines) == 1 + 5 + 1 + 5 and lines[6] == "  ... 990 more sources ..."
    assert lines[1] == "  - 1 old 0 (space 1)" and lines[2].startswith("  - 2 ")
    assert lines[-1] == "  ~ 1399 cam 399: use_pps_time: False -> True"
    rows = rows_of(html)
    assert len(rows) == 11 and "showing 10 of 1,000 sources" in html.split("<table>", 1)[0]
    marks = [re.search(r"<b>(.)</b>", r).group(1) if "<b>" in r else "…" for r in rows]
    assert marks == [line.split()[0] for line in lines[1:6]] + ["…"] + [line.split()[0] for line in lines[7:]]


def test_a_short_plan_shows_every_source_and_a_create_its_values():
    plan = a_sync_plan(deletes=1, creates=1, updates=1)
    created, updated = rows_of(plan._repr_html_())[1:]
    assert "<b>True</b>" in created and "&rarr;" not in created  # nothing to strike out: it is new
    assert "<s>False</s> &rarr; <b>True</b>" in updated
    lines = repr(plan).splitlines()
    assert lines == [
        "<Plan: 1 source to delete, 1 to create, 1 to update (1 value)>",
        "  - 1 old 0 (space 1)",
        "  + new 0: use_pps_time: True",
        "  ~ 1000 cam 0: use_pps_time: False -> True",
    ]


def test_the_report_has_the_plans_action_column_when_it_creates_or_deletes():
    rows = [
        (1, "old", "deleted", {}, None),
        (7, "new", "created", {"name": (None, "new"), "use_pps_time": (None, True)}, None),
        (3, "cam", "conflict", {"use_pps_time": (False, True)}, "changed on the server"),
    ]
    html = views.report_html("1 deleted, 1 created, 1 conflict", rows, actions=["delete", "create", "update"])
    cells = [re.findall(r"<td[^>]*>(.*?)</td>", r) for r in rows_of(html)]
    assert [c[0] for c in cells] == ["<b>~</b>", "<b>-</b>", "<b>+</b>"]  # conflict first, as before
    assert 'title="delete"' in rows_of(html)[1]
    # what it was created with; its name has a column
    assert re.sub(r"<[^>]+>", "", cells[2][4]) == "use_pps_time: True"
    updates_only = views.report_html("1 updated", rows[2:], actions=["update"])
    assert "<b>~</b>" not in updates_only  # as the plan: no column of marks when everything is an update


def test_a_reports_error_keeps_its_lines():
    """The server's field errors come on lines of their own under its message; HTML would run them together."""
    error = "400: Source is locked (PATCH v1/sources/1/)\n  settings: locked"
    html = views.report_html("1 failed", [(1, "x", "failed", {}, error)])
    assert "<br>settings: locked" in html
