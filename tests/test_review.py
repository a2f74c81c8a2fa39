"""Change review: policies every source must meet, plans for a ticket, saved plans.

Policies and plans are checked against the sandbox over loopback HTTP (its state and
request log are the ground truth); the rule semantics also by a hypothesis property on
frames alone.
"""

from __future__ import annotations

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
    from conftest import ConsoleScript

    from neuroio_nb import Client
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
    plan = client.sources.plan(site, key="name", create=True, policy=[BIG_FACES])
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
    script: ConsoleScript, sb: Sandbox, tmp_path: Path
) -> None:
    ok = rules_file(tmp_path, "[[rule]]\nname = 'named'\nrequire = 'name == name'\n")
    proc = script.run(sb, "check", "--policy", str(ok))
    assert proc.returncode == 0, proc.stderr
    assert "Every source meets the 1 rule" in proc.stdout

    victim = next(iter(sb.sources))
    sb.external_edit(victim, **{THRESHOLD: 10})
    proc = script.run(sb, "check", "--policy", str(rules_file(tmp_path)))
    assert proc.returncode == 2, proc.stderr
    expected = expected_violations(server_frame(sb))
    assert f"{len(expected)} policy violations" in proc.stdout
    assert f"rule 'big faces': {victim} {sb.source(victim)['name']} ({THRESHOLD} = 10)" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if line.startswith("  rule ")]
    assert len(lines) == len(expected)  # every one, never cut in a log
    assert writes(sb) == []


def test_cli_a_bad_rule_exits_3_naming_it_before_any_request(
    script: ConsoleScript, sb: Sandbox, tmp_path: Path
) -> None:
    bad = rules_file(tmp_path, "[[rule]]\nname = 'half'\nrequire = 'use_pps_time =='\n")
    sb.clear_log()
    for args in (["check", "--policy", str(bad)], ["plan", str(tmp_path / "none.csv"), "--policy", str(bad)]):
        proc = script.run(sb, *args)
        assert proc.returncode == 3, proc.stderr
        assert "rule 'half'" in proc.stderr and "does not parse" in proc.stderr
    assert sb.log == []


def test_cli_plan_and_apply_with_a_policy(script: ConsoleScript, sb: Sandbox, tmp_path: Path) -> None:
    export = tmp_path / "sources.csv"
    assert script.run(sb, "export", str(export)).returncode == 0
    victim = next(iter(sb.sources))
    edited = pd.read_csv(export, dtype=str, keep_default_na=False)
    edited.loc[edited["id"] == str(victim), THRESHOLD] = "10"
    edited.to_csv(tmp_path / "edited.csv", index=False)
    rules = rules_file(tmp_path, "[[rule]]\nname = 'big faces'\nrequire = 'identify_facesize_threshold >= 3000'\n")

    proc = script.run(sb, "plan", str(tmp_path / "edited.csv"), "--policy", str(rules))
    assert proc.returncode == 2
    assert "1 policy violation" in proc.stdout and f"rule 'big faces': {victim} " in proc.stdout

    sb.clear_log()
    proc = script.run(sb, "apply", str(tmp_path / "edited.csv"), "--policy", str(rules), "--yes")
    assert proc.returncode == 2
    assert "--allow-violations" in proc.stderr
    assert writes(sb) == []
    proc = script.run(sb, "apply", str(tmp_path / "edited.csv"), "--policy", str(rules), "--yes", "--allow-violations")
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
    desired.loc[1, "store_images_for_results"] = ["new", "ha"]
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
        edited = frame.copy()
        for position, values in cells.items():
            for column, value in values.items():
                edited.loc[frame.index[position], column] = value
        plan = client.sources.plan(edited, base=frame)
        with pd.option_context("display.max_rows", None):
            rows = markdown_rows(plan.to_markdown())
        assert len(rows) == len(plan.changes)
        assert [int(r[1]) for r in rows] == plan.changes["id"].tolist()
        document = json.loads(plan.to_json())
        said = {u["id"]: {f: (c["old"], c["new"]) for f, c in u["changes"].items()} for u in document["updates"]}
        assert said == plan.by_source()

    check()


def test_cli_plan_as_markdown_or_json(script: ConsoleScript, sb: Sandbox, tmp_path: Path) -> None:
    export = tmp_path / "sources.csv"
    assert script.run(sb, "export", str(export)).returncode == 0
    victim = next(iter(sb.sources))
    edited = pd.read_csv(export, dtype=str, keep_default_na=False)
    edited.loc[edited["id"] == str(victim), THRESHOLD] = "10"
    edited.to_csv(tmp_path / "edited.csv", index=False)
    proc = script.run(sb, "plan", str(tmp_path / "edited.csv"), "--format", "markdown")
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout.startswith("**Plan**: 1 source to update (1 value)")
    assert markdown_rows(proc.stdout)[0][1] == str(victim)
    proc = script.run(sb, "plan", str(tmp_path / "edited.csv"), "--format", "json")
    assert proc.returncode == 2, proc.stderr
    assert json.loads(proc.stdout)["updates"][0]["changes"][THRESHOLD]["new"] == 10
