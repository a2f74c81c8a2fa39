"""The API reference reads like a library's: every public name documented, every public
method with an example, signatures laid out on several lines (``tools/check_docstrings.py``,
run by ``python3 tasks.py docs`` before ``mkdocs build --strict``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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
