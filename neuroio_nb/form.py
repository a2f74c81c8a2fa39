"""An ipywidgets form for one source: ``client.sources.form(id)``.

Every input is generated from :data:`neuroio_nb.schema.FIELDS` (one section per
:data:`~neuroio_nb.schema.GROUPS` entry); fields the server sends that the
schema does not know are shown read-only in an extra section.

The form keeps the source as last read from (or saved to) the server, its
*baseline*. What differs from the baseline is an unsaved change: marked on its
row, counted in the status line, sent by **Save** as one PATCH of only those
fields, and dropped by **Revert**. **Reload** reads the server again and never
discards a side silently: settings the user did not touch take the server's
values, the user's edits are kept, and every field the server changed is named.

``client.sources.form()`` (no id) gives a :class:`SourcePicker`: a filter box
and a list of "name (id)" above the form of the chosen source.
"""
from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING, Any, Iterable

import ipywidgets as widgets

from .errors import APIError, NeuroIOError, ValidationError
from .schema import BY_NAME, FIELDS, GROUPS, Field
from .values import check_value, same

if TYPE_CHECKING:
    from .rest import SourcesAPI as Sources

UNSAVED_CLASS = "neuroio-unsaved"
#: Heading of the section that shows fields the schema does not know.
OTHER_GROUP = "Other fields from the server"
_MARK = "●"
_LABEL_WIDTH = "210px"
_INPUT_WIDTH = "460px"
_STYLE = f"""<style>
.neuroio-form .neuroio-row {{ border-left: 3px solid transparent; padding-left: 4px; }}
.neuroio-form .neuroio-row.{UNSAVED_CLASS} {{ border-left-color: #e8a33d;
  background: rgba(232, 163, 61, 0.10); }}
.neuroio-form .{UNSAVED_CLASS} .widget-label, .neuroio-form .{UNSAVED_CLASS} label {{ font-weight: bold; }}
.neuroio-form .neuroio-help {{ color: var(--jp-ui-font-color2, #666); font-size: 0.85em; }}
.neuroio-form .neuroio-helpbox {{ align-self: center; }}
.neuroio-form .neuroio-helpbox .widget-html-content,
.neuroio-form .neuroio-errline .widget-html-content {{ line-height: 1.35; }}
.neuroio-form .neuroio-errline {{ margin-left: calc({_LABEL_WIDTH} + 8px); }}
.neuroio-form .neuroio-mark {{ color: #e8a33d; }}
.neuroio-form .neuroio-error {{ color: var(--jp-error-color1, #c62828); font-size: 0.9em; }}
.neuroio-form .neuroio-note {{ color: var(--jp-warn-color1, #a15c00); font-size: 0.9em; }}
</style>"""


