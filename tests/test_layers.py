"""The package's layers import downward only (no module imports one above it).

Every import counts: at the top of a module, inside a function, and under
``if TYPE_CHECKING:``. A new module must be given its layer here (and in the
README's layout table); the test fails until it is.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "neuroio_nb"

#: Bottom to top. A module may import from its own layer or any layer below.
LAYERS: dict[int, set[str]] = {
    0: {"_version", "_schema", "errors", "_values", "_throttle", "_views", "_progress"},
    1: {"_transport", "_journal", "sandbox"},
    2: {"_rest", "_paging"},
    # The jobs: the private sub-package neuroio_nb._jobs (frames, validate, reads, plan,
    # sending, bulk, sync, csvio, history, policy, review).
    3: {"_jobs"},
    4: {"_form_state", "_form", "_explore"},
    5: {"_sources", "_client"},
    # Entry points: they start a Client (layer 5), so they sit above it.
    6: {"_cli", "__init__", "__main__"},
}
LAYER_OF = {name: layer for layer, names in LAYERS.items() for name in names}


def module_name(path: Path) -> str:
    """``neuroio_nb.sandbox.api`` for ``neuroio_nb/sandbox/api.py``."""
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    """The layer of a module of the package: its top-level part below ``neuroio_nb``."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    if top not in LAYER_OF:
        raise AssertionError(
            f"neuroio_nb.{top} has no layer: add it to LAYERS in {Path(__file__).name} and to the README's layout table"
        )
    return LAYER_OF[top]


def imports(path: Path, here: str | None = None) -> list[tuple[int, str]]:
    """(line, module) for every import of the package's own modules in ``path``, wherever it is.

    ``here``: the module ``path`` is, if not the one its place in the package says.
    """
    here = here or module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "neuroio_nb"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "neuroio_nb":
                continue
            for alias in node.names:  # "from . import schema" imports the module schema
                sub = f"{target}.{alias.name}"
                is_module = (PACKAGE.parent / sub.replace(".", "/")).with_suffix(".py").exists() or (
                    PACKAGE.parent / sub.replace(".", "/") / "__init__.py"
                ).exists()
                found.append((node.lineno, sub if is_module else target))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_no_module_imports_one_above_it(path: Path) -> None:
    here = module_name(path)
    mine = layer(here) if path.name != "__init__.py" or here != "neuroio_nb" else LAYER_OF["__init__"]
    upward = [
        f"line {line}: imports {target} (layer {layer(target)}), above {here} (layer {mine})"
        for line, target in imports(path)
        if target != "neuroio_nb" and layer(target) > mine
    ]
    package_init = [
        f"line {line}: imports the package itself (its __init__ is the top layer)"
        for line, target in imports(path)
        if target == "neuroio_nb" and here != "neuroio_nb"
    ]
    assert not upward + package_init, "\n".join(upward + package_init)


def test_the_check_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-local, TYPE_CHECKING and ``from . import module`` imports are all seen as upward."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "from ._schema import FIELDS\n"
        "if TYPE_CHECKING:\n    from ._sources import Sources\n"
        "def f():\n    from ._form import source_form\n    from ._jobs import plan\n",
        encoding="utf-8",
    )
    seen = {target for _, target in imports(probe, here="neuroio_nb._paging")}
    assert seen == {"neuroio_nb._schema", "neuroio_nb._sources", "neuroio_nb._form", "neuroio_nb._jobs.plan"}
    assert [t for t in sorted(seen) if layer(t) > layer("neuroio_nb._paging")] == [
        "neuroio_nb._form",
        "neuroio_nb._jobs.plan",
        "neuroio_nb._sources",
    ]


# ---- one public face ------------------------------------------------------------------

ROOT = PACKAGE.parent
#: Modules a user may import: the package, its errors, and the sandbox (with its own modules).
PUBLIC_MODULES = {"neuroio_nb", "neuroio_nb.errors", "neuroio_nb.sandbox"}
#: What the docs, README and notebooks show a user: every import of the package they make.
USER_TEXTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "notebooks").glob("*.ipynb"))]
#: Exceptions that never reach a user, each turned into something else where it is raised.
NEVER_RAISED_TO_USERS = {
    "ApiFailure": "the sandbox turns it into an HTTP error answer",
    "UsageError": "the CLI turns it into its usage exit code and a message",
}
USER_IMPORT = re.compile(r"(?:from|import)\s+(neuroio_nb(?:\.\w+)*)|:::\s+(neuroio_nb(?:\.\w+)*)")


def test_the_package_names_everything_a_user_needs() -> None:
    import neuroio_nb
    import neuroio_nb.errors as errors
    from neuroio_nb.sandbox import Sandbox

    for name in ["Client", "Sources", "Plan", "Policy", "Report", "History", "read_csv", "non_defaults", "EntryResult"]:
        assert name in neuroio_nb.__all__ and getattr(neuroio_nb, name) is not None, name
    assert Sandbox.__module__.startswith("neuroio_nb.sandbox")
    raised = {
        obj.__name__
        for module in SOURCES
        for obj in vars(importlib.import_module(module_name(module))).values()
        if isinstance(obj, type) and issubclass(obj, (Exception, Warning)) and obj.__module__.startswith("neuroio_nb")
    } - set(NEVER_RAISED_TO_USERS)
    raised = {name for name in raised if not name.startswith("_")}
    missing = sorted(name for name in raised if getattr(errors, name, None) is None)
    assert not missing, f"exceptions or warnings not in neuroio_nb.errors: {missing}"


def test_every_other_module_is_private() -> None:
    public = sorted(
        name
        for name in map(module_name, SOURCES)
        if name not in PUBLIC_MODULES
        and not name.startswith("neuroio_nb.sandbox.")
        and not any(part.startswith("_") for part in name.split(".")[1:])
    )
    assert not public, f"modules neither public nor private (add an underscore): {public}"


@pytest.mark.parametrize("path", USER_TEXTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_readme_and_notebooks_use_only_public_names(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    private = sorted(
        {
            found
            for match in USER_IMPORT.finditer(text)
            for found in [match.group(1) or match.group(2)]
            if any(part.startswith("_") and part != "__version__" for part in found.split(".")[1:])
        }
    )
    assert not private, f"{path.name} shows private modules: {private}"


def test_only_parts_of_looks_inside_a_plan() -> None:
    """The package's modules read what a plan is made of through ``parts_of(plan)``
    (``neuroio_nb/_jobs/parts.py``), never by reaching into the plan's private attribute."""
    home = {PACKAGE / "_jobs" / "parts.py", PACKAGE / "_jobs" / "plan.py"}
    reaching = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in SOURCES
        if path not in home
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if "._parts" in line
    ]
    assert not reaching, "use parts_of(plan) instead:\n" + "\n".join(reaching)
