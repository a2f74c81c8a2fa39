"""Rows that match no source, planned by name without ``create=True``: which they are, what
``create=True`` would do with each (create it, or refuse it as outside the scope or for its
values), and how a notebook and the command line say so (:data:`NOTEBOOK`, :data:`CLI`: the
same sentences, each with its own spelling of the options).

A plan keeps these rows (``plan.unmatched``) and its views say them; an
:class:`~neuroio_nb.errors.UnmatchedRowsWarning` says them when the plan is made.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .._schema import BY_NAME
from .._views import cut_items, group_problems, notice, number, plural
from ..errors import Problem, UnmatchedRowsWarning

#: Why ``create=True`` refuses a row that matches no source, as a noun and after "refuses 3".
REFUSAL_NOUNS = {"scope": "outside the scope", "values": "bad values"}
REFUSAL_WHY = {"scope": "outside the scope", "values": "for bad values"}


@dataclass(frozen=True)
class Words:
    """How the options are spelled where the text is read: ``create`` (asking to create),
    ``q`` (the name filter with its value), ``spaces`` (the spaces filter with its ids), and
    the bare names of those two options."""

    create: str
    q: Callable[[Any], str]
    spaces: Callable[[Any], str]
    q_option: str
    spaces_option: str


NOTEBOOK = Words("create=True", lambda q: f"q={q!r}", lambda s: f"spaces_ids={s}", "q", "spaces_ids")
CLI = Words("--create", lambda q: f"--q {q!r}", lambda s: f"--space {' '.join(str(i) for i in s)}", "--q", "--space")


def _no_rows() -> pd.DataFrame:
    return pd.DataFrame(columns=["name"], dtype=object)


@dataclass(frozen=True, kw_only=True)
class Unmatched:
    """The rows that match no source, as the frame holds them (its labels, columns and dtypes).

    ``outside``: of those, the labels of the rows ``create=True`` refuses as outside the scope,
    by what they lie outside of: ``{"q": ("cam", [labels]), "spaces_ids": ([1, 2], [labels])}``.
    ``refused_values``: the problems ``create=True`` finds in their values, as its
    ValidationError lists them (a label of None: a column's problem, which refuses every row).
    """

    rows: pd.DataFrame = field(default_factory=_no_rows)
    outside: Mapping[str, tuple[Any, list[Any]]] = field(default_factory=dict)
    refused_values: Sequence[Problem] = ()

    def __len__(self) -> int:
        return len(self.rows)

    def note(self, words: Words = NOTEBOOK) -> str:
        """:func:`unmatched_note` of these rows, with how many ``create=True`` refuses and why."""
        reasons = tuple(self._refused_labels())
        return unmatched_note(len(self.rows), words.create, refused=len(self.refused()), reasons=reasons)

    def names(self) -> str:
        """Their names, quoted (a stray space shows), cut as pandas cuts rows."""
        return unmatched_names(self.rows["name"].tolist())

    def refused(self) -> list[Any]:
        """The labels of the rows ``create=True`` refuses (outside the scope, or bad values)."""
        groups = self._refused_labels()
        refused = {label for labels in groups.values() for label in labels}
        return [label for label in self.rows.index if label in refused]

    def refusals(self, words: Words = NOTEBOOK) -> list[tuple[str, list[Any], str]]:
        """Why ``create=True`` refuses rows, a group per reason, each ``(reason, labels, text)``:
        ``scope`` (:meth:`outside_scope`), then ``values`` (:meth:`refused_for_values`)."""
        texts = {"scope": lambda: self.outside_scope(words), "values": self.refused_for_values}
        return [(reason, labels, texts[reason]()) for reason, labels in self._refused_labels().items()]

    def lines(self) -> list[str]:
        """The lines a plan's text view says of them (none when there are none)."""
        if not len(self.rows):
            return []
        lines = [f"  match no source (not created): {self.names()}"]
        return lines + [
            f"  {REFUSAL_NOUNS[reason]} (create=True refuses {_them(len(labels))}): {text}"
            for reason, labels, text in self.refusals()
        ]

    def command_line(self) -> list[str]:
        """The lines ``neuroio-nb plan|apply`` prints of them (none when there are none): the
        note and their names, then why ``--create`` refuses some, with the CLI's options."""
        if not len(self.rows):
            return []
        lines = [f"{self.note(CLI)}: {self.names()}"]
        return lines + [
            f"{REFUSAL_NOUNS[reason].capitalize()} ({CLI.create} refuses {_them(len(labels))}): {text}."
            for reason, labels, text in self.refusals(CLI)
        ]

    def html(self) -> str:
        """The notice a plan's HTML view shows of them (empty when there are none)."""
        if not len(self.rows):
            return ""
        refused = "".join(
            f" {REFUSAL_NOUNS[reason].capitalize()}, which create=True refuses: {text}."
            for reason, _, text in self.refusals()
        )
        return notice(f"Matching no source: {self.names()} (all in `plan.unmatched`).{refused}")

    def _refused_labels(self) -> dict[str, list[Any]]:
        """Reason (``scope``, ``values``) -> the labels of the rows ``create=True`` refuses for it,
        in the frame's order; no reason that refuses none."""
        out: dict[str, list[Any]] = {}
        if self.outside:
            outside = {label for _, labels in self.outside.values() for label in labels}
            out["scope"] = [label for label in self.rows.index if label in outside]
        if self.refused_values:
            if any(p.id is None for p in self.refused_values):  # a column's problem: every row's
                out["values"] = list(self.rows.index)
            else:
                bad = {p.id for p in self.refused_values}
                out["values"] = [label for label in self.rows.index if label in bad]
        return out

    def outside_scope(self, words: Words = NOTEBOOK) -> str:
        """Which rows lie outside the scope, why, and what to do:
        ``names without q='cam': 'Kiosk 12'. To create them, widen or drop q, or fix their name``;
        empty when none does."""
        groups, options, cells = [], [], []
        if "q" in self.outside:
            q, labels = self.outside["q"]
            groups.append(f"{'name' if len(labels) == 1 else 'names'} without {words.q(q)}: {self._names_of(labels)}")
            options.append(words.q_option)
            cells.append("name")
        if "spaces_ids" in self.outside:
            spaces, labels = self.outside["spaces_ids"]
            groups.append(f"space_id not in {words.spaces(spaces)}: {self._names_of(labels)}")
            options.append(words.spaces_option)
            cells.append("space_id")
        if not groups:
            return ""
        one = len(self._refused_labels()["scope"]) == 1
        return (
            f"{'; '.join(groups)}. To create {'it' if one else 'them'}, "
            f"widen or drop {' / '.join(options)}, or fix {'its' if one else 'their'} {' / '.join(cells)}"
        )

    def refused_for_values(self) -> str:
        """Which rows ``create=True`` refuses for their values, by field and problem as its
        ValidationError groups them, and what to do:
        ``identify_facesize_threshold must be 0 or more: 'Gate 4'. To create it, fix its value``;
        empty when none. Long lists are cut as pandas cuts rows."""
        if not self.refused_values:
            return ""
        said = [
            f"{g.field}: {g.reason}" if None in g.ids else f"{g.field} {g.reason}: {self._names_of(list(g.ids))}"
            for g in group_problems(list(self.refused_values))
        ]
        values = [p for p in self.refused_values if p.id is not None]
        columns = {p.field for p in self.refused_values if p.id is None}
        one = len(self._refused_labels()["values"]) == 1
        todo = []
        if values:
            todo.append(f"fix {'its' if one else 'their'} {'value' if len(values) == 1 else 'values'}")
        if columns:
            todo.append(f"drop {'that column' if len(columns) == 1 else 'those columns'}")
        as_text = any(  # a list given as text: most likely a CSV read with plain pd.read_csv
            BY_NAME[p.field].kind == "list" and isinstance(p.value, str)
            for p in self.refused_values
            if p.field in BY_NAME
        )
        hint = " (a CSV: read it with neuroio_nb.read_csv, not plain pd.read_csv)" if as_text else ""
        return (
            f"{cut_items(said, 'problem', sep='; ')}. To create {'it' if one else 'them'}, {' and '.join(todo)}{hint}"
        )

    def _names_of(self, labels: list[Any]) -> str:
        return unmatched_names(self.rows.loc[labels, "name"].tolist())

    def warn(self, q: str | None, spaces: list[int] | None) -> None:
        """One :class:`UnmatchedRowsWarning` naming the rows, and what ``create=True`` would do
        with each: create it, or refuse it as outside the scope or for its values."""
        rows, n, refused = self.rows, len(self.rows), self.refused()
        scope = ", ".join(
            part for part in (f"q={q!r}" if q else "", f"spaces_ids={spaces}" if spaces is not None else "") if part
        )
        rows_text = f"{plural(n, 'row')} of the frame {'matches' if n == 1 else 'match'}"
        it = "it" if n == 1 else "them"
        said = f"{rows_text} no source{f' in scope ({scope})' if scope else ''}: {self.names()}. "
        if not refused:
            hint = f"Nothing is done with {it}: planning with create=True (CLI --create) would create {it}; "
            hint += f"plan.unmatched holds {it}."
        else:
            hint = f"Nothing is done with {it}; plan.unmatched holds {it}. Planning with create=True (CLI --create) "
            groups = self.refusals()
            why = " or ".join(REFUSAL_WHY[reason] for reason, _, _ in groups)
            details = ". ".join(text for _, _, text in groups)
            if len(refused) == n:
                hint += f"refuses {it}{', as' if self.outside else ''} {why}: {details}."
            else:
                created = unmatched_names(rows.loc[~rows.index.isin(refused), "name"].tolist())
                hint += (
                    f"would create {number(n - len(refused))} of them ({created}) but refuses "
                    f"{number(len(refused))} {why}, and the plan with them: {details}; to create the rest, "
                    "leave those out of the frame."
                )
        warnings.warn(said + hint, UnmatchedRowsWarning, stacklevel=5)  # the caller of client.sources.plan


def unmatched_note(
    count: int, create: str = "create=True", *, refused: int = 0, reasons: tuple[str, ...] = ("scope",)
) -> str:
    """``3 rows match no source (not created: plan with create=True to create them)``;
    ``create`` says how to ask for creating (``--create`` on the command line). ``refused``:
    how many of them creating refuses (and the plan with them), for ``reasons``: ``scope``
    (outside it), ``values`` (bad values):
    ``5 rows match no source (not created; create=True would create 2 but refuses 3 outside the scope)``."""
    head = f"{plural(count, 'row')} {'matches' if count == 1 else 'match'} no source"
    if not refused:
        return f"{head} (not created: plan with {create} to create {_them(count)})"
    if refused >= count:
        why = " or ".join(REFUSAL_NOUNS[r] for r in reasons)
        return f"{head} (not created; {create} refuses {_them(count)}: {why})"
    why = " or ".join(REFUSAL_WHY[r] for r in reasons)
    return f"{head} (not created; {create} would create {number(count - refused)} but refuses {number(refused)} {why})"


def unmatched_names(names: list[Any]) -> str:
    """Names quoted (``'Gate 1 '``: a stray space shows), on one line cut as pandas cuts rows."""
    return cut_items([repr(str(name)) for name in names], "name")


def outside_q(name: Any, q: str | None) -> bool:
    """Whether a row's name lies outside the scope ``q`` (it does not contain it, in any case)."""
    if not q:
        return False
    return isinstance(name, str) and q.casefold() not in name.casefold()


def outside_spaces(space: int | None, spaces: list[int] | None) -> bool:
    """Whether the space a row names lies outside the scope ``spaces_ids``."""
    return spaces is not None and space is not None and space not in spaces


def outside_scope(
    desired: pd.DataFrame, row_spaces: list[int | None], labels: list[Any], q: str | None, spaces: list[int] | None
) -> dict[str, tuple[Any, list[Any]]]:
    """Of the rows ``labels``, those ``create=True`` refuses as outside the scope, as
    :attr:`Unmatched.outside` holds them."""
    wanted = set(labels)
    rows = [
        (label, name, space)
        for label, name, space in zip(desired.index, desired["name"].to_numpy(dtype=object), row_spaces, strict=True)
        if label in wanted
    ]
    outside: dict[str, tuple[Any, list[Any]]] = {}
    off_q = [label for label, name, _ in rows if outside_q(name, q)]
    if off_q:
        outside["q"] = (q, off_q)
    off_spaces = [label for label, _, space in rows if outside_spaces(space, spaces)]
    if off_spaces:
        outside["spaces_ids"] = (spaces, off_spaces)
    return outside


def _them(count: int) -> str:
    return "it" if count == 1 else "them"
