"""The form in the application users open: JupyterLab, in headless Chromium.

JupyterLab on 127.0.0.1 with
isolated dirs and offline flags, Debian's Chromium through Playwright's
``executable_path`` (never ``playwright install``), a route guard that aborts
and records every request off loopback, and a clean stop of Lab and its
kernels. The notebook connects to this test's sandbox through the
``NEUROIO_API_URL`` / ``NEUROIO_API_TOKEN`` variables given to Lab's process.

Skipped when Chromium or Playwright is missing, unless ``CI`` is set: then
that is a failure.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest
import requests

from neuroio_nb.sandbox import Sandbox

pytestmark = [pytest.mark.browser, pytest.mark.sandbox(sources=30, seed=5)]

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_edit_one_source.ipynb"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
READY_TIMEOUT = 90.0


def _missing(reason: str) -> None:
    """Skip, or fail when CI is set: CI must not pass by skipping the browser test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def chromium_path() -> str:
    wanted = os.environ.get("CHROMIUM_PATH")
    candidates = (wanted,) if wanted else CHROMIUM_CANDIDATES
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    _missing(f"no Chromium at {', '.join(c for c in candidates if c)} "
             "(apt-get install -y chromium, or set CHROMIUM_PATH)")
    raise AssertionError("unreachable")


