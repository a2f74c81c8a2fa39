"""How plans, reports and validation problems read in a notebook and a terminal.

Pure rendering helpers (layer 0): they take plain data (values, dicts, lists of
rows) and return text or HTML; they know nothing of clients, plans or
reports. Everything here follows two rules a notebook user relies on:

* **Readable in any theme.** A coloured cell never sets a fixed pale
  background under the theme's text colour: it keeps the theme's text colour
  and lays a translucent tint over the theme's background, so the contrast is
  the theme's own (JupyterLab Light and Dark, VS Code, nbviewer alike).
* **Long outputs cut like pandas cuts them.** At most
  ``pd.get_option("display.max_rows")`` rows; past that, the first and last
  ``display.min_rows`` (head and tail), and the summary with "showing N of M"
  at the top, where it is seen without scrolling.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from . import _values as values
from ._schema import create_defaults

#: Translucent tints per tone; the text keeps the theme's colour (see module doc).
TINTS = {
    "good": "rgba(40, 167, 69, 0.20)",
    "warn": "rgba(255, 170, 0, 0.24)",
    "bad": "rgba(220, 53, 69, 0.22)",
    "info": "rgba(23, 162, 184, 0.20)",
    "change": "rgba(255, 170, 0, 0.16)",
}
#: Report statuses (and the desired-state ones) -> tone.
STATUS_TONES = {
    "updated": "good",
    "created": "good",
    "deleted": "good",
    "conflict": "warn",
    "failed": "bad",
    "planned": "info",
}
#: Statuses that need the reader's attention come first in a report.
ATTENTION_FIRST = ("failed", "conflict")
#: Each action's mark, as Terraform's plan marks them; a plan and a report show them in their first column.
ACTION_MARKS = {"delete": "-", "create": "+", "update": "~"}


# ---- words and numbers --------------------------------------------------------------
def number(value: int) -> str:
    """A count as people write it: ``1,000``."""
    return f"{value:,}"


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 source``, ``2 sources``, ``1,000 values``; never "source(s)"."""
    word = singular if count == 1 else (plural_form or singular + "s")
    return f"{number(count)} {word}"


shown = values.shown  # the one display rule, kept importable from here


