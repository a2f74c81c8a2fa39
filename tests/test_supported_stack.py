"""What we promise to support: the oldest stack pinned in constraints-min.txt agrees with
pyproject.toml, and what users do with a report works without a warning on every pandas
we support (`python3 tasks.py matrix` runs this suite on the oldest and the newest stack)."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import pandas as pd
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from neuroio_nb._jobs.outcomes import Report

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: pytest itself depends on tomli there
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
#: The extras whose minimums are part of the user's stack (the rest is our tooling).
USER_EXTRAS = ("notebooks",)


def stated_requirements() -> list[Requirement]:
    project = PYPROJECT["project"]
    texts = list(project["dependencies"])
    for extra in USER_EXTRAS:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def pinned() -> dict[str, tuple[str, str]]:
    """name -> (version, comment) for each line of constraints-min.txt."""
    pins = {}
    for line in (ROOT / "constraints-min.txt").read_text(encoding="utf-8").splitlines():
        spec, _, comment = line.partition("#")
        if not spec.strip():
            continue
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", spec)
        assert match, f"constraints-min.txt: {line!r} is not 'name==version'"
        name = canonicalize_name(match[1])
        assert name not in pins, f"constraints-min.txt pins {name} twice"
        pins[name] = (match[2], comment.strip())
    return pins


def minimum(requirement: Requirement) -> str:
    floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert len(floors) == 1, f"pyproject.toml: {requirement} must state exactly one minimum (>=)"
    return floors[0]


def test_every_stated_minimum_is_pinned_in_the_constraints_file():
    pins = pinned()
    wrong = []
    for requirement in stated_requirements():
        name = canonicalize_name(requirement.name)
        want = minimum(requirement)
        got = pins.get(name, ("not pinned", ""))[0]
        if got == "not pinned" or Version(got) != Version(want):
            wrong.append(f"{name}: pyproject says >={want}, constraints-min.txt has {got}")
    assert not wrong, "constraints-min.txt disagrees with pyproject.toml:\n" + "\n".join(wrong)


def test_the_constraints_file_pins_nothing_pyproject_does_not_state():
    stated = {canonicalize_name(r.name) for r in stated_requirements()}
    extra = sorted(set(pinned()) - stated)
    assert not extra, f"constraints-min.txt pins {extra}, which pyproject.toml does not require"


def report() -> Report:
    frame = pd.DataFrame(
        {
            "status": ["updated", "failed", "conflict", "updated"],
            "changes": [{"name": ("a", "b")}, {}, {"enabled": (True, False)}, {}],
            "error": [None, "name: too long", None, None],
        },
        index=pd.Index([3, 1, 2, 7], name="id"),
    )
    return Report(frame)


#: What pandas users do with a report, each returning a frame.
SLICES = {
    "mask": lambda r: r[r["status"] == "failed"],
    "loc": lambda r: r.loc[[1, 2]],
    "iloc": lambda r: r.iloc[:2],
    "head": lambda r: r.head(2),
    "copy": lambda r: r.copy(),
    "sort_index": lambda r: r.sort_index(),
    "sort_values": lambda r: r.sort_values("status"),
    "query": lambda r: r.query("status != 'updated'"),
    "columns": lambda r: r[["status", "error"]],
    "rename": lambda r: r.rename(columns={"error": "message"}),
    "assign": lambda r: r.assign(seen=True),
    "drop": lambda r: r.drop(columns="changes"),
    "concat": lambda r: pd.concat([r, r.iloc[:1]]),
}


@pytest.mark.parametrize("operation", SLICES.values(), ids=SLICES.keys())
def test_a_report_sliced_like_pandas_users_do_stays_a_report_without_warnings(operation):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas 2.2 warned "Passing a BlockManager to Report is deprecated"
        result = operation(report())
    assert isinstance(result, Report)
    assert result.index.name == "id"
    if "status" in result:
        assert result.summary()  # the subclass's own methods work on the result


def test_a_report_column_is_a_plain_series_and_reset_index_keeps_the_ids():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        column = report()["status"]
        flat = report().reset_index()
    assert type(column) is pd.Series
    assert list(flat.columns[:2]) == ["id", "status"]