class SourceForm(widgets.VBox):
    """The form of one source. Parts tests and users may reach:

    ``inputs`` (field name -> input widget, unknown fields included),
    ``errors`` (field name -> the HTML line under that input),
    ``save_button``, ``revert_button``, ``reload_button``, ``status``,
    :meth:`changes` and :attr:`source` (the baseline, as the server sent it).
    """

    def __init__(self, sources: Sources, source_id: int) -> None:
        self.sources = sources
        self.source_id = source_id
        self.source: dict[str, Any] = sources.get(source_id)
        self.inputs: dict[str, widgets.Widget] = {}
        self.errors: dict[str, widgets.HTML] = {}
        self._rows: dict[str, widgets.Box] = {}
        self._marks: dict[str, widgets.HTML] = {}
        #: Widget-level values of the baseline, to tell what the user changed.
        self._saved: dict[str, Any] = {}
        #: Notes from the server (field errors, conflicts) under a field until it changes.
        self._notes: dict[str, tuple[str, str]] = {}
        self._message = ""
        self._loading = False
        #: Writable fields the server did not send (or sent as null): shown disabled.
        self._unsent: set[str] = set()
        #: Fields whose server change was already reported at Save (a second Save overwrites).
        self._overwrite: dict[str, Any] = {}

        self.title = widgets.HTML()
        sections = [self._section(group, [f for f in FIELDS if f.group == group]) for group in GROUPS]
        self._other = widgets.VBox()
        self.save_button = widgets.Button(description="Save", button_style="primary",
                                          tooltip="Send the unsaved changes (one PATCH of only those fields)")
        self.revert_button = widgets.Button(description="Revert",
                                            tooltip="Drop the unsaved changes: back to the last values "
                                                    "read from or saved to the server")
        self.reload_button = widgets.Button(description="Reload",
                                            tooltip="Read the source from the server again; "
                                                    "unsaved changes are kept")
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.6em"))
        self.status.add_class("neuroio-status")
        self.save_button.on_click(lambda _: self.save())
        self.revert_button.on_click(lambda _: self.revert())
        self.reload_button.on_click(lambda _: self.reload())
        buttons = widgets.HBox([self.save_button, self.revert_button, self.reload_button])
        super().__init__([widgets.HTML(_STYLE), self.title, *sections, self._other, buttons, self.status])
        self.add_class("neuroio-form")
        self._load(self.source)
        self._refresh()

    # ---- building -------------------------------------------------------------
    def _section(self, title: str, fields: Iterable[Field]) -> widgets.VBox:
        rows = [self._row(field) for field in fields]
        return widgets.VBox([widgets.HTML(f"<h4 style='margin:0.6em 0 0.2em'>{html.escape(title)}</h4>"), *rows])

    def _row(self, field: Field, *, known: bool = True) -> widgets.VBox:
        """One field: input, unsaved mark and help on a line, the error line under them."""
        control = _control(field) if known else _read_only_control(field)
        self.inputs[field.name] = control
        mark = widgets.HTML("", layout=widgets.Layout(width="1.2em"))
        mark.add_class("neuroio-mark")
        help_line = widgets.HTML(f"<span class='neuroio-help'>{html.escape(_help(field, known))}</span>",
                                 layout=widgets.Layout(flex="1 1 auto"))
        help_line.add_class("neuroio-helpbox")
        control.layout.flex = "0 0 auto"
        error = widgets.HTML("")
        error.add_class("neuroio-errline")
        self.errors[field.name] = error
        self._marks[field.name] = mark
        row = widgets.VBox([widgets.HBox([control, mark, help_line]), error])
        row.add_class("neuroio-row")
        self._rows[field.name] = row
        if known and field.writable:
            control.observe(lambda change, name=field.name: self._edited(name), names="value")
        return row

    def _sync_other_fields(self, source: dict[str, Any]) -> None:
        """(Re)build the read-only section of fields the schema does not know."""
        unknown = [name for name in source if name not in BY_NAME]
        shown = [name for name in self._rows if name not in BY_NAME]
        if shown == unknown:
            return
        for name in shown:
            for table in (self.inputs, self.errors, self._marks):
                table.pop(name, None)
            _close_all(self._rows.pop(name))
        rows = [self._row(Field(name, "object", OTHER_GROUP, name, "", writable=False), known=False)
                for name in unknown]
        heading = widgets.HTML(f"<h4 style='margin:0.6em 0 0.2em'>{html.escape(OTHER_GROUP)}</h4>")
        self._other.children = (heading, *rows) if rows else ()

    # ---- state ----------------------------------------------------------------
    def changes(self) -> dict[str, Any]:
        """The unsaved changes, as they would be sent: field name -> API value."""
        out = {}
        for field in FIELDS:
            control = self.inputs[field.name]
            if field.writable and not control.disabled and \
                    _comparable(field, control.value) != self._saved.get(field.name):
                out[field.name] = _to_api(field, control.value, self.source.get(field.name))
        return out

    @property
    def dirty(self) -> bool:
        return bool(self.changes())

    def _load(self, source: dict[str, Any], keep: Iterable[str] = ()) -> None:
        """Make ``source`` the baseline and show it, except in the fields ``keep`` (user edits)."""
        keep = set(keep)
        self.source = dict(source)
        self._sync_other_fields(source)
        self._loading = True
        try:
            for field in FIELDS:
                control = self.inputs[field.name]
                value = source.get(field.name)
                sent = field.name in source and not (value is None and field.kind in ("bool", "int"))
                if field.kind == "list":
                    extra = [v for v in (value or []) if v not in (field.choices or ())]
                    options = tuple(field.choices or ()) + tuple(dict.fromkeys(map(str, extra)))
                    if tuple(control.options) != options:
                        current = tuple(v for v in control.value if v in options)
                        control.options = options
                        control.value = current
                widget_value = _to_widget(field, value)
                if field.name not in keep:
                    control.value = widget_value
                self._saved[field.name] = _comparable(field, widget_value)
                if field.writable:
                    control.disabled = not sent
                    (self._unsent.discard if sent else self._unsent.add)(field.name)
            for name in self.inputs:
                if name not in BY_NAME:
                    self.inputs[name].value = _display(source.get(name))
        finally:
            self._loading = False
        self.title.value = (f"<h3 style='margin:0.2em 0'>Source {html.escape(str(self.source_id))}: "
                            f"{html.escape(str(source.get('name') or ''))}</h3>")

    def _edited(self, name: str) -> None:
        if self._loading:
            return
        self._notes.pop(name, None)
        self._message = ""
        self._refresh()

    def _refresh(self) -> None:
        """Marks, error lines and the status line, from the current values."""
        changes = self.changes()
        for name, row in self._rows.items():
            unsaved = name in changes
            for widget in (row, self.inputs[name]):
                (widget.add_class if unsaved else widget.remove_class)(UNSAVED_CLASS)
            self._marks[name].value = f"<span title='unsaved change'>{_MARK}</span>" if unsaved else ""
            problem = check_value(BY_NAME[name], changes[name]) if unsaved else None
            if problem:
                self.errors[name].value = _line("error", f"{BY_NAME[name].label} {problem}")
            elif name in self._notes:
                self.errors[name].value = _line(*self._notes[name])
            elif name in self._unsent:
                self.errors[name].value = _line("note", "the server did not send a value for this "
                                                        "setting, so it cannot be edited here")
            else:
                self.errors[name].value = ""
        count = len(changes)
        counted = f"{count} unsaved change{'s' if count != 1 else ''}" if count else "no unsaved changes"
        text = f"<b>{_MARK} {counted}</b>" if count else counted
        self.status.value = f"{self._message} — {text}" if self._message else text

    def _say(self, message: str) -> None:
        self._message = message
        self._refresh()

    def _busy(self, busy: bool) -> None:
        for button in (self.save_button, self.revert_button, self.reload_button):
            button.disabled = busy

    # ---- actions --------------------------------------------------------------
    def save(self) -> None:
        """Send the unsaved changes as one PATCH, after checking them here first."""
        changes = self.changes()
        if not changes:
            self._say("nothing to save")
            return
        problems = {name: reason for name, value in changes.items()
                    if (reason := check_value(BY_NAME[name], value))}
        if problems:
            self._say(_escape(f"not saved: {len(problems)} problem{'s' if len(problems) != 1 else ''} "
                              f"({', '.join(problems)}); nothing was sent"))
            return
        self._busy(True)
        self._say("saving…")
        try:
            current = self.sources.get(self.source_id)
            conflicts = {name: current.get(name) for name in changes
                         if not same(name, current.get(name), self.source.get(name))
                         and not same(name, current.get(name), self._overwrite.get(name, object()))}
            if conflicts:
                self._overwrite.update(conflicts)
                for name, value in conflicts.items():
                    self._notes[name] = ("note", f"changed on the server to {_display(value)} since it was "
                                                 "read; Save again to overwrite it, Revert or Reload to see it")
                self._say(_escape(f"not saved: changed on the server meanwhile: {', '.join(conflicts)}. "
                                  "Save again to overwrite them with yours; nothing was sent"))
                return
            saved = self.sources.update(self.source_id, **changes)
        except ValidationError as exc:
            self._show_problems({p.field: p.reason for p in exc.problems if p.field}, exc)
            return
        except APIError as exc:
            self._show_problems(exc.field_errors, exc)
            return
        except NeuroIOError as exc:
            self._say(_escape(f"not saved: {exc}"))
            return
        finally:
            self._busy(False)
        also = [name for name in saved if name not in changes
                and not same(name, saved.get(name), self.source.get(name))]
        self._notes.clear()
        self._overwrite.clear()
        self._load(saved)
        self._say(_escape(f"saved: {', '.join(sorted(changes))}"
                          + (f"; also changed on the server meanwhile: {', '.join(also)}" if also else "")))

    def _show_problems(self, by_field: dict[str, str], exc: Exception) -> None:
        """Errors the server (or the client's checks) named, each under its field."""
        elsewhere = []
        for name, reason in by_field.items():
            if name in self.errors:
                self._notes[name] = ("error", reason)
            else:
                elsewhere.append(f"{name}: {reason}")
        status = getattr(exc, "status_code", None)
        head = f"not saved ({status}: {getattr(exc, 'message', '')})" if status else "not saved"
        if not by_field:
            head += f": {str(exc).splitlines()[0]}"
        fields = [n for n in by_field if n in self.errors]
        detail = (f"; see {', '.join(fields)}" if fields else "") + \
                 (f"; {'; '.join(elsewhere)}" if elsewhere else "")
        self._say(_escape(head + detail))

    def revert(self) -> None:
        """Back to the baseline: the last values read from or saved to the server."""
        count = len(self.changes())
        self._notes.clear()
        self._overwrite.clear()
        self._load(self.source)
        self._say(f"reverted {count} change{'s' if count != 1 else ''}" if count else "nothing to revert")

    def reload(self) -> None:
        """Read the source again; keep the user's edits and say what the server changed."""
        self._busy(True)
        try:
            fresh = self.sources.get(self.source_id)
        except NeuroIOError as exc:
            self._say(_escape(f"reload failed: {exc}"))
            return
        finally:
            self._busy(False)
        mine = self.changes()
        names = list(dict.fromkeys([*self.source, *fresh]))
        server_changed = [n for n in names
                          if not same(n, fresh.get(n), self.source.get(n))]
        self._notes.clear()
        self._overwrite.clear()
        self._load(fresh, keep=mine)
        both = [n for n in server_changed if n in mine]
        if not server_changed:
            self._say("reloaded: nothing changed on the server"
                      + (f"; your unsaved changes ({', '.join(mine)}) are kept" if mine else ""))
            return
        if not mine:
            self._say(_escape(f"reloaded: changed on the server: {', '.join(server_changed)}"))
            return
        for name in both:
            self._notes[name] = ("note", f"the server now has {_display(fresh.get(name))}; yours is kept "
                                         "(Save writes yours, Revert takes the server's)")
        taken = [n for n in server_changed if n not in mine]
        self._say(_escape(
            "reloaded: the server changed while you had unsaved edits: "
            + ", ".join(server_changed) + ". "
            + (f"Taken from the server (you had not edited them): {', '.join(taken)}. " if taken else "")
            + (f"Yours are kept where you edited too: {', '.join(both)}. " if both else "")
            + "Save writes your edits; Revert discards them and takes the server's values."))


