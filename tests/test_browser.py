"""What a notebook shows, in the application users open: JupyterLab, in headless Chromium.

One JupyterLab server and one browser for the module. JupyterLab runs on
127.0.0.1 with private config/data/runtime dirs and its offline flags;
Debian's Chromium is driven through Playwright's ``executable_path`` (never
``playwright install``); a route guard aborts and records every request off
loopback; Lab and its kernels are stopped at the end and nothing may be left
running. The notebooks reach this module's sandbox through the
``NEUROIO_API_URL`` / ``NEUROIO_API_TOKEN`` variables given to Lab's process.

Measured in JupyterLab's Light and Dark themes, on one page (the theme is
switched in place):

1. contrast (WCAG ratio from the browser's computed styles, translucent
   backgrounds composed down to the page) of every piece of text in the plan,
   report and ValidationError views (HTML and text; a 1,000-source sync with
   every kind of row, its ``+``/``~``/``-`` column included) and in the form's messages;
1b. at 900 x 900 with the file browser open, those views cut to ``display.max_rows``
   as pandas cuts, with "showing N of M" on top, and nothing past the output's right edge;
2. at 900 x 900 with the file browser open: no input of the form clipped, the
   unsaved marker and the help of an edited field visible, the form at most
   1.6x as tall as at 1280 px, Save and the status line in view;
3. a number box refuses ``7000.5`` and ``1e5`` with a message next to it and
   sends nothing, and accepts ``12 345`` / ``12,346``;
6. no progress bar left behind: no "0%" text and no "Error displaying widget"
   on the page, in the saved notebook or after reopening it;
7. what a person reads of a sync (issue 24): short create reports with their defaults
   folded, history(run) as the live report, changes one field a line never split inside
   a name or value, a restore plan of what the backup sets, history() in view at 900 px;
   and notebooks 01, 04 and 05 telling their story.
8. on a busy kernel, a number typed and options picked right before Save are what is
   saved (one PATCH), not the first key or pick the kernel had.

Skipped when Chromium or Playwright is missing, unless ``CI`` is set: then
that is a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nbformat
import pytest
import requests

from neuroio_nb.sandbox import Sandbox

# latency: applying the plan over 120 sources takes long enough for its progress bar to appear
pytestmark = [pytest.mark.browser, pytest.mark.sandbox(sources=120, seed=5, latency=0.03, shared=True)]

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_edit_one_source.ipynb"
VIEWS_NOTEBOOK = "views_in_the_browser.ipynb"
CHROMIUM_CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
READY_TIMEOUT = 90.0
THEMES = ("JupyterLab Light", "JupyterLab Dark")
MIN_CONTRAST = 4.5
#: The source the views notebook's form edits (notebook 03 edits the first one).
FORM_SOURCE = 5
#: The notebooks whose story is read in the browser, each run as with no account (a first cell
#: forgets this module's sandbox, so each starts its own).
STORY_NOTEBOOKS = (
    "01_explore_sources.ipynb",
    "04_export_csv.ipynb",
    "05_provision_and_restore.ipynb",
    "06_review_and_policies.ipynb",
)
NO_ACCOUNT = "import os\nos.environ.pop('NEUROIO_API_TOKEN', None)\nos.environ.pop('NEUROIO_API_URL', None)"


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
    _missing(
        f"no Chromium at {', '.join(c for c in candidates if c)} (apt-get install -y chromium, or set CHROMIUM_PATH)"
    )
    raise AssertionError("unreachable")


#: What a person reads of a sync's report, its history and a restore (issue 24): (title, cell).
PERSON_CELLS = [
    # a new site of 8 sources, each row setting three values (notebook 05), on a sandbox of its own
    ("Create-report",
     "from neuroio_nb import read_csv\n"
     "small = Sandbox(sources=60, seed=3).start()\ndemo = Client(small.token, small.url)\n"
     "site = pd.DataFrame({'name': [f'Harbour office cam {n:02d}' for n in range(1, 9)],\n"
     "                     'identify_facesize_threshold': [9000] * 4 + [12000] * 4,\n"
     "                     'auto_check_liveness': True, 'store_images_for_results': [['new', 'det']] * 8})\n"
     "created = demo.sources.plan(site, key='name', create=True).apply(progress=False)\ncreated"),
    ("Create-history", "demo.sources.history(created.attrs['run_id'])"),
    # 10 sources: a switch on five, a long-named threshold and switch on five more (notebook 02 changes two)
    ("Update-report",
     "before = demo.sources.to_frame(progress=False)\nten = before.copy()\nfive, more = ten.index[:5], ten.index[5:10]\n"
     "ten.loc[five, 'auto_check_liveness'] = ~ten.loc[five, 'auto_check_liveness']\n"
     "ten.loc[more, 'manual_create_facesize_threshold'] += 5\n"
     "ten.loc[more, 'auto_create_liveness_only'] = ~ten.loc[more, 'auto_create_liveness_only']\n"
     "updated = demo.sources.bulk_update(ten, base=before, progress=False)\nupdated"),
    # a backup restored after three sources were deleted
    ("Restore-plan",
     "demo.sources.export_csv('backup.csv')\n"
     "for sid in before.index[20:23]:\n    small.remove_source(int(sid))\n"
     "restore = demo.sources.plan(read_csv('backup.csv'), key='name', create=True)\nrestore"),
    ("History", "demo.sources.history()"),
]  # fmt: skip

# ---- the notebook whose outputs are measured -------------------------------------
#: A sync of 1,000 sources, as an operator runs one: 40 to delete, 60 to create, 300 to
#: update; meanwhile a colleague edits and deletes some and takes two of the new names,
#: and the server drops, refuses and fails a few writes. Then a bad frame with 100 kinds
#: of problem, and a plan by name of which 70 rows match no source. The form edits this module's sandbox; the rest has its own in the kernel.
VIEWS_CELLS = [
    "import pandas as pd\nfrom neuroio_nb import Client\nfrom neuroio_nb.errors import ValidationError\n"
    "from neuroio_nb.sandbox import Sandbox\n\n"
    "client = Client()   # the test's sandbox: the form at the end edits it\n"
    "site = Sandbox(sources=1000, seed=7, latency=0.02).start()\n"
    "big = Client(site.token, site.url)\nframe = big.sources.to_frame()",
    # the plan: longer than display.max_rows, every kind of row
    "desired = frame.iloc[40:].copy()\n"
    "desired.iloc[:300, desired.columns.get_loc('identify_facesize_threshold')] += 1\n"
    "new = pd.DataFrame({'name': [f'Dock {i:03}, new site' for i in range(60)], 'use_pps_time': True})\n"
    "desired = pd.concat([desired.reset_index(drop=True), new], ignore_index=True)\n"
    "plan = big.sources.plan(desired, base=frame, key='name', create=True, delete=True)\nplan",
    "print(plan)",
    # meanwhile: edits (conflicts), deletions (failed), two names taken (conflicts), faults
    "changed = plan.changes['id'].unique()\n"
    "for sid in changed[:5]:\n    site.external_edit(int(sid), identify_facesize_threshold=123)\n"
    "for sid in changed[5:8]:\n    site.remove_source(int(sid))\n"
    "for name in plan.creates['name'][:2]:\n    site.add_source(name=name)\n"
    "site.fault_methods = {'PATCH', 'POST', 'DELETE'}\n"
    "site.faults = {'503': 0.03, 'drop': 0.02, 'scalar_error': 0.02}\n"
    "report = plan.apply(irreversible=True)   # the deletes are meant: undo need not bring them back\nsite.faults = {}\nreport",
    "bad = frame.copy()\nbad['identify_facesize_threshold'] = -1\nbad.loc[bad.index[4], 'name'] = ' '\n"
    "bad = pd.concat([bad, bad.iloc[:100]])   # 100 ids twice\n"
    "try:\n    big.sources.plan(bad)\nexcept ValidationError as exc:\n    error = exc\nerror",
    "print(error)",
    # matched by name without create=True: 5 updates, and 70 rows whose (long) names match no source,
    # 7 of them with a value create=True would refuse
    "partial = frame.iloc[600:630].reset_index()   # sources the sync above left alone\n"
    "partial.loc[:4, 'use_pps_time'] = ~partial.loc[:4, 'use_pps_time']\n"
    "typos = pd.DataFrame({'name': [f'Gate {i:03}, north car park, the camera over the barrier' for i in range(70)],\n"
    "                      'identify_facesize_threshold': [-5 if i % 10 == 0 else 9000 for i in range(70)]})\n"
    "unmatched = big.sources.plan(pd.concat([partial, typos], ignore_index=True), key='name')\nunmatched",
    *[source for _, source in PERSON_CELLS],
    # a plan checked against a policy: nothing to change, and many sources that break its rule
    "rules = [{'name': 'liveness on every camera', 'require': 'auto_check_liveness == True'}]\n"
    "audited = big.sources.plan(frame.iloc[600:], policy=rules)\naudited",
    f"form = client.sources.form({FORM_SOURCE})\nform",
]
#: The cells whose output is a view, by title (the index of the cell).
VIEWS = {"Plan": 1, "Plan-text": 2, "Report": 3, "ValidationError": 4, "ValidationError-text": 5, "Plan-unmatched": 6}
#: What a person reads of a sync's report, its history and a restore (issue 24), by title (the cell's index).
PERSON = {title: 7 + k for k, (title, _) in enumerate(PERSON_CELLS)}
#: A plan whose policy many sources break: its notice, and its violations cut as pandas cuts rows.
VIEWS["Plan-violations"] = 7 + len(PERSON_CELLS)


def views_notebook() -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(source) for source in VIEWS_CELLS]
    return nb


# ---- fixtures --------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.getbasetemp() / "widget-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
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


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lab")


@pytest.fixture(scope="module")
def jupyter_home(lab_dir: Path) -> dict[str, Path]:
    """Private Jupyter/IPython dirs, so nothing leaks in from ~/.jupyter or out to $HOME."""
    dirs = {
        name: lab_dir / name
        for name in (
            "config",
            "data",
            "runtime",
            "ipython",
            "settings",
            "workspaces",
            "root",
            "xdg-config",
            "xdg-cache",
            "npm",
        )
    }
    for path in dirs.values():
        path.mkdir()
    labconfig = dirs["config"] / "labconfig"
    labconfig.mkdir()
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    # every cell in the page (Lab 4 otherwise leaves cells out of view unrendered)
    tracker = dirs["settings"] / "@jupyterlab" / "notebook-extension"
    tracker.mkdir(parents=True)
    (tracker / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    shutil.copy(NOTEBOOK, dirs["root"] / NOTEBOOK.name)
    nbformat.write(views_notebook(), dirs["root"] / VIEWS_NOTEBOOK)
    for name in STORY_NOTEBOOKS:  # as a person with no account runs them: on a sandbox of their own
        story = nbformat.read(NOTEBOOK.with_name(name), as_version=4)
        story.cells.insert(0, nbformat.v4.new_code_cell(NO_ACCOUNT))
        nbformat.write(story, dirs["root"] / name)
    return dirs


class Lab:
    def __init__(self, url: str, token: str, proc: subprocess.Popen, log: Path) -> None:
        self.url, self.token, self.proc, self.log = url, token, proc, log

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


@pytest.fixture(scope="module")
def lab(jupyter_home: dict[str, Path], module_sandbox: Sandbox, lab_dir: Path) -> Iterator[Lab]:
    sandbox, token = module_sandbox, secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(jupyter_home["config"]),
        "JUPYTER_DATA_DIR": str(jupyter_home["data"]),
        "JUPYTER_RUNTIME_DIR": str(jupyter_home["runtime"]),
        "IPYTHONDIR": str(jupyter_home["ipython"]),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        # Lab runs `npm prefix --global` at start-up; keep npm's log out of $HOME
        "npm_config_logs_dir": str(jupyter_home["npm"]),
        "npm_config_cache": str(jupyter_home["npm"]),
        # the notebooks connect to this module's sandbox (they use Client() when a token is set)
        "NEUROIO_API_URL": sandbox.url,
        "NEUROIO_API_TOKEN": sandbox.token,
    }
    jupyter = Path(sys.executable).with_name("jupyter")
    log = lab_dir / "jupyterlab.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(jupyter),
                "lab",
                "--no-browser",
                "--allow-root",
                "--ServerApp.ip=127.0.0.1",
                "--ServerApp.port=0",  # the OS picks a free port; read back below
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={jupyter_home['root']}",
                f"--LabApp.user_settings_dir={jupyter_home['settings']}",
                f"--LabApp.workspaces_dir={jupyter_home['workspaces']}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                "--LabApp.extension_manager=readonly",
                "--ServerApp.terminals_enabled=False",
                "--LabApp.expose_app_in_browser=True",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=jupyter_home["root"],
            start_new_session=True,
        )
    server = Lab("", token, proc, log)
    try:
        _wait_ready(server, jupyter_home["runtime"])
        yield server
    finally:
        with contextlib.suppress(requests.RequestException):
            requests.post(f"{server.url}/api/shutdown", params={"token": token}, timeout=10)
        stop_process_tree(proc)
        print(f"jupyterlab log: {log}")
        leftovers = _processes_mentioning(lab_dir)
        assert not leftovers, f"processes left behind: {leftovers}"


def _wait_ready(server: Lab, runtime: Path) -> None:
    """Wait for the server's runtime file (it says the port the OS gave) and its status API."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {server.proc.returncode}:\n{server.log_tail()}")
        if not server.url:
            info = list(runtime.glob("jpserver-*.json"))
            if info:
                server.url = f"http://127.0.0.1:{json.loads(info[0].read_text())['port']}"
            time.sleep(0.2)
            continue
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
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
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


