"""The state of a one-source form, apart from any widget (layer 4).

:class:`FormState` holds what the form knows and decides, testable with no
widgets at all:

* ``saved``: the source as last read from (or saved to) the server: the baseline;
* ``values``: what the form holds now, as API values, for every writable field;
* ``typed``: for a field whose typed text cannot be a value (``7000.5`` in a
  number box), why, so nothing is sent and the reason shows next to it;
* ``notes``: what the server said about a field (its error, a conflict, a
  change seen at Reload), shown under it until the field is edited;
* ``message``: the one status line, and whether it is an error.

Save sends one PATCH of the unsaved fields, after checking them here and
checking the server for changes made meanwhile (the three-way rule of
:func:`neuroio_nb._values.three_way`). Reload takes the server's values for the
fields the user did not touch and keeps the user's edits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol

from ._schema import BY_NAME, FIELDS, Field
from ._values import check_value, same, shown, three_way
from ._views import plural
from .errors import APIError, NeuroIOError, ValidationError


class SourceCalls(Protocol):
    """What the form needs of the REST layer (``client.sources`` provides it)."""

    @property
    def client(self) -> Any: ...

    def get(self, source_id: int) -> dict[str, Any]: ...

    def update(self, source_id: int, **fields: Any) -> dict[str, Any]: ...


# ---- typed numbers ------------------------------------------------------------------
_PLAIN = re.compile(r"[+-]?[0-9]+")
#: Thousands written with one kind of separator: ``7 000``, ``7,000``, ``1 234 567``.
_GROUPED = re.compile(r"[+-]?[0-9]{1,3}(?P<sep>[ ,\u00a0\u202f])[0-9]{3}(?:(?P=sep)[0-9]{3})*")


def parse_whole_number(text: str) -> int:
    """The whole number ``text`` spells, or ValueError saying why it is not one.

    ``7000``, ``7 000``, ``7,000`` and ``-5`` are numbers; ``7000.5``, ``1e5``,
    ``12abc``, ``7,00`` and a blank are not (nothing is guessed: a number box
    never turns ``7000.5`` into 70005).
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("enter a whole number")
    if _PLAIN.fullmatch(stripped) or _GROUPED.fullmatch(stripped):
        return int(re.sub(r"[ ,\u00a0\u202f]", "", stripped))
    raise ValueError(f"{stripped!r} is not a whole number (digits only; 7000, 7 000 or 7,000)")


def field_title(name: str) -> str:
    """A field as messages name it: ``Video stream > Create face size``."""
    spec = BY_NAME.get(name)
    return f"{spec.group} > {spec.label}" if spec is not None else name


def titles(names: Iterable[str]) -> str:
    return ", ".join(field_title(n) for n in names)


def _schema_order(names: Iterable[str]) -> list[str]:
    order = {f.name: k for k, f in enumerate(FIELDS)}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


