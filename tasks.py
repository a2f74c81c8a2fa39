"""The project's jobs, each one command on a fresh machine (Python 3.10+).

    python3 tasks.py demo    set up .venv, run notebooks/01_explore_sources.ipynb
                             against the embedded sandbox -> output/
    python3 tasks.py test    set up .venv, run the test suite (in parallel processes;
                             the full-weather tests marked slow aside)

and the checks CI adds after them:

    python3 tasks.py slow    the full-weather tests (marked slow: faults on the real clock)
    python3 tasks.py matrix  the suite (browser test aside) on the oldest supported stack
                             (Python 3.10, every dependency at its minimum: constraints-min.txt)
                             and the newest (Python 3.13, newest releases), each in its own
                             .venv-<stack>; an interpreter not on this machine is skipped
                             with a notice (a failure when CI is set)
    python3 tasks.py lint    ruff check, ruff format --check, mypy --strict on neuroio_nb/
    python3 tasks.py docs    build the documentation site into site/ (mkdocs --strict)
    python3 tasks.py dist    build the sdist and wheel into dist/, twine check them, install
                             the wheel into a fresh venv and run its commands from there

Each creates its virtual environments beside this file (reused when present) and installs
the project into them (in .venv, again only when pyproject.toml or the version changed);
nothing is installed outside them.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
LOOPBACK = {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
#: The two ends of the version matrix: name, Python, constraints (None: newest releases).
STACKS = [
    ("py310-min", "3.10", ROOT / "constraints-min.txt"),
    ("py313-new", "3.13", None),
]


#: What an editable install is made from: the package's code is read from the checkout itself.
INSTALLED_FROM = [ROOT / "pyproject.toml", ROOT / "neuroio_nb" / "_version.py"]


def setup(extra: str) -> None:
    """.venv with the project installed (editable) with ``extra``. pip runs again only when what it
    installed from changed (a dependency, an entry point, the version): otherwise it would spend
    seconds finding every requirement met before each job. Delete .venv/.installed-* to force it."""
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    stamp = VENV / f".installed-{extra}"
    installed = hashlib.sha256(b"".join(path.read_bytes() for path in INSTALLED_FROM)).hexdigest()
    if stamp.exists() and stamp.read_text() == installed:
        return
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{extra}]")
    stamp.write_text(installed)


def run(*args: object, cwd: Path = ROOT, **kwargs: Any) -> None:
    subprocess.run([str(a) for a in args], cwd=cwd, check=True, **kwargs)


def demo() -> None:
    setup("notebooks")
    run(PYTHON, "tools/run_notebooks.py", "notebooks/01_explore_sources.ipynb", "--out", "output")


#: Python's bytecode cache for the tests' processes, outside the source tree. Each process the suite
#: runs (the pytest workers, and the console scripts, kernels and servers they start) would otherwise
#: compile the package and rewrite the tests' asserts anew where PYTHONDONTWRITEBYTECODE is set:
#: about 3 CPU-seconds a worker.
BYTECODE = VENV / "pycache"


def pytest(python: Path, basetemp: Path, args: list[str]) -> int:
    """Run pytest; its exit code 5 (no test collected, e.g. a `-k` that matches nothing) is a failure."""
    env = dict(os.environ, **LOOPBACK, PYTHONPYCACHEPREFIX=str(BYTECODE))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    command = [str(python), "-m", "pytest", f"--basetemp={basetemp}", *args]
    return subprocess.run(command, cwd=ROOT, env=env).returncode


#: The suite runs in parallel processes (pytest-xdist), more of them than CPUs: most of a test's
#: time is spent waiting (a sandbox's latency, a console script starting). The browser tests
#: share one JupyterLab, so they stay on one worker (the `browser` group, see tests/conftest.py).
PARALLEL = ["--numprocesses", "4", "--dist", "loadgroup"]


def test(args: list[str]) -> None:
    """The suite less the slow tests (`slow` runs them); pytest arguments after `test` come last,
    so `-m ...`, `-n 0` or a file name given there win."""
    setup("test")
    sys.exit(pytest(PYTHON, ROOT / ".pytest-tmp", [*PARALLEL, "-m", "not slow", *args]))


def slow(args: list[str]) -> None:
    """The full-weather tests: faults with every retry wait slept out (a few minutes)."""
    setup("test")
    sys.exit(pytest(PYTHON, ROOT / ".pytest-tmp-slow", ["-m", "slow", *args]))


# ---- matrix ---------------------------------------------------------------------------


def find_python(version: str) -> Path | None:
    """An interpreter of this minor version: pyenv's (as on CI), else python3.X on PATH."""
    roots = [os.environ.get("PYENV_ROOT", ""), str(Path.home() / ".pyenv")]
    candidates = []
    for root in filter(None, roots):
        found = glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", "python"))
        candidates += sorted(found, key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parents[1].name)])[::-1]
    on_path = shutil.which(f"python{version}")
    candidates += [on_path] if on_path else []
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys, venv; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return Path(candidate)
    return None


