"""Fail when a public name shown in the API reference has no docstring, or a public
method or function has no example.

    python tools/check_docstrings.py          (run by `python3 tasks.py docs`)

The reference pages (docs/reference/*.md) name what is public with `::: dotted.name`
lines. Each such object needs a docstring, and so does every public member that the
reference renders for it: a class's methods and properties, its own and those it inherits
from classes of this package (not names starting with `_`), and a module's public classes
and functions. mkdocstrings
would silently leave them out; here they are errors, all listed at once.

Every public method and function (not properties) also needs an example in its
docstring: an ``Example::`` line and the indented code under it, or ``>>>`` lines.
And the signatures are formatted on several lines only when a formatter mkdocstrings
knows (Ruff or Black) is installed: without one, that is an error too.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r"^:::\s+([\w.]+)\s*$", re.MULTILINE)
#: An example in a docstring: ``Example::`` (or ``Examples::``) then an indented line of code, or ``>>>``.
EXAMPLE = re.compile(r"^\s*Examples?::\s*\n\s*\n(\s+)\S|^\s*>>> ", re.MULTILINE)


def resolve(dotted: str) -> Any:
    """The object a `::: dotted.name` line names: a module, or an attribute of one."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(dotted)


def has_doc(obj: Any) -> bool:
    return bool((getattr(obj, "__doc__", None) or "").strip())


def own_members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined in the class or in its bases from this package
    (``Client`` gets its verbs from ``Transport``), not those of outside bases (a report's
    pandas methods)."""
    found = []
    seen = set()
    ours = [base for base in cls.__mro__ if base.__module__.split(".")[0] == cls.__module__.split(".")[0]]
    for name, value in [item for base in ours for item in vars(base).items()]:
        if name.startswith("_") or name in seen:
            continue
        seen.add(name)
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property) or hasattr(value, "func"):
            found.append((name, getattr(value, "func", value)))  # functools.cached_property has .func
    return found


def module_members(module: Any) -> list[tuple[str, Any]]:
    """Public classes and functions defined in the module (its __all__ when it has one)."""
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = []
    for name in names:
        value = getattr(module, name)
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__ == module.__name__:
            found.append((name, value))
    return found


def has_example(obj: Any) -> bool:
    return bool(EXAMPLE.search(getattr(obj, "__doc__", None) or ""))


def is_method(member: Any) -> bool:
    """A function (a method, classmethod, staticmethod or module function), not a property."""
    return inspect.isfunction(member)


def missing(dotted: str) -> list[str]:
    """What ``dotted`` and the members the reference shows for it lack: ``name`` (no docstring)
    or ``name: no example``."""
    obj = resolve(dotted)
    problems = [] if has_doc(obj) else [dotted]
    if inspect.isfunction(obj) and has_doc(obj) and not has_example(obj):
        problems.append(f"{dotted}: no example")
    if inspect.ismodule(obj):
        for name, _member in module_members(obj):
            problems += missing(f"{dotted}.{name}")
    elif inspect.isclass(obj):
        for name, member in own_members(obj):
            if not has_doc(member):
                problems.append(f"{dotted}.{name}")
            elif is_method(member) and not has_example(member):
                problems.append(f"{dotted}.{name}: no example")
    return problems


def signature_formatter() -> str | None:
    """The formatter mkdocstrings would lay signatures out with (Ruff first, as it does), if any."""
    for module in ("ruff", "black"):
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        return module
    return None


def main(*, need_formatter: bool = True) -> int:
    """Print every problem of the reference; 0 when none. ``need_formatter``: the docs build
    needs Ruff (the docs extra) to lay signatures out; the test suite's environment has not."""
    sys.path.insert(0, str(ROOT))
    names = []
    for page in sorted((ROOT / "docs" / "reference").glob("*.md")):
        names += DIRECTIVE.findall(page.read_text(encoding="utf-8"))
    if not names:
        print("check_docstrings: no `::: name` lines in docs/reference/*.md", file=sys.stderr)
        return 1
    problems = [problem for name in names for problem in missing(name)]
    if need_formatter and signature_formatter() is None:
        problems.append("no signature formatter: install the docs extra (pip install -e '.[docs]': Ruff)")
    if problems:
        print(f"{len(problems)} problems in the API reference (no docstring, or no example):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print(
        f"check_docstrings: {len(names)} documented objects, every public member has a docstring, "
        f"every public method an example; signatures laid out by {signature_formatter() or 'nothing'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
