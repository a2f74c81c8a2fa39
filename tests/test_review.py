"""Change review: policies every source must meet, plans for a ticket, saved plans.

Policies and plans are checked against the sandbox over loopback HTTP (its state and
request log are the ground truth); the rule semantics also by a hypothesis property on
frames alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from neuroio_nb import Policy
from neuroio_nb._jobs.frames import frame_from_records
from neuroio_nb.errors import PolicyViolationError, ValidationError

if TYPE_CHECKING:
    from conftest import CommandLine

    from neuroio_nb import Client, Plan
    from neuroio_nb.sandbox import Sandbox

pytestmark = pytest.mark.sandbox(sources=60)

THRESHOLD = "identify_facesize_threshold"
WRITES = ("POST", "PATCH", "DELETE")
LIVENESS_IN_SPACE_2 = {
    "name": "liveness in space 2",
    "where": "space_id == 2",
    "require": "auto_check_liveness == True",
}
#: Every source of the sandbox meets it (its thresholds start at 3,000).
BIG_FACES = {"name": "big faces", "require": f"{THRESHOLD} >= 3000"}
RULES_TOML = """
[[rule]]
name = "liveness in space 2"
where = "space_id == 2"
require = "auto_check_liveness == True"

[[rule]]
name = "big faces"
require = "identify_facesize_threshold >= 3000"
"""


def server_frame(sb: Sandbox) -> pd.DataFrame:
    return frame_from_records(list(sb.sources.values()))


def writes(sb: Sandbox) -> list[object]:
    return [r for r in sb.log if r.method in WRITES]


def expected_violations(frame: pd.DataFrame) -> set[tuple[int, str]]:
    """The two rules, worked out by hand over a frame of the sandbox's sources."""
    space2 = frame["space_id"] == 2
    live = frame["auto_check_liveness"].fillna(False).astype(bool)
    small = ~(frame[THRESHOLD] >= 3000).fillna(False).astype(bool)
    return {(i, "liveness in space 2") for i in frame.index[space2 & ~live]} | {
        (i, "big faces") for i in frame.index[small]
    }


def by_source(plan: Plan) -> dict[int, dict[str, tuple[object, object]]]:
    """id -> {field: (old, new)}, from ``plan.changes``."""
    out: dict[int, dict[str, tuple[object, object]]] = {}
    for sid, field, old, new in plan.changes[["id", "field", "old", "new"]].itertuples(index=False, name=None):
        out.setdefault(int(sid), {})[field] = (old, new)
    return out


def found(violations: pd.DataFrame) -> set[tuple[int, str]]:
    return set(zip(violations["id"].tolist(), violations["rule"].tolist(), strict=True))


# -- policies ------------------------------------------------------------------------


def test_check_lists_every_source_that_breaks_a_rule_with_the_fields_involved(
    sb: Sandbox, client: Client, tmp_path: Path
) -> None:
    some = list(sb.sources)[:3]
    sb.external_edit(some[0], **{THRESHOLD: 100})
    sb.external_edit(some[1], **{THRESHOLD: 2999})
    rules_file = tmp_path / "rules.toml"
    rules_file.write_text(RULES_TOML, encoding="utf-8")
    violations = client.sources.check(Policy.from_toml(rules_file))
    assert found(violations) == expected_violations(server_frame(sb))
    assert {(some[0], "big faces"), (some[1], "big faces")} <= found(violations)
    assert any(r == "liveness in space 2" for r in violations["rule"])
    assert writes(sb) == []
    row = violations[(violations["id"] == some[0]) & (violations["rule"] == "big faces")].iloc[0]
    assert row["name"] == sb.source(some[0])["name"]
    assert row["fields"] == (THRESHOLD,)
    assert row["values"] == {THRESHOLD: 100}
    assert row["require"] == BIG_FACES["require"]
    live = violations[violations["rule"] == "liveness in space 2"].iloc[0]
    assert live["fields"] == ("space_id", "auto_check_liveness")
    assert live["values"] == {"space_id": 2, "auto_check_liveness": False}
    # the same rules as a list, a path, or a Policy: one and the same answer
    assert found(client.sources.check([LIVENESS_IN_SPACE_2, BIG_FACES])) == found(violations)
    assert found(client.sources.check(str(rules_file))) == found(violations)


def test_every_source_meeting_every_rule_is_an_empty_frame_with_the_columns(client: Client) -> None:
    violations = client.sources.check([{"name": "anything", "require": "name == name"}])
    assert len(violations) == 0
    assert list(violations.columns) == ["id", "name", "rule", "require", "fields", "values"]