class SourcePicker(widgets.VBox):
    """A filter box and a list of "name (id)"; the chosen source's form below.

    Forms are kept per source, so choosing another source and coming back
    finds unsaved edits where they were left.
    """

    max_shown = 200

    def __init__(self, sources: Sources) -> None:
        self.sources = sources
        self.choices: list[tuple[str, int]] = [
            (f"{row.get('name')} ({row['id']})", row["id"]) for row in sources.iter()]
        self.forms: dict[int, SourceForm] = {}
        self.filter = widgets.Text(description="Find source", placeholder="part of a name or an id",
                                   continuous_update=True, style={"description_width": "initial"},
                                   tooltip="Shows the sources whose 'name (id)' contains this text (any case)")
        self.select = widgets.Select(description="Source", rows=8, value=None,
                                     layout=widgets.Layout(width="480px"))
        self.count = widgets.HTML()
        self.holder = widgets.VBox()
        self._updating = False
        self.filter.observe(lambda _: self._apply_filter(), names="value")
        self.select.observe(lambda change: self._chosen(change["new"]), names="value")
        super().__init__([self.filter, self.select, self.count, self.holder])
        self.add_class("neuroio-picker")
        self._apply_filter()

    @property
    def form(self) -> SourceForm | None:
        """The form shown now, if a source was chosen."""
        return self.holder.children[0] if self.holder.children and \
            isinstance(self.holder.children[0], SourceForm) else None

    def _apply_filter(self) -> None:
        needle = self.filter.value.strip().casefold()
        matching = [c for c in self.choices if needle in c[0].casefold()]
        shown = matching[: self.max_shown]
        current = self.select.value
        self._updating = True
        try:
            self.select.options = shown
            self.select.value = current if current in {i for _, i in shown} else None
        finally:
            self._updating = False
        more = f"; showing the first {len(shown)}, type to narrow" if len(matching) > len(shown) else ""
        self.count.value = f"<small>{len(matching)} of {len(self.choices)} sources match{more}</small>"

    def _chosen(self, source_id: int | None) -> None:
        if self._updating or source_id is None:
            return
        form = self.forms.get(source_id)
        if form is None:
            try:
                form = self.forms[source_id] = SourceForm(self.sources, source_id)
            except NeuroIOError as exc:
                self.holder.children = (widgets.HTML(_line("error", f"could not read source {source_id}: {exc}")),)
                return
        self.holder.children = (form,)


