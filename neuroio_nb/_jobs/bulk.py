"""Applying a plan: conflict check, concurrent writes, one report row per source.

Per-source failures never raise: any exception while one source is sent (a
server error, a dropped connection, a bug) becomes a ``failed`` row carrying
its message. Ctrl-C stops sending, lets requests in flight finish (however
often it is pressed again meanwhile) and raises :class:`BulkInterrupted`
with the exact partial report. The concurrent sending itself is
:mod:`neuroio_nb._jobs.sending`'s; this module decides what each write sends.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, cast

import pandas as pd

from .._journal import Intent, RunWriter, start_run
from .._schema import READ_ONLY
from .._values import id_index, same, three_way, to_python
from .._views import empty, report_html
from ..errors import APIError, NeuroIOError, NotFoundError, Problem, ValidationError
from .reads import ReadFirst, ScopeRead, current_as_read, names_read, read_before_sending
from .reads import SourceCalls as SourceCalls  # the protocol the jobs (plan, sync, history) take
from .sending import send_all

STATUSES = ("deleted", "created", "updated", "conflict", "failed", "planned", "unknown")
ACTIONS = ("delete", "create", "update")
Changes = dict[str, tuple[Any, Any]]
Task = Callable[[], "Outcome"]


@dataclass
class Outcome:
    """One report row. ``replaced``: field -> the server's value that a write replaced
    (as read just before sending); empty when nothing was sent."""

    action: str
    status: str
    changes: Changes
    error: str | None = None
    name: Any = None
    id: int | None = None
    replaced: dict[str, Any] = field(default_factory=dict)
    row: Any = None
    old_id: int | None = None
    #: A created source's fields its row did not set: the server gave them their defaults.
    defaults: list[str] | None = None


class Report(pd.DataFrame):
    """The outcome of a bulk job: index ``id``; ``action``, ``status``, ``name``, ``changes``,
    ``replaced``, ``error`` (and ``row``, ``old_id`` and ``defaults`` when sources were created:
    ``defaults`` lists the fields of a created source's ``changes`` that its row did not set)."""

    _metadata: ClassVar[list[str]] = []

    @property
    def _constructor(self) -> type[Report]:
        return Report

    def _constructor_from_mgr(self, mgr: Any, axes: Any) -> Report:
        # pandas >= 2.1 builds results from a block manager; building a subclass from one
        # through __init__ is deprecated (pandas 2.2 warns), so skip __init__ as pandas does.
        report: Report = Report._from_mgr(mgr, axes=axes)  # type: ignore[attr-defined]  # private pandas API, not in pandas-stubs
        return report

    def counts(self) -> dict[str, int]:
        """How many sources ended in each status, e.g. ``{"updated": 297, "conflict": 2}``.

        Example::

            plan.apply().counts()   # {"updated": 297, "conflict": 2}
        """
        found = self["status"].value_counts().to_dict() if "status" in self else {}
        return {s: int(found[s]) for s in STATUSES if found.get(s)}

    def summary(self) -> str:
        """The counts in words: ``"297 updated, 2 conflict"`` (``"nothing to change"`` when empty).

        Example::

            plan.apply().summary()   # "297 updated, 2 conflict"
        """
        counts = self.counts()
        return ", ".join(f"{n} {s}" for s, n in counts.items()) or "nothing to change"

    def _repr_html_(self) -> str:
        if not {"status", "changes", "error"} <= set(self.columns):  # a selection of columns: a plain table
            return str(cast(Any, pd.DataFrame(self))._repr_html_())
        if not len(self):
            return empty("Nothing was changed: the plan had no changes.")
        names = self["name"] if "name" in self.columns else pd.Series(None, index=self.index, dtype=object)
        rows = list(
            zip(
                self.index.tolist(),
                names.tolist(),
                self["status"].tolist(),
                self["changes"].tolist(),
                self["error"].tolist(),
                strict=False,
            )
        )
        actions = self["action"].tolist() if "action" in self.columns else None
        defaults = self["defaults"].tolist() if "defaults" in self.columns else None
        return report_html(self.summary(), rows, where="report", actions=actions, defaults=defaults)


def make_report(outcomes: Iterable[Outcome]) -> Report:
    """A report with one row per outcome, in the order given."""
    rows = list(outcomes)
    ids = [o.id for o in rows]
    columns: dict[str, pd.Series] = {
        "action": pd.Series([o.action for o in rows], dtype="string"),
        "status": pd.Series([o.status for o in rows], dtype="string"),
        "name": pd.Series([to_python(o.name) for o in rows], dtype=object),
        "changes": pd.Series([o.changes for o in rows], dtype=object),
        "replaced": pd.Series([o.replaced for o in rows], dtype=object),
        "error": pd.Series([o.error for o in rows], dtype=object),
    }
    if any(o.action == "create" for o in rows):
        columns["row"] = pd.Series([o.row for o in rows], dtype=object)
        columns["old_id"] = pd.Series([o.old_id for o in rows], dtype="Int64")
        columns["defaults"] = pd.Series([o.defaults for o in rows], dtype=object)
    report: Report = Report(columns)
    report.index = pd.Index(ids, dtype="Int64", name="id") if None in ids else id_index(ids)
    return report


def check_on_conflict(on_conflict: Any) -> None:
    if on_conflict not in ("skip", "overwrite"):
        raise ValidationError(
            [Problem(None, "on_conflict", on_conflict, "must be 'skip' or 'overwrite'")], what="arguments"
        )


@dataclass
class Job:
    """Everything a plan asks to send, and what its conflict checks compare with.

    ``updates``: id -> field -> (old, new). ``creates``: row label -> the body to POST.
    ``deletes``: id -> the source's settings as planned (base). ``seen``: the ids in
    ``scope`` (q, spaces_ids) when planned; a create whose name is held by a source in
    scope that was not seen then is a conflict. ``scope`` None: no such check.
    """

    updates: dict[int, Changes]
    names: dict[Any, Any] = field(default_factory=dict)
    missing: dict[int, str] = field(default_factory=dict)
    check_conflicts: bool = False
    creates: dict[Any, dict[str, Any]] = field(default_factory=dict)
    deletes: dict[int, dict[str, Any]] = field(default_factory=dict)
    old_ids: dict[Any, int] = field(default_factory=dict)
    scope: tuple[str | None, Any] | None = None
    seen: frozenset[int] = frozenset()
    #: The spaces of the sources to update, when known: the conflict check reads only those.
    spaces: list[int] | None = None
    #: create label -> the space its row names: made anywhere else, the create is refused.
    create_spaces: dict[Any, int] = field(default_factory=dict)
    #: (count, rows a page) of the scope's listing when planned, if it was read.
    listing: tuple[int, int] | None = None


@dataclass(frozen=True)
class Sending:
    """A write about to be sent: its task key, the task, the server's values it replaces, the body."""

    key: Hashable
    task: Task
    replaced: dict[str, Any]
    body: dict[str, Any]


def apply_updates(
    sources: SourceCalls,
    by_source: dict[int, Changes],
    *,
    names: dict[Any, Any],
    missing: dict[int, str],
    check_conflicts: bool,
    dry_run: bool = False,
    on_conflict: str = "skip",
    progress: bool | None = None,
    spaces: list[int] | None = None,
) -> Report:
    """Send updates: one PATCH per changed source (``by_source``: id -> field -> (old, new))."""
    return apply_job(
        sources,
        Job(by_source, names, missing, check_conflicts, spaces=spaces),
        dry_run=dry_run,
        on_conflict=on_conflict,
        progress=progress,
    )


def apply_job(
    sources: SourceCalls, job: Job, *, dry_run: bool = False, on_conflict: str = "skip", progress: bool | None = None
) -> Report:
    """Send a job: deletes first, then updates and creates; one report row per source."""
    check_on_conflict(on_conflict)
    check_sendable(job.updates)
    check_sendable({label: {f: (None, v) for f, v in body.items()} for label, body in job.creates.items()})
    names = job.names
    not_found = [Outcome("update", "failed", {}, reason, names.get(sid), sid) for sid, reason in job.missing.items()]
    delete_changes = {sid: {f: (v, None) for f, v in settings.items()} for sid, settings in job.deletes.items()}
    create_changes = {label: {f: (None, v) for f, v in body.items()} for label, body in job.creates.items()}
    order: list[Hashable] = (
        [("delete", sid) for sid in job.deletes]
        + [("create", label) for label in job.creates]
        + [("update", sid) for sid in job.updates]
    )
    if dry_run:
        planned: dict[Hashable, Outcome] = {
            ("delete", sid): Outcome("delete", "planned", delete_changes[sid], None, names.get(sid), sid)
            for sid in job.deletes
        }
        planned.update(
            {
                ("create", label): Outcome(
                    "create",
                    "planned",
                    create_changes[label],
                    None,
                    body.get("name"),
                    None,
                    row=label,
                    old_id=job.old_ids.get(label),
                )
                for label, body in job.creates.items()
            }
        )
        planned.update(
            {
                ("update", sid): Outcome("update", "planned", changes, None, names.get(sid), sid)
                for sid, changes in job.updates.items()
            }
        )
        return make_report([*(planned[k] for k in order), *not_found])
    # Streamed: each write starts as soon as the page holding its source arrives. A sync that
    # creates reads its scope so (creates wait for the whole of it: a holder may be on any page).
    sync_stream = bool(job.creates) and job.scope is not None and job.check_conflicts
    stream = job.check_conflicts and not job.creates and len(job.updates) > 0
    read = (
        ReadFirst()
        if sync_stream
        else read_before_sending(
            sources,
            list(job.deletes) + (list(job.updates) if job.check_conflicts and not stream else []),
            [body.get("name") for body in job.creates.values()],
            job.scope,
            job.seen,
        )
    )
    current = read.current
    decided: dict[Hashable, Outcome] = {}
    tasks: dict[Hashable, Callable[[], Outcome]] = {}
    intents: dict[Hashable, Intent] = {}  # what each task sends, for the journal
    for sid, settings in job.deletes.items():
        key = ("delete", sid)
        if sync_stream:  # the planned settings, amended with the server's once read
            intents[key] = Intent("delete", sid, dict(settings), {}, names.get(sid), changes=delete_changes[sid])
            continue
        outcome = checked_delete(sid, settings, current.get(sid), on_conflict, names.get(sid))
        if isinstance(outcome, Outcome):
            decided[key] = outcome
        else:
            tasks[key] = delete_task(sources, sid, delete_changes[sid], outcome, names.get(sid))
            intents[key] = Intent("delete", sid, outcome, {}, names.get(sid), changes=delete_changes[sid])
    landed: dict[str, Any] = {}  # where this token's creates land, once an answer shows it

    def create_of(label: Any, body: dict[str, Any]) -> Task:
        return create_task(
            sources,
            label,
            body,
            read.holders.get(body.get("name")),
            on_conflict,
            job.old_ids.get(label),
            job.seen if job.scope is not None else None,
            read.held.get(body.get("name")),
            job.create_spaces.get(label),
            landed,
        )

    for label, body in job.creates.items():
        if not sync_stream:
            tasks[("create", label)] = create_of(label, body)
        space = job.create_spaces.get(label)  # kept in the journal: resume creates it there or not at all
        intents[("create", label)] = Intent(
            "create",
            None,
            {} if space is None else {"space_id": space},
            body,
            body.get("name"),
            changes=create_changes[label],
        )

    def update_of(sid: int, server: dict[str, Any] | None) -> Sending | None:
        """The PATCH of ``sid``, or None when its outcome is decided without sending."""
        changes, name = job.updates[sid], names.get(sid)
        if job.check_conflicts:
            outcome_or_body = checked_update(sid, changes, server, on_conflict, name)
            if isinstance(outcome_or_body, Outcome):
                decided[("update", sid)] = outcome_or_body
                return None
            body, replaced = outcome_or_body
        else:
            body = {f: new for f, (old, new) in changes.items()}
            replaced = {f: old for f, (old, new) in changes.items()}
        if not stream and not sync_stream:
            intents[("update", sid)] = Intent("update", sid, replaced, body, name, changes=changes)
        return Sending(("update", sid), update_task(sources, sid, changes, body, replaced, name), replaced, body)

    if not stream and not sync_stream:
        for sid in job.updates:
            item = update_of(sid, current.get(sid))
            if item is not None:
                tasks[item.key] = item.task
    else:  # checked as the pages arrive: every planned update is on record before the first is sent
        for sid, changes in job.updates.items():
            intents[("update", sid)] = Intent(
                "update",
                sid,
                {f: old for f, (old, new) in changes.items()},
                {f: new for f, (old, new) in changes.items()},
                names.get(sid),
                changes=changes,
            )

    def checked(batch: list[tuple[int, dict[str, Any] | None]]) -> Iterator[tuple[Hashable, Task]]:
        """The writes of the sources in ``batch`` (id, the server's source), conflict-checked.

        The journal holds the plan's values: it now learns what each write really replaces
        and sends, and that a source already holding its values gets nothing."""
        sending: list[Sending] = []
        amends: dict[Hashable, tuple[dict[str, Any], dict[str, Any]]] = {}
        for sid, server in batch:
            if sid in job.deletes:
                outcome = checked_delete(sid, job.deletes[sid], server, on_conflict, names.get(sid))
                if isinstance(outcome, Outcome):
                    decided[("delete", sid)] = outcome
                else:
                    task = delete_task(sources, sid, delete_changes[sid], outcome, names.get(sid))
                    sending.append(Sending(("delete", sid), task, outcome, {}))
            elif (item := update_of(sid, server)) is not None:
                sending.append(item)
            elif decided[("update", sid)].status == "updated":  # it holds the new values already
                amends[("update", sid)] = ({}, {})
        amends.update({item.key: (item.replaced, item.body) for item in sending})
        run.amend_keyed(amends)
        for item in sending:
            yield item.key, item.task

    def fallback(key: Any) -> Outcome:
        action, ref = key
        if action == "create":
            return Outcome(
                "create",
                "failed",
                create_changes[ref],
                None,
                job.creates[ref].get("name"),
                row=ref,
                old_id=job.old_ids.get(ref),
            )
        changes = delete_changes[ref] if action == "delete" else job.updates[ref]
        return Outcome(action, "failed", changes, None, names.get(ref), ref)

    def as_read() -> Iterator[tuple[Hashable, Task]]:
        yield from tasks.items()
        for batch in current_as_read(sources, list(job.updates), job.spaces):
            yield from checked(batch)

    def scope_then_creates(scope: ScopeRead) -> Iterator[tuple[Hashable, Task]]:
        """The updates and deletes as the scope's pages arrive; the creates once it is read."""
        waiting = dict.fromkeys([*job.deletes, *job.updates])

        def arrived(rows: Iterable[dict[str, Any]]) -> list[tuple[int, dict[str, Any] | None]]:
            """The awaited sources among ``rows`` (each once), no longer awaited."""
            batch: list[tuple[int, dict[str, Any] | None]] = []
            for row in rows:
                if row["id"] in waiting:
                    del waiting[row["id"]]
                    batch.append((row["id"], row))
            return batch

        reader = scope.pages()
        try:
            while True:
                try:
                    rows = next(reader)
                except StopIteration as stop:
                    listing, changed = stop.value
                    break
                yield from checked(arrived(rows))
            if waiting:  # not in the listing (moved, or shifted past): read one by one
                found = sources.current(list(waiting))
                yield from checked(arrived(s for s in found.values() if s is not None))
                yield from checked([(sid, None) for sid in list(waiting)])
                waiting.clear()
            named = Counter(body.get("name") for body in job.creates.values())
            read.holders, read.held = names_read(sources, named, job.scope, job.seen, listing, changed)
        except NeuroIOError as error:  # nothing more can be checked: the rest is not sent, and says why
            unread(list(waiting), f"not sent: the server's sources could not be read to check it ({error})")
            return
        finally:
            reader.close()
        for label, body in job.creates.items():
            yield ("create", label), create_of(label, body)

    def unread(ids: list[int], message: str) -> None:
        for sid in ids:
            action = "delete" if sid in job.deletes else "update"
            changes = delete_changes[sid] if sid in job.deletes else job.updates[sid]
            decided[(action, sid)] = Outcome(action, "failed", changes, message, names.get(sid), sid)
        for label in job.creates:
            decided[("create", label)] = replace(fallback(("create", label)), error=message)

    # A sync's scope is asked for now, so that its first pages are on their way while the
    # journal is written (reads need no journal; no write is sent before the run is on disk).
    q, spaces_ids = job.scope or (None, None)
    scope_read = ScopeRead(sources, q, spaces_ids, job.listing) if sync_stream else None
    try:
        run = journal_run(
            sources,
            "apply" if not job.creates and not job.deletes else "sync",
            intents,
            [*(decided[k] for k in order if k in decided), *not_found],
        )
        desc = "updating" if not job.creates and not job.deletes else "sending"
        workers = sources.client.max_workers
        if stream or sync_stream:
            done = send_all(
                workers,
                scope_then_creates(scope_read) if scope_read is not None else as_read(),
                decided,
                order,
                progress,
                desc,
                fallback=fallback,
                total=len(tasks) + len(job.updates) + (len(job.creates) + len(job.deletes) if sync_stream else 0),
                run=run,
                report=lambda rows: with_run(make_report(rows), run),
            )
        else:
            done = send_all(
                workers,
                tasks,
                decided,
                order,
                progress,
                desc,
                fallback=fallback,
                run=run,
                report=lambda rows: with_run(make_report(rows), run),
            )
    finally:
        if scope_read is not None:
            scope_read.close()
    return with_run(make_report([*(done.get(k) or decided[k] for k in order), *not_found]), run)


def journal_run(
    sources: SourceCalls, kind: str, intents: dict[Hashable, Intent], decided: Iterable[Outcome]
) -> RunWriter:
    """A journal run holding every row of a job, fsynced before its first request goes.

    ``intents``: what each task will send, by task key (``before``: what it replaces);
    ``decided``: rows settled without a request (conflicts, not found, already there).
    """
    settled = {
        ("decided", n): Intent(o.action, o.id, {}, {}, to_python(o.name), o.status, o.error, changes=o.changes)
        for n, o in enumerate(decided)
    }
    run = start_run(sources.client.journal if intents or settled else None, kind, sources.client.base_url)
    run.intend_keyed({**settled, **intents})
    return run


def with_run(report: Report, run: RunWriter) -> Report:
    """The report, its journal run id in ``report.attrs["run_id"]`` (for ``sources.undo(run_id)``)."""
    if run.run_id:
        report.attrs["run_id"] = run.run_id
    return report


def checked_delete(
    sid: int, settings: dict[str, Any], server: dict[str, Any] | None, on_conflict: str, name: Any
) -> Outcome | dict[str, Any]:
    """The outcome decided without sending (already gone, conflict), or the server's settings
    that the delete will remove, with its ``space_id`` (undo re-creates it there or not at all)."""
    changes = {f: (v, None) for f, v in settings.items()}
    if server is None:
        return Outcome("delete", "deleted", changes, None, name, sid)
    moved = {f: server.get(f) for f, v in settings.items() if not same(f, server.get(f), v)}
    if moved and on_conflict == "skip":
        return Outcome(
            "delete",
            "conflict",
            changes,
            "changed on the server since it was planned: "
            + ", ".join(f"{f} is now {v!r} (planned with {settings[f]!r})" for f, v in moved.items()),
            name,
            sid,
        )
    space = server.get("space_id")
    return settings_of(server) | ({} if space is None else {"space_id": space})  # where undo must re-create it


def settings_of(source: dict[str, Any]) -> dict[str, Any]:
    """What re-creating a source needs: its writable and unknown fields that have a value."""
    return {f: v for f, v in source.items() if f not in READ_ONLY and v is not None}


def delete_task(
    sources: SourceCalls, sid: int, changes: Changes, settings: dict[str, Any], name: Any
) -> Callable[[], Outcome]:
    """A DELETE; its outcome keeps the settings it removed (``replaced``) for undo."""

    def send() -> Outcome:
        try:
            sources.delete(sid)
        except NotFoundError:  # gone meanwhile: what was asked holds, and nothing was removed by us
            return Outcome("delete", "deleted", changes, None, name, sid)
        return Outcome("delete", "deleted", changes, None, name, sid, settings)

    return send


def create_task(
    sources: SourceCalls,
    label: Any,
    body: dict[str, Any],
    holder: dict[str, Any] | None,
    on_conflict: str,
    old_id: int | None,
    seen: frozenset[int] | None,
    held: frozenset[int] | None = None,
    space: int | None = None,
    landed: dict[str, Any] | None = None,
) -> Callable[[], Outcome]:
    """A POST, unless the name was taken meanwhile (a conflict, or an update of its holder
    under ``on_conflict="overwrite"``). ``seen``: sources known when planned, which do not
    count as taking the name (the server's refusal is then a failure, with its message).
    ``held``: the ids of every source holding the name just before, when already read.

    ``space``: the space the row names (a backup's ``space_id``). The API puts a new
    source in the token's own space and lets no client choose, so a create that an answer
    shows landing elsewhere is ``failed`` and the source just made is deleted again;
    ``landed`` (shared by a job's creates) remembers where creates land, so the rest of
    that space's rows are not sent at all. Only a source in ``space`` takes its name."""
    name = body.get("name")
    changes = {f: (None, v) for f, v in body.items()}

    def elsewhere(where: Any, made: int | None = None) -> Outcome:
        again = f"; it was made there as source {made} and deleted again" if made is not None else ""
        return Outcome(
            "create",
            "failed",
            changes,
            f"not created in space {space}, which the row names: new sources land in the token's own space, "
            f"{where}{again}. Create it with a token of space {space}, or empty the row's space_id "
            f"to create it in space {where}",
            name,
            None,
            row=label,
            old_id=old_id,
        )

    def taken(by: dict[str, Any], error: str) -> Outcome:
        if on_conflict == "skip":
            return Outcome("create", "conflict", changes, error, name, by.get("id"), row=label, old_id=old_id)
        update = {f: (by.get(f), v) for f, v in body.items() if not same(f, by.get(f), v)}
        if not update:
            return Outcome("create", "updated", update, None, name, by["id"], row=label, old_id=old_id)
        outcome = update_task(
            sources,
            by["id"],
            update,
            {f: v for f, (o, v) in update.items()},
            {f: o for f, (o, v) in update.items()},
            name,
            "create",
        )()
        outcome.row, outcome.old_id = label, old_id
        return outcome

    def send() -> Outcome:
        known = (landed or {}).get("space")
        if space is not None and known is not None and known != space:
            return elsewhere(known)
        if holder is not None and (space is None or holder.get("space_id") == space):
            return taken(holder, f"the name {name!r} was taken since the plan, by source {holder['id']}")
        try:
            made = sources.create_from(body, holders=held)
        except APIError as exc:
            if exc.status_code != 400 or "name" not in exc.field_errors:
                raise
            holders = [s for s in sources.records(name, None, progress=False)[0] if s.get("name") == name]
            if space is not None and len(holders) == 1 and holders[0].get("space_id") != space:
                if landed is not None:  # refused in the space it would land in: that is where creates go
                    landed.setdefault("space", holders[0].get("space_id"))
                return elsewhere(holders[0].get("space_id"))
            if len(holders) != 1 or (seen is not None and holders[0]["id"] in seen):
                raise
            return taken(holders[0], str(exc))
        if landed is not None:
            landed.setdefault("space", made.get("space_id"))
        made_with = {f: (None, v) for f, v in settings_of(made).items()}  # the server's defaults too: undo checks them
        defaults = [f for f in made_with if f not in body]
        if space is not None and made.get("space_id") != space:
            try:
                sources.delete(made["id"])
            except NotFoundError:
                pass
            except NeuroIOError as exc:  # it stays: report it, with its id, so that undo can remove it
                error = f"made in space {made.get('space_id')}, not in space {space} that the row names; "
                return Outcome(
                    "create",
                    "created",
                    made_with,
                    error + f"deleting it again failed: {exc}",
                    name,
                    made["id"],
                    row=label,
                    old_id=old_id,
                    defaults=defaults,
                )
            return elsewhere(made.get("space_id"), made["id"])
        return Outcome(
            "create", "created", made_with, None, name, made["id"], row=label, old_id=old_id, defaults=defaults
        )

    return send


def checked_update(
    sid: int,
    changes: Changes,
    server: dict[str, Any] | None,
    on_conflict: str,
    name: Any = None,
    action: str = "update",
) -> Outcome | tuple[dict[str, Any], dict[str, Any]]:
    """The outcome decided without sending (gone, conflict, already there), or the body to send
    and the server's values it replaces."""
    if server is None:
        return Outcome(action, "failed", changes, "not found on the server", name, sid)
    sides = {f: three_way(f, old, new, server.get(f)) for f, (old, new) in changes.items()}
    moved = {f: server.get(f) for f, side in sides.items() if side == "conflict"}
    if moved and on_conflict == "skip":
        return Outcome(
            action,
            "conflict",
            changes,
            "changed on the server since the base was read: "
            + ", ".join(f"{f} is now {v!r} (base had {changes[f][0]!r})" for f, v in moved.items()),
            name,
            sid,
        )
    body = {f: new for f, (old, new) in changes.items() if sides[f] != "agree"}
    if not body:
        return Outcome(action, "updated", changes, None, name, sid)
    return body, {f: server.get(f) for f in body}


def update_task(
    sources: SourceCalls,
    sid: int,
    changes: Changes,
    body: dict[str, Any],
    replaced: dict[str, Any],
    name: Any,
    action: str = "update",
) -> Callable[[], Outcome]:
    """A PATCH of ``body``; its outcome says what it replaced."""

    def send() -> Outcome:
        result = sources.update(sid, **body)
        lost = [f for f, v in body.items() if not same(f, result.get(f), v)]
        if lost:
            return Outcome(
                action,
                "failed",
                changes,
                "the server answered but did not keep: "
                + ", ".join(f"{f} (sent {body[f]!r}, has {result.get(f)!r})" for f in lost),
                name,
                sid,
                replaced,
            )
        return Outcome(action, "updated", changes, None, name, sid, replaced)

    return send


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