# ---- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "widget-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[test]')")
    path = chromium_path()
    version = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    print(f"chromium: {path}: {version.stdout.strip() or version.stderr.strip()}")
    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def jupyter_home(tmp_path: Path) -> dict[str, Path]:
    """Private Jupyter/IPython dirs, so nothing leaks in from ~/.jupyter or out to $HOME."""
    dirs = {name: tmp_path / name for name in ("config", "data", "runtime", "ipython", "settings",
                                                "workspaces", "root", "xdg-config", "xdg-cache", "npm")}
    for path in dirs.values():
        path.mkdir()
    labconfig = dirs["config"] / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(json.dumps(
        {"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    shutil.copy(NOTEBOOK, dirs["root"] / NOTEBOOK.name)
    return dirs


class Lab:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.token, self.proc, self.log = url, token, proc, log

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture
def lab(jupyter_home: dict[str, Path], sb: Sandbox, tmp_path: Path, free_port: int) -> Iterator[Lab]:
    port, token = free_port, secrets.token_hex(16)
    env = {**os.environ,
           "JUPYTER_CONFIG_DIR": str(jupyter_home["config"]),
           "JUPYTER_DATA_DIR": str(jupyter_home["data"]),
           "JUPYTER_RUNTIME_DIR": str(jupyter_home["runtime"]),
           "IPYTHONDIR": str(jupyter_home["ipython"]),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
           # Lab runs `npm prefix --global` at start-up; keep npm's log out of $HOME
           "npm_config_logs_dir": str(jupyter_home["npm"]), "npm_config_cache": str(jupyter_home["npm"]),
           # the notebook connects to this test's sandbox (it uses Client() when a token is set)
           "NEUROIO_API_URL": sb.url, "NEUROIO_API_TOKEN": sb.token}
    jupyter = Path(sys.executable).with_name("jupyter")
    log = tmp_path / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(jupyter), "lab", "--no-browser", "--allow-root",
             "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={jupyter_home['root']}",
             f"--LabApp.user_settings_dir={jupyter_home['settings']}",
             f"--LabApp.workspaces_dir={jupyter_home['workspaces']}",
             "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.extension_manager=readonly", "--ServerApp.terminals_enabled=False",
             "--LabApp.expose_app_in_browser=True"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=jupyter_home["root"], start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, proc, log)
    try:
        _wait_ready(server)
        yield server
    finally:
        try:
            requests.post(f"{server.url}/api/shutdown", params={"token": token}, timeout=10)
        except requests.RequestException:
            pass
        stop_process_tree(proc)
        print(f"jupyterlab log: {log}")
        leftovers = _processes_mentioning(tmp_path)
        assert not leftovers, f"processes left behind: {leftovers}"


def _wait_ready(server: Lab) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            if requests.get(f"{server.url}/api/status", params={"token": server.token}, timeout=2).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    pytest.fail(f"jupyter lab not ready after {READY_TIMEOUT} s:\n{server.log_tail()}")


def stop_process_tree(proc: subprocess.Popen) -> None:
    """SIGTERM to the server, then SIGKILL to the process group made for it (it and its kernels)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if proc.poll() is None:
        proc.wait(10)


def _processes_mentioning(path: Path) -> list[str]:
    import psutil

    deadline = time.monotonic() + 10
    while True:
        found = []
        for p in psutil.process_iter(["pid", "cmdline"]):
            try:
                if p.info["cmdline"] and any(str(path) in part for part in p.info["cmdline"]):
                    found.append(f"{p.info['pid']}: {' '.join(p.info['cmdline'])[:200]}")
            except psutil.Error:
                pass
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


class Guarded:
    """A page whose every request off loopback was aborted and recorded in ``external``."""

    def __init__(self, page: Any, external: list[str]) -> None:
        self.page, self.external = page, external


@pytest.fixture
def browser_page(playwright: Any, jupyter_home: dict[str, Path], tmp_path: Path) -> Iterator[Guarded]:
    external: list[str] = []
    ctx = playwright.chromium.launch_persistent_context(
        user_data_dir=str(tmp_path / "chromium-profile"), executable_path=chromium_path(), headless=True,
        args=["--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"],
        viewport={"width": 1280, "height": 2400},
        env={**os.environ, "XDG_CONFIG_HOME": str(jupyter_home["xdg-config"]),
             "XDG_CACHE_HOME": str(jupyter_home["xdg-cache"])})

    def guard(route: Any) -> None:
        parts = urlsplit(route.request.url)
        if parts.scheme in ("data", "blob", "about") or parts.hostname in LOOPBACK:
            route.continue_()
        else:
            external.append(route.request.url)
            route.abort()

    ctx.route("**/*", guard)
    ctx.add_init_script("""
        window.__lastFocus = Date.now();
        document.addEventListener('focusin', () => { window.__lastFocus = Date.now(); }, true);
    """)
    try:
        page = ctx.pages[0] if ctx.pages else ctx.new_page()
        page.set_default_timeout(30_000)
        yield Guarded(page, external)
    finally:
        ctx.close()


# ---- the test --------------------------------------------------------------------
KERNEL_STATUS = """() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return kernel ? kernel.status : null;
}"""


def test_jupyterlab_form_saves_one_patch(lab: Lab, browser_page: Guarded, sb: Sandbox,
                                         artifacts: Path, request: pytest.FixtureRequest) -> None:
    from playwright.sync_api import expect

    page = browser_page.page
    first = sb.source(1)     # the notebook edits the first source of the listing
    try:
        page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
        # waits 1-3 of the recipe: kernel idle, app restored, focus quiet
        page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=90_000)
        page.evaluate("async () => { await window.jupyterapp.restored; }")
        page.locator(".jp-NotebookPanel-notebook").first.click()
        page.wait_for_function("Date.now() - window.__lastFocus > 1000", timeout=30_000, polling=100)
        page.keyboard.press("Escape")
        # 4: Run -> Run All Cells, with real clicks
        page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
        # 5: the form is rendered (scoped to its own output area: names are not unique page-wide)
        out = page.locator(".jp-OutputArea-output").filter(has=page.locator(".neuroio-form")).first
        expect(out.locator(".widget-checkbox").first).to_be_visible(timeout=60_000)
        expect(out.locator(".neuroio-status")).to_contain_text("no unsaved changes")
        sb.clear_log()

        out.get_by_role("checkbox", name="Use PPS time", exact=True).click()
        threshold = out.get_by_label("Identify face size", exact=True)
        threshold.fill("4545")
        threshold.press("Enter")      # IntText syncs its value on change (Enter or blur), not per keystroke
        expect(out.locator(".neuroio-status")).to_contain_text("2 unsaved changes")
        expect(out.locator(".neuroio-unsaved.neuroio-row")).to_have_count(2)
        out.screenshot(path=str(artifacts / "form-unsaved.png"))

        out.get_by_role("button", name="Save", exact=True).click()
        expect(out.locator(".neuroio-status")).to_contain_text(
            "saved: identify_facesize_threshold, use_pps_time", timeout=30_000)
        out.screenshot(path=str(artifacts / "form-saved.png"))
    except BaseException:
        page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
        print(f"jupyterlab log tail:\n{lab.log_tail()}")
        raise

    patches = sb.requests("PATCH")
    assert len(patches) == 1, [(r.path, r.body) for r in patches]
    assert patches[0].path == "/v1/sources/1/"
    assert patches[0].body == {"use_pps_time": not first["use_pps_time"], "identify_facesize_threshold": 4545}
    assert sb.source(1)["identify_facesize_threshold"] == 4545
    assert browser_page.external == [], f"requests off loopback: {browser_page.external}"
    assert sb.token not in page.content()