def source_form(sources: Sources, source_id: int | None = None) -> SourceForm | SourcePicker:
    """The form of ``source_id``, or a searchable picker above it when no id is given."""
    if source_id is None:
        return SourcePicker(sources)
    return SourceForm(sources, source_id)


# ---- fields <-> widgets --------------------------------------------------------
def _control(field: Field) -> widgets.Widget:
    """The input of a schema field; ``description`` is its label, so it has an accessible name."""
    common: dict[str, Any] = {"description": field.label, "tooltip": field.help,
                              "style": {"description_width": _LABEL_WIDTH}}
    if not field.writable:
        return widgets.Text(disabled=True, layout=widgets.Layout(width=_INPUT_WIDTH), **common)
    if field.kind == "bool":
        return widgets.Checkbox(indent=True, layout=widgets.Layout(width=_INPUT_WIDTH), **common)
    if field.kind == "int":
        # IntText, not BoundedIntText: a bounded one clamps silently (in the browser and in
        # Python), so "-5" would be saved as 0. Here the Field's bounds are checked by
        # check_value and a bad value is refused with a message next to it.
        return widgets.IntText(layout=widgets.Layout(width=_INPUT_WIDTH), **common)
    if field.kind == "list":
        return widgets.SelectMultiple(options=tuple(field.choices or ()), rows=len(field.choices or ()) or 3,
                                      layout=widgets.Layout(width=_INPUT_WIDTH), **common)
    return widgets.Text(layout=widgets.Layout(width=_INPUT_WIDTH), **common)


