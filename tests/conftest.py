"""The one fixture family: sandboxes on loopback, clients for them, and what they saw.

- ``sb``: a running sandbox. Its knobs come from the closest ``sandbox`` marker, e.g.
  ``pytestmark = pytest.mark.sandbox(sources=40, seed=3)``; without one, 120 sources.
  ``pytest.mark.sandbox(..., shared=True)`` on a module gives every test of the module
  the same sandbox, ``module_sandbox`` (started once, its log cleared before each test).
- ``make_sandbox(**knobs)``: more sandboxes, or one with knobs a test picks itself.
- ``client`` / ``client_for(sb, **options)``: clients for them (``max_retries`` 8 unless
  given; a ``client`` marker, e.g. ``pytest.mark.client(max_retries=0)``, sets options).
- ``patches()``: the PATCH bodies ``sb`` received, by source id, in arrival order.
- ``churn``: another user adding or deleting sources while a listing is read.
- ``ctrl_c_at(sb, method, n)``: Ctrl-C, as the n-th request of ``method`` reaches ``sb``.
- ``listing_waits_for_a_patch(sb, n)``: from the n-th GET on, pages wait until a PATCH arrived.
- ``free_port``: a loopback port nothing listens on.
- ``connections_opened``: the TCP connections HTTP clients (urllib3, under requests) open
  during the test, as a list of addresses.
- ``ctrl_c_is_heard`` (automatic): Ctrl-C raises ``KeyboardInterrupt`` in the tests and in
  every process they start, however the suite itself was started.
- ``journal_folder`` (automatic): every test, and every process it starts, journals into
  a temporary folder, never the user's.
- ``retry_waits`` (automatic): how long clients really wait before a retry. ``"bounded"``
  (the default): at most :data:`RETRY_WAIT_CAP` seconds a wait, so fault tests meet the same
  retries, budgets and verdicts without sleeping out the backoff; ``"real"``: as long as the
  client asks, for tests marked ``slow`` or ``real_clock`` (or parametrized with it).
- ``serve_in_subprocess(*argv)``: a command that serves a sandbox, run as its own process.
- ``script``: the installed ``neuroio-nb`` console script, run as its own process against a
  sandbox (``script.run``, ``script.start``, ``script.on_a_terminal``); nothing it prints may
  hold the token or a traceback. Its environment keeps ``journal_folder``.
- ``cli_main``: the same commands run through the CLI's entry function in the test's own
  process (``cli_main.run``, ``cli_main.on_a_terminal``, ``cli_main.env``), with ``script``'s
  arguments, environment, exit codes and checks, without a process's start-up (about
  0.6 CPU-seconds of pandas and numpy a run).

Everything started is stopped after the test.
"""

from __future__ import annotations

import _thread
import gc
import io
import os
import pty
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import urllib3.util.connection

from neuroio_nb import Client
from neuroio_nb.sandbox import Sandbox

# jsonschema, under nbformat (which the notebook, form and browser tests import), builds a grammar
# for its optional "iri" format check whenever rfc3987-syntax is installed (JupyterLab's extras
# bring it): 1.2 CPU-seconds in every test process, half its collection, for a check no notebook
# schema asks for. Without the module jsonschema leaves that format unchecked, as it documents.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]  # None: "cannot be imported"

DEFAULT_KNOBS: dict[str, Any] = {"sources": 120}
#: Where the journal goes: the ``journal_folder`` fixture sets it for every test and every process.
JOURNAL_ENV = "NEUROIO_NB_JOURNAL"
#: Seconds a client of a test waits at most before a retry, unless the test runs on the real clock.
RETRY_WAIT_CAP = 0.02


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sandbox(**knobs): the knobs of the `sb` fixture's sandbox")
    config.addinivalue_line("markers", "client(**options): the options of the `client` fixture")