# ---- what a create says -------------------------------------------------------------
def split_create(
    settings: Mapping[str, Any], unset: Iterable[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A new source's values (its ``name`` aside) as ``(said, defaults)``: the values its row set
    differently from what the toolkit creates a source with (:func:`create_defaults`), and the
    rest. ``unset``: fields the row did not set (the server gave them), always defaults.

    A create reads as what it sets: a backup row that repeats 15 defaults, or a report row
    of every value the server gave, says the same as the row that set only the others. A
    value the toolkit has no default for (a field it does not know, a license) that the row
    set is said, unless it is missing.
    """
    defaults = create_defaults()
    left = set(unset or ())
    said: dict[str, Any] = {}
    folded: dict[str, Any] = {}
    for field, value in settings.items():
        if field == "name":
            continue
        default = field in left or (field in defaults and values.same(field, value, defaults[field]))
        (folded if default or values.is_missing(value) else said)[field] = value
    return said, folded


def defaults_text(folded: Mapping[str, Any]) -> str:
    """``+ 15 defaults`` (empty when none), as the text views fold a create's defaults."""
    return f"+ {plural(len(folded), 'default')}" if folded else ""


# ---- cutting long outputs -----------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """Which rows of ``total`` are shown: ``head`` then ``tail`` positions."""

    total: int
    head: range
    tail: range

    @property
    def truncated(self) -> bool:
        return len(self.head) + len(self.tail) < self.total

    @property
    def shown(self) -> int:
        return len(self.head) + len(self.tail)

    def positions(self) -> list[int]:
        return [*self.head, *self.tail]


def window(total: int, max_rows: int | None = None, min_rows: int | None = None) -> Window:
    """The rows pandas would show of ``total``: all of them up to ``max_rows``, else head and tail.

    ``max_rows``/``min_rows`` default to pandas' ``display.max_rows``/``display.min_rows``;
    ``None`` (the pandas option unset) means no limit.
    """
    if max_rows is None or min_rows is None:
        import pandas as pd

        max_rows = pd.get_option("display.max_rows") if max_rows is None else max_rows
        min_rows = pd.get_option("display.min_rows") if min_rows is None else min_rows
    if not max_rows or total <= max_rows:
        return Window(total, range(total), range(total, total))
    keep = min(min_rows, max_rows) if min_rows else max_rows
    keep = max(keep, 2)
    head = (keep + 1) // 2
    return Window(total, range(head), range(total - (keep - head), total))


def showing(win: Window, where: str | None = None, noun: str = "rows") -> str:
    """``showing 10 of 1,000 rows; all rows in `plan.changes```, or "" when nothing is cut."""
    if not win.truncated:
        return ""
    text = f"showing {number(win.shown)} of {number(win.total)} {noun}"
    return text + (f"; all rows in {where if '`' in where else f'`{where}`'}" if where else "")


def cut_items(
    items: Sequence[str], noun: str, max_rows: int | None = None, min_rows: int | None = None, *, sep: str = ", "
) -> str:
    """``items`` on one line, cut as :func:`window` cuts rows: ``a, b, ... 490 more names ..., y, z``
    (``noun``: what one item is, ``name``; ``sep``: between two items)."""
    win = window(len(items), max_rows, min_rows)
    parts = [items[k] for k in win.head]
    if win.truncated:
        parts.append(f"... {plural(win.total - win.shown, 'more ' + noun)} ...")
    parts += [items[k] for k in win.tail]
    return sep.join(parts)


# ---- grouping problems ----------------------------------------------------------------
@dataclass(frozen=True)
class ProblemGroup:
    """One reason for one field, over one or more rows (``ids``, with each row's ``values``)."""

    field: str | None
    reason: str
    ids: tuple[Any, ...]
    values: tuple[Any, ...]

    @property
    def same_value(self) -> bool:
        first = self.values[0] if self.values else None
        return all(_same_repr(v, first) for v in self.values)


def _same_repr(a: Any, b: Any) -> bool:
    return type(a) is type(b) and repr(a) == repr(b)


def group_problems(problems: Iterable[Sequence[Any]]) -> list[ProblemGroup]:
    """Problems ``(id, field, value, reason)`` grouped by (field, reason), first seen first.

    A problem about no row (``id`` None), or about the id itself, is a group of its own.
    """
    groups: dict[Any, list[tuple[Any, Any]]] = {}
    keys: dict[Any, tuple[str | None, str]] = {}
    for n, (pid, field, value, reason) in enumerate(problems):
        alone = pid is None or field == "id" or field is None
        key: Any = ("alone", n) if alone else (field, reason)
        keys.setdefault(key, (field, reason))
        groups.setdefault(key, []).append((pid, value))
    return [
        ProblemGroup(keys[k][0], keys[k][1], tuple(i for i, _ in rows), tuple(v for _, v in rows))
        for k, rows in groups.items()
    ]


#: What a problem's ``id`` may be: a source's id, a frame's row label, a file's line.
LABEL_NOUNS = ("id", "row", "line")


def ids_text(ids: Sequence[Any], values: Sequence[Any] | None = None, most: int = 10, noun: str = "id") -> str:
    """``ids 1, 2, 3 ... 1000`` (or ``id 1 = -1, id 2 = -5 ...`` with ``values``); ``noun``:
    what the ids are (``rows 0, 1`` for a frame matched by name, which has no ids)."""

    def one(k: int) -> str:
        return f"{noun} {ids[k]} = {_value_repr(values[k])}" if values is not None else str(ids[k])

    if len(ids) <= most:
        parts = [one(k) for k in range(len(ids))]
        joined = ", ".join(parts)
    else:
        joined = ", ".join(one(k) for k in range(3)) + " ... " + one(len(ids) - 1)
    return joined if values is not None else f"{noun}{'s' if len(ids) != 1 else ''} {joined}"


def _value_repr(value: Any) -> str:
    item = getattr(value, "item", None)
    if callable(item) and type(value).__module__ == "numpy":
        value = item()
    return repr(value)


def problem_line(group: ProblemGroup, noun: str = "id") -> str:
    """One line for a group: "field = -1: must be 0 or more; 1,000 sources: ids 1, 2, 3 ... 1000".
    ``noun``: what the problems' ids are (``row 3`` for a frame matched by name)."""
    if len(group.ids) == 1:
        pid, value = group.ids[0], group.values[0]
        about_id = group.field == "id" and pid is not None and noun == "id"  # "id 3", not "id 3, id = 3"
        where = ", ".join(
            ([f"{noun} {_value_repr(pid)}"] if pid is not None else [])
            + ([group.field] if group.field and not about_id else [])
        )
        shown_value = _value_repr(value) if value is not None and not about_id else None
        if where:
            return f"{where}{f' = {shown_value}' if shown_value else ''}: {group.reason}"
        return f"{group.reason}{f' (got {shown_value})' if shown_value else ''}"
    count = plural(len(group.ids), "source" if noun == "id" else noun)
    if group.same_value:
        value = group.values[0]
        head = f"{group.field} = {_value_repr(value)}" if value is not None else f"{group.field}"
        return f"{head}: {group.reason}; {count}: {ids_text(group.ids, noun=noun)}"
    return f"{group.field}: {group.reason}; {count}: {ids_text(group.ids, group.values, noun=noun)}"


def problems_headline(count: int, what: str, nothing_sent: bool = True) -> str:
    """``3 problems in the edited frame; nothing was sent`` (a file read sends nothing: not said)."""
    return f"{plural(count, 'problem')} in the {what}" + ("; nothing was sent" if nothing_sent else "")


def problems_text(
    problems: Sequence[Sequence[Any]],
    what: str,
    max_rows: int | None = None,
    *,
    nothing_sent: bool = True,
    min_rows: int | None = None,
    noun: str = "id",
) -> str:
    """The text of a validation error: a headline, then one line per group, cut like pandas."""
    groups = group_problems(problems)
    win = window(len(groups), max_rows, min_rows)
    shown_lines = ["  " + problem_line(groups[k], noun) for k in win.positions()]
    headline = problems_headline(len(problems), what, nothing_sent) + ":"
    return "\n".join([headline, *cut_lines(shown_lines, win, "line")])


def cut_lines(lines: Sequence[str], win: Window, noun: str) -> list[str]:
    """The ``lines`` ``win`` shows (one per position), with ``... 990 more lines ...`` where it cuts."""
    cut = len(win.head)
    if not win.truncated:
        return list(lines)
    return [*lines[:cut], f"  ... {plural(win.total - win.shown, 'more ' + noun)} ...", *lines[cut:]]


# ---- HTML ---------------------------------------------------------------------------
def esc(value: Any) -> str:
    return html.escape(str(value))


def breakable(text: Any) -> str:
    """``text`` escaped, with a line break allowed after each ``_`` and ``/``: a long field
    name (``identify_facesize_threshold``) or path wraps in a narrow output instead of
    widening its table past the window."""
    return re.sub(r"([_/])", r"\1<wbr>", esc(text))


#: How a cell's text may wrap: between words; also inside a word too long for the cell (a
#: value, a message: rather than widen the table past the output, which is about 470 px in
#: a 900 px window with the file browser open); or never (ids, marks, statuses).
WRAPS = {"words": "", "anywhere": "overflow-wrap:anywhere", "never": "white-space:nowrap"}


def td(
    text: Any,
    *,
    align: str = "left",
    tone: str | None = None,
    title: str | None = None,
    raw: bool = False,
    wrap: str = "words",
) -> str:
    """A cell; ``tone`` lays a translucent tint (the text keeps the theme's colour); ``wrap``: see :data:`WRAPS`."""
    style = [f"text-align:{align}", "padding:0.25em 0.5em", *([WRAPS[wrap]] if WRAPS[wrap] else [])]
    if tone:
        style.append(f"background:{TINTS[tone]}")
    attrs = f' style="{";".join(style)}"'
    if tone:
        attrs += f' class="neuroio-tone-{tone}"'
    if title:
        attrs += f' title="{esc(title)}"'
    return f"<td{attrs}>{text if raw else esc(text)}</td>"


def change_td(old: Any, new: Any, *, created: bool = False) -> str:
    """``old -> new`` on a tinted cell; the old value struck out in the theme's text colour.
    A source to create had no old value: its cell shows the new one alone."""
    body = f"<b>{esc(shown(new))}</b>" if created else f"<s>{esc(shown(old))}</s> &rarr; <b>{esc(shown(new))}</b>"
    return td(body, tone="change", raw=True, wrap="anywhere")


def mark_td(mark: str) -> str:
    """The ``+`` / ``~`` / ``-`` of a row, in bold and the theme's text colour; its action on hover."""
    action = next((a for a, m in ACTION_MARKS.items() if m == mark), "")
    return td(f"<b>{esc(mark)}</b>", align="center", title=action or None, raw=True, wrap="never")


def th(text: Any, align: str = "left") -> str:
    return f'<th style="text-align:{align}">{breakable(text)}</th>'


def table(header: Sequence[str], rows: Sequence[str], win: Window, *, aligns: Sequence[str] | None = None) -> str:
    """A table of the ``rows`` (each the inner HTML of a ``<tr>``) that ``win`` shows.

    ``rows`` may hold only the shown rows (``len(rows) == win.shown``) or all of them.
    """
    aligns = aligns or ["left"] * len(header)
    head = "".join(th(h, a) for h, a in zip(header, aligns, strict=False))
    if len(rows) == win.shown:
        picked = list(rows)
        cut = len(win.head)
    else:
        picked = [rows[k] for k in win.positions()]
        cut = len(win.head)
    body = [f"<tr>{r}</tr>" for r in picked[:cut]]
    if win.truncated:
        body.append("<tr>" + "".join(td("…", align=a) for a in aligns) + "</tr>")
    body += [f"<tr>{r}</tr>" for r in picked[cut:]]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def headline(title: str, summary: str, note: str = "") -> str:
    """The line above a table: bold title, the summary, and what is cut (all at the top)."""
    code = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(note))  # `plan.changes`: a name to type
    extra = f"<br><span>{code}</span>" if note else ""
    return f"<p><b>{esc(title)}</b>: {esc(summary)}{extra}</p>"


def notice(text: str, tone: str = "warn") -> str:
    """A paragraph that needs the reader's attention, on a translucent tint (the text keeps the
    theme's colour, see the module doc); a long word in it wraps rather than widen the output.
    A name between backticks (`` `plan.unmatched` ``) is shown as code."""
    code = re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))
    style = f"background:{TINTS[tone]};padding:2px 4px;{WRAPS['anywhere']}"
    return f'<p class="neuroio-tone-{tone}" style="{style}">{code}</p>'


