"""An ipywidgets form for one source: ``client.sources.form(id)`` (layer 4, the view).

What the form knows and decides lives in :class:`~neuroio_nb._form_state.FormState`
(values, baseline, unsaved changes, server notes, problems); this module only
shows it and turns widget events into calls on it.

Every input is built from :data:`neuroio_nb._schema.FIELDS` (one section per
:data:`~neuroio_nb._schema.GROUPS` entry) by one small factory per field kind
(:data:`CONTROLS`), as ipywidgets' own ``interaction.py`` builds its controls;
fields the server sends that the schema does not know are shown read-only in an
extra section.

Layout: each row is the unsaved marker, the label (its own column, checkboxes
included), the input and the help, and wraps where the output is narrow (a
laptop with the file browser open), so nothing is cut off. Save, Revert,
Reload and the status line sit at the top and stay in view while scrolling.

``client.sources.form()`` (no id) gives a :class:`SourcePicker`: a filter box
and a list of "name - space S (id)" above the form of the chosen source.

For everyone: what standard widgets cannot say from Python (an input's unique
accessible name "Photo uploads: Create face size", ``aria-describedby`` to its help
and error lines, ``role="status"`` on the status line, and keys that belong to a
list rather than to the notebook) is added in the browser by :data:`KEYS_AND_NAMES`,
a small script each form and picker carry (an ``<img onerror>`` in their style
widget, since ipywidgets renders HTML without running ``<script>``). The same script
sends a Save click with what every input shows, and Enter in the picker's filter box
with its text, so neither acts on what a busy kernel has not received yet. Where it
cannot run the form works as before, with the labels it shows.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import ipywidgets as widgets

from ._form_state import FormState, SourceCalls, field_title, parse_whole_number
from ._schema import BY_NAME, FIELDS, GROUPS, EntryResult, Field
from ._values import check_value, sendable, shown
from .errors import NeuroIOError

_T = TypeVar("_T")

UNSAVED_CLASS = "neuroio-unsaved"
#: Heading of the section that shows fields the schema does not know.
OTHER_GROUP = "Other fields from the server"
_MARK = "●"
_LABEL_WIDTH = "11.5em"
#: What each entry result code means, for the "Keep images for" choices.
RESULT_MEANINGS = {
    EntryResult.NEW: "new person created",
    EntryResult.REINIT: "person re-initialised",
    EntryResult.EXACT: "exact match",
    EntryResult.HA: "high-accuracy match",
    EntryResult.JUNK: "junk (poor-quality face)",
    EntryResult.NM: "no match",
    EntryResult.DET: "detected only",
}
# Colours: the theme's text colour everywhere; errors and notes get a translucent tint
# (readable in JupyterLab Light and Dark alike), the unsaved marker an amber border.
_STYLE = f"""<style>
.neuroio-form {{ max-width: 62em; }}
.neuroio-form .neuroio-save-bar {{ position: sticky !important; top: 0; z-index: 2; padding: 4px 0;
  background: var(--jp-layout-color0, var(--vscode-editor-background, Canvas));
  border-bottom: 1px solid var(--jp-border-color2, rgba(128, 128, 128, 0.4));
  flex-wrap: wrap; align-items: center; gap: 4px; }}
