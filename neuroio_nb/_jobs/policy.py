"""Policies: rules every source must meet, checked against a frame of sources.

A rule has a ``name``, an optional ``where`` (a pandas query choosing the sources it is
about; every source when absent) and a ``require`` (a pandas query each chosen source
must satisfy). Rules are the user's own, trusted like a notebook; what is checked here is
that each is a rule at all, so that a typo is said, naming the rule, before anything is
read or sent:

* both queries parse as pandas queries and are conditions (true or false per source),
  not arithmetic or assignments;
* they name columns only: no ``@variable`` of the caller, no Python function; a name
  that is not a column of the sources checked is refused when they are (with the
  closest column's name), since a server may send fields the schema does not know.

A missing value never passes unnoticed: a ``where`` that is missing for a source (its
field is empty) does not choose it, and a ``require`` that is missing is not met (it
cannot be shown to hold), so the source is a violation.
"""

from __future__ import annotations

import ast
import difflib
import io
import os
import re
import sys
import tokenize
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .._schema import BY_NAME, COLUMNS
from ..errors import Problem, ValidationError
from .frames import empty_frame

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 only
    import tomli as tomllib

#: The keys a rule may have; ``name`` and ``require`` are required.
RULE_KEYS = ("name", "where", "require")
#: The columns of the violations frame.
VIOLATION_COLUMNS = ["id", "name", "rule", "require", "fields", "values"]
_BACKTICKED = re.compile(r"`([^`]*)`")
_NOT_FIELDS = {"True", "False", "None", "and", "or", "not", "in"}


