"""One write of a job: checked against the server's source as read, sent, its outcome.

Each check compares what the plan saw with what the server holds right before the write
(a field changed since is a conflict; ``on_conflict`` decides), and each write's outcome
says what it replaced: the server's value as read for that check, never one remembered
from earlier. Writes go through the REST layer's un-journaled ``send_*`` verbs: the job
records them in its own run.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .._journal import PROBE, RunWriter
from .._schema import READ_ONLY
from .._transport import outcome_unknown
from .._values import same, three_way, to_python
from ..errors import APIError, JournalError, NeuroIOError, NotFoundError, Problem, ValidationError
from .outcomes import Action, Changes, OnConflict, Outcome
from .reads import SourceCalls

Task = Callable[[], Outcome]


def settings_of(source: dict[str, Any]) -> dict[str, Any]:
    """What re-creating a source needs: its writable and unknown fields that have a value."""
    return {f: v for f, v in source.items() if f not in READ_ONLY and v is not None}


def renamed_since(
    sid: int,
    changes: Changes,
    server: dict[str, Any] | None,
    identity: Mapping[int, Any],
    on_conflict: OnConflict,
    name: Any = None,
) -> Outcome | None:
    """The conflict of an update planned by name (``identity``: id -> the name its row
    matched) whose source was renamed since, or None. The row meant the source of that name,
    so updating the renamed one is never silent; ``on_conflict="overwrite"`` updates it anyway
    (without renaming it back)."""
    if server is None or sid not in identity or on_conflict != "skip":
        return None
    if same("name", server.get("name"), identity[sid]):
        return None
    error = (
        f"renamed on the server since the plan: its name is now {server.get('name')!r}, and the row "
        f"matched it by the name {identity[sid]!r}; plan again to match the rows to the sources as "
        "they are named now"
    )
    return Outcome(action="update", status="conflict", changes=changes, error=error, name=name, id=sid)


def checked_update(
    sid: int,
    changes: Changes,
    server: dict[str, Any] | None,
    on_conflict: OnConflict,
    name: Any = None,
    action: Action = "update",
) -> Outcome | tuple[dict[str, Any], dict[str, Any]]:
    """The outcome decided without sending (gone, conflict, already there), or the body to send
    and the server's values it replaces."""
    if server is None:
        return Outcome(
            action=action, status="failed", changes=changes, error="not found on the server", name=name, id=sid
        )
    sides = {f: three_way(f, old, new, server.get(f)) for f, (old, new) in changes.items()}
    moved = {f: server.get(f) for f, side in sides.items() if side == "conflict"}
    if moved and on_conflict == "skip":
        error = "changed on the server since the base was read: " + ", ".join(
            f"{f} is now {v!r} (base had {changes[f][0]!r})" for f, v in moved.items()
        )
        return Outcome(action=action, status="conflict", changes=changes, error=error, name=name, id=sid)
    body = {f: new for f, (old, new) in changes.items() if sides[f] != "agree"}
    if not body:
        return Outcome(action=action, status="updated", changes=changes, name=name, id=sid)
    return body, {f: server.get(f) for f in body}


def checked_delete(
    sid: int, settings: dict[str, Any], server: dict[str, Any] | None, on_conflict: OnConflict, name: Any
) -> Outcome | dict[str, Any]:
    """The outcome decided without sending (already gone, conflict), or the server's settings
    that the delete will remove, with its ``space_id`` (undo re-creates it there or not at all)."""
    changes = {f: (v, None) for f, v in settings.items()}
    if server is None:
        return Outcome(action="delete", status="deleted", changes=changes, name=name, id=sid)
    moved = {f: server.get(f) for f, v in settings.items() if not same(f, server.get(f), v)}
    if moved and on_conflict == "skip":
        error = "changed on the server since it was planned: " + ", ".join(
            f"{f} is now {v!r} (planned with {settings[f]!r})" for f, v in moved.items()
        )
        return Outcome(action="delete", status="conflict", changes=changes, error=error, name=name, id=sid)
    space = server.get("space_id")
    return settings_of(server) | ({} if space is None else {"space_id": space})


def update_task(
    sources: SourceCalls,
    sid: int,
    changes: Changes,
    body: dict[str, Any],
    replaced: dict[str, Any],
    name: Any,
    action: Action = "update",
) -> Task:
    """A PATCH of ``body``; its outcome says what it replaced."""

    def send() -> Outcome:
        result = sources._send_update(sid, body)
        lost = [f for f, v in body.items() if not same(f, result.get(f), v)]
        if lost:
            error = "the server answered but did not keep: " + ", ".join(
                f"{f} (sent {body[f]!r}, has {result.get(f)!r})" for f in lost
            )
            return Outcome(
                action=action, status="failed", changes=changes, error=error, name=name, id=sid, replaced=replaced
            )
        return Outcome(action=action, status="updated", changes=changes, name=name, id=sid, replaced=replaced)

    return send