def view(*parts: str) -> str:
    return f'<div class="neuroio-view">{"".join(parts)}</div>'


def problems_html(
    problems: Sequence[Sequence[Any]],
    what: str,
    max_rows: int | None = None,
    *,
    nothing_sent: bool = True,
    noun: str = "id",
) -> str:
    """A validation error as HTML: the headline, then one row per group of problems."""
    groups = group_problems(problems)
    win = window(len(groups), max_rows)
    n = len(problems)
    summary = problems_headline(n, what, nothing_sent)
    if len(groups) != n:
        summary += f" ({plural(len(groups), 'kind', 'kinds')} of problem)"
    rows = []
    for k in win.positions():
        g = groups[k]
        if len(g.ids) == 1:
            where = "" if g.ids[0] is None else str(g.ids[0]) if noun == "id" else f"{noun} {g.ids[0]}"
            value = "" if g.values[0] is None else _value_repr(g.values[0])
        else:
            where = f"{plural(len(g.ids), 'source' if noun == 'id' else noun)}: {ids_text(g.ids, noun=noun)}"
            value = _value_repr(g.values[0]) if g.same_value else ids_text(g.ids, g.values, noun=noun)
        rows.append(
            td(where) + td(breakable(g.field or ""), raw=True) + td(value, wrap="anywhere") + td(g.reason, tone="bad")
        )
    note = showing(win, noun="lines")
    note += "; every problem in the error's `.problems`" if note else ""
    return view(
        headline("ValidationError", summary, note), table(["source ids", "field", "value", "problem"], rows, win)
    )


