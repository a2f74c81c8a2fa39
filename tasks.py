"""The project's two jobs, each one command on a fresh machine (Python 3.10+).

    python3 tasks.py demo    set up .venv, run notebooks/01_explore_sources.ipynb
                             against the embedded sandbox -> output/
    python3 tasks.py test    set up .venv, run the whole test suite

and the checks CI adds:

    python3 tasks.py lint    ruff check, ruff format --check, mypy --strict on neuroio_nb/

Both create ``.venv`` beside this file (reused when present) and install the
project into it; nothing is installed outside it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")


def setup(extra: str) -> None:
    if not PYTHON.exists():
        print(f"creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
        run(PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    run(PYTHON, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[{extra}]")


def run(*args: object) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def demo() -> None:
    setup("notebooks")
    run(PYTHON, "tools/run_notebooks.py", "notebooks/01_explore_sources.ipynb", "--out", "output")


def test(args: list[str]) -> None:
    setup("test")
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    basetemp = ROOT / ".pytest-tmp"
    code = subprocess.run([str(PYTHON), "-m", "pytest", f"--basetemp={basetemp}", *args], cwd=ROOT, env=env).returncode
    sys.exit(code)


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


def main() -> None:
    job = sys.argv[1] if len(sys.argv) > 1 else ""
    if job == "demo":
        demo()
    elif job == "test":
        test(sys.argv[2:])
    elif job == "lint":
        lint()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