#: Test modules whose tests run on one pytest-xdist worker, one after another: the browser tests
#: share one JupyterLab and Chromium (module fixtures), which a second worker would start again.
ONE_WORKER_MODULES = {"tests/test_browser.py"}


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: without pytest-xdist it is never called
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` (``python3 tasks.py test``): each test is handed to whichever worker
    is free, except that the tests of :data:`ONE_WORKER_MODULES` go to one worker together.

    pytest-xdist's own grouping (the ``xdist_group`` marker) renames node ids, which pytest 9
    no longer allows, so the groups are made here, from the ids the controller sees."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadGroupScheduling

    class ModulesTogether(LoadGroupScheduling):  # type: ignore[misc]  # pytest-xdist ships no types
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else nodeid

    return ModulesTogether(config, log)


def _cpu_seconds() -> float:
    """CPU time of this process (all its threads) and of the processes it started that ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


_CPU_AT_SETUP = pytest.StashKey[float]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_CPU_AT_SETUP] = _cpu_seconds()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Each test's CPU-seconds, set-up and tear-down included, as the property ``cpu_seconds``
    of its JUnit XML record (``--junitxml``; ``tools/test_times.py`` sums them by file). Unlike
    a duration, a machine busy with other work hardly changes it. A process a fixture started
    counts when it ends (a module's JupyterLab: in the module's last test)."""
    if call.when == "teardown" and _CPU_AT_SETUP in item.stash:
        item.user_properties.append(("cpu_seconds", f"{_cpu_seconds() - item.stash[_CPU_AT_SETUP]:.3f}"))
    yield


def _marker_kwargs(node: pytest.Item | pytest.Collector, name: str) -> dict[str, Any]:
    marker = node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture(autouse=True, scope="session")
def ctrl_c_is_heard() -> Iterator[None]:
    """Python's own Ctrl-C handler for the whole run.

    A suite started in the background (``nohup``, ``cmd &`` in a script) inherits Ctrl-C
    *ignored*: then a simulated Ctrl-C does nothing and every sandbox or CLI started as a
    subprocess ignores its SIGINT too, so the Ctrl-C tests would fail for a reason that is
    not the code's. Handled signals are reset by exec, so the subprocesses get the default."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True, scope="session")
def journal_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every process it starts) journals into a temporary folder, never the user's."""
    folder = tmp_path_factory.mktemp("journal")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(JOURNAL_ENV, str(folder))
        yield folder


def _bounded_sleep(seconds: float) -> None:
    time.sleep(min(seconds, RETRY_WAIT_CAP))


@pytest.fixture(autouse=True)
def retry_waits(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``"bounded"`` or ``"real"``: whether the clients of this test sleep out their retry waits.

    Bounded by default: which requests are retried, how often, and what each budget
    (``max_retries``, ``max_throttled_wait``) allows are decided exactly as on the real clock
    (the budgets count the waits asked for, not the time slept); only the sleeping is cut
    short. The real clock is for tests marked ``slow`` (the full-weather runs CI makes) or
    ``real_clock`` (a server whose rate limit must really be waited out), or parametrized
    ``indirect=True`` with ``"real"``. Clients in other processes (the CLI) always wait."""
    clock: str = getattr(request, "param", "")
    if not clock:
        real = request.node.get_closest_marker("slow") or request.node.get_closest_marker("real_clock")
        clock = "real" if real else "bounded"
    if clock == "bounded":
        monkeypatch.setattr(Client, "retry_sleep", staticmethod(_bounded_sleep))
    return clock


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with the given knobs; all are stopped after the test."""
    started: list[Sandbox] = []

    def make(**knobs: Any) -> Sandbox:
        sandbox = Sandbox(**knobs).start()
        started.append(sandbox)
        return sandbox

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(scope="module")
def module_sandbox(request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    knobs = {**DEFAULT_KNOBS, **_marker_kwargs(request.node, "sandbox")}
    knobs.pop("shared", None)
    with Sandbox(**knobs) as sandbox:
        yield sandbox


@pytest.fixture
def sb(request: pytest.FixtureRequest, make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    knobs = {**DEFAULT_KNOBS, **_marker_kwargs(request.node, "sandbox")}
    if knobs.pop("shared", False):
        shared: Sandbox = request.getfixturevalue("module_sandbox")
        shared.clear_log()
        return shared
    return make_sandbox(**knobs)


@pytest.fixture
def client_for() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(sandbox: Sandbox, **options: Any) -> Client:
        options.setdefault("max_retries", 8)
        c = Client(sandbox.token, sandbox.url, **options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(request: pytest.FixtureRequest, sb: Sandbox, client_for: Callable[..., Client]) -> Client:
    return client_for(sb, **_marker_kwargs(request.node, "client"))


@pytest.fixture
def patches(sb: Sandbox) -> Callable[[], dict[int, list[Any]]]:
    """``patches()``: source id -> the bodies of the PATCHes ``sb`` received for it, in order."""

    def received() -> dict[int, list[Any]]:
        bodies: dict[int, list[Any]] = {}
        for record in sb.requests("PATCH"):
            bodies.setdefault(record.source_id, []).append(record.body)
        return bodies

    return received


@pytest.fixture
def churn() -> Callable[..., list[int]]:
    """``churn(sb, {n: action})`` runs ``action(sb)`` as the n-th listing request arrives,
    as another user adding or deleting sources while a listing is read; returns the ids the
    actions say they added."""

    def start(sandbox: Sandbox, at: dict[int, Callable[[Sandbox], list[int] | None]]) -> list[int]:
        seen = {"n": 0}
        added: list[int] = []
        lock = threading.Lock()

        def hook(method: str, path: str) -> None:
            if method == "GET" and path == "/v1/sources/":
                with lock:
                    seen["n"] += 1
                    action = at.get(seen["n"])
                    if action is not None:
                        added.extend(action(sandbox) or [])

        sandbox.before_request = hook
        return added

    return start


def _inside_a_gc_callback(frame: Any) -> bool:
    """Is ``frame`` (or a caller of it) a garbage-collector callback (hypothesis installs one in
    every process that ran a property)? A ``KeyboardInterrupt`` raised there is printed and
    dropped, not raised in the code the collector interrupted: CPython's rule, for a real Ctrl-C too."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks:
            return True
        frame = frame.f_back
    return False


@pytest.fixture
def ctrl_c_at() -> Iterator[Callable[[Sandbox, str, int], None]]:
    """``ctrl_c_at(sb, "PATCH", n)``: the user presses Ctrl-C (a ``KeyboardInterrupt`` in the test's
    own thread, as in a notebook) as ``sb`` starts on the n-th request of that method. That request
    is answered only once the test's thread got the Ctrl-C, so the run cannot end before it,
    however loaded the machine."""
    heard = threading.Event()

    def ctrl_c(signum: int, frame: Any) -> None:
        if _inside_a_gc_callback(frame):  # raised there, Python drops it as "unraisable"
            threading.Timer(0.01, _thread.interrupt_main).start()  # pressed again, once outside
            return
        heard.set()
        raise KeyboardInterrupt  # as Python's own handler does

    def arm(sandbox: Sandbox, method: str, n: int) -> None:
        seen = 0
        lock = threading.Lock()

        def hook(requested: str, path: str) -> None:
            nonlocal seen
            if requested != method:
                return
            with lock:
                seen += 1
                now = seen == n
            if now:
                _thread.interrupt_main()
                heard.wait(timeout=60)

        sandbox.before_request = hook

    previous = signal.signal(signal.SIGINT, ctrl_c)
    yield arm
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def listing_waits_for_a_patch() -> Callable[[Sandbox, int], None]:
    """``listing_waits_for_a_patch(sb, n)``: from the n-th GET on, each page waits at ``sb`` until a
    PATCH has arrived (a minute at most), so a job that sends its PATCHes only once the whole
    listing was read has them start after every page ended, however fast or loaded the machine."""

    def arm(sandbox: Sandbox, n: int) -> None:
        patched = threading.Event()
        gets = 0
        lock = threading.Lock()

        def hook(method: str, path: str) -> None:
            nonlocal gets
            if method == "PATCH":
                patched.set()
            elif method == "GET":
                with lock:
                    gets += 1
                    held = gets >= n
                if held:
                    patched.wait(timeout=60)

        sandbox.before_request = hook

    return arm


@pytest.fixture
def connections_opened(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every TCP connection urllib3 opens during the test, by address: a kept-alive connection
    is opened once however many requests it carries."""
    opened: list[tuple[str, int]] = []
    open_connection = urllib3.util.connection.create_connection

    def counted(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append(address)
        return open_connection(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", counted)
    return opened


@pytest.fixture
def free_port() -> int:
    """A loopback port nothing listens on (bound, then closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@dataclass
class ServedSandbox:
    """A sandbox command running as its own process, and what it printed first."""

    proc: subprocess.Popen[str]
    url: str
    token: str
    #: The lines it printed after the two ``NAME=value`` lines, as they come.
    lines: queue.Queue[str]

    def interrupt(self, timeout: float = 10) -> tuple[int, str]:
        """Ctrl-C; the exit code and everything written to stderr."""
        self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(timeout=timeout)
        return code, self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def serve_in_subprocess() -> Iterator[Callable[..., Any]]:
    """``with serve_in_subprocess(*argv, env=...) as served:`` runs a command that serves a
    sandbox and prints ``NEUROIO_API_URL=...`` and ``NEUROIO_API_TOKEN=...``; killed if still
    running at the end."""

    @contextmanager
    def serve(
        *argv: str, env: dict[str, str] | None = None, cwd: Any = None, timeout: float = 20
    ) -> Iterator[ServedSandbox]:
        proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout or ()], daemon=True).start()
        try:
            printed = dict(lines.get(timeout=timeout).strip().split("=", 1) for _ in range(2))
            yield ServedSandbox(proc, printed["NEUROIO_API_URL"], printed["NEUROIO_API_TOKEN"], lines)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    yield serve


@dataclass(frozen=True)
class ConsoleScript:
    """The installed ``neuroio-nb`` script, run as a user runs it: in its own process, with the
    sandbox's URL and token in its environment (and no other ``NEUROIO_`` variable but the test
    journal's folder), stdin not a terminal unless a test answers on one. Whatever it prints
    holds no token and no traceback. Each run costs the start-up of Python, pandas and numpy
    (about 0.6 CPU-seconds): ``cli_main`` runs a command in the test's process instead."""

    path: Path

    def env(self, sb: Sandbox | None, **extra: str) -> dict[str, str]:
        """This process's environment less any ``NEUROIO_`` variable but the test journal's
        folder (``journal_folder``), plus ``sb``'s URL and token."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEUROIO_") or k == JOURNAL_ENV}
        if sb is not None:
            env.update(NEUROIO_API_TOKEN=sb.token, NEUROIO_API_URL=sb.url)
        env.update(extra)
        return env

    def run(
        self, sb: Sandbox | None, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run to the end; its output is read in the encoding it was told to use
        (``PYTHONIOENCODING``), else UTF-8."""
        env = env or self.env(sb)
        proc = subprocess.run(
            [str(self.path), *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            encoding=env.get("PYTHONIOENCODING", "utf-8"),
            timeout=60,
        )
        self.assert_clean(proc.stdout, proc.stderr, sb, env)
        return proc

    def start(self, sb: Sandbox | None, *args: str) -> subprocess.Popen[str]:
        """Start it and return at once (the caller reads its output and checks it is clean)."""
        return subprocess.Popen(
            [str(self.path), *args],
            env=self.env(sb),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def on_a_terminal(self, sb: Sandbox, *args: str, answer: str) -> tuple[int, str, str]:
        """Run it with stdin a terminal on which ``answer`` is typed; its exit code, stdout, stderr."""
        controller, terminal = pty.openpty()
        try:
            proc = subprocess.Popen(
                [str(self.path), *args],
                env=self.env(sb),
                stdin=terminal,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            os.close(terminal)
            os.write(controller, f"{answer}\n".encode())
            out, err = proc.communicate(timeout=60)
        finally:
            os.close(controller)
        self.assert_clean(out, err, sb)
        return proc.returncode, out, err

    @staticmethod
    def assert_clean(out: str, err: str, sb: Sandbox | None, env: dict[str, str] | None = None) -> None:
        """Neither ``sb``'s token nor the one in ``env`` is in the output, and no traceback is."""
        secrets = {sb.token} if sb is not None else set()
        if env and env.get("NEUROIO_API_TOKEN"):
            secrets.add(env["NEUROIO_API_TOKEN"])
        for secret in secrets:
            assert secret not in out and secret not in err
        assert "Traceback" not in err


def _installed_script() -> Path:
    beside = Path(sys.executable).parent / "neuroio-nb"
    return beside if beside.exists() else Path(shutil.which("neuroio-nb") or "neuroio-nb")


@pytest.fixture(scope="session")
def script() -> ConsoleScript:
    return ConsoleScript(_installed_script())


@dataclass(frozen=True)
class Finished:
    """What a command run in the test's process did: its exit code, and what it wrote."""

    returncode: int
    stdout: str
    stderr: str
    #: stdout's bytes as written, for data that must come out as UTF-8 whatever the encoding.
    stdout_bytes: bytes


class _Terminal(io.StringIO):
    """A terminal's input on which the user typed something."""

    def isatty(self) -> bool:
        return True


class CommandLine:
    """``neuroio_nb._cli.main``, the function the installed script calls, run in the test's own
    process as ``script`` runs the script: the same arguments, its ``NEUROIO_`` variables from
    ``env`` (``script.env(...)``) and no other, stdin not a terminal (``answer=`` types on one),
    stdout and stderr text streams in the encoding ``PYTHONIOENCODING`` names (else UTF-8) over
    bytes, as a process has. Its exit code is what ``main`` returns, or the ``SystemExit`` it
    raised (argparse's usage and ``--help``). Whatever it prints holds no token and no traceback;
    an exception ``main`` lets out fails the test (a real run would print its traceback).

    What only a real process shows stays with ``script``: the entry point itself, a real
    terminal, signals, pipes, what a command imports."""

    env = ConsoleScript.env
    assert_clean = staticmethod(ConsoleScript.assert_clean)

    def run(
        self, sb: Sandbox | None, *args: str, env: dict[str, str] | None = None, answer: str | None = None
    ) -> Finished:
        from neuroio_nb._cli import main

        env = env or self.env(sb)
        encoding = env.get("PYTHONIOENCODING", "utf-8")
        out, err = io.BytesIO(), io.BytesIO()
        stdout = io.TextIOWrapper(out, encoding=encoding, line_buffering=True)
        stderr = io.TextIOWrapper(err, encoding=encoding, errors="backslashreplace", line_buffering=True)
        stdin = _Terminal(f"{answer}\n") if answer is not None else io.StringIO("")
        with pytest.MonkeyPatch.context() as mp:
            for name in [k for k in os.environ if k.startswith("NEUROIO_")]:
                mp.delenv(name)
            for name, value in env.items():
                if name.startswith("NEUROIO_"):
                    mp.setenv(name, value)
            mp.setattr(sys, "stdin", stdin)
            mp.setattr(sys, "stdout", stdout)
            mp.setattr(sys, "stderr", stderr)
            try:
                code = main(list(args))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
            stdout.flush()
            stderr.flush()
        finished = Finished(
            code, _as_read(out.getvalue(), encoding), _as_read(err.getvalue(), encoding), out.getvalue()
        )
        self.assert_clean(finished.stdout, finished.stderr, sb, env)
        return finished

    def on_a_terminal(self, sb: Sandbox, *args: str, answer: str) -> tuple[int, str, str]:
        finished = self.run(sb, *args, answer=answer)
        return finished.returncode, finished.stdout, finished.stderr


def _as_read(data: bytes, encoding: str) -> str:
    """Bytes as ``subprocess.run(..., encoding=...)`` hands them back: decoded, newlines universal."""
    return io.TextIOWrapper(io.BytesIO(data), encoding=encoding, errors="replace").read()


@pytest.fixture
def cli_main() -> CommandLine:
    return CommandLine()