def empty(sentence: str) -> str:
    """An empty plan or report says so in a sentence, not with an empty table."""
    return view(f"<p>{esc(sentence)}</p>")


def changes_html(
    title: str,
    summary: str,
    by_source: Sequence[tuple[Any, Any, dict[str, tuple[Any, Any]]]],
    fields: Sequence[str],
    *,
    where: str | None = None,
    marks: Sequence[str] | None = None,
    footer: str = "",
    lead: str = "",
) -> str:
    """A wide table of changes: one row per source ``(id, name, {field: (old, new)})``.

    ``fields`` are the columns after id and name, in order (one no row shows is left out); a
    changed name is shown as a change. ``marks`` (one per source, e.g. ``+ ~ -``) fill an
    optional first column, with no header. A source to create shows the values it sets differently from
    the defaults, the defaults folded under its name (:func:`split_create`). ``lead``
    (HTML, e.g. a :func:`notice`) comes between the headline and the table.
    """
    win = window(len(by_source))
    creates = [marks is not None and marks[k] == ACTION_MARKS["create"] for k in range(len(by_source))]
    said = [
        _created_said(changes) if created else changes
        for (_, _, changes), created in zip(by_source, creates, strict=True)
    ]
    columns = [c for c in fields if c != "name" and any(c in changes for changes in said)]
    if len(columns) > WIDE_FIELDS:
        table_html = _listed_changes(by_source, creates, win, marks)
        return view(headline(title, summary, showing(win, where, "sources")), lead, table_html, footer)
    header = ([""] if marks is not None else []) + ["id", "name", *columns]
    aligns = ["left"] * len(header)
    aligns[header.index("id")] = "right"
    rows = []
    for k in win.positions():
        sid, name, changes = by_source[k]
        cells = [mark_td(marks[k])] if marks is not None else []
        cells.append(td(sid, align="right", wrap="never"))
        if "name" in changes and not creates[k]:
            cells.append(change_td(*changes["name"]))
        else:
            folded = split_create({f: new for f, (_, new) in changes.items()})[1] if creates[k] else {}
            cells.append(td(esc("" if name is None else name) + folded_defaults(folded), raw=True))
        cells += [change_td(*said[k][c], created=creates[k]) if c in said[k] else td("") for c in columns]
        rows.append("".join(cells))
    return view(
        headline(title, summary, showing(win, where, "sources")), lead, table(header, rows, win, aligns=aligns), footer
    )


