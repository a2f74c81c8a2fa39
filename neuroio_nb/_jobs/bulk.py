"""Applying a job: every write conditional on what the plan saw, one report row per source.

A :class:`Job` is everything a plan asks to send and what each write expects to find; a
plan owns one, frozen. :func:`apply_job` sends it with one small strategy:

- :class:`DryRun`: nothing is sent, every row ``planned``;
- :class:`Batch`: the sources the writes touch are read first, each write decided against
  them, the run journaled, then sent (undo and resume, and jobs that only delete);
- :class:`StreamedUpdates`: updates checked as the listing's pages arrive, each written as
  soon as its page is in (deletes read and decided first);
- :class:`SyncStream`: a sync that creates: its scope's pages asked for at once, updates and
  deletes written as they arrive, creates once the whole scope (every holder of a name) is read.

Every strategy checks each write against the server's source as read right before it
(:mod:`~neuroio_nb._jobs.writes`), journals each intent through its run before the request
goes, and never raises for one source's trouble (a ``failed`` row with its message).
Ctrl-C stops sending, lets requests in flight finish and raises :class:`BulkInterrupted`
with the exact partial report (see :mod:`~neuroio_nb._jobs.sending`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, NamedTuple, Protocol

import pandas as pd

from .._journal import Intent, NoRun, RunWriter, probe_gone, start_run
from .._values import to_python
from ..errors import JournalError, NeuroIOError, Problem, ValidationError
from .outcomes import (
    ACTIONS as ACTIONS,
)
from .outcomes import (
    STATUSES as STATUSES,
)
from .outcomes import (
    Changes,
    OnConflict,
    Outcome,
    Report,
    check_on_conflict,
    make_report,
    with_run,
)
from .reads import ReadFirst, ScopeRead, current_as_read, names_read, read_before_sending
from .reads import SourceCalls as SourceCalls  # the protocol the jobs (plan, sync, history) take
from .sending import Sendout, send_all
from .writes import (
    CreateWrite,
    ProbeWrite,
    Task,
    check_sendable,
    checked_delete,
    checked_update,
    delete_task,
    probe_name,
    renamed_since,
    update_task,
)
from .writes import settings_of as settings_of

CHANGE_COLUMNS = ["id", "name", "field", "old", "new"]
#: A write's key in a job: ``("update", id)``, ``("delete", id)``, ``("create", row label)``.
Key = tuple[str, Any]
#: What the plan says of a delete that undo can re-create, and of one it cannot tell yet.
RESTORABLE = "can restore"
CANNOT_TELL = "cannot tell yet"


def no_changes() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series([], dtype="int64" if c == "id" else object) for c in CHANGE_COLUMNS})


def no_creates() -> pd.DataFrame:
    return pd.DataFrame(columns=["name"], dtype=object)


def deletes_frame(ids: list[int], spaces: list[Any], names: list[Any]) -> pd.DataFrame:
    """The server sources a job deletes: ``id``, ``space_id``, ``name``."""
    return pd.DataFrame(
        {
            "id": pd.Series(ids, dtype="int64"),
            "space_id": pd.Series(spaces, dtype="Int64"),
            "name": pd.Series(names, dtype=object),
        }
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class Job:
    """Everything a plan asks to send, and what each write expects to find.

    ``changes``: the updates, one row per (id, field) with the value the plan saw (``old``)
    and the one to write (``new``); ``missing``: ids that could not be planned, by reason.
    ``creates``: the rows to create (index: their labels; a column per field sent), each in
    the space ``create_spaces`` names when it names one, re-creating ``old_ids`` (undo).
    ``deletes``: the sources to delete (``id``, ``space_id``, ``name``), each expecting the
    settings in ``deleted``. ``scope``: the (q, spaces_ids) a sync read when planned, and
    ``seen`` the ids it held: a name taken since by a source in scope is a conflict.
    ``spaces``: the spaces of the sources to update, when known (the check reads only
    those); ``listing``: (count, rows a page) of the scope's listing when planned.
    """

    changes: pd.DataFrame = field(default_factory=no_changes)
    names: Mapping[Any, Any] = field(default_factory=dict)
    missing: Mapping[int, str] = field(default_factory=dict)
    creates: pd.DataFrame = field(default_factory=no_creates)
    create_spaces: Mapping[Any, int] = field(default_factory=dict)
    old_ids: Mapping[Any, int] = field(default_factory=dict)
    deletes: pd.DataFrame = field(default_factory=lambda: deletes_frame([], [], []))
    deleted: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    scope: tuple[str | None, Any] | None = None
    seen: frozenset[int] = frozenset()
    spaces: list[int] | None = None
    listing: tuple[int, int] | None = None
    #: Planned by name: id -> the name its row matched. Renamed since, the update is a
    #: conflict: the row meant the source of that name (see :func:`renamed_since`).
    identity: Mapping[int, Any] = field(default_factory=dict)
    #: The ids among the deletes that are probes an earlier run left (undo, resume): their
    #: intents are marked ``probe``, and once deleted no report shows them.
    probes: frozenset[int] = frozenset()

    @cached_property
    def updates(self) -> dict[int, Changes]:
        """id -> {field: (old, new)}, fields in the order of :attr:`changes`."""
        out: dict[int, Changes] = {}
        for sid, fname, old, new in self.changes[["id", "field", "old", "new"]].itertuples(index=False, name=None):
            out.setdefault(sid, {})[fname] = (old, new)
        return out

    @cached_property
    def bodies(self) -> dict[Any, dict[str, Any]]:
        """Row label -> the fields a create sends (missing cells left to the server's defaults)."""
        bodies: dict[Any, dict[str, Any]] = {}
        for label, row in zip(self.creates.index, self.creates.to_dict("records"), strict=True):
            bodies[label] = {str(f): v for f, v in ((f, to_python(v)) for f, v in row.items()) if v is not None}
        return bodies

    @cached_property
    def who(self) -> dict[Any, Any]:
        """id -> name, of the sources updated and deleted."""
        return {**self.names, **dict(zip(self.deletes["id"], self.deletes["name"], strict=True))}

    @property
    def kind(self) -> str:
        """The journal's name for a run of this job: ``apply`` (updates only) or ``sync``."""
        return "apply" if not len(self.creates) and not len(self.deletes) else "sync"

    def order(self) -> list[Key]:
        """The report's order: deletes, creates, updates."""
        return [
            *(("delete", sid) for sid in self.deleted),
            *(("create", label) for label in self.bodies),
            *(("update", sid) for sid in self.updates),
        ]


def undo_of_deletes(job: Job, landing: int | None) -> list[str]:
    """Per delete of ``job``, in order, whether undo could re-create it: :data:`RESTORABLE`,
    :data:`CANNOT_TELL` (the token's space is not known yet), or why not. ``landing``: the
    space the token's creates land in (None: not known)."""
    said = []
    for space in job.deletes["space_id"].tolist():
        if landing is None:
            said.append(CANNOT_TELL)
        elif space is pd.NA or space is None or int(space) == landing:
            said.append(RESTORABLE)
        else:
            said.append(f"cannot restore: space {space}, and new sources land in space {landing}")
    return said


def refuse_irreversible(job: Job, landing: int | None) -> None:
    """A ValidationError for the deletes undo could not bring back (or cannot tell yet)."""
    problems = [
        Problem(
            sid,
            "space_id",
            None if space is pd.NA else int(space),
            f"undo {said}: apply(irreversible=True) (CLI --irreversible) deletes it anyway"
            if said == CANNOT_TELL
            else f"undo {said}; apply(irreversible=True) (CLI --irreversible) deletes it anyway",
        )
        for sid, space, said in zip(
            job.deletes["id"], job.deletes["space_id"], undo_of_deletes(job, landing), strict=True
        )
        if said != RESTORABLE
    ]
    if problems:
        raise ValidationError(problems, what="deletes (undo could not re-create them in their space)")


class Write(NamedTuple):
    """A write about to be sent: its key, its task, and what it replaces and sends (the journal's)."""

    key: Key
    task: Task
    before: dict[str, Any]
    after: dict[str, Any]


@dataclass
class Engine:
    """One application of a job: what its strategy shares (the rows decided without a request,
    the journal run) and the steps every strategy takes."""

    sources: SourceCalls
    job: Job
    on_conflict: OnConflict
    decided: dict[Key, Outcome] = field(default_factory=dict)
    run: RunWriter = field(default_factory=NoRun)
    #: The throwaway creates sent to learn where creates land (see :meth:`creates_in_turn`).
    probes: dict[Key, ProbeWrite] = field(default_factory=dict)

    def planned(self, key: Key) -> Outcome:
        """The row of ``key`` as planned (status ``planned``)."""
        action, ref = key
        job = self.job
        if action == "create":
            body = job.bodies[ref]
            changes = {f: (None, v) for f, v in body.items()}
            name = body.get("name")
            return Outcome(
                action="create", status="planned", changes=changes, name=name, row=ref, old_id=job.old_ids.get(ref)
            )
        if action == "delete":
            changes = {f: (v, None) for f, v in job.deleted[ref].items()}
            return Outcome(action="delete", status="planned", changes=changes, name=job.who.get(ref), id=ref)
        return Outcome(action="update", status="planned", changes=job.updates[ref], name=job.who.get(ref), id=ref)

    def fallback(self, key: Any) -> Outcome:
        """The row of a write that raised (its error is filled in by the sender)."""
        if key in self.probes:
            return self.probes[key].failed()
        return replace(self.planned(key), status="failed")

    def not_found(self) -> list[Outcome]:
        return [
            Outcome(action="update", status="failed", changes={}, error=reason, name=self.job.who.get(sid), id=sid)
            for sid, reason in self.job.missing.items()
        ]

    def check(self, sid: int, server: dict[str, Any] | None) -> Write | None:
        """The delete or update of ``sid`` checked against ``server`` (its source as read now,
        None: gone): the write to send, or None with its row decided."""
        job, name, on_conflict = self.job, self.job.who.get(sid), self.on_conflict
        if sid in job.deleted:
            key: Key = ("delete", sid)
            changes = self.planned(key).changes
            settings = checked_delete(sid, job.deleted[sid], server, on_conflict, name)
            if isinstance(settings, Outcome):
                self.decided[key] = settings
                return None
            return Write(key, delete_task(self.sources, sid, changes, settings, name), settings, {})
        key, changes = ("update", sid), job.updates[sid]
        checked = renamed_since(sid, changes, server, job.identity, on_conflict, name) or checked_update(
            sid, changes, server, on_conflict, name
        )
        if isinstance(checked, Outcome):
            self.decided[key] = checked
            return None
        body, replaced = checked
        return Write(key, update_task(self.sources, sid, changes, body, replaced, name), replaced, body)

    def create_writes(self, read: ReadFirst) -> list[CreateWrite]:
        job = self.job
        return [
            CreateWrite(
                sources=self.sources,
                run=self.run,
                key=("create", label),
                label=label,
                body=body,
                on_conflict=self.on_conflict,
                old_id=job.old_ids.get(label),
                holder=read.holders.get(body.get("name")),
                held=read.held.get(body.get("name")),
                seen=job.seen if job.scope is not None else None,
                space=job.create_spaces.get(label),
            )
            for label, body in job.bodies.items()
        ]

    def intent(self, key: Key, before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> Intent:
        """What the write of ``key`` sends (the plan's values unless ``before``/``after`` say)."""
        action, ref = key
        row = self.planned(key)
        if action == "create":
            space = self.job.create_spaces.get(ref)
            return Intent(
                action="create",
                source_id=None,
                before={} if space is None else {"space_id": space},
                after=self.job.bodies[ref],
                name=row.name,
                changes=row.changes,
                space=space,
            )
        if before is None and action == "update":
            before = {f: old for f, (old, new) in row.changes.items()}
            after = {f: new for f, (old, new) in row.changes.items()}
        elif before is None:
            before = dict(self.job.deleted[ref])
        return Intent(
            action=action,
            source_id=ref,
            before=before,
            after=after or {},
            name=row.name,
            changes=row.changes,
            probe=action == "delete" and ref in self.job.probes,
        )

    def start(self, intents: Mapping[Key, Intent]) -> None:
        """The journal run, holding every row of the job, fsynced before its first request goes.

        ``intents``: what each write will send; the rows decided so far are recorded with it."""
        settled = {
            ("decided", n): Intent(
                action=o.action,
                source_id=o.id,
                name=to_python(o.name),
                status=o.status,
                error=o.error,
                changes=o.changes,
            )
            for n, o in enumerate(
                [*(self.decided[k] for k in self.job.order() if k in self.decided), *self.not_found()]
            )
        }
        journal = self.sources.client.journal if intents or settled else None
        self.run = start_run(journal, self.job.kind, self.sources.client.base_url)
        self.run.intend_keyed({**settled, **intents})

    def amend(self, writes: list[Write], decided: Iterable[Key] = ()) -> None:
        """Record what each checked write really sends (and, of the rows ``decided`` as they were
        checked, that an update already holding its values sends nothing), before any is sent."""
        amends: dict[Key, tuple[dict[str, Any], dict[str, Any]]] = {
            k: ({}, {})
            for k in decided
            if k[0] == "update" and k in self.decided and self.decided[k].status == "updated"
        }
        amends.update({w.key: (w.before, w.after) for w in writes})
        self.run.amend_keyed(amends)

    def creates_in_turn(self, writes: list[CreateWrite]) -> Iterator[tuple[Key, Task]]:
        """The creates, each as soon as it may go.

        While the token's space is not known and a row names one, one create is sent alone
        first, a probe: once it is answered, creates of other spaces are not sent at all. The
        probe never takes a name another row sends: it is a row whose name no other row sends
        (one naming no space first), else a throwaway (:class:`ProbeWrite`). Should the probe
        not tell the space, the rows naming one whose name another row sends are not sent."""
        if self.sources.landing_space is not None or all(w.space is None for w in writes):
            yield from ((w.key, w) for w in writes)
            return
        names = Counter(w.body.get("name") for w in writes)
        alone = [w for w in writes if names[w.body.get("name")] == 1 and w.holder is None]
        probe: CreateWrite | ProbeWrite | None = min(alone, key=lambda w: w.space is not None, default=None)
        if probe is None:
            probe = self.throwaway()
        yield probe.key, probe
        while not probe.done.wait(0.05):
            pass
        rest = [w for w in writes if w is not probe]
        if self.sources.landing_space is None:
            rest = self.unprobed(rest, names)
        yield from ((w.key, w) for w in rest)

    def throwaway(self) -> ProbeWrite:
        """A :class:`ProbeWrite`, its intent on disk (fsynced) before it is handed out."""
        key: Key = ("probe", len(self.probes))
        name = probe_name(self.run.run_id)
        self.run.intend_keyed(
            {key: Intent(action="create", source_id=None, after={"name": name}, name=name, probe=True)}
        )
        create = CreateWrite(
            sources=self.sources, run=self.run, key=key, label=None, body={"name": name}, on_conflict="skip"
        )
        self.probes[key] = probe = ProbeWrite(create=create)
        return probe

    def unprobed(self, writes: list[CreateWrite], names: Counter[Any]) -> list[CreateWrite]:
        """``writes`` but those naming a space whose name another row sends: the probe did not
        tell where creates land, so each of them could take its namesake's name. Those are
        ``failed`` unsent, saying so."""
        why = "; ".join(p.failure for p in self.probes.values() if p.failure) or "the row sent first did not tell it"
        sent = []
        for write in writes:
            if write.space is None or names[write.body.get("name")] == 1:
                sent.append(write)
                continue
            self.decided[write.key] = write.outcome(
                "failed",
                error=f"not sent: the space this token's creates land in could not be learned ({why}), and "
                "created elsewhere it could take the name of the row of the same name; try again",
            )
        return sent

    def send(
        self, items: Mapping[Key, Task] | Iterator[tuple[Key, Task]], progress: bool | None, total: int | None = None
    ) -> Report:
        how = Sendout(
            self.sources.client.max_workers,
            self.fallback,
            progress,
            "updating" if self.job.kind == "apply" else "sending",
            total=total,
            run=self.run,
            throttling=lambda: bool(self.sources.client.limit.throttling),
        )
        done = send_all(how, items, self.decided, report=lambda done: with_run(make_report(self.rows(done)), self.run))
        return with_run(make_report(self.rows(done)), self.run)

    def rows(self, done: Mapping[Key, Outcome]) -> list[Outcome]:
        """The report's rows, in the job's order, once ``done`` holds what was sent (all, or a part
        at Ctrl-C), then the ids that could not be planned: no row for a probe of which nothing
        is left; a row, last, for each probe this run made that stays (or may) on the server,
        as ``history(run)`` shows it."""
        rows = [
            row
            for k in self.job.order()
            if (row := done.get(k) or self.decided.get(k)) is not None
            and not (k[0] == "delete" and k[1] in self.job.probes and row.status == "deleted")
        ]
        rows += self.not_found()
        for key, probe in self.probes.items():
            row = done.get(key) or probe.left
            if row is not None and not probe_gone("create", row.status, probe.unknown):
                rows.append(row)
        return rows


class Strategy(Protocol):
    def apply(self, engine: Engine, progress: bool | None) -> Report: ...


class DryRun:
    """Nothing is sent: every row ``planned``."""

    def apply(self, engine: Engine, progress: bool | None) -> Report:
        return make_report([*(engine.planned(k) for k in engine.job.order()), *engine.not_found()])


class Batch:
    """Read every source the writes touch (and the holders of the names to create), decide each
    write against them, journal the run, then send."""

    def apply(self, engine: Engine, progress: bool | None) -> Report:
        job = engine.job
        read = read_before_sending(
            engine.sources,
            [*job.deleted, *job.updates],
            [body.get("name") for body in job.bodies.values()],
            job.scope,
            job.seen,
        )
        writes = [w for sid in [*job.deleted, *job.updates] if (w := engine.check(sid, read.current.get(sid)))]
        intents = {w.key: engine.intent(w.key, w.before, w.after) for w in writes}
        intents.update({("create", label): engine.intent(("create", label)) for label in job.bodies})
        engine.start(intents)
        creates = engine.create_writes(read)

        def items() -> Iterator[tuple[Key, Task]]:
            yield from ((w.key, w.task) for w in writes)
            yield from engine.creates_in_turn(creates)

        return engine.send(items(), progress, total=len(writes) + len(creates))


class StreamedUpdates:
    """Deletes read and decided first; each update checked as the page holding its source
    arrives and sent at once. Every update is on record (with the plan's values) before the
    first is sent; the journal learns what each really sends as it is checked."""

    def apply(self, engine: Engine, progress: bool | None) -> Report:
        job = engine.job
        current = engine.sources.current(list(job.deleted)) if job.deleted else {}
        deletes = [w for sid in job.deleted if (w := engine.check(sid, current.get(sid)))]
        intents = {w.key: engine.intent(w.key, w.before, w.after) for w in deletes}
        intents.update({("update", sid): engine.intent(("update", sid)) for sid in job.updates})
        engine.start(intents)

        def items() -> Iterator[tuple[Key, Task]]:
            yield from ((w.key, w.task) for w in deletes)
            waiting = dict.fromkeys(job.updates)
            try:
                for batch in current_as_read(engine.sources, list(job.updates), job.spaces):
                    for sid, _ in batch:
                        waiting.pop(sid, None)
                    writes = [w for sid, server in batch if (w := engine.check(sid, server))]
                    engine.amend(writes, [("update", sid) for sid, _ in batch])
                    yield from ((w.key, w.task) for w in writes)
            except JournalError:  # the journal stops the run (the sender says so), not the server
                raise
            except NeuroIOError as error:  # nothing more can be checked: the rest is not sent, and says why
                unread(engine, waiting, error)

        return engine.send(items(), progress, total=len(deletes) + len(job.updates))


class SyncStream:
    """A sync that creates: its scope's pages are asked for at once (before the journal is
    written, so they are on their way meanwhile); updates and deletes are checked and sent as
    the pages arrive, creates once the whole scope is read (a holder may be on any page)."""

    def apply(self, engine: Engine, progress: bool | None) -> Report:
        job = engine.job
        q, spaces_ids = job.scope or (None, None)
        scope = ScopeRead(engine.sources, q, spaces_ids, job.listing)
        try:
            engine.start({k: engine.intent(k) for k in job.order()})
            total = len(job.order())
            return engine.send(self._items(engine, scope), progress, total=total)
        finally:
            scope.close()

    def _items(self, engine: Engine, scope: ScopeRead) -> Iterator[tuple[Key, Task]]:
        job = engine.job
        waiting = dict.fromkeys([*job.deleted, *job.updates])

        def arrived(rows: Iterable[dict[str, Any]]) -> Iterator[tuple[Key, Task]]:
            """The writes of the awaited sources among ``rows`` (each once), checked and amended."""
            writes, checked = [], []
            for row in rows:
                if row["id"] in waiting:
                    del waiting[row["id"]]
                    checked.append(("update", row["id"]))
                    if (write := engine.check(row["id"], row)) is not None:
                        writes.append(write)
            engine.amend(writes, checked)
            yield from ((w.key, w.task) for w in writes)

        reader = scope.pages()
        try:
            while True:
                try:
                    rows = next(reader)
                except StopIteration as stop:
                    listing, changed = stop.value
                    break
                yield from arrived(rows)
            if waiting:  # not in the listing (moved, or shifted past): read one by one
                found = engine.sources.current(list(waiting))
                yield from arrived(s for s in found.values() if s is not None)
                for sid in list(waiting):
                    del waiting[sid]
                    if (write := engine.check(sid, None)) is not None:
                        yield write.key, write.task
            named = Counter(body.get("name") for body in job.bodies.values())
            holders, held = names_read(engine.sources, named, job.scope, job.seen, listing, changed)
        except JournalError:  # the journal stops the run (the sender says so), not the server
            raise
        except NeuroIOError as error:  # nothing more can be checked: the rest is not sent, and says why
            unread(engine, waiting, error, creates=True)
            return
        finally:
            reader.close()
        yield from engine.creates_in_turn(engine.create_writes(ReadFirst(holders=holders, held=held)))


def unread(engine: Engine, ids: Iterable[int], error: NeuroIOError, *, creates: bool = False) -> None:
    """The writes of ``ids`` (updates or deletes), and with ``creates`` every create, are not
    sent: the server's sources could not be read to check them. Their rows say so."""
    message = f"not sent: the server's sources could not be read to check it ({error})"
    keys: list[Key] = [("delete" if sid in engine.job.deleted else "update", sid) for sid in ids]
    keys += [("create", label) for label in engine.job.bodies] if creates else []
    for key in keys:
        engine.decided[key] = replace(engine.fallback(key), error=message)


def strategy_for(job: Job, dry_run: bool) -> Strategy:
    if dry_run:
        return DryRun()
    if len(job.creates) and job.scope is not None:
        return SyncStream()
    if job.updates and not len(job.creates):
        return StreamedUpdates()
    return Batch()


def apply_job(
    sources: SourceCalls,
    job: Job,
    *,
    dry_run: bool = False,
    on_conflict: OnConflict = "skip",
    progress: bool | None = None,
    irreversible: bool = False,
) -> Report:
    """Send ``job``: deletes first, then creates and updates; one report row per source.

    Unless ``irreversible``, deletes that undo could not re-create (another space than the
    one the token's creates land in, or one it cannot tell yet) are refused before anything
    is sent."""
    check_on_conflict(on_conflict)
    check_sendable(job.updates)
    check_sendable({label: {f: (None, v) for f, v in body.items()} for label, body in job.bodies.items()})
    if not irreversible and not dry_run:
        refuse_irreversible(job, sources.landing_space)
    return strategy_for(job, dry_run).apply(Engine(sources, job, on_conflict), progress)