class Browser:
    """A Chromium context whose every request off loopback was aborted and recorded in ``external``."""

    def __init__(self, context: Any, external: list[str]) -> None:
        self.context, self.external = context, external


@pytest.fixture(scope="module")
def browser(playwright: Any, jupyter_home: dict[str, Path], lab_dir: Path) -> Iterator[Browser]:
    external: list[str] = []
    ctx = playwright.chromium.launch_persistent_context(
        user_data_dir=str(lab_dir / "chromium-profile"),
        executable_path=chromium_path(),
        headless=True,
        args=["--disable-dev-shm-usage", "--no-first-run", "--disable-background-networking"],
        viewport={"width": 1280, "height": 900},
        env={
            **os.environ,
            "XDG_CONFIG_HOME": str(jupyter_home["xdg-config"]),
            "XDG_CACHE_HOME": str(jupyter_home["xdg-cache"]),
        },
    )

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
        yield Browser(ctx, external)
    finally:
        ctx.close()
    assert external == [], f"requests off loopback: {external}"


def new_page(browser: Browser) -> Any:
    page = (
        browser.context.pages[0]
        if browser.context.pages and browser.context.pages[0].url == "about:blank"
        else browser.context.new_page()
    )
    page.set_default_timeout(30_000)
    return page


# ---- JupyterLab steps ------------------------------------------------------------
KERNEL_STATUS = """() => {
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
    const kernel = panel && panel.sessionContext && panel.sessionContext.session
        && panel.sessionContext.session.kernel;
    return kernel ? kernel.status : null;
}"""


def open_and_run_all(page: Any, lab: Lab, name: str, workspace: str | None = None) -> None:
    """Open a notebook, wait until Lab has settled (kernel idle, restored, focus quiet), Run All.
    ``workspace``: a workspace of its own (the notebook alone in it), not the one others share."""
    where = f"workspaces/{workspace}/tree" if workspace else "tree"
    page.goto(f"{lab.url}/lab/{where}/{name}?token={lab.token}")
    page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=90_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    page.locator(".jp-NotebookPanel-notebook").first.click()
    page.wait_for_function("Date.now() - window.__lastFocus > 1000", timeout=30_000, polling=100)
    page.keyboard.press("Escape")
    page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()


def use_theme(page: Any, theme: str) -> None:
    page.evaluate(
        "async (theme) => { await window.jupyterapp.commands.execute('apputils:change-theme', {theme}); }", theme
    )
    page.wait_for_function("(theme) => document.body.dataset.jpThemeName === theme", arg=theme, timeout=30_000)
    page.wait_for_timeout(300)  # the theme's stylesheet applies after the attribute


def open_file_browser(page: Any) -> None:
    """JupyterLab's default layout: the file browser open in the left area."""
    page.evaluate("() => { const s = window.jupyterapp.shell; s.activateById('filebrowser'); s.expandLeft(); }")
    page.wait_for_function(
        "() => { const e = document.getElementById('filebrowser'); return e && e.getBoundingClientRect().width > 150; }"
    )