#: A plan of changes to at most this many fields is a wide table, a column per field; one of
#: more (a restore, whose new sources set many fields) lists each source's changes, a field a line.
WIDE_FIELDS = 4


def _listed_changes(
    by_source: Sequence[tuple[Any, Any, dict[str, tuple[Any, Any]]]],
    creates: Sequence[bool],
    win: Window,
    marks: Sequence[str] | None,
) -> str:
    """The rows of :func:`changes_html` ``win`` shows, their changes listed one field a line (no
    id column when every row is a source still to create)."""
    ids = any(sid not in ("", None) for sid, _, _ in by_source)
    header = [*([""] if marks is not None else []), *(["id"] if ids else []), "name", "changes"]
    aligns = [*(["center"] if marks is not None else []), *(["right"] if ids else []), "left", "left"]
    rows = []
    for k in win.positions():
        sid, name, changes = by_source[k]
        if creates[k]:
            lines = created_values({f: new for f, (_, new) in changes.items()}, plan=True)
        else:
            lines = "".join(change_line(f, old, new, plan=True) for f, (old, new) in changes.items())
        rows.append(
            (mark_td(marks[k]) if marks is not None else "")
            + (td(sid, align="right", wrap="never") if ids else "")
            + td("" if name is None else name)
            + td(lines, raw=True)
        )
    return table(header, rows, win, aligns=aligns)


def _created_said(changes: Mapping[str, tuple[Any, Any]]) -> dict[str, tuple[Any, Any]]:
    said, _ = split_create({f: new for f, (_, new) in changes.items()})
    return {f: changes[f] for f in said}


#: A value of up to this many characters never breaks inside; a longer one (a long text of a
#: field the toolkit does not know) may, rather than widen the table past the output.
WHOLE_VALUE = 40


def _whole(text: str) -> str:
    """``text`` escaped, on one line when short enough (see :data:`WHOLE_VALUE`)."""
    return f'<span style="{WRAPS["never"] if len(text) <= WHOLE_VALUE else WRAPS["anywhere"]}">{esc(text)}</span>'


def change_line(field: str, old: Any, new: Any, *, created: bool = False, plan: bool = False) -> str:
    """One field on a line of its own: ``field: old → new`` (``field: new`` for a new source).
    The line may break after the colon and around the arrow, never inside the field's name or a
    value. ``plan``: as the plan's cells show a change, the old value struck out, the new in bold."""
    before, after = _whole(shown(old)), _whole(shown(new))
    if plan:
        before, after = f"<s>{before}</s>", f"<b>{after}</b>"
    what = after if created else f"{before} &rarr; {after}"
    return f'<div class="neuroio-change">{_whole(f"{field}:")} {what}</div>'