def test_a_plan_with_a_policy_sees_the_edit_and_apply_refuses_until_allowed(sb: Sandbox, client: Client) -> None:
    frame = client.sources.to_frame()
    fixed = frame.copy()
    fixed.loc[fixed["space_id"] == 2, "auto_check_liveness"] = True
    clean = client.sources.plan(fixed, policy=[LIVENESS_IN_SPACE_2, BIG_FACES])
    assert len(clean.violations) == 0  # the edit fixes what the server breaks: the rules see the edit

    broken = fixed.copy()
    victim = int(broken.index[0])
    broken.loc[victim, THRESHOLD] = 10
    plan = client.sources.plan(broken, policy=[LIVENESS_IN_SPACE_2, BIG_FACES])
    assert found(plan.violations) == {(victim, "big faces")}
    assert "1 policy violation" in plan.summary()
    assert plan  # something needs the reader's attention
    sb.clear_log()
    with pytest.raises(PolicyViolationError) as refused:
        plan.apply()
    assert writes(sb) == []
    message = str(refused.value)
    assert "nothing was sent" in message and "allow_violations=True" in message
    assert f"rule 'big faces': {victim} " in message and f"{THRESHOLD} = 10" in message
    assert found(refused.value.violations) == {(victim, "big faces")}
    assert plan.apply(dry_run=True)["status"].eq("planned").all()  # a dry run sends nothing anyway

    report = plan.apply(allow_violations=True)
    assert set(report["status"]) == {"updated"}
    assert sb.source(victim)[THRESHOLD] == 10


def test_only_the_sources_the_frame_describes_are_checked_and_only_its_columns_are_its_edit(
    sb: Sandbox, client: Client
) -> None:
    """The rules see each source of the frame as the plan would leave it: a frame of two
    columns is those two edited over the server's other settings; sources outside it are
    not the plan's business."""
    frame = client.sources.to_frame()
    in_space_2 = frame.index[frame["space_id"] == 2]
    assert len(in_space_2) >= 2
    edited = frame.loc[in_space_2[:1], ["auto_check_liveness"]].copy()
    edited["auto_check_liveness"] = True
    plan = client.sources.plan(edited, policy=[LIVENESS_IN_SPACE_2])
    assert len(plan.violations) == 0
    edited["auto_check_liveness"] = False
    plan = client.sources.plan(edited, policy=[LIVENESS_IN_SPACE_2])
    assert found(plan.violations) == {(int(in_space_2[0]), "liveness in space 2")}
    assert plan.violations.iloc[0]["values"] == {"space_id": 2, "auto_check_liveness": False}


def test_a_source_to_create_is_checked_with_the_servers_defaults_and_one_to_delete_is_not(
    sb: Sandbox, client: Client
) -> None:
    frame = client.sources.to_frame()
    site = pd.DataFrame({"name": ["Dock cam 1", "Dock cam 2"], THRESHOLD: [100, pd.NA]})
    site[THRESHOLD] = site[THRESHOLD].astype("Int64")
    by_id = {"name": "old ids", "where": "id < 5", "require": "use_pps_time == True"}  # a new source has no id
    plan = client.sources.plan(site, key="name", create=True, policy=[BIG_FACES, by_id])
    assert len(plan.violations) == 1  # the second one gets the server's default, 7000
    row = plan.violations.iloc[0]
    assert pd.isna(row["id"]) and row["name"] == "Dock cam 1" and row["values"] == {THRESHOLD: 100}
    assert "new 'Dock cam 1'" in repr(plan)

    small = int(frame.index[0])
    sb.external_edit(small, **{THRESHOLD: 1})
    keep = client.sources.to_frame().drop(index=small)
    plan = client.sources.plan(keep, key="id", delete=True, policy=[BIG_FACES])
    assert small in plan.deletes["id"].tolist()
    assert len(plan.violations) == 0  # it would not exist


def test_a_rule_that_does_not_parse_is_refused_naming_it_before_any_request(sb: Sandbox, client: Client) -> None:
    bad = [
        {"name": "half", "require": "auto_check_liveness =="},
        {"name": "sum", "require": f"{THRESHOLD} + 1"},
        {"name": "variable", "require": f"{THRESHOLD} > @floor"},
        {"require": "use_pps_time == True", "severity": "high"},
        {"name": "half", "where": "", "require": "use_pps_time"},
    ]
    sb.clear_log()
    with pytest.raises(ValidationError) as refused:
        client.sources.plan(client_frame := pd.DataFrame({THRESHOLD: [1]}, index=pd.Index([1], name="id")), policy=bad)
    assert sb.log == []  # nothing read, nothing sent
    text = str(refused.value)
    assert "nothing was sent" in text
    for said in (
        "rule 'half', require",
        "does not parse",
        "rule 'sum', require",
        "is not a condition",
        "rule 'variable'",
        "Python variable",
        "rule 4",  # no name: named by its place
        "needs a name",
        "unknown key 'severity'",
        "is named twice",
        "needs a pandas query",
    ):
        assert said in text, said
    with pytest.raises(ValidationError):
        client.sources.check(bad)
    assert sb.log == []
    assert len(client_frame) == 1