CHECK_PINS = """
import sys
from importlib.metadata import version
wrong = []
for line in open(sys.argv[1], encoding="utf-8"):
    spec = line.partition("#")[0].strip()
    if spec:
        name, _, want = spec.partition("==")
        got = version(name.strip())
        if got != want.strip():
            wrong.append(f"{name.strip()} {got} (pinned {want.strip()})")
sys.exit("installed versions differ from the pins: " + ", ".join(wrong) if wrong else 0)
"""

SHOW_STACK = """
import sys
from importlib.metadata import version
names = ["pandas", "numpy", "requests", "ipywidgets", "tenacity", "tqdm", "platformdirs", "pytest"]
found = []
for name in names:
    try:
        found.append(f"{name} {version(name)}")
    except Exception:
        pass
print(f"Python {sys.version.split()[0]}: " + ", ".join(found), flush=True)
"""


def matrix_stack(name: str, version: str, constraints: Path | None, args: list[str]) -> str | None:
    """Set up and test one end of the matrix; a problem as text, or None when it passed."""
    python = find_python(version)
    if python is None:
        return f"no Python {version} on this machine (pyenv install {version})"
    env_dir = ROOT / f".venv-{name}"
    env_python = env_dir / "bin" / "python"
    started = time.monotonic()
    if not env_python.exists():
        print(f"creating {env_dir} with {python}", flush=True)
        run(python, "-m", "venv", env_dir)
        run(env_python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    install = [env_python, "-m", "pip", "install", "--quiet"]
    if constraints is None:  # the newest releases, also when the venv already exists
        install += ["--upgrade", "--upgrade-strategy", "eager"]
    else:
        install += ["--constraint", constraints]
    run(*install, "-e", f"{ROOT}[test]")
    if constraints is not None:
        run(env_python, "-c", CHECK_PINS, constraints)
    run(env_python, "-c", SHOW_STACK)
    print(f"[{name}] set up in {time.monotonic() - started:.0f} s", flush=True)
    started = time.monotonic()
    # The browser test needs JupyterLab's front end and Chromium: it runs once, in `test`.
    # The slow tests prove no more about versions than their bounded-clock twins: they run once, in `slow`.
    code = pytest(
        env_python,
        ROOT / f".pytest-tmp-{name}",
        [*PARALLEL, "-m", "not browser and not slow", "-p", "no:cacheprovider", *args],
    )
    print(f"[{name}] tests ran in {time.monotonic() - started:.0f} s", flush=True)
    return None if code == 0 else f"the suite failed (pytest exit code {code})"


def matrix(args: list[str]) -> None:
    in_ci = bool(os.environ.get("CI"))
    failed = []
    for name, version, constraints in STACKS:
        print(f"== matrix: {name} (Python {version}, {'minimum' if constraints else 'newest'} versions)", flush=True)
        try:
            problem = matrix_stack(name, version, constraints, args)
        except subprocess.CalledProcessError as exc:  # a failed install: say which, go on with the next stack
            problem = f"{' '.join(map(str, exc.cmd))} exited with {exc.returncode}"
        if problem and problem.startswith("no Python") and not in_ci:
            print(f"matrix: skipped {name}: {problem}", flush=True)
        elif problem:
            failed.append(f"{name}: {problem}")
    if failed:
        sys.exit("matrix failed: " + "; ".join(failed))


# ---- lint, docs, dist -----------------------------------------------------------------


def lint() -> None:
    """Every check runs even when an earlier one fails, so one run shows all problems."""
    setup("lint")
    checks = [
        ("ruff check", [BIN / "ruff", "check", "."]),
        ("ruff format --check", [BIN / "ruff", "format", "--check", "."]),
        ("mypy --strict", [BIN / "mypy", "--strict"]),  # files and options: [tool.mypy] in pyproject.toml
    ]
    failed = []
    for name, command in checks:
        print(f"== {name}", flush=True)
        if subprocess.run([str(a) for a in command], cwd=ROOT).returncode != 0:
            failed.append(name)
    if failed:
        sys.exit(f"lint failed: {', '.join(failed)}")
    print("lint: clean")


def docs() -> None:
    setup("docs")
    run(PYTHON, "tools/check_docstrings.py")
    run(PYTHON, "-m", "mkdocs", "build", "--strict", "--clean", "--site-dir", ROOT / "site")
    print(f"docs: built {ROOT / 'site' / 'index.html'}")


SANDBOX_SMOKE = """
import os, subprocess, sys
server = subprocess.Popen([sys.executable, "-m", "neuroio_nb.sandbox", "--port", "0", "--sources", "25"],
                          stdout=subprocess.PIPE, text=True)
try:
    env = dict(os.environ)
    for _ in range(2):
        key, _, value = server.stdout.readline().strip().partition("=")
        env[key] = value
    listed = subprocess.run(["neuroio-nb", "list", "--format", "csv", "--columns", "name"], env=env,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(listed) == 26, listed  # a header and 25 sources
    print(f"neuroio-nb list against python -m neuroio_nb.sandbox: {len(listed) - 1} sources")
finally:
    server.terminate()
    server.wait(timeout=30)
"""


def dist() -> None:
    """The wheel and sdist as a user gets them, checked outside the checkout."""
    setup("tooling")
    out = ROOT / "dist"
    shutil.rmtree(out, ignore_errors=True)
    run(PYTHON, "-m", "build", "--outdir", out)  # the sdist, then the wheel built from the sdist
    built = sorted(out.iterdir())
    run(PYTHON, "-m", "twine", "check", "--strict", *built)
    wheel = next(p for p in built if p.suffix == ".whl")
    with tempfile.TemporaryDirectory(prefix="neuroio-nb-dist-") as tmp:
        env_dir = Path(tmp) / "venv"
        venv.EnvBuilder(with_pip=True).create(env_dir)
        bindir = env_dir / "bin"
        run(bindir / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp)
        # From a temporary folder with the venv first on PATH: nothing can come from the checkout.
        env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", **LOOPBACK)
        env.pop("PYTHONPATH", None)
        where = subprocess.run(
            [bindir / "python", "-c", "import neuroio_nb, sys; print(neuroio_nb.__file__)"],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(str(env_dir)):
            sys.exit(f"dist: neuroio_nb was imported from {where}, not from the installed wheel")
        run(bindir / "neuroio-nb", "--help", cwd=tmp, env=env, stdout=subprocess.DEVNULL)
        run(bindir / "python", "-m", "neuroio_nb.sandbox", "--help", cwd=tmp, env=env, stdout=subprocess.DEVNULL)
        run(bindir / "python", "-c", SANDBOX_SMOKE, cwd=tmp, env=env)
    print("dist: " + ", ".join(p.name for p in built) + " built, checked and run from a fresh venv")


def main() -> None:
    job = sys.argv[1] if len(sys.argv) > 1 else ""
    jobs = {"demo": demo, "lint": lint, "docs": docs, "dist": dist}
    if job == "test":
        test(sys.argv[2:])
    elif job == "slow":
        slow(sys.argv[2:])
    elif job == "matrix":
        matrix(sys.argv[2:])
    elif job in jobs:
        jobs[job]()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