def delete_task(sources: SourceCalls, sid: int, changes: Changes, settings: dict[str, Any], name: Any) -> Task:
    """A DELETE; its outcome keeps the settings it removed (``replaced``) for undo."""

    def send() -> Outcome:
        try:
            sources._send_delete(sid)
        except NotFoundError:  # gone meanwhile: what was asked holds, and nothing was removed by us
            return Outcome(action="delete", status="deleted", changes=changes, name=name, id=sid)
        return Outcome(action="delete", status="deleted", changes=changes, name=name, id=sid, replaced=settings)

    return send


@dataclass(kw_only=True)
class CreateWrite:
    """A POST, unless the name was taken meanwhile (a conflict, or an update of its holder
    under ``on_conflict="overwrite"``).

    ``holder``: a source in scope now holding the name that was not there when planned.
    ``held``: the ids of every source holding the name just before, when already read
    (else read here, one GET). Either way they are recorded in the journal before the POST
    goes (``run``, under ``key``), so that a lost answer is settled against them from any
    process. ``seen``: the ids in scope when planned, which do not count as taking the
    name (the server's refusal is then a failure, with its message). ``space``: the space
    the row names; the API puts a new source in the token's own space and lets no client
    choose, so once that space is known (``sources.landing_space``) a row of another space
    is ``failed`` unsent; while it is not, a create that lands elsewhere is deleted again.
    ``done``: set once this create was answered (a probe: the job sends it alone first).
    """

    sources: SourceCalls
    run: RunWriter
    key: tuple[str, Any]
    label: Any
    body: dict[str, Any]
    on_conflict: OnConflict
    old_id: int | None = None
    holder: dict[str, Any] | None = None
    held: frozenset[int] | None = None
    seen: frozenset[int] | None = None
    space: int | None = None
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def changes(self) -> Changes:
        return {f: (None, v) for f, v in self.body.items()}

    def outcome(self, status: Any, **rest: Any) -> Outcome:
        return Outcome(
            action="create",
            status=status,
            changes=rest.pop("changes", self.changes),
            name=self.body.get("name"),
            row=self.label,
            old_id=self.old_id,
            **rest,
        )

    def __call__(self) -> Outcome:
        try:
            return self._send()
        finally:
            self.done.set()

    def _send(self) -> Outcome:
        name, landing = self.body.get("name"), self.sources.landing_space
        if self.space is not None and landing is not None and landing != self.space:
            return self._elsewhere(landing)
        if self.holder is not None and (self.space is None or self.holder.get("space_id") == self.space):
            return self._taken(
                self.holder, f"the name {name!r} was taken since the plan, by source {self.holder['id']}"
            )
        held = self.held if self.held is not None else self.sources._holders_of(name)
        self.run.holders_of(self.key, held, self.space if self.space is not None else landing)
        try:
            made = self.sources._send_create(self.body, holders=held)
        except APIError as exc:
            if exc.status_code != 400 or "name" not in exc.field_errors:
                raise
            return self._refused(exc)
        made_with = {f: (None, v) for f, v in settings_of(made).items()}  # the server's defaults too: undo checks them
        defaults = [f for f in made_with if f not in self.body]
        if self.space is not None and made.get("space_id") != self.space:
            return self._made_elsewhere(made, made_with, defaults)
        return self.outcome("created", changes=made_with, id=made["id"], defaults=defaults)

    def _refused(self, exc: APIError) -> Outcome:
        """The server refused the name: taken by a source not seen when planned (a conflict),
        or, for a row of another space, by the namesake in the space creates land in."""
        name = self.body.get("name")
        holders = [s for s in self.sources.records(name, None, progress=False)[0] if s.get("name") == name]
        if self.space is not None and len(holders) == 1 and holders[0].get("space_id") != self.space:
            if self.sources.landing_space is None:  # refused where it would land: that is where creates go
                self.sources.landing_space = holders[0].get("space_id")
            return self._elsewhere(holders[0].get("space_id"))
        if len(holders) != 1 or (self.seen is not None and holders[0]["id"] in self.seen):
            raise exc
        return self._taken(holders[0], str(exc))

    def _made_elsewhere(self, made: dict[str, Any], made_with: Changes, defaults: list[str]) -> Outcome:
        """A probe that landed outside its row's space: deleted again (it stays, reported with
        its id so that undo removes it, only if that delete fails)."""
        try:
            self.sources._send_delete(made["id"])
        except NotFoundError:
            pass
        except NeuroIOError as exc:
            error = f"made in space {made.get('space_id')}, not in space {self.space} that the row names; "
            return self.outcome(
                "created",
                changes=made_with,
                id=made["id"],
                error=error + f"deleting it again failed: {exc}",
                defaults=defaults,
            )
        return self._elsewhere(made.get("space_id"), made["id"])

    def _elsewhere(self, where: Any, made: int | None = None) -> Outcome:
        again = f"; it was made there as source {made} and deleted again" if made is not None else ""
        return self.outcome(
            "failed",
            error=f"not created in space {self.space}, which the row names: new sources land in the token's own "
            f"space, {where}{again}. Create it with a token of space {self.space}, or empty the row's space_id "
            f"to create it in space {where}",
        )

    def _taken(self, by: dict[str, Any], error: str) -> Outcome:
        if self.on_conflict == "skip":
            return self.outcome("conflict", error=error, id=by.get("id"))
        update = {f: (by.get(f), v) for f, v in self.body.items() if not same(f, by.get(f), v)}
        if not update:
            return self.outcome("updated", changes=update, id=by["id"])
        body = {f: v for f, (o, v) in update.items()}
        outcome = update_task(
            self.sources, by["id"], update, body, {f: o for f, (o, v) in update.items()}, by.get("name"), "create"
        )()
        outcome.row, outcome.old_id = self.label, self.old_id
        return outcome