.neuroio-form .neuroio-status {{ flex: 1 1 14em; min-width: 0; }}
.neuroio-form .neuroio-row {{ border-left: 3px solid transparent; padding-left: 4px; }}
.neuroio-form .neuroio-row.{UNSAVED_CLASS} {{ border-left-color: #e8a33d; background: rgba(232, 163, 61, 0.10); }}
.neuroio-form .{UNSAVED_CLASS} .widget-label, .neuroio-form .{UNSAVED_CLASS} label {{ font-weight: bold; }}
.neuroio-form .neuroio-line {{ flex-wrap: wrap; align-items: center; column-gap: 6px; }}
.neuroio-form .neuroio-section, .neuroio-form .neuroio-row, .neuroio-form .neuroio-line {{ overflow: visible; }}
.neuroio-form .neuroio-line .widget-label {{ white-space: normal; line-height: 1.2; }}
.neuroio-form .widget-checkbox .widget-label-basic {{ display: flex; flex-direction: row-reverse;
  justify-content: flex-end; align-items: center; }}
.neuroio-form .widget-checkbox .widget-label-basic span {{ width: {_LABEL_WIDTH}; flex: 0 0 {_LABEL_WIDTH};
  margin-right: 8px; text-align: right; white-space: normal; line-height: 1.2; }}
.neuroio-form .neuroio-helpbox .widget-html-content,
.neuroio-form .neuroio-errline .widget-html-content {{ line-height: 1.35; }}
.neuroio-form .neuroio-help {{ color: var(--jp-ui-font-color1, inherit); font-size: 0.85em; line-height: 1.35; }}
.neuroio-form .neuroio-helpbox {{ flex: 1 1 15em; min-width: 10em; }}
.neuroio-form .neuroio-errline {{ margin-left: calc(1.2em + {_LABEL_WIDTH} + 12px); }}
.neuroio-form .neuroio-errline:empty, .neuroio-form .neuroio-errline .widget-html-content:empty {{ display: none; }}
.neuroio-form .neuroio-mark {{ color: inherit; }}
.neuroio-form .neuroio-error {{ background: rgba(220, 53, 69, 0.20); padding: 0 4px; border-radius: 2px; }}
.neuroio-form .neuroio-note {{ background: rgba(255, 170, 0, 0.22); padding: 0 4px; border-radius: 2px; }}
.neuroio-form {{ overflow: visible !important; }}
.jp-WindowedPanel-viewport:has(.neuroio-save-bar),
.jp-WindowedPanel-viewport :has(.neuroio-save-bar) {{ overflow: visible !important; contain: none !important; }}
.neuroio-form .neuroio-status {{ contain: inline-size; }}
.neuroio-form .neuroio-status .widget-html-content {{ flex: 1 1 0; width: 0; min-width: 0; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }}
.neuroio-form input:focus, .neuroio-form select:focus, .neuroio-picker input:focus, .neuroio-picker select:focus {{
  outline: 2px solid var(--jp-brand-color1, #1976d2) !important; outline-offset: 1px; }}
</style>"""

#: The browser half of the form (see the module doc): run once per page for the keys, and for
#: each form or picker rendered, to name its inputs and link them to their help and errors.
KEYS_AND_NAMES = """(function (img) {
  if (!window.__neuroioKeys) {
    window.__neuroioKeys = true;
    var NAV = ['ArrowUp', 'ArrowDown', 'ArrowLeft', 'ArrowRight', 'Home', 'End', 'PageUp', 'PageDown'];
    var ours = function (el) { return el && el.closest && el.closest('.neuroio-form, .neuroio-picker'); };
    /* data-neuroio-open: the index of the source open below, while the keys highlight another */
    var pending = function (el) { return el && el.dataset && el.dataset.neuroioOpen !== undefined; };
    /* The picker's hidden "entered" box, for an Enter (no Ctrl, Alt or Meta) in its filter box */
    var enteredBox = function (e) {
      var t = e.target;
      if (e.key !== 'Enter' || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return null;
      if (t.tagName !== 'INPUT' || !t.closest('.neuroio-picker-filter')) return null;
      var picker = t.closest('.neuroio-picker');
      return picker && picker.querySelector('.neuroio-picker-entered input');
    };
    /* A Save click (or Enter or Space on Save) on a form with its hidden "shown" box */
    var saveClicked = function (e) {
      var button = e.target && e.target.closest && e.target.closest('.neuroio-save-button');
      var form = button && !button.disabled && button.closest('.neuroio-form');
      return form && form.querySelector('.neuroio-save-shown input') ? form : null;
    };
    /* What each editable input of the form shows: text, tick, or the labels of the picks */
    var shownInputs = function (form) {
      var shown = {};
      form.querySelectorAll('.neuroio-row').forEach(function (row) {
        var name = Array.prototype.filter.call(row.classList, function (c) {
          return c.indexOf('neuroio-field-') === 0;
        })[0];
        var input = row.querySelector('.neuroio-line input, .neuroio-line select, .neuroio-line textarea');
        if (!name || !input || input.disabled) return;
        shown[name.slice('neuroio-field-'.length)] = input.type === 'checkbox' ? input.checked
          : input.multiple ? Array.prototype.map.call(input.selectedOptions, function (o) { return o.value; })
          : input.value;
      });
      return shown;
    };
    var commit = function (list) {
      if (!pending(list)) return;
      delete list.dataset.neuroioOpen;
      list.dispatchEvent(new Event('change', {bubbles: true}));
    };
    /* A list's own keys move its selection, not JupyterLab's active cell; the picker's list
       opens the highlighted source on Enter, not at every arrow (leaving the list without
       Enter puts the highlight back on the source that is open). */
    document.addEventListener('keydown', function (e) {
      var t = e.target;
      if (!ours(t) || e.isComposing) return;
      var plain = !e.ctrlKey && !e.metaKey && !e.altKey;
      var picker = t.tagName === 'SELECT' && t.closest('.neuroio-picker-list');
      if (t.tagName === 'SELECT') {
        if (e.key === 'Enter' && plain && !e.shiftKey) {
          e.stopPropagation();
          e.preventDefault();
          if (picker) commit(t);
        } else if (NAV.indexOf(e.key) >= 0 || (plain && e.key.length === 1)) {
          e.stopPropagation();
          if (picker && !pending(t)) t.dataset.neuroioOpen = String(t.selectedIndex);
        }
      } else if ((t.type === 'checkbox' || t.tagName === 'BUTTON') && plain && (e.key === ' ' || e.key === 'Enter')) {
        e.stopPropagation();
      } else if (enteredBox(e)) {
        /* Enter in the picker's filter box goes with the text it was pressed on: the text box's own
           "submit" message would overtake its text on a busy kernel (the browser holds a widget's
           state back while one update of it is unanswered, and sends messages at once). A number
           makes the same text twice two Enters. Cancelling keydown also cancels that "submit". */
        var entered = enteredBox(e);
        var last = 0;
        try { last = Number(JSON.parse(entered.value)[0]) || 0; } catch (err) { last = 0; }
        e.stopPropagation();
        e.preventDefault();
        entered.value = JSON.stringify([last + 1, t.value]);
        entered.dispatchEvent(new Event('change', {bubbles: true}));
      }
    }, true);
    document.addEventListener('click', function (e) {
      /* Save goes with what every input shows: the button's own click message would overtake the
         inputs' last keys and picks on a busy kernel (held back while one update of each is
         unanswered), and save what the kernel had, not what the screen shows. */
      var form = saveClicked(e);
      if (!form) return;
      var box = form.querySelector('.neuroio-save-shown input');
      var last = 0;
      try { last = Number(JSON.parse(box.value)[0]) || 0; } catch (err) { last = 0; }
      e.stopPropagation();
      e.preventDefault();
      box.value = JSON.stringify([last + 1, shownInputs(form)]);
      box.dispatchEvent(new Event('change', {bubbles: true}));
    }, true);
    document.addEventListener('keypress', function (e) {
      if (enteredBox(e)) e.stopPropagation();  /* the "submit" of an Enter already sent with its text */
    }, true);
    document.addEventListener('change', function (e) {
      if (pending(e.target)) e.stopImmediatePropagation();
    }, true);
    document.addEventListener('mousedown', function (e) {
      var list = e.target && e.target.closest && e.target.closest('.neuroio-picker-list select');
      if (list) delete list.dataset.neuroioOpen;
    }, true);
    document.addEventListener('focusout', function (e) {
      var list = e.target;
      if (list && list.tagName === 'SELECT' && pending(list)) {
        list.selectedIndex = Number(list.dataset.neuroioOpen);
        delete list.dataset.neuroioOpen;
      }
    }, true);
  }
  var uid = function (el) {
    if (!el.id) el.id = 'neuroio-' + Math.random().toString(36).slice(2, 12);
    return el.id;
  };
  var wire = function (root) {
    root.querySelectorAll('.neuroio-status, .neuroio-count').forEach(function (line) {
      line.setAttribute('role', 'status');
      line.title = line.textContent.trim();  /* the whole line, where a narrow output cuts it */
    });
    root.querySelectorAll('.neuroio-section').forEach(function (section) {
      var heading = section.querySelector('.neuroio-heading');
      var title = heading ? heading.textContent.trim() : '';
      section.setAttribute('role', 'group');
      if (heading) section.setAttribute('aria-labelledby', uid(heading));
      section.querySelectorAll('.neuroio-row').forEach(function (row) {
        var input = row.querySelector('.neuroio-line input, .neuroio-line select, .neuroio-line textarea');
        if (!input) return;
        var label = input.labels && input.labels[0];
        var text = label ? label.textContent.replace(/\\u200b/g, '').trim() : '';
        if (text) input.setAttribute('aria-label', title ? title + ': ' + text : text);
        var error = row.querySelector('.neuroio-errline .widget-html-content');
        var help = row.querySelector('.neuroio-helpbox .widget-html-content');
        input.setAttribute('aria-describedby', [error, help].filter(Boolean).map(uid).join(' '));
        if (error && error.querySelector('.neuroio-error')) input.setAttribute('aria-invalid', 'true');
        else input.removeAttribute('aria-invalid');
      });
    });
  };
  var tries = 0;
  var start = function () {
    var root = img.closest('.neuroio-form, .neuroio-picker');
    if (!root || !root.isConnected) {
      if (tries++ < 600) requestAnimationFrame(start);
      return;
    }
    if (root.__neuroioWired) return;
    root.__neuroioWired = true;
    var queued = false;
    new MutationObserver(function () {
      if (queued) return;
      queued = true;
      requestAnimationFrame(function () { queued = false; wire(root); });
    }).observe(root, {childList: true, subtree: true, characterData: true});
    wire(root);
  };
  start();
})(this);"""


def page_assets() -> widgets.HTML:
    """The style and :data:`KEYS_AND_NAMES` of a form or picker, as one invisible widget."""
    script = html.escape(KEYS_AND_NAMES, quote=True)
    return widgets.HTML(f'{_STYLE}<img src="data:," alt="" style="display:none" onerror="{script}">')


# ---- one small factory per field kind -----------------------------------------------
@dataclass
class Control:
    """A field's input widget and its two conversions (API value <-> what the widget holds)."""

    widget: widgets.Widget
    show: Callable[[Any], Any]
    read: Callable[[Any, Any], tuple[Any, str | None]]  # (widget value, server value) -> (value, why not)

    def put(self, value: Any) -> None:
        self.widget.value = self.show(value)

    def get(self, original: Any) -> tuple[Any, str | None]:
        return self.read(self.widget.value, original)


def _common(field: Field) -> dict[str, Any]:
    return {
        "description": field.label,
        "tooltip": field.help,
        "style": {"description_width": _LABEL_WIDTH},
        "layout": widgets.Layout(width="auto", flex="1 1 24em", min_width="15em", max_width="34em"),
    }


def bool_control(field: Field) -> Control:
    box = widgets.Checkbox(indent=False, **_common(field))
    return Control(box, lambda v: bool(v) if v is not None else False, lambda v, _: (bool(v), None))


def number_control(field: Field) -> Control:
    """A text box that reads whole numbers (``7000``, ``7 000``, ``7,000``) and refuses anything else.

    Not IntText: in the browser it turns ``7000.5`` into 70005 and ``1e5`` into 15. Not
    BoundedIntText: it clamps silently. What is typed is parsed here, and a refusal shows why.
    """
    box = widgets.Text(continuous_update=True, placeholder="a whole number", **_common(field))

    def read(text: Any, _: Any) -> tuple[Any, str | None]:
        try:
            return parse_whole_number(str(text)), None
        except ValueError as exc:
            return None, str(exc)

    return Control(box, lambda v: "" if v is None else f"{v}", read)


def list_control(field: Field) -> Control:
    choices = tuple(field.choices or ())
    options = [(_choice_label(c), c) for c in choices]
    box = widgets.SelectMultiple(options=options, rows=len(options) or 3, **_common(field))

    def show(value: Any) -> tuple[str, ...]:
        present = [str(v) for v in (value or [])]
        extra = [v for v in present if v not in choices]
        wanted = options + [(v, v) for v in dict.fromkeys(extra)]
        if list(box.options) != wanted:
            box.options = wanted
        return tuple(present)

    def read(value: Any, _: Any) -> tuple[Any, str | None]:
        order = list(choices)
        return sorted(value, key=lambda v: (order.index(v) if v in order else len(order), v)), None

    return Control(box, show, read)


def license_control(field: Field) -> Control:
    """Text, sent as a frame's license id is sent (:func:`~neuroio_nb._values.sendable`): plain digits as the number."""
    box = widgets.Text(**_common(field))

    def read(value: Any, _: Any) -> tuple[Any, str | None]:
        text = str(value).strip()
        return (sendable(field.name, text) if text else None), None

    return Control(box, lambda v: "" if v is None else str(v), read)


def text_control(field: Field) -> Control:
    box = widgets.Text(**_common(field))
    return Control(box, lambda v: "" if v is None else str(v), lambda v, _: (v, None))


def read_only_control(field: Field) -> Control:
    """A value shown, not edited; the whole of a long one shows on hover."""
    box = widgets.Text(disabled=True, **_common(field))

    def show(value: Any) -> str:
        text = shown(value)
        box.tooltip = text
        return text

    return Control(box, show, lambda v, _: (v, None))


CONTROLS: dict[str, Callable[[Field], Control]] = {
    "bool": bool_control,
    "int": number_control,
    "list": list_control,
    "license": license_control,
    "str": text_control,
}


def control_for(field: Field, known: bool = True) -> Control:
    if not known or not field.writable:
        return read_only_control(field)
    return CONTROLS.get(field.kind, text_control)(field)


def _choice_label(code: str) -> str:
    meaning = RESULT_MEANINGS.get(EntryResult(code)) if code in EntryResult._value2member_map_ else None
    return f"{code}: {meaning}" if meaning else code


# ---- the form ------------------------------------------------------------------------
class SourceForm(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types: VBox is Any
    """The form of one source. Parts tests and users may reach:

    ``state`` (the :class:`FormState`), ``inputs`` (field name -> input widget, unknown
    fields included), ``errors`` (field name -> the HTML line under that input),
    ``save_button``, ``revert_button``, ``reload_button``, ``status``, :meth:`changes`
    and :attr:`source` (the baseline, as the server sent it).

    Save saves what the screen shows when it is clicked. The browser sends each
    keystroke and pick as a state update, but holds an input's next update back while
    one is unanswered, and sends a click at once: on a busy kernel the click would
    arrive before the last keys ("4" of "4242" saved). :data:`KEYS_AND_NAMES`
    therefore sends the click with what every editable input shows, as
    ``[n, {field: shown}]`` on the hidden :attr:`shown` box (``n`` counts, so the same
    values twice are two Saves), and cancels the button's own click. Where the script
    does not run, the click saves the values the kernel has.
    """

    def __init__(self, sources: SourceCalls, source_id: int) -> None:
        self.state = FormState(sources, source_id)
        self.sources = sources
        self.source_id = source_id
        self.inputs: dict[str, widgets.Widget] = {}
        self.errors: dict[str, widgets.HTML] = {}
        self._controls: dict[str, Control] = {}
        self._rows: dict[str, widgets.Box] = {}
        self._marks: dict[str, widgets.HTML] = {}
        self._loading = False

        self.title = widgets.HTML()
        sections = [self._section(group, [f for f in FIELDS if f.group == group]) for group in GROUPS]
        self._other = widgets.VBox()
        self._other.add_class("neuroio-section")
        self.save_button = widgets.Button(
            description="Save",
            button_style="primary",
            tooltip="Send the unsaved changes (one PATCH of only those fields)",
        )
        self.revert_button = widgets.Button(
            description="Revert",
            tooltip="Drop the unsaved changes: back to the last values read from or saved to the server",
        )
        self.reload_button = widgets.Button(
            description="Reload", tooltip="Read the source from the server again; unsaved changes are kept"
        )
        for button in (self.save_button, self.revert_button, self.reload_button):
            button.layout.width = "auto"
        self.status = widgets.HTML(layout=widgets.Layout(min_height="1.6em"))
        self.status.add_class("neuroio-status")
        self.save_button.add_class("neuroio-save-button")
        self.shown = widgets.Text(layout=widgets.Layout(display="none"))
        self.shown.add_class("neuroio-save-shown")
        self.shown.observe(lambda change: self._save_shown(change["new"]), names="value")
        self.save_button.on_click(lambda _: self.save())
        self.revert_button.on_click(lambda _: self.revert())
        self.reload_button.on_click(lambda _: self.reload())
        bar = widgets.HBox([self.save_button, self.revert_button, self.reload_button, self.status])
        bar.add_class("neuroio-save-bar")
        super().__init__([page_assets(), self.shown, self.title, bar, *sections, self._other])
        self.add_class("neuroio-form")
        self._show()

    # ---- building -------------------------------------------------------------
    def _section(self, title: str, fields: Iterable[Field]) -> widgets.VBox:
        rows = [self._row(field) for field in fields]
        section = widgets.VBox([_heading(title), *rows])
        section.add_class("neuroio-section")
        return section

    def _row(self, field: Field, *, known: bool = True) -> widgets.VBox:
        """One field: marker, input (its label in the label column) and help on a line that
        wraps; the error or note line under them."""
        control = control_for(field, known)
        self._controls[field.name] = control
        self.inputs[field.name] = control.widget
        mark = widgets.HTML("", layout=widgets.Layout(width="1.2em", min_width="1.2em"))
        mark.add_class("neuroio-mark")
        help_line = widgets.HTML(f"<span class='neuroio-help'>{html.escape(_help(field, known))}</span>")
        help_line.add_class("neuroio-helpbox")
        error = widgets.HTML("")
        error.add_class("neuroio-errline")
        self.errors[field.name] = error
        self._marks[field.name] = mark
        line = widgets.HBox([mark, control.widget, help_line])
        line.add_class("neuroio-line")
        row = widgets.VBox([line, error])
        row.add_class("neuroio-row")
        row.add_class(f"neuroio-field-{field.name}")
        self._rows[field.name] = row
        if known and field.writable:
            control.widget.observe(lambda _change, name=field.name: self._edited(name), names="value")
        return row

    def _sync_other_fields(self, source: dict[str, Any]) -> None:
        """(Re)build the read-only section of fields the schema does not know."""
        unknown = [name for name in source if name not in BY_NAME]
        shown = [name for name in self._rows if name not in BY_NAME]
        if shown == unknown:
            return
        for name in shown:
            for table in (self.inputs, self.errors, self._marks, self._controls):
                table.pop(name, None)
            _close_all(self._rows.pop(name))
        rows = [
            self._row(Field(name, "object", OTHER_GROUP, name, "", writable=False), known=False) for name in unknown
        ]
        self._other.children = (_heading(OTHER_GROUP), *rows) if rows else ()

    # ---- state <-> widgets ------------------------------------------------------
    @property
    def source(self) -> dict[str, Any]:
        """The baseline: the source as last read from or saved to the server."""
        return self.state.saved

    def changes(self) -> dict[str, Any]:
        """The unsaved changes, as they would be sent: field name -> API value."""
        return {name: value for name, value in self.state.unsaved().items() if name not in self.state.typed}

    @property
    def dirty(self) -> bool:
        return bool(self.state.unsaved())

    def _show(self, only_values_of: Iterable[str] | None = None) -> None:
        """Put the state on the widgets: values (all, or ``only_values_of``), marks, lines, status."""
        state = self.state
        self._sync_other_fields(state.saved)
        names = set(only_values_of) if only_values_of is not None else None
        self._loading = True
        try:
            for field in FIELDS:
                control = self._controls[field.name]
                if not field.writable:
                    control.put(state.saved.get(field.name))
                    continue
                if (names is None or field.name in names) and field.name not in state.typed:
                    control.put(state.values.get(field.name))
                control.widget.disabled = not state.editable(field.name)
            for name in self.inputs:
                if name not in BY_NAME:
                    self._controls[name].put(state.saved.get(name))
        finally:
            self._loading = False
        self.title.value = (
            f"<h3 style='margin:0.2em 0'>Source {html.escape(str(self.source_id))}: "
            f"{html.escape(str(state.saved.get('name') or ''))}</h3>"
        )
        self._refresh()

    def _edited(self, name: str) -> None:
        if self._loading:
            return
        value, problem = self._controls[name].get(self.state.saved.get(name))
        self.state.set(name, value, problem)
        self._refresh()

    def _refresh(self) -> None:
        """Marks, error lines and the status line, from the state."""
        state = self.state
        unsaved = state.unsaved()
        for name, row in self._rows.items():
            edited = name in unsaved
            for widget in (row, self.inputs[name]):
                (widget.add_class if edited else widget.remove_class)(UNSAVED_CLASS)
            self._marks[name].value = f"<span title='unsaved change'>{_MARK}</span>" if edited else ""
            spec = BY_NAME.get(name)
            problem = None
            if edited and spec is not None:
                problem = state.typed.get(name) or check_value(spec, unsaved[name])
            if problem:
                self.errors[name].value = _line("error", f"{spec.label if spec else name}: {problem}")
            elif name in state.notes:
                self.errors[name].value = _line(*state.notes[name])
            elif spec is not None and spec.writable and not state.editable(name):
                self.errors[name].value = _line(
                    "note", "the server did not send a value for this setting, so it cannot be edited here"
                )
            else:
                self.errors[name].value = ""
        count = len(unsaved)
        counted = f"<b>{_MARK} {count} unsaved change{'s' if count != 1 else ''}</b>" if count else "no unsaved changes"
        message = html.escape(state.message)
        if message and state.message_is_error:
            message = f"<span class='neuroio-error'>{message}</span>"
        self.status.value = f"{message} — {counted}" if message else counted

    def _busy(self, busy: bool) -> None:
        for button in (self.save_button, self.revert_button, self.reload_button):
            button.disabled = busy

    # ---- actions --------------------------------------------------------------
    def save(self) -> None:
        """Send the unsaved changes as one PATCH, after checking them here first."""
        if self.state.unsaved() and not self.state.problems():
            self._busy(True)
            self.status.value = "saving…"
        try:
            saved = self.state.save()
        finally:
            self._busy(False)
        self._show(only_values_of=None if saved else ())
        first = self.state.first_in_error()
        if first is not None and hasattr(self.inputs[first], "focus"):
            self.inputs[first].focus()

    def _save_shown(self, value: str) -> None:
        """Save, clicked where the page script runs: it sends, with the click, what every input
        showed (``[n, {field: shown}]``). Each input is brought to that, as if its own update had
        arrived (typing the same text: the same parsers and refusals), then Save runs."""
        states = self._states_shown(value)
        if states is None:
            self.state.refuse("not saved: the form could not read what its inputs show; nothing was sent. Save again")
            self._refresh()
            return
        for name, state in states.items():
            self._controls[name].widget.set_state(state)
        self.save()

    def _states_shown(self, value: str) -> dict[str, dict[str, Any]] | None:
        """Field -> the widget state the browser showed at the Save click, for every editable field
        it names; None if that message cannot be read (nothing is then taken from it)."""
        inputs = counted_message(value, dict)
        if inputs is None:
            return None
        states = {}
        for name, seen in inputs.items():
            spec = BY_NAME.get(name)
            if spec is None or not spec.writable or not self.state.editable(name):
                continue
            state = browser_state(self._controls[name].widget, seen)
            if state is None:
                return None
            states[name] = state
        return states

    def revert(self) -> None:
        """Back to the baseline: the last values read from or saved to the server."""
        self.state.revert()
        self._show()

    def reload(self) -> None:
        """Read the source again; keep the user's edits and note what the server changed."""
        self._busy(True)
        try:
            kept = set(self.state.unsaved())
            self.state.reload()
        finally:
            self._busy(False)
        self._show(only_values_of=[f.name for f in FIELDS if f.name not in kept])


class SourcePicker(widgets.VBox):  # type: ignore[misc]  # ipywidgets ships no types: VBox is Any
    """A filter box and a list of "name - space S (id)"; the chosen source's form below.

    Forms are kept per source, so choosing another source and coming back
    finds unsaved edits where they were left. A click opens a source; from the
    keyboard, the arrow keys move in the list and Enter opens the highlighted one
    (leaving the list without Enter puts the highlight back on the open source);
    Enter in the filter box opens the highlighted source, else the first that matches
    the text Enter was pressed on.

    That text comes with the Enter: the browser holds a widget's state update back
    while an earlier one is unanswered but sends a message at once, so on a busy
    kernel the text box's own Enter message ("submit") can arrive before the text
    it follows. :data:`KEYS_AND_NAMES` therefore sends the Enter and its text
    together, as ``[n, text]`` on the hidden :attr:`entered` box (``n`` counts, so
    the same text twice is two Enters), and cancels the "submit". Where the script
    does not run, "submit" opens the first match of the text the kernel has.
    """

    max_shown = 200

    def __init__(self, sources: Any) -> None:
        self.sources = sources
        self.choices: list[tuple[str, int]] = [(_picker_label(row), row["id"]) for row in sources.iter()]
        self.forms: dict[int, SourceForm] = {}
        self.filter = widgets.Text(
            description="Find source",
            placeholder="part of a name, a space or an id",
            continuous_update=True,
            style={"description_width": "initial"},
            tooltip="Shows the sources whose 'name - space (id)' contains this text (any case)",
        )
        self.filter.add_class("neuroio-picker-filter")
        self.entered = widgets.Text(layout=widgets.Layout(display="none"))
        self.entered.add_class("neuroio-picker-entered")
        self.select = widgets.Select(
            description="Source", rows=8, value=None, layout=widgets.Layout(width="auto", max_width="40em")
        )
        self.select.add_class("neuroio-picker-list")
        self.count = widgets.HTML()
        self.count.add_class("neuroio-count")
        self.holder = widgets.VBox()
        self._updating = False
        self.filter.observe(lambda _: self._apply_filter(), names="value")
        self.filter.on_msg(self._filter_message)
        self.entered.observe(lambda change: self._entered(change["new"]), names="value")
        self.select.observe(lambda change: self._chosen(change["new"]), names="value")
        super().__init__([page_assets(), self.filter, self.entered, self.select, self.count, self.holder])
        self.add_class("neuroio-picker")
        self._apply_filter()

    @property
    def form(self) -> SourceForm | None:
        """The form shown now, if a source was chosen."""
        return (
            self.holder.children[0]
            if self.holder.children and isinstance(self.holder.children[0], SourceForm)
            else None
        )

    def _apply_filter(self, typed: str | None = None) -> None:
        """Show the sources matching ``typed`` (default: the filter box's text as the kernel has it)."""
        needle = (self.filter.value if typed is None else typed).strip().casefold()
        matching = [c for c in self.choices if needle in c[0].casefold()]
        shown = matching[: self.max_shown]
        current = self.select.value
        self._updating = True
        try:
            self.select.options = shown
            self.select.value = current if current in {i for _, i in shown} else None
        finally:
            self._updating = False
        text = f"{len(matching)} of {len(self.choices)} sources match"
        if len(matching) > len(shown):
            text += f"; showing the first {len(shown)}, type to narrow"
        open_form = self.form
        if open_form is not None and open_form.source_id not in {i for _, i in shown}:
            label = next((lbl for lbl, i in self.choices if i == open_form.source_id), str(open_form.source_id))
            text += f". The open form ({label}) is hidden by this filter; it stays open below"
        self.count.value = f"<small>{html.escape(text)}</small>"

    def _filter_message(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        """Enter in the filter box where the page script does not run (the text box's "submit")."""
        if content.get("event") == "submit":
            self.open_first()

    def _entered(self, value: str) -> None:
        """Enter in the filter box, sent by the page script with the text it was pressed on."""
        typed = counted_message(value, str)
        if typed is not None:
            self.open_first(typed)

    def open_first(self, typed: str | None = None) -> None:
        """Open the source highlighted in the list, else the first one the filter shows.

        ``typed``: the text Enter was pressed on, when the filter box's own text may not
        have reached the kernel yet; the list shows its matches first. The filter box is
        left alone (the browser has that text, or newer typing the kernel will receive).
        """
        if typed is not None:
            self._apply_filter(typed)
        if self.select.value is not None:
            self._chosen(self.select.value)
        elif self.select.options:
            self.select.value = self.select.options[0][1]

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


def counted_message(value: str, kind: type[_T]) -> _T | None:
    """What the page script put in a hidden box, ``[n, message]``, if ``message`` is a ``kind``:
    the picker's Enter (the text it was pressed on) or a Save click (what each input showed,
    ``{field: shown}``). ``n`` counts the presses, so the same message twice is two presses."""
    try:
        entry = json.loads(value)
    except ValueError:
        return None
    if isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], kind):
        return entry[1]
    return None


def browser_state(widget: widgets.Widget, seen: Any) -> dict[str, Any] | None:
    """The state update the browser sends for an input that shows ``seen`` (a text box's text, a
    checkbox's tick, the labels of a multiple choice's picks); None if ``seen`` cannot be that.

    Picks come as labels, not positions, so a list whose options changed meanwhile is refused
    rather than read as other options."""
    if isinstance(widget, widgets.Checkbox):
        return {"value": seen} if isinstance(seen, bool) else None
    if isinstance(widget, widgets.SelectMultiple):
        labels = list(widget._options_labels)
        picks = seen if isinstance(seen, list) else [None]
        if all(isinstance(label, str) and label in labels for label in picks):
            return {"index": [labels.index(label) for label in dict.fromkeys(picks)]}
        return None
    if isinstance(widget, widgets.Text):
        return {"value": seen} if isinstance(seen, str) else None
    return None


def _heading(title: str) -> widgets.HTML:
    heading = widgets.HTML(f"<h4 style='margin:0.6em 0 0.2em'>{html.escape(title)}</h4>")
    heading.add_class("neuroio-heading")
    return heading


def _picker_label(row: dict[str, Any]) -> str:
    space = f" - space {row['space_id']}" if row.get("space_id") is not None else ""
    return f"{row.get('name')}{space} ({row['id']})"


def source_form(sources: Any, source_id: int | None = None) -> SourceForm | SourcePicker:
    """The form of ``source_id``, or a searchable picker above it when no id is given."""
    if source_id is None:
        return SourcePicker(sources)
    return SourceForm(sources, source_id)


def _help(field: Field, known: bool) -> str:
    if not known:
        return "Sent by the server, not known to neuroio_nb's schema: shown read-only."
    text = field.help
    if field.kind == "int" and field.writable and (field.minimum is not None or field.maximum is not None):
        text += f" A whole number from {_number(field.minimum)} to {_number(field.maximum)}."
    if field.kind == "list":
        text += (
            " Ctrl/Shift-click picks several. " + "; ".join(f"{r.value}: {m}" for r, m in RESULT_MEANINGS.items()) + "."
        )
    if not field.writable:
        text += " Read-only."
    return text


def _number(value: int | None) -> str:
    return "…" if value is None else f"{value:,}"


def _close_all(widget: widgets.Widget) -> None:
    """Close a widget and everything under it (Box.close leaves its children open)."""
    for child in getattr(widget, "children", ()):
        _close_all(child)
    widget.close()


def _line(kind: str, text: str) -> str:
    return f"<span class='neuroio-{kind}'>{html.escape(text)}</span>"


__all__ = ["CONTROLS", "UNSAVED_CLASS", "SourceForm", "SourcePicker", "control_for", "field_title", "source_form"]