@pytest.mark.parametrize(
    ("toml", "said"),
    [
        ("[[rule]\nname = 'x'", "is not TOML"),
        ("[[rules]]\nname = 'x'\nrequire = 'use_pps_time'", "unknown table or key 'rules'"),
        ("rule = 'x'", "[[rule]]"),
        ("[[rule]]\nname = 'x'\nrequire = 3", "rule 'x', require"),
    ],
)
def test_a_bad_policy_file_is_a_clear_error_naming_the_file(tmp_path: Path, toml: str, said: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(toml, encoding="utf-8")
    with pytest.raises(ValidationError) as refused:
        Policy.from_toml(path)
    assert said in str(refused.value)
    assert str(path) in str(refused.value)


def test_a_name_that_is_no_field_is_refused_with_the_closest_one_and_nothing_is_sent(
    sb: Sandbox, client: Client
) -> None:
    frame = client.sources.to_frame()
    edited = frame.copy()
    edited[THRESHOLD] = 9000
    sb.clear_log()
    with pytest.raises(ValidationError) as refused:
        client.sources.plan(edited, policy=[{"name": "typo", "require": "identify_facesize_treshold > 1"}])
    assert "rule 'typo'" in str(refused.value) and f"did you mean {THRESHOLD}" in str(refused.value)
    assert writes(sb) == []
    # a field the server sends that the schema does not know is a field like any other
    sb.external_edit(int(frame.index[0]), auto_check_angle_threshold=89)
    violations = client.sources.check([{"name": "angle", "require": "auto_check_angle_threshold < 89"}])
    angles = server_frame(sb)["auto_check_angle_threshold"]
    assert found(violations) == {(i, "angle") for i in angles.index[angles >= 89]}
    assert (int(frame.index[0]), "angle") in found(violations)


def test_the_plan_shows_its_violations_in_text_and_html(client: Client) -> None:
    frame = client.sources.to_frame()
    edited = frame.copy()
    edited[THRESHOLD] = 10
    plan = client.sources.plan(edited, policy=[BIG_FACES])
    text, html = repr(plan), plan._repr_html_()
    assert f"{len(frame)} policy violations" in text and "apply() refuses" in text
    assert "rule 'big faces'" in text
    assert f"{len(frame)} policy violations" in html and "plan.violations" in html
    assert "allow_violations=True" in html
    with pd.option_context("display.max_rows", 10, "display.min_rows", 4):
        assert "more violations" in repr(plan)  # cut as pandas cuts rows


# -- the rules' meaning, on frames alone -------------------------------------------------

thresholds = st.one_of(st.none(), st.integers(0, 20_000))
switches = st.one_of(st.none(), st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 3), switches, thresholds), min_size=0, max_size=30))
def test_a_rule_breaks_exactly_the_chosen_sources_that_do_not_surely_meet_it(rows: list[tuple]) -> None:
    """``where`` missing: not chosen; ``require`` missing: not met. Nothing else decides."""
    frame = frame_from_records(
        [
            {"id": n + 1, "space_id": space, "name": f"s{n}", "auto_check_liveness": live, THRESHOLD: size}
            for n, (space, live, size) in enumerate(rows)
        ]
    )
    rule = {"name": "r", "where": "auto_check_liveness == True", "require": f"{THRESHOLD} >= 5000 and space_id != 3"}
    got = found(Policy([rule]).check(frame))
    expected = {
        (n + 1, "r")
        for n, (space, live, size) in enumerate(rows)
        if live is True and not (size is not None and size >= 5000 and space != 3)
    }
    assert got == expected


# -- the command line ----------------------------------------------------------------------


def rules_file(tmp_path: Path, text: str = RULES_TOML) -> Path:
    path = tmp_path / "rules.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_cli_check_exits_0_when_every_source_meets_the_rules_and_2_listing_each_violation(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    ok = rules_file(tmp_path, "[[rule]]\nname = 'named'\nrequire = 'name == name'\n")
    proc = cli_main.run(sb, "check", "--policy", str(ok))
    assert proc.returncode == 0, proc.stderr
    assert "Every source meets the 1 rule" in proc.stdout

    victim = next(iter(sb.sources))
    sb.external_edit(victim, **{THRESHOLD: 10})
    proc = cli_main.run(sb, "check", "--policy", str(rules_file(tmp_path)))
    assert proc.returncode == 2, proc.stderr
    expected = expected_violations(server_frame(sb))
    assert f"{len(expected)} policy violations" in proc.stdout
    assert f"rule 'big faces': {victim} {sb.source(victim)['name']} ({THRESHOLD} = 10)" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("  rule ")]
    assert len(lines) == len(expected)  # every one, never cut in a log
    assert writes(sb) == []


