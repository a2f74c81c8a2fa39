"""Errors as a notebook user sees them: IPython runs the cell and shows what went wrong.

Each error of the toolkit shows in at most about a dozen lines (IPython's
``_render_traceback_``): its name and message, the user's own line that raised
it, what to do next, and how to see the whole traceback (``%tb``, which then
shows it). No frame of the toolkit's code is printed; the token never is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from IPython.core.interactiveshell import InteractiveShell

from neuroio_nb.errors import NOTEBOOK_LINES, Problem, ValidationError, short_form
from neuroio_nb.sandbox import Sandbox

ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An IPython shell, as a notebook's kernel has one (its history in the test's folder)."""
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.delenv("NEUROIO_API_TOKEN", raising=False)
    monkeypatch.delenv("NEUROIO_API_URL", raising=False)
    ip = InteractiveShell.instance(colors="nocolor")
    ip.history_manager.enabled = False
    yield ip
    InteractiveShell.clear_instance()


def shown(shell: Any, capsys: pytest.CaptureFixture[str], code: str) -> list[str]:
    """The lines a notebook shows when the cell ``code`` runs (without colour codes)."""
    capsys.readouterr()
    shell.run_cell(code)
    captured = capsys.readouterr()
    return ANSI.sub("", captured.out + captured.err).rstrip("\n").splitlines()


def check_short(lines: list[str], name: str, *parts: str) -> None:
    text = "\n".join(lines)
    assert len(lines) <= NOTEBOOK_LINES, text
    assert lines[0].startswith(f"{name}: "), text
    assert "neuroio_nb/" not in text and "site-packages" not in text and "Traceback" not in text, text
    assert lines[-1] == "(the whole traceback: %tb)", text
    for part in parts:
        assert part in text, f"{part!r} not in:\n{text}"


def test_a_validation_error_is_short_and_says_what_to_do(shell: Any, capsys: Any, sb: Sandbox) -> None:
    shell.run_cell(
        "import pandas as pd\nfrom neuroio_nb import Client\n"
        f"client = Client({sb.token!r}, {sb.url!r})\nframe = client.sources.to_frame()\n"
        "bad = frame.copy()\nbad['identify_facesize_threshold'] = range(-len(bad), 0)\n"
        "bad['name'] = None\nbad = pd.concat([bad, bad.iloc[:30]])"
    )
    sb.clear_log()
    lines = shown(shell, capsys, "plan = client.sources.plan(bad)")
    check_short(
        lines,
        "ValidationError",
        "problems in the edited frame; nothing was sent:",
        "more lines ...",
        "raised by: plan = client.sources.plan(bad)",
        "What to do: fix these in the edited frame",
        "sys.last_value.to_frame()",
    )
    assert sb.log == []
    whole = "\n".join(shown(shell, capsys, "%tb"))
    assert "Traceback" in whole and "neuroio_nb" in whole, "%tb does not show the whole traceback"
    assert sb.token not in "\n".join(lines) + whole


def test_a_refused_token_names_the_setting_and_the_server(shell: Any, capsys: Any, sb: Sandbox) -> None:
    lines = shown(
        shell,
        capsys,
        f"from neuroio_nb import Client\nclient = Client('not-the-token-at-all', {sb.url!r})\n"
        "frame = client.sources.to_frame()",
    )
    check_short(
        lines,
        "AuthenticationError",
        "401",
        f"the server at {sb.url} refused the API token",
        "$NEUROIO_API_TOKEN",
        "Client(api_token=...)",
        "raised by: frame = client.sources.to_frame()",
    )


def test_an_unreachable_url_names_the_url_tried(shell: Any, capsys: Any, free_port: int) -> None:
    url = f"http://127.0.0.1:{free_port}"
    lines = shown(
        shell,
        capsys,
        f"from neuroio_nb import Client\nclient = Client('a-token-1234567890', {url!r}, max_retries=0)\n"
        "client.sources.get(7)",
    )
    check_short(lines, "TransportError", "could not connect", f"the API URL tried was {url}", "$NEUROIO_API_URL")


def test_plain_http_elsewhere_is_refused_naming_the_setting(shell: Any, capsys: Any) -> None:
    lines = shown(
        shell,
        capsys,
        "from neuroio_nb import Client\nclient = Client('a-token-1234567890', 'http://neuroio.example.com')",
    )
    check_short(
        lines,
        "ConfigurationError",
        "Refusing plain http:// to neuroio.example.com",
        "Client(base_url=...), else $NEUROIO_API_URL",
        "https://neuroio.example.com",
    )


def test_read_csv_errors_do_not_say_nothing_was_sent(shell: Any, capsys: Any, tmp_path: Path) -> None:
    path = tmp_path / "edited.csv"
    path.write_text(
        "id,name,identify_facesize_threshold,use_pps_time\n1,Gate,lots,yes\n2,Dock,7000,maybe\n", encoding="utf-8"
    )
    lines = shown(shell, capsys, f"from neuroio_nb import read_csv\nframe = read_csv({str(path)!r})")
    check_short(lines, "ValidationError", f"3 problems in the CSV {str(path)!r}:", "fix these in the file")
    assert "nothing was sent" not in "\n".join(lines)
    with pytest.raises(ValidationError) as info:
        from neuroio_nb import read_csv

        read_csv(path)
    assert "nothing was sent" not in str(info.value) + info.value._repr_html_()


problem = st.builds(
    Problem,
    id=st.one_of(st.none(), st.integers(1, 10**6)),
    field=st.one_of(st.none(), st.sampled_from(["name", "identify_facesize_threshold", "use_pps_time", "x" * 80])),
    value=st.one_of(st.none(), st.integers(), st.text(max_size=40)),
    reason=st.text(min_size=1, max_size=60).filter(lambda t: "\n" not in t and "\r" not in t),
)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(problems=st.lists(problem, min_size=1, max_size=300))
def test_any_validation_error_fits_in_a_dozen_lines(problems: list[Problem]) -> None:
    """However many problems, of whatever shape: the short form is at most a dozen lines, headed by
    the error's name, and the error keeps every problem."""
    error = ValidationError(problems)
    lines = [ANSI.sub("", line) for line in short_form(error)]
    assert len(lines) <= NOTEBOOK_LINES
    assert lines[0].startswith("ValidationError: ") and lines[-1] == "(the whole traceback: %tb)"
    assert len(error.to_frame()) == len(problems)


def test_a_missing_source_and_a_failing_server_say_what_to_do(shell: Any, capsys: Any, make_sandbox: Any) -> None:
    sb = make_sandbox(sources=5)
    setup = f"from neuroio_nb import Client\nclient = Client({sb.token!r}, {sb.url!r}, max_retries=0)\n"
    lines = shown(shell, capsys, setup + "client.sources.get(999)")
    check_short(lines, "NotFoundError", "404", f"the server at {sb.url} has no such source", "to_frame()")
    sb.faults = {"503": 1.0}
    lines = shown(shell, capsys, "client.sources.get(1)")
    check_short(lines, "ServerError", "503", "run the cell again later")
