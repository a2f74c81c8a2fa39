"""The notebooks: committed without outputs, executed in a real kernel against the sandbox."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
ALL = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPECTED = [
    "01_explore_sources",
    "02_bulk_edit",
    "03_edit_one_source",
    "04_export_csv",
    "05_provision_and_restore",
    "06_review_and_policies",
]


def test_every_notebook_is_there():
    assert [p.stem for p in ALL] == EXPECTED


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def execute(path: Path, workdir: Path, env: dict[str, str] | None = None) -> nbformat.NotebookNode:
    """Run a copy of the notebook in `workdir` (files it writes land there) with `env` set, and
    IPython's and matplotlib's own folders in `workdir` too."""
    env = {"IPYTHONDIR": str(workdir / "ipython"), "MPLCONFIGDIR": str(workdir / "mpl"), **(env or {})}
    copy = workdir / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(workdir)}}).execute()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb


def outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


@pytest.mark.notebook
@pytest.mark.parametrize(
    "name",
    ["01_explore_sources", "02_bulk_edit", "04_export_csv", "05_provision_and_restore", "06_review_and_policies"],
)
def test_notebook_runs_on_its_own_sandbox(name, tmp_path, monkeypatch):
    monkeypatch.delenv("NEUROIO_API_TOKEN", raising=False)
    monkeypatch.delenv("NEUROIO_API_URL", raising=False)
    nb = execute(NOTEBOOKS / f"{name}.ipynb", tmp_path)
    text = outputs_text(nb)
    assert '"output_type": "error"' not in text
    if name == "01_explore_sources":
        assert text.count("image/png") >= 3  # per space, switches, thresholds
        head = "".join(nb.cells[3].outputs[-1]["data"]["text/html"])
        assert "{&#x27;id&#x27;" not in head and "{'id'" not in head and re.search(r"<td>\w+ \([\w-]+\)</td>", head)
        changed = "".join(nb.cells[14].outputs[-1]["data"]["text/html"])  # non_defaults: switches as True/False
        assert "<td>True</td>" in changed and "<td>False</td>" in changed
    if name == "02_bulk_edit":
        assert "1 conflict" in text and "updated" in text
    if name == "04_export_csv":
        assert (tmp_path / "exports" / "sources.csv").exists() and "identical, dtypes included" in text
        assert "<table" in "".join(nb.cells[2].outputs[-1]["data"]["text/html"])  # the CSV previewed as a table
    if name == "05_provision_and_restore":
        assert "8 sources to create" in text and "3 created, 2 updated" in text and "2 sources to delete" in text
        assert text.count("nothing to change") == 2  # planning again after provisioning and after restoring
        htmls = ["".join(o["data"].get("text/html", "")) for c in nb.cells for o in c.get("outputs", []) if "data" in o]
        plans = [k for k, h in enumerate(htmls) if "<b>Plan</b>" in h]
        reports = [k for k, h in enumerate(htmls) if "<b>Report</b>" in h]
        assert len(plans) == 3 and plans[0] < reports[0] and plans[2] < reports[-1]  # each plan shown before applying
        marks = [re.findall(r'title="(\w+)"><b>', htmls[k]) for k in plans]  # provision, restore, trim
        assert marks[0] == ["create"] * 8 and marks[2] == ["delete"] * 2 and "defaults</summary>" in htmls[plans[1]]
        assert "<b>History</b>: 4 runs" in htmls[-1]  # this notebook's own runs, in its sandbox's journal
    if name == "06_review_and_policies":
        assert (tmp_path / "change.plan").exists() and "| `~` |" in text  # saved, and shown as Markdown
        assert "1 conflict" in text  # the saved plan applied: the colleague's source kept
        assert "policy violations" in text and "PolicyViolationError" in text  # the half fix refused
        assert "Every source meets every rule." in text


@pytest.mark.notebook
@pytest.mark.parametrize("name", ["01_explore_sources", "04_export_csv"])
def test_notebook_against_an_account_never_shows_the_token(name, tmp_path, make_sandbox):
    sb = make_sandbox(sources=150, token="account-token-must-not-leak")
    nb = execute(NOTEBOOKS / f"{name}.ipynb", tmp_path, {"NEUROIO_API_TOKEN": sb.token, "NEUROIO_API_URL": sb.url})
    text = outputs_text(nb)
    assert '"output_type": "error"' not in text
    assert sb.token not in text
    assert any(r.path == "/v1/sources/" for r in sb.log)  # it really read the "account"
    if name == "04_export_csv":
        assert sb.token not in (tmp_path / "exports" / "sources.csv").read_text()


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS_CELLS = [
    # quick: finishes well within half a second, so no bar at all
    "frame = client.sources.to_frame()\nlen(frame)",
    # slow: a bar appears, and leaves nothing behind when it is done
    "edited = frame.copy()\nedited['identify_facesize_threshold'] += 1\n"
    "report = client.sources.bulk_update(edited, base=frame)\nreport.summary()",
]


@pytest.mark.notebook
def test_progress_bars_leave_nothing_in_executed_copies(tmp_path, make_sandbox, monkeypatch):
    """The executed copy (tools/run_notebooks.py) and its HTML keep no bar widget and no '0%' text;
    a listing that takes less than half a second shows no bar at all."""
    import sys

    sys.path.insert(0, str(NOTEBOOKS.parent / "tools"))
    try:
        import run_notebooks
    finally:
        sys.path.pop(0)
    sb = make_sandbox(sources=40, latency=0.12)
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [
        nbformat.v4.new_code_cell(
            f"from neuroio_nb import Client\nclient = Client({sb.token!r}, {sb.url!r}, max_workers=2)"
        ),
        *[nbformat.v4.new_code_cell(source) for source in PROGRESS_CELLS],
    ]
    path = tmp_path / "bars.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    executed = run_notebooks.execute(path, tmp_path / "output")
    cells = nbformat.read(executed, as_version=4).cells
    assert [o.get("data", {}).get("text/plain") for o in cells[1].outputs] == ["40"]  # no bar for the quick one
    saved = outputs_text(nbformat.read(executed, as_version=4))
    assert "40 updated" in saved and '"output_type": "error"' not in saved
    assert WIDGET_VIEW not in saved
    assert "0%" not in saved and "updating" not in saved
    html = executed.with_suffix(".html").read_text(encoding="utf-8")
    # nbclient keeps every model it saw (closed ones too) as invisible metadata; what is shown is the rest
    html = re.sub(r'<script type="application/vnd.jupyter.widget-state\+json">.*?</script>', "", html, flags=re.S)
    assert "0%|" not in html and "updating" not in html


@pytest.mark.notebook
def test_bulk_edit_against_an_account_stops_before_writing(tmp_path, make_sandbox):
    """Run All of 02 with NEUROIO_API_TOKEN set writes nothing unless APPLY = True, and says where it
    would have written."""
    from nbclient.exceptions import CellExecutionError

    sb = make_sandbox(sources=200, token="account-token-must-not-leak")
    env = {"NEUROIO_API_TOKEN": sb.token, "NEUROIO_API_URL": sb.url}
    with pytest.raises(CellExecutionError) as info:
        execute(NOTEBOOKS / "02_bulk_edit.ipynb", tmp_path, env)
    assert "Stopped before writing: applying would change" in str(info.value)
    assert sb.url in str(info.value) and sb.token not in str(info.value)
    assert [r for r in sb.log if r.method != "GET"] == []
    assert any(r.path == "/v1/sources/" for r in sb.log)  # it did read the account and plan

    flipped = nbformat.read(NOTEBOOKS / "02_bulk_edit.ipynb", as_version=4)
    flipped.cells[1].source = flipped.cells[1].source.replace("APPLY = False", "APPLY = True")
    (tmp_path / "flipped").mkdir()
    nbformat.write(flipped, tmp_path / "flipped" / "02_bulk_edit.ipynb")
    nb = execute(tmp_path / "flipped" / "02_bulk_edit.ipynb", tmp_path, env)
    assert '"output_type": "error"' not in outputs_text(nb)
    assert sb.requests("PATCH")


@pytest.mark.notebook
def test_provisioning_against_an_account_writes_nothing_and_says_where_it_would(tmp_path, make_sandbox):
    """Run All of 05 with NEUROIO_API_TOKEN set reads and plans, writes nothing, and says where it would."""
    sb = make_sandbox(sources=120, token="account-token-must-not-leak")
    nb = execute(
        NOTEBOOKS / "05_provision_and_restore.ipynb",
        tmp_path,
        {"NEUROIO_API_TOKEN": sb.token, "NEUROIO_API_URL": sb.url},
    )
    text = outputs_text(nb)
    assert '"output_type": "error"' not in text and sb.token not in text
    assert f"this would write to {sb.url}" in text and "APPLY = True" in text
    assert any(r.method == "GET" for r in sb.log) and [r for r in sb.log if r.method != "GET"] == []


@pytest.mark.notebook
def test_review_against_an_account_writes_nothing_and_says_where_it_would(tmp_path, make_sandbox):
    """Run All of 06 with NEUROIO_API_TOKEN set saves, shows and audits, writes nothing, and says where it would."""
    sb = make_sandbox(sources=120, token="account-token-must-not-leak")
    nb = execute(
        NOTEBOOKS / "06_review_and_policies.ipynb",
        tmp_path,
        {"NEUROIO_API_TOKEN": sb.token, "NEUROIO_API_URL": sb.url},
    )
    text = outputs_text(nb)
    assert '"output_type": "error"' not in text and sb.token not in text
    assert f"this would write to {sb.url}" in text and "APPLY = True" in text
    assert sb.token not in (tmp_path / "change.plan").read_text(encoding="utf-8")
    assert any(r.method == "GET" for r in sb.log) and [r for r in sb.log if r.method != "GET"] == []


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_no_notebook_stops_the_sandbox_under_the_user(path):
    """Re-running any cell after Run All works: no cell stops the sandbox."""
    nb = nbformat.read(path, as_version=4)
    assert not any(".stop()" in c.source for c in nb.cells if c.cell_type == "code")