def test_cli_a_bad_rule_exits_3_naming_it_before_any_request(
    cli_main: CommandLine, sb: Sandbox, tmp_path: Path
) -> None:
    bad = rules_file(tmp_path, "[[rule]]\nname = 'half'\nrequire = 'use_pps_time =='\n")
    sb.clear_log()
    for args in (["check", "--policy", str(bad)], ["plan", str(tmp_path / "none.csv"), "--policy", str(bad)]):
        proc = cli_main.run(sb, *args)
        assert proc.returncode == 3, proc.stderr
        assert "rule 'half'" in proc.stderr and "does not parse" in proc.stderr
    assert sb.log == []


def test_cli_plan_and_apply_with_a_policy(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    export = tmp_path / "sources.csv"
    assert cli_main.run(sb, "export", str(export)).returncode == 0
    victim = next(iter(sb.sources))
    edited = pd.read_csv(export, dtype=str, keep_default_na=False)
    edited.loc[edited["id"] == str(victim), THRESHOLD] = "10"
    edited.to_csv(tmp_path / "edited.csv", index=False)
    rules = rules_file(tmp_path, "[[rule]]\nname = 'big faces'\nrequire = 'identify_facesize_threshold >= 3000'\n")

    proc = cli_main.run(sb, "plan", str(tmp_path / "edited.csv"), "--policy", str(rules))
    assert proc.returncode == 2
    assert "1 policy violation" in proc.stdout and f"rule 'big faces': {victim} " in proc.stdout

    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(tmp_path / "edited.csv"), "--policy", str(rules), "--yes")
    assert proc.returncode == 2
    assert "--allow-violations" in proc.stderr
    assert writes(sb) == []
    proc = cli_main.run(
        sb, "apply", str(tmp_path / "edited.csv"), "--policy", str(rules), "--yes", "--allow-violations"
    )
    assert proc.returncode == 0, proc.stderr
    assert sb.source(victim)[THRESHOLD] == 10


# -- plans for a ticket: Markdown and JSON -------------------------------------------------