@dataclass(frozen=True)
class Rule:
    """One rule: sources chosen by ``where`` (all when None) must satisfy ``require``.
    ``fields``: the names the two queries use, in the order they first appear."""

    name: str
    require: str
    where: str | None = None
    fields: tuple[str, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict[str, str]:
        """The rule as written: ``{"name": ..., "where": ..., "require": ...}`` (no ``where`` when None)."""
        out = {"name": self.name}
        if self.where is not None:
            out["where"] = self.where
        out["require"] = self.require
        return out


class Policy:
    """Rules every source must meet.

    ``Policy([{"name": "liveness in space 2", "where": "space_id == 2",
    "require": "auto_check_liveness == True"}])`` or ``Policy.from_toml("rules.toml")``.
    Every problem of every rule is one :class:`~neuroio_nb.errors.ValidationError`, raised
    here, before anything is read or sent. :meth:`check` gives the violations of a frame;
    ``client.sources.check(policy)`` audits the account, ``client.sources.plan(edited,
    policy=policy)`` the state a plan would leave.
    """

    def __init__(self, rules: Iterable[Mapping[str, Any] | Rule] = (), *, source: str = "policy") -> None:
        self._source = source
        problems: list[Problem] = []
        parsed: list[Rule] = []
        seen: set[str] = set()
        for number, rule in enumerate(rules, start=1):
            made, found = _parse_rule(rule, number, seen)
            problems += found
            if made is not None:
                parsed.append(made)
            name = rule.get("name") if isinstance(rule, Mapping) else getattr(rule, "name", None)
            if isinstance(name, str):
                seen.add(name)
        if problems:
            raise ValidationError(problems, what=source)
        self._rules: tuple[Rule, ...] = tuple(parsed)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Policy:
        """The rules of a TOML file, one ``[[rule]]`` table each::

        [[rule]]
        name = "liveness in space 2"
        where = "space_id == 2"
        require = "auto_check_liveness == True"

        Example::

            rules = Policy.from_toml("rules.toml")
            plan = client.sources.plan(edited, policy=rules)
        """
        where = os.fspath(path)
        with open(where, "rb") as fh:
            try:
                data = tomllib.load(fh)
            except tomllib.TOMLDecodeError as exc:
                raise ValidationError.one(f"is not TOML: {exc}", what=f"policy file {where}") from None
        unknown = sorted(set(data) - {"rule"})
        if unknown:
            raise ValidationError.one(
                f"unknown table or key {', '.join(map(repr, unknown))}: each rule is a [[rule]] table "
                "with name, an optional where, and require",
                what=f"policy file {where}",
            )
        rules = data.get("rule", [])
        if not isinstance(rules, list):
            raise ValidationError.one("rule must be an array of tables: write [[rule]]", what=f"policy file {where}")
        return cls(rules, source=f"policy file {where}")

    @classmethod
    def coerce(cls, policy: Any) -> Policy:
        """``policy`` as a Policy: one already, a TOML file's path, or a list of rules.

        Example::

            Policy.coerce("rules.toml") == Policy.from_toml("rules.toml")   # True
        """
        if isinstance(policy, Policy):
            return policy
        if isinstance(policy, (str, os.PathLike)):
            return cls.from_toml(policy)
        if isinstance(policy, Iterable) and not isinstance(policy, (Mapping, bytes)):
            return cls(policy)
        raise ValidationError.one(
            "must be a Policy, a TOML file's path, or a list of rules", value=type(policy).__name__, what="policy"
        )

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._rules == other._rules

    __hash__ = None  # type: ignore[assignment]  # mutable-looking container: compare, do not hash

    def __repr__(self) -> str:
        lines = [f"<Policy: {len(self._rules)} rule{'' if len(self._rules) == 1 else 's'}>"]
        lines += [f"  {r.name}: {'where ' + r.where + ': ' if r.where else ''}require {r.require}" for r in self._rules]
        return "\n".join(lines)

    def as_list(self) -> list[dict[str, str]]:
        """The rules as written (``Policy(policy.as_list()) == policy``).

        Example::

            Policy.from_toml("rules.toml").as_list()   # [{"name": ..., "where": ..., "require": ...}]
        """
        return [rule.as_dict() for rule in self._rules]

    def check(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The violations of ``frame`` (a frame of sources, as ``to_frame`` makes it): one row
        per source and rule it breaks, rule by rule, each rule's in the frame's order.
        Columns: ``id`` (the frame's index), ``name``, ``rule``, ``require``, ``fields`` (the
        fields the rule uses) and ``values`` (those fields' values for that source).

        Example::

            rules = Policy([{"name": "live in space 2", "where": "space_id == 2", "require": "auto_check_liveness == True"}])
            rules.check(client.sources.to_frame())   # one row per (source, rule) broken
        """
        self._check_names(frame)
        frame = _with_schema_fields(frame, [f for rule in self._rules for f in rule.fields])
        problems: list[Problem] = []
        parts: list[pd.DataFrame] = []
        for rule in self._rules:
            try:
                broken = _violators(frame, rule)
            except Exception as exc:
                problems.append(Problem(None, f"rule {rule.name!r}", None, f"cannot be checked: {_reason(exc)}"))
                continue
            if broken.any():
                parts.append(_violations_of(frame, rule, broken))
        if problems:
            raise ValidationError(problems, what=self._source)
        return pd.concat(parts, ignore_index=True) if parts else empty_violations()

    def _check_names(self, frame: pd.DataFrame) -> None:
        """Every name a rule uses is a column of ``frame`` (or its index): else one error for all."""
        known = {*map(str, frame.columns), str(frame.index.name)}
        problems = []
        for rule in self._rules:
            for name in rule.fields:
                if name not in known and name not in BY_NAME:
                    close = difflib.get_close_matches(name, sorted(known | set(COLUMNS)), n=1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    problems.append(
                        Problem(None, f"rule {rule.name!r}", None, f"uses {name!r}, which is not a field{hint}")
                    )
        if problems:
            raise ValidationError(problems, what=self._source)


def _with_schema_fields(frame: pd.DataFrame, fields: list[str]) -> pd.DataFrame:
    """``frame`` with an empty (missing) column for each schema field of ``fields`` it lacks
    (the server did not send it, or a source to create leaves it to the server)."""
    lacking = [f for f in dict.fromkeys(fields) if f in BY_NAME and f not in frame.columns and f != frame.index.name]
    if not lacking:
        return frame
    empty = {f: pd.Series(pd.NA, index=frame.index, dtype=BY_NAME[f].dtype) for f in lacking}
    return frame.assign(**empty)


def empty_violations() -> pd.DataFrame:
    """A violations frame with no row (its columns and dtypes)."""
    return pd.DataFrame(
        {
            c: pd.Series([], dtype="Int64" if c == "id" else "string" if c in ("rule", "require") else object)
            for c in VIOLATION_COLUMNS
        }
    )


def _violators(frame: pd.DataFrame, rule: Rule) -> np.ndarray:
    """Per row of ``frame``: chosen by ``where`` and not meeting ``require`` (missing: not met)."""
    if not len(frame):
        return np.zeros(0, dtype=bool)
    narrow = frame[[f for f in rule.fields if f in frame.columns]]  # eval resolves only these
    chosen = _condition(narrow, rule.where) if rule.where else np.ones(len(frame), dtype=bool)
    if not chosen.any():
        return chosen
    broken: np.ndarray = chosen & ~_condition(narrow, rule.require)
    return broken


def _condition(frame: pd.DataFrame, query: str) -> np.ndarray:
    """``query`` per row of ``frame`` as plain booleans, a missing answer False."""
    result = _evaluate(frame, query)
    if not isinstance(result, pd.Series):  # a scalar: the same for every row
        result = pd.Series(result, index=frame.index)
    if result.dtype == bool:
        return result.to_numpy()
    if result.dtype == "boolean" or result.dtype == object:
        values = result.astype("boolean") if result.dtype == object else result
        return np.asarray(values.fillna(False), dtype=bool)
    raise TypeError(f"{query!r} is not a condition: it gives {result.dtype} values, not true or false")


def _evaluate(frame: pd.DataFrame, query: str) -> Any:
    """``frame.eval(query)`` with nothing of the caller's in scope (only the frame's columns and index)."""
    # The python engine: the same answers with or without numexpr installed, nullable dtypes included.
    return frame.eval(query, engine="python", local_dict={}, global_dict={})


def _violations_of(frame: pd.DataFrame, rule: Rule, broken: np.ndarray) -> pd.DataFrame:
    """One row per source ``broken`` marks, for ``rule``."""
    at = np.flatnonzero(broken)
    n = len(at)
    fields = [f for f in rule.fields if f in frame.columns]
    names = _cells(frame["name"], at) if "name" in frame.columns else [None] * n
    columns = [_cells(frame[f], at) for f in fields]
    values = [dict(zip(fields, cells, strict=True)) for cells in zip(*columns, strict=True)] if fields else [{}] * n
    index = frame.index
    ids = pd.array(index.to_numpy()[at], dtype="Int64") if index.name == "id" else pd.array([None] * n, dtype="Int64")
    return pd.DataFrame(
        {
            "id": ids,
            "name": pd.Series(names, dtype=object),
            "rule": pd.Series([rule.name] * n, dtype="string"),
            "require": pd.Series([rule.require] * n, dtype="string"),
            "fields": pd.Series([tuple(fields)] * n, dtype=object),
            "values": pd.Series(values, dtype=object),
        }
    )


def _cells(column: pd.Series, at: np.ndarray) -> list[Any]:
    """The cells of ``column`` at positions ``at`` as Python objects, a missing one None."""
    chosen: Any = column.iloc[at]  # pandas-stubs lacks to_numpy's na_value=None
    cells: list[Any] = chosen.to_numpy(dtype=object, na_value=None).tolist()
    return cells


# ---- parsing a rule -------------------------------------------------------------


def _parse_rule(rule: Any, number: int, taken: set[str]) -> tuple[Rule | None, list[Problem]]:
    """The rule, or the problems that make it none (each naming it, by name or by number)."""
    if isinstance(rule, Rule):
        rule = rule.as_dict()
    if not isinstance(rule, Mapping):
        return None, [
            Problem(None, f"rule {number}", type(rule).__name__, "must be a table (a dict) of name, where, require")
        ]
    name = rule.get("name")
    label = f"rule {name!r}" if isinstance(name, str) and name.strip() else f"rule {number}"
    problems = [
        Problem(None, label, None, f"unknown key {key!r}: a rule has name, where, require")
        for key in rule
        if key not in RULE_KEYS
    ]
    if not isinstance(name, str) or not name.strip():
        problems.append(Problem(None, label, name, "needs a name (text)"))
    elif name in taken:
        problems.append(Problem(None, label, None, "is named twice: each rule needs its own name"))
    fields: list[str] = []
    for key in ("where", "require"):
        query = rule.get(key)
        if query is None and key == "where":
            continue
        if not isinstance(query, str) or not query.strip():
            problems.append(
                Problem(None, f"{label}, {key}", query, "needs a pandas query (text), e.g. 'use_pps_time == True'")
            )
            continue
        found, names = _parse_query(query)
        problems += [Problem(None, f"{label}, {key}", query, reason) for reason in found]
        fields += [n for n in names if n not in fields]
    if problems:
        return None, problems
    where = rule.get("where")
    return Rule(str(name), str(rule["require"]), where, tuple(fields)), []


def _parse_query(query: str) -> tuple[list[str], list[str]]:
    """(problems, names used) of one query: it must parse, use no ``@variable``, and be a
    condition (tried on an empty frame of every schema field, typed as ``to_frame`` types it)."""
    names: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        names[f"_bt{len(names)}_"] = match.group(1)
        return f"_bt{len(names) - 1}_"

    plain = _BACKTICKED.sub(placeholder, query)
    if _uses_variables(plain):
        return ["does not parse: @ refers to a Python variable, which a rule cannot see; write the value"], []
    try:
        tree = ast.parse(plain.strip(), mode="eval")
    except SyntaxError as exc:
        at = f" at character {exc.offset}" if exc.offset and exc.offset <= len(plain) else ""
        return [f"does not parse: {exc.msg}{at}"], []
    used = [names.get(n.id, n.id) for n in ast.walk(tree) if isinstance(n, ast.Name)]
    used = list(dict.fromkeys(n for n in used if n not in _NOT_FIELDS))
    try:
        _condition(empty_frame(), query)
    except pd.errors.UndefinedVariableError:
        pass  # a field the schema does not know: checked against the sources' columns
    except Exception as exc:
        return [f"does not parse: {_reason(exc)}"], used
    return [], used


def _uses_variables(query: str) -> bool:
    """Does ``query`` use ``@name`` (a variable of the caller, in pandas' query language)?"""
    try:
        return any(
            t.type == tokenize.OP and t.string == "@" for t in tokenize.generate_tokens(io.StringIO(query).readline)
        )
    except (tokenize.TokenError, SyntaxError):
        return "@" in query


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