class FormState:
    """Values, baseline, unsaved changes, server notes and problems of one source's form."""

    def __init__(self, sources: SourceCalls, source_id: int, source: dict[str, Any] | None = None) -> None:
        self.sources = sources
        self.source_id = source_id
        self.saved: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.typed: dict[str, str] = {}
        self.notes: dict[str, tuple[str, str]] = {}
        #: Fields whose server change was already reported at Save (a second Save overwrites).
        self.overwrite: dict[str, Any] = {}
        self.message = ""
        self.message_is_error = False
        self.load(source if source is not None else sources.get(source_id))

    # ---- reading -----------------------------------------------------------------
    @staticmethod
    def writable_fields() -> list[Field]:
        return [f for f in FIELDS if f.writable]

    def editable(self, name: str) -> bool:
        """A writable field the server sent a value for (one it did not send cannot be edited)."""
        spec = BY_NAME.get(name)
        if spec is None or not spec.writable or name not in self.saved:
            return False
        return not (self.saved[name] is None and spec.kind in ("bool", "int"))

    def unsaved(self) -> dict[str, Any]:
        """Field -> the value Save would send, for every edited field (typed problems included)."""
        out = {}
        for field in self.writable_fields():
            name = field.name
            if self.editable(name) and (
                name in self.typed or not same(name, self.values.get(name), self.saved.get(name))
            ):
                out[name] = self.values.get(name)
        return out

    def problems(self) -> dict[str, str]:
        """Field -> why its unsaved value cannot be sent (checked here, before any request)."""
        found = {}
        for name, value in self.unsaved().items():
            reason = self.typed.get(name) or check_value(BY_NAME[name], value)
            if reason:
                found[name] = reason
        return found

    def status(self) -> str:
        """The status line: the last message, then how many changes are unsaved."""
        count = len(self.unsaved())
        counted = f"{plural(count, 'unsaved change')}" if count else "no unsaved changes"
        return f"{self.message} — {counted}" if self.message else counted

    # ---- changing ----------------------------------------------------------------
    def set(self, name: str, value: Any, problem: str | None = None) -> None:
        """The user entered ``value`` (or text that is no value: ``problem`` says why)."""
        if problem:
            self.typed[name] = problem
        else:
            self.typed.pop(name, None)
            self.values[name] = value
        self.notes.pop(name, None)
        self._say("")

    def load(self, source: dict[str, Any], keep: Iterable[str] = ()) -> None:
        """Make ``source`` the baseline; the values take it, except the fields in ``keep``."""
        keep = set(keep)
        self.saved = dict(source)
        for field in self.writable_fields():
            if field.name not in keep:
                self.values[field.name] = source.get(field.name)
                self.typed.pop(field.name, None)

    def refuse(self, message: str) -> None:
        """Show ``message`` as an error in the status line (a Save refused before any check)."""
        self._say(message, error=True)

    def _say(self, message: str, error: bool = False) -> None:
        self.message, self.message_is_error = message, error

    # ---- actions -----------------------------------------------------------------
    def save(self) -> bool:
        """Send the unsaved changes as one PATCH, after checking them; True if saved."""
        changes = self.unsaved()
        if not changes:
            self._say("nothing to save")
            return False
        with self.sources.client.one_call():  # its re-read and its PATCH: one budget of waiting out 429s
            saved = None if self._refuse_problems() else self._send(changes)
        if saved is None:
            return False
        also = [name for name in saved if name not in changes and not same(name, saved.get(name), self.saved.get(name))]
        self.notes.clear()
        self.overwrite.clear()
        self.load(saved)
        self._say(
            f"saved: {titles(_schema_order(changes))}"
            + (f"; also changed on the server meanwhile: {titles(also)}" if also else "")
        )
        return True

    def _send(self, changes: dict[str, Any]) -> dict[str, Any] | None:
        """The source as saved, or None when the save was refused (said in the status line)."""
        try:
            if self._refuse_server_changes(changes):
                return None
            saved: dict[str, Any] = self.sources.update(self.source_id, **changes)
        except ValidationError as exc:
            self._refused({p.field: p.reason for p in exc.problems if p.field}, exc)
        except APIError as exc:
            self._refused(exc.field_errors, exc)
        except NeuroIOError as exc:
            self._say(f"not saved: {exc}", error=True)
        else:
            return saved
        return None

    def _refuse_problems(self) -> bool:
        """Checks the unsaved values first: each problem under its field; True if any."""
        problems = self.problems()
        if not problems:
            return False
        for name, reason in problems.items():
            self.notes[name] = ("error", reason)
        self._say(f"not saved: {plural(len(problems), 'problem')} ({titles(problems)}); nothing was sent", error=True)
        return True

    def _refuse_server_changes(self, changes: dict[str, Any]) -> bool:
        """Re-reads the source and refuses, once, to overwrite a field someone else changed
        meanwhile (a Save right after overwrites it); True if refused."""
        current = self.sources.get(self.source_id)
        conflicts = {
            name: current.get(name)
            for name, mine in changes.items()
            if three_way(name, self.saved.get(name), mine, current.get(name)) == "conflict"
            and not same(name, current.get(name), self.overwrite.get(name, object()))
        }
        if not conflicts:
            return False
        self.overwrite.update(conflicts)
        for name, value in conflicts.items():
            self.notes[name] = (
                "note",
                f"changed on the server to {shown(value)} since it was read; "
                "Save again to overwrite it, Revert or Reload to take it",
            )
        self._say(
            f"not saved: changed on the server meanwhile: {titles(conflicts)}. "
            "Save again to overwrite them with yours; nothing was sent",
            error=True,
        )
        return True

    def _refused(self, by_field: dict[str, str], exc: Exception) -> None:
        """Errors the server (or the client's checks) named, each under its field."""
        elsewhere = []
        for name, reason in by_field.items():
            if name in BY_NAME or name in self.saved:
                self.notes[name] = ("error", reason)
            else:
                elsewhere.append(f"{name}: {reason}")
        status = getattr(exc, "status_code", None)
        head = f"not saved ({status}: {getattr(exc, 'message', '')})" if status else "not saved"
        if not by_field:
            head += f": {str(exc).splitlines()[0]}"
        named = [n for n in by_field if n in BY_NAME or n in self.saved]
        self._say(
            head + (f"; see {titles(named)}" if named else "") + (f"; {'; '.join(elsewhere)}" if elsewhere else ""),
            error=True,
        )

    def first_in_error(self) -> str | None:
        """The first field (in form order) with an error note: the one to focus."""
        errors = [n for n, (kind, _) in self.notes.items() if kind == "error"]
        return _schema_order(errors)[0] if errors else None

    def revert(self) -> None:
        """Back to the baseline: the last values read from or saved to the server."""
        count = len(self.unsaved())
        self.notes.clear()
        self.overwrite.clear()
        self.load(self.saved)
        self._say(f"reverted {plural(count, 'change')}" if count else "nothing to revert")

    def reload(self) -> bool:
        """Read the source again; keep the user's edits; note every field the server changed."""
        try:
            fresh = self.sources.get(self.source_id)
        except NeuroIOError as exc:
            self._say(f"reload failed: {exc}", error=True)
            return False
        mine = self.unsaved()
        names = list(dict.fromkeys([*self.saved, *fresh]))
        changed = {n: (self.saved.get(n), fresh.get(n)) for n in names if not same(n, fresh.get(n), self.saved.get(n))}
        self.notes.clear()
        self.overwrite.clear()
        self.load(fresh, keep=mine)
        for name, (old, new) in changed.items():
            kept = " (yours is kept: Save writes it, Revert takes the server's)" if name in mine else ""
            self.notes[name] = ("note", f"changed on the server: {shown(old)} -> {shown(new)}{kept}")
        if not changed:
            text = "reloaded: nothing changed on the server"
        else:
            text = f"reloaded: {plural(len(changed), 'setting')} changed on the server (see the notes)"
        if mine:
            text += f"; your {plural(len(mine), 'unsaved change')} kept"
        self._say(text)
        return True


__all__ = ["FormState", "SourceCalls", "field_title", "parse_whole_number"]