# ---- what is measured in the page --------------------------------------------------
#: Every element with its own text under ``root``: its text, contrast ratio and colours.
CONTRAST_JS = """(root) => {
    const parse = (c) => {
        const m = c && c.match(/rgba?\\(([^)]+)\\)/);
        if (!m) return null;
        const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
        return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
    const background = (el) => {
        const chain = [];
        for (let e = el; e; e = e.parentElement) chain.push(e);
        let bg = [255, 255, 255, 1];
        for (const e of chain.reverse()) {
            const c = parse(getComputedStyle(e).backgroundColor);
            if (c && c[3] > 0) bg = over(c, bg);
        }
        return bg;
    };
    const lum = (c) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
    };
    const out = [];
    for (const el of [root, ...root.querySelectorAll('*')]) {
        const own = [...el.childNodes].filter(n => n.nodeType === 3 && n.textContent.trim())
            .map(n => n.textContent.trim()).join(' ');
        if (!own) continue;
        const style = getComputedStyle(el);
        const box = el.getBoundingClientRect();
        if (style.visibility === 'hidden' || style.display === 'none' || !box.width) continue;
        const bg = background(el);
        const colour = parse(style.color);
        if (!colour) { out.push({text: own.slice(0, 60), ratio: 0, color: style.color, bg: 'unparsed'}); continue; }
        const fg = over(colour, bg);
        const a = lum(fg), b = lum(bg);
        out.push({text: own.slice(0, 60), ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05),
                  color: style.color, bg: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')'});
    }
    return out;
}"""

#: The horizontal region of the window where ``el`` can be seen (ancestors that clip, and the window).
CLIP_JS = """
    const clip = (el) => {
        const r = {left: 0, right: window.innerWidth};
        for (let e = el.parentElement; e; e = e.parentElement) {
            const s = getComputedStyle(e);
            if (s.overflowX !== 'visible') {
                const b = e.getBoundingClientRect();
                r.left = Math.max(r.left, b.left); r.right = Math.min(r.right, b.right);
            }
        }
        return r;
    };
    const seen = (el) => {
        const b = el.getBoundingClientRect(), c = clip(el), s = getComputedStyle(el);
        return b.width > 0 && b.height > 0 && s.visibility !== 'hidden'
            && b.left >= c.left - 1 && b.right <= c.right + 1;
    };
"""

#: Inputs of the form that are cut off (horizontally) at the current window size.
CLIPPED_INPUTS_JS = (
    """(form) => {"""
    + CLIP_JS
    + """
    const out = [];
    for (const el of form.querySelectorAll('input, select, textarea, button')) {
        const b = el.getBoundingClientRect();
        if (!b.width && !b.height) continue;
        if (!seen(el)) {
            const c = clip(el);
            out.push((el.getAttribute('aria-label') || el.id || el.type || el.tagName)
                     + ` spans ${Math.round(b.left)}-${Math.round(b.right)} px,`
                     + ` visible ${Math.round(c.left)}-${Math.round(c.right)} px`);
        }
    }
    return out;
}"""
)

SEEN_JS = """(el) => {""" + CLIP_JS + """ return seen(el); }"""

#: Is ``el`` (three quarters of it at least) inside the notebook's visible area, as the user scrolls?
IN_VIEW_JS = """(el) => {
    const b = el.getBoundingClientRect();
    let top = 0, bottom = window.innerHeight;
    // up to the notebook's scroller (the application shell above it does not scroll)
    for (let e = el.parentElement; e; e = e.parentElement) {
        const s = getComputedStyle(e);
        if (s.overflowY !== 'visible') {
            const r = e.getBoundingClientRect(); top = Math.max(top, r.top); bottom = Math.min(bottom, r.bottom);
        }
        if (e.classList.contains('jp-WindowedPanel-outer')) break;
    }
    const seen = Math.min(b.bottom, bottom) - Math.max(b.top, top);
    return b.height > 0 && seen >= 0.75 * b.height;
}"""


def output_with(page: Any, selector: str) -> Any:
    """The output area (scoped: names are not unique page-wide) that holds ``selector``."""
    return page.locator(".jp-OutputArea-output").filter(has=page.locator(selector)).first


def output_of_cell(page: Any, index: int) -> Any:
    """The last output of a cell (its result; a progress bar's emptied output may come before it)."""
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea-output").last


def low_contrast(locator: Any) -> list[str]:
    found = locator.evaluate(CONTRAST_JS)
    assert found, "no text measured"
    return [
        f"{m['text']!r}: {m['ratio']:.2f}:1 ({m['color']} on {m['bg']})" for m in found if m["ratio"] < MIN_CONTRAST
    ]


# ---- the tests -------------------------------------------------------------------
@pytest.fixture(scope="module")
def views_page(lab: Lab, browser: Browser, artifacts: Path) -> Iterator[Any]:
    """The views notebook, run once; the tests switch the theme and the window size on it."""
    from playwright.sync_api import expect

    page = new_page(browser)
    try:
        open_and_run_all(page, lab, VIEWS_NOTEBOOK)
        form = output_with(page, ".neuroio-form")
        expect(form.locator(".neuroio-status")).to_contain_text("no unsaved changes", timeout=90_000)
        open_file_browser(page)
    except BaseException:
        page.screenshot(path=str(artifacts / "FAILED-views-page.png"), full_page=True)
        print(f"jupyterlab log tail:\n{lab.log_tail()}")
        print("outputs:\n" + "\n".join(t[-1500:] for t in page.locator(".jp-OutputArea-output").all_inner_texts()))
        raise
    yield page
    page.close()


@pytest.mark.parametrize("theme", THEMES)
def test_views_readable(views_page: Any, theme: str, artifacts: Path) -> None:
    """Point 1: every piece of text of the plan, report and ValidationError views is >= 4.5:1."""
    page = views_page
    page.set_viewport_size({"width": 1280, "height": 900})
    use_theme(page, theme)
    problems = []
    for title, index in VIEWS.items():
        out = output_of_cell(page, index)
        out.scroll_into_view_if_needed()
        out.screenshot(path=str(artifacts / f"{title}-{theme.split()[-1]}.png"))
        problems += [f"{title}: {p}" for p in low_contrast(out)]
    assert not problems, f"text under {MIN_CONTRAST}:1 in {theme}:\n" + "\n".join(problems)


#: What of an output reaches past its right edge (or makes it scroll sideways), at the current size.
OVERFLOW_JS = """(out) => {
    const edge = Math.min(out.getBoundingClientRect().right, window.innerWidth);
    const found = [];
    if (out.scrollWidth > out.clientWidth + 1) found.push(`scrolls sideways: ${out.scrollWidth} > ${out.clientWidth} px`);
    for (const el of out.querySelectorAll('*')) {
        if (!el.checkVisibility()) continue;  // the inside of a closed fold (Chromium lays it out, unseen)
        const b = el.getBoundingClientRect();
        if (b.width && b.right > edge + 1) {
            found.push(`${el.tagName} "${(el.textContent || '').trim().slice(0, 40)}" ends at ${Math.round(b.right)} px,`
                       + ` the output at ${Math.round(edge)} px`);
        }
    }
    return found.slice(0, 8);
}"""


#: Short words (ids, statuses, numbers) of a table split over two lines (a field name may break after a ``_``).
SPLIT_WORDS_JS = """(out) => {
    const split = [];
    for (const cell of out.querySelectorAll('td, th')) {
        const text = cell.textContent.trim();
        if (!text || /[\\s_\\/]/.test(text) || text.length > 12) continue;  // _ and / may break
        const range = document.createRange();
        range.selectNodeContents(cell);
        if (new Set([...range.getClientRects()].map(r => Math.round(r.top))).size > 1) split.push(text);
    }
    return split.slice(0, 8);
}"""


