"""Execute notebooks in a real kernel and keep the executed copy and an HTML rendering.

    python tools/run_notebooks.py notebooks/01_explore_sources.ipynb [...] --out output

Without NEUROIO_API_TOKEN the notebooks start the embedded sandbox themselves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter


def execute(path: Path, out: Path, timeout: int = 600) -> Path:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    out.mkdir(parents=True, exist_ok=True)
    executed = out / path.name
    nbformat.write(nb, executed)
    body, _ = HTMLExporter().from_notebook_node(nb)
    executed.with_suffix(".html").write_text(body, encoding="utf-8")
    return executed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, default=Path("output"))
    args = parser.parse_args(argv)
    for path in args.notebooks:
        executed = execute(path, args.out)
        print(f"executed {path} -> {executed} and {executed.with_suffix('.html')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