def markdown_rows(text: str) -> list[list[str]]:
    """The table rows of a Markdown plan (header and rule excluded), split on unescaped pipes."""
    rows = [line for line in text.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def a_sync_plan(sb: Sandbox, client: Client) -> tuple[pd.DataFrame, object]:
    """A plan that deletes one source, creates one (its name full of Markdown) and updates two."""
    frame = client.sources.to_frame()
    desired = frame.reset_index(drop=True)
    gone = desired.index[-1]
    desired = desired.drop(index=gone)
    desired.loc[0, THRESHOLD] = 10
    desired.at[1, "store_images_for_results"] = ["new", "ha"]
    new = desired.iloc[[2]].copy()
    new["name"] = "Gate | *7* `x`"
    new.index = [1000]
    desired = pd.concat([desired, new.drop(columns=["space_id"])])
    return frame, client.sources.plan(desired, key="name", create=True, delete=True, policy=[BIG_FACES])


def test_markdown_puts_the_summary_first_then_deletes_creates_and_updates_with_old_and_new(
    sb: Sandbox, client: Client
) -> None:
    frame, plan = a_sync_plan(sb, client)
    text = plan.to_markdown()
    assert text.splitlines()[0].startswith("**Plan**: 1 source to delete, 1 to create, 2 to update")
    assert "1 policy violation" in text.splitlines()[0]
    assert f"> - rule 'big faces': {frame.index[0]} {frame.iloc[0]['name']}" in text  # the violation
    rows = markdown_rows(text)
    assert all(len(row) == 6 for row in rows), rows  # a | in a name does not add a cell
    assert [row[0] for row in rows] == ["`-`", "`+`", "`~`", "`~`"]
    deleted = frame.iloc[-1]
    assert rows[0][1:3] == [str(frame.index[-1]), deleted["name"]]
    assert f"space {deleted['space_id']}" in rows[0][4]
    undo = plan.deletes["undo"].iloc[0]
    assert rows[0][5] == (
        "deleted" if undo == "can restore" else f"deleted (undo {undo}: apply(irreversible=True) deletes anyway)"
    )
    assert rows[1][2] == "Gate \\| \\*7\\* \\`x\\`" and f"`{THRESHOLD}`" in rows[1][5]
    first, second = frame.index[0], frame.index[1]
    assert rows[2] == [
        "`~`",
        str(first),
        frame.loc[first, "name"],
        f"`{THRESHOLD}`",
        f"`{frame.loc[first, THRESHOLD]}`",
        "`10`",
    ]
    assert rows[3][3:] == [
        "`store_images_for_results`",
        f"`{json.dumps(list(frame.loc[second, 'store_images_for_results']))}`",
        '`["new", "ha"]`',
    ]


def test_a_long_markdown_plan_is_cut_like_pandas_and_its_json_holds_every_change(client: Client) -> None:
    frame = client.sources.to_frame()
    edited = frame.copy()
    edited[THRESHOLD] = 4242
    plan = client.sources.plan(edited, base=frame)
    with pd.option_context("display.max_rows", 10, "display.min_rows", 4):
        text = plan.to_markdown()
    assert f"showing 4 of {len(frame)} rows" in text and "plan.to_json()" in text
    rows = markdown_rows(text)
    assert len(rows) == 5 and f"{len(frame) - 4} more rows" in rows[2][2]
    assert [r[1] for r in rows[:2] + rows[3:]] == [str(i) for i in [*frame.index[:2], *frame.index[-2:]]]
    with pd.option_context("display.max_rows", 10, "display.min_rows", 4):
        document = json.loads(plan.to_json())
    assert len(document["updates"]) == len(frame)
    assert document["counts"]["values"] == len(frame)


def test_the_json_holds_every_change_deletes_settings_and_violations(sb: Sandbox, client: Client) -> None:
    frame, plan = a_sync_plan(sb, client)
    document = json.loads(plan.to_json())
    assert document["schema"] == "neuroio-nb plan" and document["version"] == 1
    assert document["base_url"] == sb.url and sb.token not in plan.to_json()
    assert document["summary"] == plan.summary()
    gone = int(frame.index[-1])
    assert document["deletes"] == [
        {
            "id": gone,
            "space_id": int(frame.loc[gone, "space_id"]),
            "name": frame.loc[gone, "name"],
            "undo": plan.deletes["undo"].iloc[0],  # whether undo could make it again
            "settings": document["deletes"][0]["settings"],
        }
    ]
    settings_ = document["deletes"][0]["settings"]
    server = sb.source(gone)
    assert {k: v for k, v in server.items() if k in settings_} == settings_
    assert THRESHOLD in settings_ and "name" in settings_
    assert [c["row"] for c in document["creates"]] == [1000]
    assert document["creates"][0]["settings"]["name"] == "Gate | *7* `x`"
    first = int(frame.index[0])
    assert document["updates"][0] == {
        "id": first,
        "name": frame.loc[first, "name"],
        "changes": {THRESHOLD: {"old": int(frame.loc[first, THRESHOLD]), "new": 10}},
    }
    assert document["counts"] == {
        "delete": 1,
        "create": 1,
        "update": 2,
        "values": 2,
        "not_found": 0,
        "unmatched": 0,
        "violations": 1,
    }
    assert document["violations"] == [
        {
            "id": first,
            "name": frame.loc[first, "name"],
            "rule": "big faces",
            "require": BIG_FACES["require"],
            "values": {THRESHOLD: 10},
        }
    ]


edits = st.dictionaries(
    st.integers(0, 39),
    st.fixed_dictionaries(
        {},
        optional={
            THRESHOLD: st.integers(0, 100_000),
            "use_pps_time": st.booleans(),
            "name": st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12),
        },
    ),
    max_size=12,
)


def with_edits(frame: pd.DataFrame, cells: dict[int, dict[str, object]]) -> pd.DataFrame:
    """A copy of ``frame`` with ``cells`` (row position -> column -> value) set, as a user edits."""
    edited = frame.copy()
    for position, values in cells.items():
        for column, value in values.items():
            edited.loc[frame.index[position], column] = value
    return edited


#: Hypothesis for a test that drives one sandbox: few examples, the same ones every run, no deadline.
ON_A_SANDBOX = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    phases=(Phase.explicit, Phase.generate),
    suppress_health_check=[HealthCheck.too_slow],
)


def test_markdown_and_json_say_exactly_the_edits(
    make_sandbox: Callable[..., Sandbox], client_for: Callable[..., Client]
) -> None:
    """Whatever is edited (names full of Markdown and JSON specials included): one Markdown row
    per changed value, ids in order, and the JSON's updates are the plan's changes."""
    client = client_for(make_sandbox(sources=40))
    frame = client.sources.to_frame()

    @ON_A_SANDBOX
    @given(edits)
    def check(cells: dict[int, dict[str, object]]) -> None:
        plan = client.sources.plan(with_edits(frame, cells), base=frame)
        with pd.option_context("display.max_rows", None):
            rows = markdown_rows(plan.to_markdown())
        assert len(rows) == len(plan.changes)
        assert [int(r[1]) for r in rows] == plan.changes["id"].tolist()
        document = json.loads(plan.to_json())
        said = {u["id"]: {f: (c["old"], c["new"]) for f, c in u["changes"].items()} for u in document["updates"]}
        assert said == by_source(plan)

    check()