@pytest.mark.parametrize("theme", THEMES)
def test_long_views_at_laptop_width(views_page: Any, theme: str, artifacts: Path) -> None:
    """At 900 px with the file browser open: the 1,000-source plan, its report and a 100-line
    ValidationError are cut as pandas cuts (display.max_rows), say so on top, and fit the width."""
    page = views_page
    page.set_viewport_size({"width": 900, "height": 1400})  # tall enough to see each view whole
    use_theme(page, theme)
    assert page.evaluate("() => document.getElementById('filebrowser').getBoundingClientRect().width") > 150
    problems = []
    cut = {"Plan": "showing 10 of 400 sources", "Report": "showing 10 of 400 sources"}
    cut["ValidationError"] = "showing 10 of 102 lines"
    for title, index in VIEWS.items():
        out = output_of_cell(page, index)
        out.scroll_into_view_if_needed()
        out.screenshot(path=str(artifacts / f"{title}-900-{theme.split()[-1]}.png"))
        problems += [f"{title}: {p}" for p in out.evaluate(OVERFLOW_JS)]
        problems += [f"{title}: {word!r} is split over two lines" for word in out.evaluate(SPLIT_WORDS_JS)]
        problems += [f"{title}: {p}" for p in how_a_long_view_is_cut(title, out, cut)]
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, f"at 900 px in {theme}:\n" + "\n".join(problems)


def how_a_long_view_is_cut(title: str, out: Any, cut: dict[str, str]) -> list[str]:
    """What is wrong with how the long view ``title`` is cut, and said above it."""
    if title == "Plan-unmatched":  # rows that match no source: said above the table, names cut as pandas cuts
        return unmatched_notice_problems(out)
    if title == "Plan-violations":  # said above all else, one line each, cut as pandas cuts rows
        return violations_notice_problems(out)
    if title in cut:
        problems = []
        rows = out.locator("tbody tr").count()
        if rows != 11:  # pandas' display.min_rows (10) and the row of ellipses
            problems.append(f"{rows} rows shown, not 10 and the ellipsis")
        if cut[title] not in out.locator("p").first.inner_text():
            problems.append(f"no {cut[title]!r} above the table")
        return problems
    lines = out.inner_text().strip().splitlines()
    more = "390 more sources" if title == "Plan-text" else "92 more lines"
    # the headline (and any note under it, as the plan's deletes undo cannot tell of), 5 rows, the cut, 5 rows
    at = next((k for k, line in enumerate(lines) if more in line), -1)
    if at < 6 or len(lines) - at - 1 != 5:
        return [f"{len(lines)} lines, cut at line {at} (wanted 5 rows, '... {more} ...', 5)"]
    return []


def unmatched_notice_problems(out: Any) -> list[str]:
    problems = []
    notice = out.locator("p.neuroio-tone-warn")
    if "... 60 more names ..." not in notice.inner_text():
        problems.append(f"the names are not cut as pandas cuts rows: {notice.inner_text()[:200]!r}")
    if "Bad values, which create=True refuses: identify_facesize_threshold" not in notice.inner_text():
        problems.append(f"the rows create=True would refuse are not said: {notice.inner_text()[-300:]!r}")
    if not notice.bounding_box()["y"] < out.locator("table").bounding_box()["y"]:
        problems.append("the rows that match no source are not said above the table")
    return problems


def violations_notice_problems(out: Any) -> list[str]:
    problems = []
    notice = out.locator("p.neuroio-tone-bad")
    lines = notice.locator("xpath=following-sibling::p[1]").inner_text().splitlines()
    if "policy violations (all in plan.violations): apply() refuses them" not in notice.inner_text():
        problems.append(f"the violations are not said: {notice.inner_text()[:200]!r}")
    if len(lines) != 11 or "more violations" not in lines[5]:
        problems.append(f"{len(lines)} lines, cut at {lines[5:6]} (wanted 11, '... N more violations ...')")
    return problems


#: Each listed change of an output: the pieces kept whole (a field's name, a value) that break
#: over two lines, and the lines (one field each) that wrap.
CHANGE_LINES_JS = """(out) => {
    const lines = (node) => {
        const range = document.createRange();
        range.selectNodeContents(node);
        const tops = [...range.getClientRects()].map(r => r.top).sort((a, b) => a - b);
        return tops.filter((t, k) => k === 0 || t - tops[k - 1] > 4).length;
    };
    const split = [], wrapped = [];
    for (const line of out.querySelectorAll('.neuroio-change, .neuroio-value')) {
        if (!line.checkVisibility()) continue;  // inside a fold that is closed
        for (const whole of line.querySelectorAll('span')) {
            if (lines(whole) > 1) split.push(whole.textContent);
        }
        if (line.classList.contains('neuroio-change') && lines(line) > 1) wrapped.push(line.textContent);
    }
    return {split: split.slice(0, 8), wrapped: wrapped.slice(0, 8), count: out.querySelectorAll('.neuroio-change').length};
}"""

#: The tallest each view may be, by window width (issue 24: a create report, a 10-row update report).
TALLEST = {1280: {"Create-report": 450, "Create-history": 450, "Update-report": 400}, 900: {"Create-report": 700}}


def headers(out: Any) -> list[str]:
    return [t.strip() for t in out.locator("thead th").all_inner_texts()]


def layout_problems(page: Any, width: int, theme: str, artifacts: Path) -> list[str]:
    """How tall each view of :data:`PERSON` is, whether a name or value is split, and (at 900 px)
    whether anything passes the output's edge; each view's screenshot in ``artifacts``."""
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(300)
    problems = []
    for title, index in PERSON.items():
        out = output_of_cell(page, index)
        out.scroll_into_view_if_needed()
        out.screenshot(path=str(artifacts / f"{title}-{width}-{theme.split()[-1]}.png"))
        height = out.bounding_box()["height"]
        print(f"{title} at {width} px in {theme}: {height:.0f} px tall")
        if height > TALLEST[width].get(title, float("inf")):
            problems.append(f"{title} at {width} px is {height:.0f} px tall, over {TALLEST[width][title]}")
        lines = out.evaluate(CHANGE_LINES_JS)
        problems += [f"{title} at {width} px: {whole!r} is split over two lines" for whole in lines["split"]]
        if width == 1280:
            problems += [f"{title}: the change {line!r} wraps at 1280 px" for line in lines["wrapped"]]
            problems += [f"{title}: {p}" for p in low_contrast(out)]
        else:
            problems += [f"{title} at 900 px: {p}" for p in out.evaluate(OVERFLOW_JS)]
            problems += [f"{title} at 900 px: {w!r} is split over two lines" for w in out.evaluate(SPLIT_WORDS_JS)]
    return problems


def folding_problems(page: Any) -> list[str]:
    """The 8 creates each fold their defaults, which open and close; history(run) reads as the live report."""
    problems = []
    report, again = output_of_cell(page, PERSON["Create-report"]), output_of_cell(page, PERSON["Create-history"])
    folds = report.locator("details.neuroio-defaults > summary")
    if folds.count() != 8 or not all(re.fullmatch(r"\+ \d+ defaults", t.strip()) for t in folds.all_inner_texts()):
        problems.append(f"the 8 creates do not each fold their defaults: {folds.all_inner_texts()}")
    if again.inner_text() != report.inner_text():
        problems.append("history(run) does not show the run as its live report did")
    closed = report.bounding_box()["height"]
    folds.first.click()  # it opens to list the defaults, and closes again
    inside = report.locator("details.neuroio-defaults").first.locator(".neuroio-change")
    if not (inside.count() and inside.first.is_visible() and report.bounding_box()["height"] > closed):
        problems.append("'+ N defaults' does not open to list them")
    problems += [f"an opened fold: {p}" for p in low_contrast(report.locator("details.neuroio-defaults").first)]
    folds.first.click()
    restore = output_of_cell(page, PERSON["Restore-plan"])
    if headers(restore) != ["", "name", "changes"] or restore.locator("details.neuroio-defaults").count() != 3:
        problems.append(f"the restore plan is not 3 creates listing what they set: {headers(restore)}")
    return problems


def narrow_problems(page: Any) -> list[str]:
    """At 900 px beside the file browser: the big report's errors are readable, and history()
    keeps run, kind, counts and state in view and holds only the demo sandbox's own runs."""
    problems = []
    reasons = output_of_cell(page, VIEWS["Report"]).locator(".neuroio-why")  # under each row's changes
    widths = [round(box["width"]) for box in (r.bounding_box() for r in reasons.all()) if box]
    if not widths or min(widths) < 150:
        problems.append(f"the report's errors at 900 px are {widths} px wide, not >= 150 px")
    history = output_of_cell(page, PERSON["History"])
    if "2 runs" not in history.locator("p").first.inner_text():  # the demo's own: not the other sandbox's sync
        problems.append(f"history() of the demo sandbox: {history.locator('p').first.inner_text()!r}")
    edge = history.bounding_box()["x"] + history.bounding_box()["width"]
    for column in ("run", "kind", "sources", "state"):
        th = history.locator("thead th").filter(has_text=re.compile(f"^{column}$"))
        if not th.count() or th.first.bounding_box()["x"] + th.first.bounding_box()["width"] > edge + 1:
            problems.append(f"history(): the {column!r} column is not in view at 900 px ({headers(history)})")
    return problems


