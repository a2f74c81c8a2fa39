"""The API reference reads like a library's: every public name documented, every public
method with an example, signatures laid out on several lines (``tools/check_docstrings.py``,
run by ``python3 tasks.py docs`` before ``mkdocs build --strict``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

if TYPE_CHECKING:
    from neuroio_nb import Client

TOOLS = Path(__file__).resolve().parents[1] / "tools"


@pytest.fixture
def check(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(TOOLS))
    import check_docstrings

    return check_docstrings


class Documented:
    """A class as the reference shows one."""

    def shown(self) -> int:
        """With an example.

        Example::

            Documented().shown()
        """
        return 1

    def bare(self) -> int:
        """No example."""
        return 2

    @property
    def value(self) -> int:
        """A property needs no example."""
        return 3


def test_a_public_method_without_an_example_is_named(check: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check, "resolve", lambda dotted: Documented)
    assert check.missing("Documented") == ["Documented.bare: no example"]
    assert check.has_example(Documented.shown) and not check.has_example(Documented.bare)


@pytest.mark.real_clock  # the reference as shipped: not Client.retry_sleep bounded by conftest
def test_every_public_method_in_the_reference_has_an_example(check: Any, capsys: Any) -> None:
    assert check.main(need_formatter=False) == 0, capsys.readouterr().err
    # The docs build (python3 tasks.py docs) installs the docs extra and refuses to run without
    # the formatter; the suite's own environment need not have it.
    docs_extra = (TOOLS.parent / "pyproject.toml").read_text().split("\ndocs = [")[1].split("\n]")[0]
    assert '"ruff' in docs_extra, "the docs extra does not install the signature formatter"


def test_the_validation_error_view_says_its_first_column_holds_ids() -> None:
    from neuroio_nb.errors import Problem, ValidationError

    html = ValidationError([Problem(7, "name", None, "must be text"), Problem(8, "name", None, "must be text")])
    assert "<th>source ids</th>" in html._repr_html_().replace(' style="text-align:left"', "")


def test_the_docs_build_refuses_to_lay_signatures_out_on_one_line(check: Any, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.setattr(check, "signature_formatter", lambda: None)
    assert check.main() == 1
    assert "no signature formatter: install the docs extra" in capsys.readouterr().err


# ---- a small public face: what a plan, a report and a history show -------------------

#: What a plan shows its user (README, the guide's "Change review" page, the reference): the
#: rest (its job, sources, policy, how it was asked for) is the package's own.
PLAN_FACE = {"summary", "changes", "creates", "deletes", "unmatched", "violations", "apply", "save"}
PLAN_FACE |= {"to_markdown", "to_json"}


def public_names(obj: object) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


def reference_members(check: Any, cls: type) -> set[str]:
    """What the API reference shows of ``cls`` (mkdocstrings, members not starting with ``_``):
    its methods and properties, and the attributes its class body annotates."""
    annotated = {name for name in vars(cls).get("__annotations__", {}) if not name.startswith("_")}
    return {name for name, _ in check.own_members(cls)} | annotated


def test_a_plan_shows_only_its_documented_face(check: Any, client: Client, tmp_path: Path) -> None:
    """However a plan was made (updates only; by name with creates, deletes and a policy;
    loaded from a file), ``dir(plan)`` shows the documented names and nothing else, and so
    does the reference page; ``Plan`` is made by ``sources.plan()`` and ``load_plan()``."""
    from neuroio_nb import Plan

    frame = client.sources.to_frame(progress=False)
    edited = frame.copy()
    edited.loc[edited.index[0], "use_pps_time"] = not bool(frame["use_pps_time"].iloc[0])
    site = frame.iloc[1:].copy()
    site = pd.concat([site, pd.DataFrame({"name": ["Dock cam 1"], "space_id": [int(frame["space_id"].iloc[0])]})])
    rule = {"name": "pps", "require": "use_pps_time == True"}
    updates = client.sources.plan(edited, base=frame)
    synced = client.sources.plan(site.reset_index(drop=True), key="name", create=True, delete=True, policy=[rule])
    assert len(synced.creates) and len(synced.deletes) and len(synced.violations)
    synced.save(tmp_path / "change.plan")
    loaded = client.sources.load_plan(tmp_path / "change.plan")
    for plan in (updates, synced, loaded):
        assert isinstance(plan, Plan) and public_names(plan) == PLAN_FACE
    assert reference_members(check, Plan) == PLAN_FACE
    page = (TOOLS.parent / "docs" / "reference" / "plans.md").read_text(encoding="utf-8")
    # shown without a constructor (no "Plan(parts)" heading): a user gets a plan, never makes one
    assert "::: neuroio_nb.Plan\n    options:\n      merge_init_into_class: false\n" in page


def test_a_report_a_history_and_a_policy_show_only_their_documented_names(check: Any) -> None:
    from neuroio_nb import History, Policy, Report

    assert public_names(Report) - public_names(pd.DataFrame) == {"counts", "summary"}
    assert public_names(History) - public_names(pd.DataFrame) == {"summary"}
    assert reference_members(check, Report) == {"counts", "summary"}
    assert reference_members(check, History) == {"summary"}
    # a policy shows its rules through its views and as_list(), not as an attribute
    rules = Policy([{"name": "pps", "require": "use_pps_time == True"}])
    assert public_names(rules) == reference_members(check, Policy) == {"as_list", "check", "coerce", "from_toml"}