def folded_defaults(folded: Mapping[str, Any]) -> str:
    """A create's defaults folded away: ``+ 15 defaults``, which opens to list them, one a line."""
    if not folded:
        return ""
    lines = "".join(change_line(f, None, v, created=True) for f, v in folded.items())
    style = "display:inline-block;vertical-align:top"
    return (
        f'<details class="neuroio-defaults" style="{style}"><summary>{esc(defaults_text(folded))}</summary>'
        f"{lines}</details>"
    )


def created_values(settings: Mapping[str, Any], unset: Iterable[str] | None = None, *, plan: bool = False) -> str:
    """What a new source sets, as a run of ``field: value`` pieces that wrap between pieces (a
    create is read as one sentence of what it sets, not as a list of changes), then its
    defaults folded (:func:`split_create`)."""
    said, folded = split_create(settings, unset)
    pieces = []
    for field, value in said.items():
        shown_value = _whole(shown(value))
        pieces.append(
            f'<span class="neuroio-value">{_whole(f"{field}:")} {f"<b>{shown_value}</b>" if plan else shown_value}</span>'
        )
    return "; ".join(pieces) + (" " if pieces and folded else "") + folded_defaults(folded)


def changes_list(action: Any, changes: Mapping[str, tuple[Any, Any]] | None, unset: Iterable[str] | None = None) -> str:
    """A report row's changes: an update's ``old → new``, one field a line; a create's values
    (:func:`created_values`; ``unset``: the fields its row did not set); nothing for a delete
    (every setting -> nothing: the mark and the status say it, as in the plan)."""
    if action == "delete" or not changes:
        return ""
    if action == "create":  # what it was created with: the name has its own column
        return created_values({f: new for f, (_, new) in changes.items()}, unset)
    return "".join(change_line(f, old, new) for f, (old, new) in changes.items())


def _has_error(error: Any) -> bool:
    return not values.is_missing(error) and bool(str(error).strip())


def error_lines(error: Any) -> str:
    """The server's message, its field errors on lines of their own (HTML would run them together)."""
    return "<br>".join(breakable(line.strip()) for line in str(error or "").splitlines())


def report_html(
    summary: str,
    rows: Sequence[tuple[Any, Any, str, dict[str, tuple[Any, Any]] | None, Any]],
    *,
    where: str | None = "report",
    actions: Sequence[Any] | None = None,
    defaults: Sequence[Any] | None = None,
) -> str:
    """A report: one row per source ``(id, name, status, changes, error)``, failed and conflict first;
    its changes as :func:`changes_list` shows them, and under them the row's error, if any (one
    column for both: beside the file browser a column of its own would leave each a sliver).

    ``actions`` (one per row: ``create``, ``update``, ``delete``) add the plan's first column of
    marks (``+ ~ -``) when any row is not an update, as the plan shows it. ``defaults`` (one per
    row): the fields of a created source that its row did not set.
    """
    order = sorted(
        range(len(rows)),
        key=lambda k: (
            rows[k][2] not in ATTENTION_FIRST,
            ATTENTION_FIRST.index(rows[k][2]) if rows[k][2] in ATTENTION_FIRST else 0,
        ),
    )
    marked = actions is not None and any(a in ACTION_MARKS and a != "update" for a in actions)
    errors = any(_has_error(row[4]) for row in rows)
    win = window(len(order))
    header = [*([""] if marked else []), "id", "name", "status", "changes / error" if errors else "changes"]
    aligns = [*(["center"] if marked else []), "right", "left", "left", "left"]
    shown_rows = []
    for k in win.positions():
        sid, name, status, changes, error = rows[order[k]]
        action = actions[order[k]] if actions is not None else None
        why = (
            f'<div class="neuroio-why" style="margin-top:0.2em;{WRAPS["anywhere"]}">{error_lines(error)}</div>'
            if _has_error(error)
            else ""
        )
        shown_rows.append(
            (mark_td(ACTION_MARKS.get(str(action), "")) if marked else "")
            + td("" if values.is_missing(sid) else sid, align="right", wrap="never")
            + td("" if name is None else name)
            + td(status, tone=STATUS_TONES.get(status), wrap="never")
            + td(changes_list(action, changes, defaults[order[k]] if defaults is not None else None) + why, raw=True)
        )
    note = showing(win, where, "sources")
    return view(headline("Report", summary, note), table(header, shown_rows, win, aligns=aligns))