def _read_only_control(field: Field) -> widgets.Widget:
    return widgets.Text(description=field.label, disabled=True, tooltip=_help(field, False),
                        style={"description_width": _LABEL_WIDTH}, layout=widgets.Layout(width=_INPUT_WIDTH))


def _help(field: Field, known: bool) -> str:
    if not known:
        return "Sent by the server, not known to neuroio_nb's schema: shown read-only."
    text = field.help
    if field.kind == "int" and field.writable and (field.minimum is not None or field.maximum is not None):
        text += f" ({_number(field.minimum)} – {_number(field.maximum)})"
    if field.kind == "list":
        text += " Ctrl/Shift-click picks several."
    if not field.writable:
        text += " Read-only."
    return text


def _number(value: int | None) -> str:
    return "…" if value is None else f"{value:,}"


def _to_widget(field: Field, value: Any) -> Any:
    """A server value as the field's widget holds it."""
    if not field.writable:
        return _display(value)
    if field.kind == "bool":
        return bool(value) if value is not None else False
    if field.kind == "int":
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0
    if field.kind == "list":
        return tuple(str(v) for v in (value or []))
    return "" if value is None else str(value)


def _to_api(field: Field, value: Any, original: Any) -> Any:
    """A widget value as the API takes it (``original``: the server's value, for its type)."""
    if field.kind == "list":
        order = list(field.choices or ())
        return sorted(value, key=lambda v: (order.index(v) if v in order else len(order), v))
    if field.kind == "license":
        text = str(value).strip()
        if not text:
            return None
        return int(text) if text.isdigit() and not isinstance(original, str) else text
    return value


def _comparable(field: Field, value: Any) -> Any:
    """A widget value reduced to what matters: a list is a set, a license id is its text."""
    if field.kind == "list":
        return frozenset(value)
    if field.kind == "license":
        return str(value).strip()
    return value


def _display(value: Any) -> str:
    """A read-only value as text: objects as JSON, nothing as a dash."""
    if value is None:
        return "—"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def _close_all(widget: widgets.Widget) -> None:
    """Close a widget and everything under it (Box.close leaves its children open)."""
    for child in getattr(widget, "children", ()):
        _close_all(child)
    widget.close()


def _line(kind: str, text: str) -> str:
    return f"<span class='neuroio-{kind}'>{html.escape(text)}</span>"


def _escape(text: str) -> str:
    return html.escape(text)


__all__ = ["SourceForm", "SourcePicker", "source_form", "UNSAVED_CLASS"]