def test_cli_plan_as_markdown_or_json(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    export = tmp_path / "sources.csv"
    assert cli_main.run(sb, "export", str(export)).returncode == 0
    victim = next(iter(sb.sources))
    edited = pd.read_csv(export, dtype=str, keep_default_na=False)
    edited.loc[edited["id"] == str(victim), THRESHOLD] = "10"
    edited.to_csv(tmp_path / "edited.csv", index=False)
    proc = cli_main.run(sb, "plan", str(tmp_path / "edited.csv"), "--format", "markdown")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith("**Plan**: 1 source to update (1 value)")
    assert markdown_rows(proc.stdout)[0][1] == str(victim)
    proc = cli_main.run(sb, "plan", str(tmp_path / "edited.csv"), "--format", "json")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["updates"][0]["changes"][THRESHOLD]["new"] == 10


# -- saved plans -----------------------------------------------------------------------------


def unique_in_landing_space(frame: pd.DataFrame) -> list[int]:
    """Ids of the token's own space (where creates land: the sandbox's first) whose names no
    other source has: deleting and re-creating them is exact."""
    counts = frame["name"].value_counts()
    landing = int(frame["space_id"].min())
    return [int(i) for i in frame.index[(frame["space_id"] == landing) & frame["name"].map(counts).eq(1)]]


def a_saved_sync(client: Client, path: Path) -> tuple[pd.DataFrame, object, dict[str, int]]:
    """Plan (by name) to delete one source, create one and update three; save it to ``path``."""
    frame = client.sources.to_frame()
    gone, first, second, third = unique_in_landing_space(frame)[:4]
    desired = frame.drop(index=gone).reset_index(drop=True)
    named = {n: k for k, n in enumerate(desired["name"])}
    for sid, value in ((first, 10_001), (second, 10_002), (third, 10_003)):
        desired.loc[named[frame.loc[sid, "name"]], THRESHOLD] = value
    new = desired.iloc[[0]].copy()
    new["name"], new.index = "Saved plan camera", [9000]
    desired = pd.concat([desired, new.drop(columns=["space_id"])])
    plan = client.sources.plan(desired, key="name", create=True, delete=True)
    plan.save(path)
    return frame, plan, {"gone": gone, "first": first, "second": second, "third": third}


def test_a_saved_plan_applies_exactly_its_writes_and_a_source_changed_since_is_a_conflict(
    sb: Sandbox, client: Client, client_for: Callable[..., Client], tmp_path: Path
) -> None:
    frame, plan, ids = a_saved_sync(client, tmp_path / "change.plan")
    # meanwhile: a colleague changes a value the plan changes, another value of a source it
    # changes, and adds a source a new plan with delete=True would delete
    sb.external_edit(ids["second"], **{THRESHOLD: 4444})
    sb.external_edit(ids["third"], use_pps_time=not sb.source(ids["third"])["use_pps_time"])
    stranger = sb.add_source(name="Added after the plan was saved")["id"]
    sb.clear_log()

    loaded = client_for(sb).sources.load_plan(tmp_path / "change.plan")  # another client, as a later process
    assert loaded.summary() == plan.summary()
    report = loaded.apply(irreversible=True)  # its delete: undo cannot tell yet where it would land
    assert report.loc[ids["second"], "status"] == "conflict"
    assert report.loc[ids["gone"], "status"] == "deleted"
    assert report.loc[ids["first"], "status"] == "updated" and report.loc[ids["third"], "status"] == "updated"
    created = report[report["action"] == "create"]
    assert created["status"].tolist() == ["created"] and created["row"].tolist() == [9000]

    assert sb.source(ids["first"])[THRESHOLD] == 10_001 and sb.source(ids["third"])[THRESHOLD] == 10_003
    assert sb.source(ids["second"])[THRESHOLD] == 4444  # the colleague's value stays
    assert sb.source(ids["third"])["use_pps_time"] != frame.loc[ids["third"], "use_pps_time"]  # and theirs too
    assert stranger in sb.sources  # no re-planning: nothing the saved plan did not hold
    assert ids["gone"] not in sb.sources
    sent = [(r.method, r.source_id, r.body) for r in writes(sb)]
    assert sorted((m, i) for m, i, _ in sent if m != "POST") == sorted(
        [("DELETE", ids["gone"]), ("PATCH", ids["first"]), ("PATCH", ids["third"])]
    )
    assert {i: b for m, i, b in sent if m == "PATCH"} == {
        ids["first"]: {THRESHOLD: 10_001},
        ids["third"]: {THRESHOLD: 10_003},
    }
    assert [b["name"] for m, _, b in sent if m == "POST"] == ["Saved plan camera"]


def test_undo_of_a_saved_plans_report_brings_back_what_it_deleted(sb: Sandbox, client: Client, tmp_path: Path) -> None:
    frame, _, ids = a_saved_sync(client, tmp_path / "change.plan")
    report = client.sources.load_plan(tmp_path / "change.plan").apply(irreversible=True)
    assert set(report["status"]) == {"deleted", "created", "updated"}
    undone = client.sources.undo(report)
    assert set(undone["status"]) <= {"created", "deleted", "updated"}, undone[["status", "error"]]
    after = client.sources.to_frame()
    back = after[after["name"] == frame.loc[ids["gone"], "name"]]
    assert len(back) == 1  # made again, with every setting it had
    expected = frame.loc[ids["gone"]].drop(labels=["license"], errors="ignore")
    got = back.iloc[0].drop(labels=["license"], errors="ignore")
    assert got.to_dict() == expected.to_dict()
    assert "Saved plan camera" not in set(after["name"])
    assert after.loc[ids["first"], THRESHOLD] == frame.loc[ids["first"], THRESHOLD]


def test_the_file_is_versioned_json_with_a_checksum_and_the_url_and_no_token(
    sb: Sandbox, client: Client, tmp_path: Path
) -> None:
    frame, plan, ids = a_saved_sync(client, tmp_path / "change.plan")
    raw = (tmp_path / "change.plan").read_text(encoding="utf-8")
    assert sb.token not in raw and sb.token[:8] not in raw
    document = json.loads(raw)
    assert document["format"] == "neuroio-nb saved plan" and document["version"] == 1
    assert document["base_url"] == sb.url
    assert list(document)[-1] == "checksum"  # of every byte before it
    body = raw.encode("utf-8")[: raw.encode("utf-8").rindex(b',\n"checksum": ')]
    assert document["checksum"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert document["made_with"] == {
        "key": "name",
        "create": True,
        "delete": True,
        "q": None,
        "spaces_ids": None,
        "base": False,
    }
    writes_ = document["writes"]
    first = next(u for u in writes_["updates"] if u["id"] == ids["first"])
    assert first["changes"] == {THRESHOLD: {"expected": int(frame.loc[ids["first"], THRESHOLD]), "new": 10_001}}
    deleted = writes_["deletes"][0]
    assert deleted["id"] == ids["gone"] and deleted["expected"]["name"] == frame.loc[ids["gone"], "name"]
    assert THRESHOLD in deleted["expected"]  # every setting, so that undo can make it again
    assert writes_["creates"][0]["row"] == 9000 and writes_["creates"][0]["body"]["name"] == "Saved plan camera"
    assert client.sources.load_plan(tmp_path / "change.plan").to_json() == plan.to_json()


def edited_file(path: Path, change: Callable[[dict], None], *, reseal: bool) -> Path:
    """A copy of a saved plan with ``change`` made to its content; ``reseal``: its checksum
    made again (the SHA-256 of every byte before the checksum), as a newer toolkit would."""
    document = json.loads(path.read_text(encoding="utf-8"))
    checksum = document.pop("checksum")
    change(document)
    body = "{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in document.items())
    if reseal:
        checksum = "sha256:" + hashlib.sha256(body.encode("utf-8")).hexdigest()
    out = path.with_name(f"edited-{path.name}")
    out.write_text(f'{body},\n"checksum": "{checksum}"\n}}\n', encoding="utf-8")
    return out


def test_a_damaged_file_another_url_and_a_newer_version_are_refused_and_nothing_is_sent(
    sb: Sandbox, client: Client, make_sandbox: Callable[..., Sandbox], client_for: Callable[..., Client], tmp_path: Path
) -> None:
    path = tmp_path / "change.plan"
    a_saved_sync(client, path)
    cut = tmp_path / "cut.plan"
    cut.write_bytes(path.read_bytes()[:-200])

    def bump(document: dict) -> None:
        document["writes"]["updates"][0]["changes"][THRESHOLD]["new"] = 1

    def newer(document: dict) -> None:
        document["version"] = 2

    not_a_plan = tmp_path / "sources.csv"
    client.sources.export_csv(not_a_plan)
    cases = {
        cut: "is damaged: it is not JSON",
        edited_file(path, bump, reseal=False): "checksum does not match",
        edited_file(path, newer, reseal=True): "newer neuroio-nb (format version 2",
        not_a_plan: "not a saved plan",
    }
    sb.clear_log()
    for bad, said in cases.items():
        with pytest.raises(ValidationError) as refused:
            client.sources.load_plan(bad)
        assert said in str(refused.value) and str(bad) in str(refused.value), str(refused.value)
    elsewhere = client_for(make_sandbox(sources=5))
    with pytest.raises(ValidationError) as refused:
        elsewhere.sources.load_plan(path)
    assert f"was made for {sb.url}" in str(refused.value) and "nothing was sent" in str(refused.value)
    assert sb.log == []  # not a request, let alone a write


def test_a_saved_plan_keeps_its_policy_violations(sb: Sandbox, client: Client, tmp_path: Path) -> None:
    frame = client.sources.to_frame()
    edited = frame.copy()
    victim = int(frame.index[0])
    edited.loc[victim, THRESHOLD] = 10
    client.sources.plan(edited, policy=[BIG_FACES]).save(tmp_path / "change.plan")
    loaded = client.sources.load_plan(tmp_path / "change.plan")
    assert found(loaded.violations) == {(victim, "big faces")}
    loaded.save(tmp_path / "again.plan")  # saved again, it keeps its rules and how it was asked for
    first, again = (json.loads((tmp_path / name).read_text(encoding="utf-8")) for name in ("change.plan", "again.plan"))
    assert Policy(again["policy"]) == Policy([BIG_FACES]) and again["made_with"] == first["made_with"]
    sb.clear_log()
    with pytest.raises(PolicyViolationError):
        loaded.apply()
    assert writes(sb) == []
    assert loaded.apply(allow_violations=True)["status"].tolist() == ["updated"]


def test_save_and_load_keep_every_write(
    make_sandbox: Callable[..., Sandbox], client_for: Callable[..., Client], tmp_path: Path
) -> None:
    """Whatever is edited (text, numbers, switches; names of any characters), the loaded plan
    holds exactly the saved one's writes and says so in the same words."""
    client = client_for(make_sandbox(sources=40))
    frame = client.sources.to_frame()

    @ON_A_SANDBOX
    @given(edits)
    def check(cells: dict[int, dict[str, object]]) -> None:
        plan = client.sources.plan(with_edits(frame, cells), base=frame)
        plan.save(tmp_path / "p.plan")
        loaded = client.sources.load_plan(tmp_path / "p.plan")
        assert by_source(loaded) == by_source(plan)
        assert loaded.to_markdown() == plan.to_markdown() and loaded.to_json() == plan.to_json()

    check()


def test_cli_plan_out_show_and_apply_a_saved_plan(cli_main: CommandLine, sb: Sandbox, tmp_path: Path) -> None:
    export = tmp_path / "sources.csv"
    assert cli_main.run(sb, "export", str(export)).returncode == 0
    first, second = list(sb.sources)[:2]
    edited = pd.read_csv(export, dtype=str, keep_default_na=False)
    edited.loc[edited["id"] == str(first), THRESHOLD] = "10001"
    edited.loc[edited["id"] == str(second), THRESHOLD] = "10002"
    edited.to_csv(tmp_path / "edited.csv", index=False)
    saved = tmp_path / "change.plan"

    proc = cli_main.run(sb, "plan", str(tmp_path / "edited.csv"), "--out", str(saved), "--format", "json")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["counts"]["update"] == 2  # stdout stays JSON: the note is on stderr
    assert f"neuroio-nb apply {saved}" in proc.stderr and saved.exists()

    no_token = cli_main.env(None)  # a reviewer with no token reads it
    proc = cli_main.run(None, "show", str(saved), "--format", "markdown", env=no_token)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("**Plan**: 2 sources to update (2 values)")
    proc = cli_main.run(None, "show", str(saved), env=no_token)
    assert proc.returncode == 0 and f"Saved plan for {sb.url}" in proc.stdout and "10001" in proc.stdout

    proc = cli_main.run(sb, "apply", str(saved), "--create", "--yes")
    assert proc.returncode == 3 and "applied exactly as it was saved: --create" in proc.stderr
    sb.external_edit(second, **{THRESHOLD: 4444})
    sb.clear_log()
    proc = cli_main.run(sb, "apply", str(saved), "--yes")
    assert proc.returncode == 1, proc.stderr  # one conflict
    assert "1 updated, 1 conflict" in proc.stdout
    assert sb.source(first)[THRESHOLD] == 10001 and sb.source(second)[THRESHOLD] == 4444
    assert [(r.method, r.source_id) for r in writes(sb)] == [("PATCH", first)]

    damaged = tmp_path / "damaged.plan"
    damaged.write_text(saved.read_text(encoding="utf-8").replace("10001", "10009"), encoding="utf-8")
    sb.clear_log()
    for args in (["apply", str(damaged), "--yes"], ["show", str(damaged)]):
        proc = cli_main.run(sb, *args)
        assert proc.returncode == 3 and "checksum does not match" in proc.stderr
    assert sb.log == []