@pytest.mark.parametrize("theme", THEMES)
def test_what_a_person_reads_of_a_sync(views_page: Any, theme: str, artifacts: Path) -> None:
    """Issue 24: a create report folds its defaults and is short, history(run) shows it the same way,
    changes are listed one field a line and never split inside a name or value, a restore plan
    lists what the backup sets apart from the defaults, history() keeps run, kind, counts and
    state in view beside the file browser, and holds only the sandbox's own runs; all readable."""
    page = views_page
    use_theme(page, theme)
    problems = layout_problems(page, 1280, theme, artifacts) + layout_problems(page, 900, theme, artifacts)
    assert page.evaluate("() => document.getElementById('filebrowser').getBoundingClientRect().width") > 150
    problems += narrow_problems(page) + folding_problems(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, f"in {theme}:\n" + "\n".join(problems)


#: Every code cell of the notebook in view has run (a number in its prompt, none still ``[*]``).
ALL_RAN = """() => {
    const prompts = [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')];
    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""


def story_checks(page: Any, name: str) -> list[str]:
    """What notebook ``name`` must show a person (issue 24, point 7), at 900 px beside the file browser."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")
    found = []

    def output(index: int) -> Any:  # the notebook's own cell index (the copy has one cell more on top)
        return cells.nth(index + 1).locator(".jp-OutputArea-output").last

    if name.startswith("01"):
        head = output(3)
        licenses = [t for t in head.locator("tbody td").all_inner_texts() if "lic" in t or "(" in t]
        if not licenses or any("{" in t or "\n" in t.strip() for t in licenses):
            found.append(f"01: the license column is not a short label: {licenses[:3]}")
        values = output(14).locator("tbody tr").first.locator("td").all_inner_texts()
        column = output(14).locator("tbody td").all_inner_texts()
        if "True" not in column or "False" not in column:
            found.append(f"01: non_defaults does not show switches as True/False: {values}")
    if name.startswith("04") and not output(2).locator("table").count():
        found.append("04: the CSV is not previewed as a table")
    if name.startswith("05"):
        texts = [t.strip().split("\n")[0] for t in page.locator(
            ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").all_inner_texts()]  # fmt: skip
        shown = [t.split(":")[0] for t in texts if t.startswith(("Plan:", "Report:"))]
        if shown[:2] != ["Plan", "Report"] or shown.count("Plan") < 3:
            found.append(f"05: the plans are not each displayed before they are applied: {shown}")
        trim = [t for t in texts if t.startswith("Plan: 2 sources to delete")]
        if not trim:
            found.append("05: the plan of deletions is not displayed with its - marks")
    if name.startswith("06"):
        found += review_story(output)
    return found


def review_story(output: Callable[[int], Any]) -> list[str]:
    """Notebook 06: its saved plan as a Markdown table, the colleague's conflict when it is
    applied, the half fix refused, a clean audit after the whole fix (``output``: a cell's last output)."""
    found = []
    rows = output(5).locator("table tbody tr").all_inner_texts()
    if not rows or not all(r.split()[0] == "~" for r in rows):
        found.append(f"06: the saved plan is not shown as a Markdown table of ~ rows: {rows[:2]}")
    said = {k: output(k).inner_text() for k in (9, 15, 17)}
    for cell, text, what in (
        (9, "1 conflict", "applying the saved plan does not show the colleague's conflict"),
        (15, "PolicyViolationError", "the half fix is not refused"),
        (17, "Every source meets every rule.", "the audit after the fix is not clean"),
    ):
        if text not in said[cell]:
            found.append(f"06: {what}: {said[cell][:200]!r}")
    return found


@pytest.mark.parametrize("name", STORY_NOTEBOOKS)
def test_the_notebooks_tell_the_story(lab: Lab, browser: Browser, artifacts: Path, name: str) -> None:
    """Point 7: notebook 01 shows licenses as short labels and non_defaults' switches as True/False,
    04 previews the CSV as a table, 05 displays each plan before applying it, 06 shows its saved
    plan as a Markdown table, the conflict, the refused half fix and a clean audit (at 900 px)."""
    page = new_page(browser)
    try:
        page.set_viewport_size({"width": 900, "height": 900})
        open_and_run_all(page, lab, name, workspace=f"story-{name[:2]}")
        page.wait_for_function(ALL_RAN, timeout=240_000, polling=500)
        open_file_browser(page)
        problems = story_checks(page, name)
        page.screenshot(path=str(artifacts / f"story-{name[:2]}.png"), full_page=True)
    finally:
        page.close()
    assert not problems, "\n".join(problems)


def form_parts(page: Any) -> tuple[Any, Any]:
    form = output_with(page, ".neuroio-form")
    return form, form.locator(".neuroio-form").first


def field_input(form: Any, label: str, nth: int = 0) -> tuple[Any, Any]:
    """The input whose accessible name is ``label`` ("Video stream: Create face size"; the ``nth``
    of that name) and its row."""
    box = form.get_by_label(label, exact=True).nth(nth)
    return box, box.locator("xpath=ancestor::div[contains(concat(' ', @class, ' '), ' neuroio-row ')][1]")


@pytest.mark.parametrize("theme", THEMES)
def test_form_at_laptop_width(views_page: Any, theme: str, artifacts: Path) -> None:
    """Point 2: at 900 x 900 with the file browser open, nothing of the form is cut off."""
    from playwright.sync_api import expect

    page = views_page
    use_theme(page, theme)
    out, form = form_parts(page)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.wait_for_timeout(300)
    wide = form.bounding_box()["height"]
    page.set_viewport_size({"width": 900, "height": 900})
    page.wait_for_timeout(300)
    assert page.evaluate("() => document.getElementById('filebrowser').getBoundingClientRect().width") > 150
    narrow = form.bounding_box()["height"]
    problems = [f"clipped: {c}" for c in form.evaluate(CLIPPED_INPUTS_JS)]
    if narrow > 1.6 * wide:
        problems.append(f"the form is {narrow:.0f} px tall at 900 px, {narrow / wide:.1f}x its {wide:.0f} px at 1280")

    box, row = field_input(out, "Video stream: Create face size")
    box.scroll_into_view_if_needed()
    box.fill("31234")
    box.press("Enter")
    expect(out.locator(".neuroio-status").first).to_contain_text("1 unsaved change")
    for part in ("neuroio-mark", "neuroio-help"):
        element = row.locator(f".{part}").first
        if not element.evaluate(SEEN_JS):
            problems.append(f"the {part} of an edited field is not visible")
    for name, element in (
        ("Save", out.get_by_role("button", name="Save", exact=True).first),
        ("the status line", out.locator(".neuroio-status").first),
    ):
        if not element.evaluate(IN_VIEW_JS):
            chain = element.evaluate(
                "(el) => { const o = []; for (let e = el; e; e = e.parentElement) {"
                " const s = getComputedStyle(e); if (s.overflowY !== 'visible' || s.contain !== 'none')"
                " o.push(e.className.toString().slice(0, 60) + ':' + s.overflowY + '/' + s.contain); }"
                " return o.join(' < '); }"
            )
            problems.append(f"{name} is out of view while a field low in the form is edited ({chain})")
    problems += [f"form message: {p}" for p in low_contrast(form)]
    page.screenshot(path=str(artifacts / f"form-900-{theme.split()[-1]}.png"))
    out.get_by_role("button", name="Revert", exact=True).first.click()
    expect(out.locator(".neuroio-status").first).to_contain_text("no unsaved changes")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, f"at 900 px in {theme}:\n" + "\n".join(problems)


@pytest.mark.parametrize("theme,accepted", [(THEMES[0], ("12 345", 12345)), (THEMES[1], ("12,346", 12346))])
def test_number_box_never_saves_a_wrong_number(
    views_page: Any, module_sandbox: Sandbox, theme: str, accepted: tuple[str, int], artifacts: Path
) -> None:
    """Point 3: 7000.5, 1e5, 12abc are refused next to the field and nothing is sent."""
    from playwright.sync_api import expect

    page, sandbox = views_page, module_sandbox
    page.set_viewport_size({"width": 900, "height": 900})
    use_theme(page, theme)
    out, form = form_parts(page)
    box, row = field_input(out, "General: Identify face size")
    status = out.locator(".neuroio-status").first
    sandbox.clear_log()
    for typed in ("7000.5", "1e5", "12abc"):
        box.fill(typed)
        box.press("Enter")
        expect(row.locator(".neuroio-errline")).to_contain_text("whole number")
        assert row.locator(".neuroio-errline").first.evaluate(SEEN_JS), f"the reason for {typed!r} is not visible"
        out.get_by_role("button", name="Save", exact=True).first.click()
        expect(status).to_contain_text("not saved")
        expect(status.locator(".neuroio-error").first).to_be_visible()
        expect(box).to_be_focused()  # a refused save puts the cursor in the field in error
        assert not sandbox.requests("PATCH"), f"{typed!r} was sent"
    problems = [f"form message: {p}" for p in low_contrast(form)]
    page.screenshot(path=str(artifacts / f"form-refused-{theme.split()[-1]}.png"))
    text, number = accepted
    box.fill(text)
    box.press("Enter")
    expect(row.locator(".neuroio-errline")).to_have_text("")
    out.get_by_role("button", name="Save", exact=True).first.click()
    expect(status).to_contain_text("saved: General > Identify face size", timeout=30_000)
    patches = sandbox.requests("PATCH")
    assert [(p.path, p.body) for p in patches] == [
        (f"/v1/sources/{FORM_SOURCE}/", {"identify_facesize_threshold": number})
    ]
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, "\n".join(problems)


def test_no_progress_bar_left_behind(views_page: Any, lab: Lab, jupyter_home: dict[str, Path]) -> None:
    """Point 6: the page, the saved notebook and the reopened notebook hold no bar, no '0%', no broken widget."""
    page = views_page
    outputs = page.locator(".jp-OutputArea-output")
    page_text = "\n".join(outputs.all_inner_texts())
    assert "0%" not in page_text and "Error displaying widget" not in page_text
    page.evaluate("async () => { await window.jupyterapp.commands.execute('docmanager:save'); }")
    page.wait_for_function("() => !window.jupyterapp.shell.currentWidget.context.model.dirty")
    saved = nbformat.read(jupyter_home["root"] / VIEWS_NOTEBOOK, as_version=4)
    for number, cell in enumerate(saved.cells[:-1]):  # all but the form's cell
        text = json.dumps(cell.get("outputs", []))
        assert "application/vnd.jupyter.widget-view+json" not in text, f"cell {number} keeps a widget"
        assert "0%" not in text, f"cell {number} keeps a bar as text"
    page.reload()
    page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=90_000)
    page.evaluate("async () => { await window.jupyterapp.restored; }")
    output_of_cell(page, 1).wait_for()
    reopened = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
    assert "Error displaying widget" not in reopened.split("Source 5")[0]


def test_jupyterlab_form_saves_one_patch(
    lab: Lab, browser: Browser, module_sandbox: Sandbox, artifacts: Path, request: pytest.FixtureRequest
) -> None:
    """Notebook 03, as a user runs it: tick a box, type a number, Save: exactly that PATCH."""
    from playwright.sync_api import expect

    page, sandbox = new_page(browser), module_sandbox
    first = sandbox.source(1)  # the notebook edits the first source of the listing
    try:
        open_and_run_all(page, lab, NOTEBOOK.name)
        out = output_with(page, ".neuroio-form")
        expect(out.locator(".widget-checkbox").first).to_be_visible(timeout=60_000)
        expect(out.locator(".neuroio-status").first).to_contain_text("no unsaved changes")
        sandbox.clear_log()

        out.get_by_role("checkbox", name="General: Use PPS time", exact=True).click()
        threshold = out.get_by_label("General: Identify face size", exact=True)
        threshold.fill("4545")
        threshold.press("Enter")
        expect(out.locator(".neuroio-status").first).to_contain_text("2 unsaved changes")
        expect(out.locator(".neuroio-unsaved.neuroio-row")).to_have_count(2)
        out.screenshot(path=str(artifacts / "form-unsaved.png"))

        out.get_by_role("button", name="Save", exact=True).first.click()
        expect(out.locator(".neuroio-status").first).to_contain_text("saved: ", timeout=30_000)
        expect(out.locator(".neuroio-status").first).to_contain_text("Identify face size")
        out.screenshot(path=str(artifacts / "form-saved.png"))
        assert sandbox.token not in page.content()
    except BaseException:
        page.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
        print(f"jupyterlab log tail:\n{lab.log_tail()}")
        raise
    finally:
        page.close()

    patches = sandbox.requests("PATCH")
    assert len(patches) == 1, [(r.path, r.body) for r in patches]
    assert patches[0].path == "/v1/sources/1/"
    assert patches[0].body == {"use_pps_time": not first["use_pps_time"], "identify_facesize_threshold": 4545}
    assert sandbox.source(1)["identify_facesize_threshold"] == 4545


# ---- the form for everyone: keyboard, names, short errors ----------------------------
EVERYONE_NOTEBOOK = "form_for_everyone.ipynb"
#: The source the accessibility notebook's form edits (03 edits 1, the views notebook 5).
A11Y_SOURCE = 9
#: Run All stops at the first error (cell 3); the cells after it are run one by one.
EVERYONE_CELLS = [
    "from neuroio_nb import Client\nclient = Client()",
    "picker = client.sources.form()\npicker",
    f"form = client.sources.form({A11Y_SOURCE})\nform",
    "bad = client.sources.to_frame().head(40).copy()\nbad['identify_facesize_threshold'] = range(-40, 0)\n"
    "bad['name'] = None\nclient.sources.plan(bad)",
    "%tb",
    "Client('not-the-token-at-all', client.base_url).sources.get(1)",
    "Client('a-token-1234567890', 'http://127.0.0.1:9', max_retries=0).sources.get(1)",
    "Client('a-token-1234567890', 'http://neuroio.example.com')",
]
#: Error cells: what each must say (beyond its name), at most NOTEBOOK_LINES lines.
ERROR_CELLS = {
    3: ("ValidationError", "nothing was sent", "What to do: fix these in the edited frame"),
    5: ("AuthenticationError", "refused the API token", "$NEUROIO_API_TOKEN"),
    6: ("TransportError", "could not connect", "the API URL tried was http://127.0.0.1:9"),
    7: ("ConfigurationError", "Refusing plain http://", "$NEUROIO_API_URL"),
}

NOTEBOOK_STATE = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    return {active: panel.content.activeCellIndex, mode: panel.content.mode,
            focus: document.activeElement ? document.activeElement.tagName : null};
}"""


def run_cell(page: Any, index: int) -> None:
    """Run one cell of the open notebook (focus-independent: Lab's own command), once the kernel is
    idle (requests that reach it while it unwinds an error are dropped)."""
    page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=60_000)
    page.wait_for_timeout(500)
    page.evaluate(
        """async (index) => {
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.activeCellIndex = index;
            await window.jupyterapp.commands.execute('notebook:run-cell');
        }""",
        index,
    )


@pytest.fixture(scope="module")
def everyone_page(lab: Lab, browser: Browser, jupyter_home: dict[str, Path], artifacts: Path) -> Iterator[Any]:
    """The picker, a form and four errors, run once in one page."""
    from playwright.sync_api import expect

    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(source) for source in EVERYONE_CELLS]
    nbformat.write(nb, jupyter_home["root"] / EVERYONE_NOTEBOOK)
    page = new_page(browser)
    try:
        open_and_run_all(page, lab, EVERYONE_NOTEBOOK)
        expect(output_of_cell(page, 3)).to_contain_text("ValidationError", timeout=90_000)
        for index in range(4, len(EVERYONE_CELLS)):
            run_cell(page, index)
            expect(output_of_cell(page, index)).to_contain_text("Error" if index > 4 else "Traceback", timeout=60_000)
        expect(output_of_cell(page, 2).locator(".neuroio-status")).to_contain_text("no unsaved changes")
        page.keyboard.press("Escape")
    except BaseException:
        page.screenshot(path=str(artifacts / "FAILED-everyone-page.png"), full_page=True)
        print(f"jupyterlab log tail:\n{lab.log_tail()}")
        raise
    yield page
    page.close()


def test_errors_in_a_notebook_are_short(everyone_page: Any, artifacts: Path) -> None:
    """Point 5: ValidationError, AuthenticationError, TransportError and the plain-http refusal show
    in at most 12 lines (as text, and as laid out at 1280 px), with what to do next and no frame of
    the toolkit's code; %tb right after shows the whole traceback."""
    from neuroio_nb.errors import NOTEBOOK_LINES

    page = everyone_page
    page.set_viewport_size({"width": 1280, "height": 900})
    use_theme(page, THEMES[0])
    problems = []
    for index, (name, *parts) in ERROR_CELLS.items():
        out = output_of_cell(page, index)
        out.scroll_into_view_if_needed()
        out.screenshot(path=str(artifacts / f"error-{name}.png"))
        text = out.inner_text().strip()
        lines = text.splitlines()
        laid_out = out.evaluate(
            "(o) => { const p = o.querySelector('pre') || o;"
            " return Math.round(p.getBoundingClientRect().height / parseFloat(getComputedStyle(p).lineHeight)); }"
        )
        if len(lines) > NOTEBOOK_LINES or laid_out > NOTEBOOK_LINES + 2:
            problems.append(f"{name}: {len(lines)} lines of text, {laid_out} laid out:\n{text}")
        if not lines[0].startswith(f"{name}: ") or "neuroio_nb/" in text or "Traceback" in text:
            problems.append(f"{name} is not short:\n{text}")
        problems += [f"{name} does not say {part!r}:\n{text}" for part in parts if part not in text]
    whole = output_of_cell(page, 4).inner_text()
    if "Traceback" not in whole or "neuroio_nb" not in whole:
        problems.append(f"%tb does not show the whole traceback:\n{whole[:400]}")
    assert not problems, "\n\n".join(problems)


#: Keeps the page's kernel busy (a silent request that waits for a file, a minute at most).
HOLD_KERNEL = """(path) => {
    const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
    kernel.requestExecute({silent: true, store_history: false, code:
        `import os, time\\nend = time.monotonic() + 60\\n`
        + `while not os.path.exists(${JSON.stringify(path)}) and time.monotonic() < end: time.sleep(0.02)`});
}"""


@contextlib.contextmanager
def kernel_held(page: Any, release: Path) -> Iterator[None]:
    """The page's kernel busy (it answers no widget message) until the block ends."""
    release.unlink(missing_ok=True)
    page.evaluate(HOLD_KERNEL, str(release))
    try:
        page.wait_for_function(f"({KERNEL_STATUS})() === 'busy'", timeout=30_000)
        yield
    finally:
        release.touch()


def option_id(listbox: Any, index: int) -> str:
    """The source id of the picker's ``index``-th entry ("Lobby cam - space 1 (26)" -> "26")."""
    return str(listbox.evaluate("(s, i) => s.options[i].textContent", index).rsplit("(", 1)[1].rstrip(")"))


def test_keys_in_lists_move_the_selection_not_the_notebook(everyone_page: Any, artifacts: Path) -> None:
    """Point 4: arrow keys in the picker's list and in "Keep images for" move their selection, not
    JupyterLab's active cell; Enter in the list, or in the filter box, opens the form."""
    from playwright.sync_api import expect

    page = everyone_page
    page.set_viewport_size({"width": 1280, "height": 900})
    picker = output_of_cell(page, 1)
    listbox = picker.locator(".neuroio-picker-list select")
    title = picker.locator(".neuroio-form h3")
    picker.scroll_into_view_if_needed()
    listbox.locator("option").nth(1).click()  # the mouse opens the second source
    expect(title).to_contain_text(f"Source {option_id(listbox, 1)}:", timeout=30_000)
    opened = title.inner_text()
    listbox.focus()  # the notebook makes the cell holding the focus its active cell
    before = page.evaluate(NOTEBOOK_STATE)
    for _ in range(2):
        page.keyboard.press("ArrowDown")
    state = page.evaluate(NOTEBOOK_STATE)
    assert state["active"] == before["active"] and state["mode"] == "command", f"the notebook moved: {state}"
    assert listbox.evaluate("(s) => s.selectedIndex") == 3, "ArrowDown did not move the list's selection"
    assert title.inner_text() == opened, "an arrow key opened a form: only Enter (or a click) does"
    page.keyboard.press("Enter")
    expect(title).to_contain_text(f"Source {option_id(listbox, 3)}:")
    state = page.evaluate(NOTEBOOK_STATE)
    assert state == {**before, "focus": "SELECT"}, f"Enter left the list: {state}"
    page.keyboard.press("ArrowUp")  # a highlight left without Enter goes back to the open source
    picker.get_by_label("Find source").focus()
    assert listbox.evaluate("(s) => s.selectedIndex") == 3, "the list no longer shows the open source"
    expect(title).to_contain_text(f"Source {option_id(listbox, 3)}:")

    # Enter right after the text, on a busy kernel: the browser holds the text box's later keys
    # back until the kernel answers the first, so Enter reaches the kernel before its text and
    # must bring the text with it.
    finder = picker.get_by_label("Find source")
    with kernel_held(page, artifacts / "release-picker-kernel"):
        finder.press_sequentially("(12)")
        finder.press("Enter")
    expect(title).to_contain_text("Source 12:", timeout=30_000)
    expect(picker.locator(".neuroio-count")).to_contain_text("1 of ")
    finder.fill("")

    form = output_of_cell(page, 2)
    keep = form.locator(".neuroio-field-store_images_for_results select")
    keep.scroll_into_view_if_needed()
    keep.locator("option").first.click()  # "new" alone
    expect(form.locator(".neuroio-status")).to_contain_text("1 unsaved change")
    before = page.evaluate(NOTEBOOK_STATE)
    page.keyboard.press("ArrowDown")
    state = page.evaluate(NOTEBOOK_STATE)
    assert state["active"] == before["active"] and state["mode"] == "command", f"the notebook moved: {state}"
    assert keep.evaluate("(s) => [...s.selectedOptions].map(o => o.index)") == [1], "ArrowDown did not move"
    page.screenshot(path=str(artifacts / "keys-in-lists.png"))
    form.get_by_role("button", name="Revert", exact=True).click()
    expect(form.locator(".neuroio-status")).to_contain_text("no unsaved changes")


#: Elements under ``root`` that show a scrollbar: more content than room (by a single pixel: a
#: desktop browser draws a scrollbar for that; headless Chromium hides scrollbars, so they are
#: measured, not seen), and allowed to scroll.
SCROLLBARS_JS = """(root) => {
    const found = [];
    for (const el of [root, ...root.querySelectorAll('*')]) {
        const s = getComputedStyle(el);
        const y = /(auto|scroll)/.test(s.overflowY) && el.scrollHeight > el.clientHeight;
        const x = /(auto|scroll)/.test(s.overflowX) && el.scrollWidth > el.clientWidth;
        if ((x || y) && el.tagName !== 'SELECT') {
            const row = el.closest('.neuroio-row');
            found.push(`${el.className || el.tagName} in ${row ? row.className : 'the form'}`
                       + ` (${el.scrollWidth}x${el.scrollHeight} in ${el.clientWidth}x${el.clientHeight})`);
        }
    }
    return found.slice(0, 10);
}"""

#: The focus ring of the focused element: its outline (or border) colour's contrast with what is around it.
FOCUS_RING_JS = """(el) => {
    const parse = (c) => {
        const m = c && c.match(/rgba?\\(([^)]+)\\)/);
        if (!m) return null;
        const p = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
        return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
    };
    const over = (top, bottom) => [0, 1, 2].map(i => top[i] * top[3] + bottom[i] * (1 - top[3])).concat([1]);
    const chain = [];
    for (let e = el.parentElement; e; e = e.parentElement) chain.push(e);
    let bg = [255, 255, 255, 1];
    for (const e of chain.reverse()) {
        const c = parse(getComputedStyle(e).backgroundColor);
        if (c && c[3] > 0) bg = over(c, bg);
    }
    const lum = (c) => {
        const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
        return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
    };
    const s = getComputedStyle(el);
    const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2;
    const ring = over(parse(outline ? s.outlineColor : s.borderTopColor), bg);
    const a = lum(ring), b = lum(bg);
    return {ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05), outline, width: s.outlineWidth,
            color: outline ? s.outlineColor : s.borderTopColor,
            bg: 'rgb(' + bg.slice(0, 3).map(Math.round).join(',') + ')'};
}"""

ROLES = ("textbox", "checkbox", "listbox", "combobox", "spinbutton")


def accessible_names(locator: Any) -> list[str]:
    """The accessible names of the inputs under ``locator``, as the browser's accessibility tree has them."""
    import re

    snapshot = locator.aria_snapshot()
    return [m.group(2) for m in re.finditer(rf'- \'?({"|".join(ROLES)}) "([^"]*)"', snapshot)]


def stray_scrollbars(page: Any, out: Any, artifacts: Path, shot: str) -> list[str]:
    """The scrollbars on the form (``out``) and the picker at 1280 px, then at 900 px beside the
    file browser (opened here); a screenshot of the form at each (``shot`` with its width)."""
    problems = []
    for width in (1280, 900):
        page.set_viewport_size({"width": width, "height": 900})
        if width == 900:
            open_file_browser(page)
        page.wait_for_timeout(300)
        for where, output in (("form", out), ("picker", output_of_cell(page, 1))):
            problems += [f"{width} px, {where}: scrollbar on {s}" for s in output.evaluate(SCROLLBARS_JS)]
        out.screenshot(path=str(artifacts / shot.format(width)))
    return problems


#: Each row of the form: its input's accessible name, and whether its help and error lines are
#: the two ids its aria-describedby names.
DESCRIBED_JS = """(form) => [...form.querySelectorAll('.neuroio-row')].map(row => {
    const input = row.querySelector('.neuroio-line input, .neuroio-line select');
    const ids = (input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
    const help = row.querySelector('.neuroio-help').textContent;
    const texts = ids.map(id => (document.getElementById(id) || {textContent: null}).textContent);
    return {name: input.getAttribute('aria-label'), ok: texts.includes(help) && texts.length === 2};
})"""


def naming_problems(form: Any) -> list[str]:
    """Inputs without a unique accessible name, and help lines not linked by aria-describedby."""
    problems = []
    names = accessible_names(form)
    inputs = form.locator(".neuroio-row input, .neuroio-row select").count()
    if len(names) != inputs or len(set(names)) != len(names) or not all(names):
        problems.append(f"{inputs} inputs, accessible names: {names}")
    for wanted in ("Photo uploads: Create face size", "Video stream: Create face size", "General: Use PPS time"):
        if wanted not in names:
            problems.append(f"no input is named {wanted!r}: {names}")
    described = form.evaluate(DESCRIBED_JS)
    problems += [f"{d['name']}: help and error line not linked by aria-describedby" for d in described if not d["ok"]]
    return problems


@pytest.mark.parametrize("theme", THEMES)
def test_the_form_for_everyone(everyone_page: Any, theme: str, artifacts: Path) -> None:
    """Point 6, at 1280 px and at 900 px beside the file browser: no stray scrollbars; every input a
    unique accessible name ("Photo uploads: Create face size"); help and error lines linked with
    aria-describedby; the status line a role="status" of one line; a text box's focus ring >= 3:1."""
    from playwright.sync_api import expect

    page = everyone_page
    use_theme(page, theme)
    out = output_of_cell(page, 2)
    form = out.locator(".neuroio-form").first
    problems = stray_scrollbars(page, out, artifacts, "form-for-everyone-{}-" + theme.split()[-1] + ".png")
    problems += naming_problems(form)

    status = out.get_by_role("status")
    expect(status).to_contain_text("no unsaved changes")
    box, _ = field_input(out, "General: Identify face size")
    other, _ = field_input(out, "Video stream: Create face size")
    for field, typed in ((box, "7000.5"), (other, "12abc")):
        field.fill(typed)
        field.press("Enter")
    out.get_by_role("button", name="Save", exact=True).click()
    expect(status).to_contain_text("not saved")
    error_id = box.get_attribute("aria-describedby").split()[0]
    if "whole number" not in page.locator(f"[id='{error_id}']").inner_text():
        problems.append("the error under a field is not the first of its aria-describedby")
    if box.get_attribute("aria-invalid") != "true":
        problems.append("a field in error is not aria-invalid")
    page.set_viewport_size({"width": 900, "height": 900})
    page.wait_for_timeout(300)
    lines = status.evaluate(
        "(s) => { const c = s.querySelector('.widget-html-content') || s;"
        " return c.getBoundingClientRect().height / parseFloat(getComputedStyle(c).lineHeight); }"
    )
    whole = status.get_attribute("title") or ""
    if lines > 1.5 or "not saved" not in whole or "2 unsaved changes" not in whole:
        problems.append(f"the status line is {lines:.1f} lines at 900 px (its title: {whole!r})")
    # past the output's edge: nothing but the status line's own words, which its ellipsis cuts
    status_words = status.inner_text()
    for found in out.evaluate(OVERFLOW_JS):
        quoted = found.split('"')[1] if found.count('"') >= 2 else None
        if quoted is None or quoted not in status_words:
            problems.append(f"900 px: {found}")
    page.screenshot(path=str(artifacts / f"form-for-everyone-900-{theme.split()[-1]}.png"))

    name_box, name_row = field_input(out, "General: Name")
    name_box.click()
    ring = name_box.evaluate(FOCUS_RING_JS)
    if ring["ratio"] < 3:
        problems.append(f"the focus ring of a text box is {ring['ratio']:.2f}:1 ({ring})")
    name_row.screenshot(path=str(artifacts / f"focus-ring-{theme.split()[-1]}.png"))
    page.keyboard.press("Escape")
    out.get_by_role("button", name="Revert", exact=True).click()
    expect(status).to_contain_text("no unsaved changes")
    page.set_viewport_size({"width": 1280, "height": 900})
    assert not problems, f"in {theme}:\n" + "\n".join(problems)


def test_save_right_after_typing_on_a_busy_kernel_saves_what_the_screen_shows(
    everyone_page: Any, module_sandbox: Sandbox, artifacts: Path
) -> None:
    """On a busy kernel the browser holds a box's later keys and a list's later picks back until the
    kernel answers the first, while Save's click goes at once: the page script sends the click with
    what every input shows, so exactly the number typed and the options picked are saved, once."""
    from playwright.sync_api import expect

    page, sandbox = everyone_page, module_sandbox
    page.set_viewport_size({"width": 1280, "height": 900})
    out = output_of_cell(page, 2)
    status = out.locator(".neuroio-status").first
    expect(status).to_contain_text("no unsaved changes")
    before = sandbox.source(A11Y_SOURCE)
    number = 4343 if before["identify_facesize_threshold"] == 4242 else 4242
    options = out.locator(".neuroio-field-store_images_for_results select option")
    codes = [text.split(":")[0] for text in options.all_inner_texts()]
    picked = [0, 2] if {codes[0], codes[2]} != set(before["store_images_for_results"] or []) else [1, 3]
    box, _ = field_input(out, "General: Identify face size")
    box.scroll_into_view_if_needed()
    box.click()
    box.press("Control+a")
    sandbox.clear_log()
    with kernel_held(page, artifacts / "release-save-kernel"):
        box.press_sequentially(str(number))  # the first key goes; the rest wait in the browser
        options.nth(picked[0]).click()
        options.nth(picked[1]).click(modifiers=["Control"])  # waits behind the first pick
        out.get_by_role("button", name="Save", exact=True).click()
    expect(status).to_have_text(re.compile(r"^saved: .* no unsaved changes$"), timeout=30_000)
    expect(box).to_have_value(str(number))
    page.screenshot(path=str(artifacts / "save-on-a-busy-kernel.png"))
    patches = [(p.path, p.body) for p in sandbox.requests("PATCH")]
    wanted = {"identify_facesize_threshold": number, "store_images_for_results": [codes[i] for i in picked]}
    assert patches == [(f"/v1/sources/{A11Y_SOURCE}/", wanted)]
    page.wait_for_function(f"({KERNEL_STATUS})() === 'idle'", timeout=30_000)
    expect(status).to_contain_text("no unsaved changes")  # the held-back keys and picks changed nothing
    assert len(sandbox.requests("PATCH")) == 1