@dataclass(kw_only=True)
class ProbeWrite:
    """A throwaway create, sent alone to learn the space the token's creates land in.

    A job sends one when a row names a space while that space is not known, and no such row
    can be sent safely first: each shares its name with another row (two namesakes of spaces
    1 and 3, deleted and now undone), so that one landing in the other's space would hold the
    name there for a moment. Its name is no row's and no source's (:data:`PROBE`, the run id,
    a random tail); it is journaled as a create marked ``probe`` (its name's holders recorded
    before its POST, so that undo and resume delete it if the process dies), recorded
    ``created`` once answered and deleted at once: then ``deleted``, a row no report shows.
    Left behind (its delete failed, or the journal stopped the run first) or perhaps made (its
    answer lost): a row naming it and saying so, in the report (a partial one too) as in
    ``history(run)``; undo and resume of the run delete it.
    """

    create: CreateWrite
    #: Set once it was answered and deleted again (or failed).
    done: threading.Event = field(default_factory=threading.Event)
    #: Why it did not tell the space, when it failed.
    failure: str | None = None
    #: Its POST failed with no answer saying the server did nothing: it may have been made.
    unknown: bool = False
    #: Its row when the journal stopped the run with it made and not deleted (the task raised).
    left: Outcome | None = None

    @property
    def key(self) -> tuple[str, Any]:
        return self.create.key

    def __call__(self) -> Outcome:
        try:
            return self._send()
        except Exception as exc:
            self.failure = f"creating a probe source failed: {exc}"
            self.unknown = isinstance(exc, NeuroIOError) and outcome_unknown(exc)
            raise
        finally:
            self.done.set()

    def failed(self) -> Outcome:
        """Its row once its POST raised: one whose answer was lost says it may have been made."""
        name, run = self.create.body.get("name"), self.create.run.run_id
        error = self.failure
        if self.unknown:
            settle = (
                f"client.sources.undo({run!r}) or client.sources.resume({run!r}) deletes it if it was"
                if run
                else "client.sources.delete(id) deletes it if it was"
            )
            error = (
                f"a source named {name!r} was sent only to learn the space this token's creates land in, "
                f"and its answer was lost ({self.failure}): it may have been made. {settle} "
                f"(client.sources.list(q={name!r}) shows it)"
            )
        return self.create.outcome("failed", error=error)

    def _send(self) -> Outcome:
        made = self.create()
        if made.status == "failed":
            self.failure = f"creating a probe source failed: {made.error}"
        if made.status != "created" or made.id is None:
            return made
        try:
            self.create.run.outcome_of(self.key, "created", source_id=made.id, changes=made.changes)
        except JournalError:  # the run stops before its next write, this probe's delete too
            self.left = self._left(made, "the journal could not be written, so deleting it again was not sent")
            raise
        try:
            self.create.sources._send_delete(made.id)
        except NotFoundError:
            pass
        except NeuroIOError as exc:
            return self._left(made, f"deleting it again failed ({exc})")
        return replace(made, status="deleted")

    @staticmethod
    def _left(made: Outcome, why: str) -> Outcome:
        """The ``created`` row of a probe left on the server: its id and how to delete it."""
        made.error = (
            f"source {made.id}, named {made.name!r}, was made only to learn the space this token's "
            f"creates land in, and {why}: delete it with client.sources.delete({made.id}) (undo of "
            "this run deletes it too)"
        )
        return made


def probe_name(run_id: str) -> str:
    """A name for a :class:`ProbeWrite`: no row's (it starts :data:`PROBE`) and, with its random
    tail, no source's."""
    return f"{PROBE}{run_id or 'unjournaled'} {secrets.token_hex(4)}"


def check_sendable(by_source: dict[Any, Changes]) -> None:
    """Every new value must be JSON: checked for the whole plan before anything is sent."""
    try:  # the whole plan at once; value by value only to say which values cannot be sent
        json.dumps([to_python(new) for changes in by_source.values() for _, new in changes.values()], allow_nan=False)
        return
    except (TypeError, ValueError):
        pass
    problems = []
    for sid, changes in by_source.items():
        for fname, (_, new) in changes.items():
            try:
                json.dumps(to_python(new), allow_nan=False)
            except (TypeError, ValueError):
                problems.append(
                    Problem(
                        sid,
                        fname,
                        new,
                        f"a {type(new).__name__} value cannot be sent as JSON "
                        "(use a number, text, true/false, a list or nothing)",
                    )
                )
    if problems:
        raise ValidationError(problems)
