"""Sending many writes at once: each starts as soon as it is known, each outcome is recorded.

:func:`send_all` runs tasks concurrently (a mapping of them, or an iterator that may
still be reading the server and hands out each task as soon as it can be sent) and
records each outcome, in its result and in the job's journal run. It knows nothing of
what the tasks send: a task that raises gets the outcome ``fallback`` gives, with the
error's message.

Ctrl-C stops starting tasks, lets those in flight finish and raises
:class:`BulkInterrupted` with the exact partial report: in a notebook, the user's only
record of what was sent. Pressed again while the run winds down, on whichever statement
it lands, Ctrl-C cannot lose that report: each step of winding down can safely run twice,
and a step cut short is run again.

A journal write that fails (disk full: the run's writer raises :class:`JournalError`) stops
the run the same way: no task starts after it, those in flight finish, and the
:class:`JournalError` raised holds the exact partial report (``.report``).

:data:`send_hook` and :data:`wind_down_hook` are the seams tests use to press Ctrl-C at a
chosen moment of sending (while a task is handed to the pool, while a finished one is shown)
and again at each step of winding down.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from .._journal import APPLIED, RunWriter
from .._progress import progress_bar
from .._transport import outcome_unknown
from ..errors import BulkInterrupted, JournalError, NeuroIOError


class Recorded(Protocol):
    """What sending needs of a task's outcome: what the journal records of it (its ``error``
    is filled in when the task raised)."""

    error: str | None
    changes: dict[str, tuple[Any, Any]]

    @property
    def action(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def id(self) -> int | None: ...


OutcomeT = TypeVar("OutcomeT", bound=Recorded)
KeyT = TypeVar("KeyT", bound=Hashable)
_T = TypeVar("_T")

#: The steps of finishing a run, in order: ``close`` (stop the reads that still hand out
#: writes), ``finish`` (wait for the requests in flight), ``report`` (make the partial report,
#: with its journal run id), ``end`` (record the last outcomes and end the journal run).
STEPS = ("close", "finish", "report", "end")
#: A test seam, None in use: called as ``wind_down_hook(step, when)`` just ``"before"`` each
#: step of :data:`STEPS` runs and just ``"after"`` it returned, so that a test can press
#: Ctrl-C there (raise ``KeyboardInterrupt``); ``close`` and ``report`` run only after a
#: Ctrl-C, ``finish`` and ``end`` also when a run ends normally.
wind_down_hook: Callable[[str, str], None] | None = None
#: A test seam, None in use: called on the thread that hands out the tasks as
#: ``send_hook(moment, key)``: ``"handing"`` just before the task of ``key`` is handed to
#: the pool (its future already on record), ``"handed"`` just after the pool took it (a
#: worker may already be sending it), ``"showing"`` just before a finished task is counted
#: on the progress bar. A test can press Ctrl-C there (raise ``KeyboardInterrupt``) or make
#: the moment slow (a busy notebook showing its progress bar).
send_hook: Callable[[str, Any], None] | None = None


def _moment(moment: str, key: Any) -> None:
    if send_hook is not None:
        send_hook(moment, key)


def _step(name: str, run: Callable[[], _T]) -> _T:
    """Run step ``name`` of finishing a run, between the calls of :data:`wind_down_hook`."""
    if wind_down_hook is not None:
        wind_down_hook(name, "before")
    result = run()
    if wind_down_hook is not None:
        wind_down_hook(name, "after")
    return result


@dataclass
class _Flight:
    """What a run has under way, for winding it down: the tasks still coming, the pool,
    a future of our own for each task handed to the pool, the progress bar."""

    items: Iterator[Any] | None = None
    pool: ThreadPoolExecutor | None = None
    submitted: list[Future[None]] = field(default_factory=list)
    bar: Any = None


@dataclass(frozen=True)
class Sendout(Generic[OutcomeT]):
    """How a run's tasks go out: ``workers`` at a time; ``fallback(key)``, the outcome of a
    task that raised (completed with the error's message, unless it holds a message of its own); a progress bar (``progress``, ``desc``,
    and ``total`` when the tasks come from an iterator); ``run``, the journal run holding
    the tasks' intents (None: no journal); ``throttling()``, is the server throttling now?
    (the bar then says "throttled": the job is waiting out 429s, not stuck)."""

    workers: int
    fallback: Callable[[Any], OutcomeT]
    progress: bool | None = None
    desc: str = "sending"
    total: int | None = None
    run: RunWriter | None = None
    throttling: Callable[[], bool] | None = None


def send_all(
    how: Sendout[OutcomeT],
    tasks: Mapping[KeyT, Callable[[], OutcomeT]] | Iterator[tuple[KeyT, Callable[[], OutcomeT]]],
    decided: Mapping[KeyT, OutcomeT],
    *,
    report: Callable[[Mapping[KeyT, OutcomeT]], Any],
) -> dict[KeyT, OutcomeT]:
    """Run ``tasks`` concurrently, each as soon as it is known, as ``how`` says; their
    outcomes by key.

    ``tasks``: a mapping, or an iterator of ``(key, task)`` that may still be reading
    the server (each task starts when it is yielded). ``decided``: the outcomes settled
    without a task (it may grow while the iterator runs). On Ctrl-C, raises
    :class:`BulkInterrupted` holding ``report(done)``: the caller's report of the outcomes of
    every task that finished (with ``decided``, which it holds). Each outcome is recorded in the journal run
    (``how.run``), which is finished: ``complete`` once every task was sent and answered
    (even if a Ctrl-C then came before this returned), else ``interrupted``.
    """
    run = how.run
    done: dict[KeyT, OutcomeT] = {}
    flight = _Flight()
    recorded: set[KeyT] = set()  # the keys of ``decided`` whose outcome is in the journal
    state = "interrupted"
    try:
        _send(flight, done, how, tasks)
        state = "complete"  # every task was sent and answered
        _step("finish", lambda: _finish_in_flight(flight))
        if run is not None:
            _step("end", lambda: _close_run(run, decided, state, recorded))
        return done
    except JournalError as failure:  # the journal cannot be written: stop as Ctrl-C does, say why
        while True:
            try:
                _wind_down(flight, run, decided, recorded, "interrupted")
                stopped = JournalError(
                    str(failure),
                    path=failure.path,
                    report=report(done),
                )
                break
            except KeyboardInterrupt:
                continue
        raise stopped from None
    except KeyboardInterrupt:  # the first Ctrl-C, or one while the run was finishing
        # Each step runs to its end however often Ctrl-C comes again: one cut short runs again.
        # Outside the ``try`` is only the loop's jump back to it, a few instructions after a
        # Ctrl-C was caught: a press that lands exactly there (within a microsecond of the
        # last) is the one this cannot catch.
        while True:
            try:
                _wind_down(flight, run, decided, recorded, state)
                interrupted = BulkInterrupted(_step("report", partial(report, done)))
                break
            except KeyboardInterrupt:
                continue
        raise interrupted from None
    except BaseException:  # a bug, or the tasks' iterator failed: the requests in flight still finish
        while True:
            try:
                _wind_down(flight, run, decided, recorded, state)
                break
            except KeyboardInterrupt:
                continue
        raise


def _send(
    flight: _Flight,
    done: dict[KeyT, OutcomeT],
    how: Sendout[OutcomeT],
    tasks: Mapping[KeyT, Callable[[], OutcomeT]] | Iterator[tuple[KeyT, Callable[[], OutcomeT]]],
) -> None:
    """Hand each task to a pool as it comes, and wait for all of them, recording them in ``flight``."""
    # Each worker records its own outcome, so a run cut short at any line (even while
    # the work is being queued) still knows exactly what was sent.
    if isinstance(tasks, Mapping) and not tasks:
        return
    flight.items = items = iter(tasks.items()) if isinstance(tasks, Mapping) else tasks
    total = len(tasks) if isinstance(tasks, Mapping) else how.total
    send = partial(_record, done, how)
    run = how.run

    flight.bar = bar = _ThrottleNoted(
        progress_bar(total=total or 0, desc=how.desc, unit="source", progress=how.progress), how.throttling
    )
    flight.pool = pool = ThreadPoolExecutor(how.workers)
    pending: set[Future[None]] = set()
    early: queue.SimpleQueue[Future[None]] = queue.SimpleQueue()  # finished while tasks are still coming
    for key, task in items:
        if run is not None and run.failure is not None:
            raise run.failure
        # Our own future, on record before the pool can start anything: Ctrl-C may land
        # inside pool.submit after a worker took the write, and its future is then lost.
        future: Future[None] = Future()
        flight.submitted.append(future)
        pending.add(future)
        future.add_done_callback(early.put)
        _moment("handing", key)
        pool.submit(_run_into, future, send, key, task)
        _moment("handed", key)
        while not early.empty():
            finished = early.get()
            pending.discard(finished)
            _moment("showing", None)
            bar.update(1)
    while pending:  # each finished task once, as it finishes (waiting on all that are pending
        # at every turn would cost as much as the whole job's requests on a thousand of them)
        try:
            finished = early.get(timeout=0.2)
        except queue.Empty:
            continue
        pending.discard(finished)
        finished.result()
        _moment("showing", None)
        bar.update(1)


def _record(done: dict[KeyT, OutcomeT], how: Sendout[OutcomeT], key: KeyT, task: Callable[[], OutcomeT]) -> None:
    """Run one task on a worker and record its outcome in ``done`` and in the journal run: a
    task that raises gets ``how.fallback``'s outcome with the error's message (one source's
    trouble never aborts the run). Not run once the journal stopped the run."""
    run = how.run
    if run is not None and run.failure is not None:  # the journal stopped the run: not sent
        return
    unknown = False
    try:
        done[key] = task()
    except JournalError:  # the journal stopped the run before this write went: not sent, no row
        raise
    except Exception as exc:
        outcome = how.fallback(key)
        outcome.error = outcome.error or str(exc) or type(exc).__name__  # the fallback's own may say more
        unknown = isinstance(exc, NeuroIOError) and outcome_unknown(exc)
        done[key] = outcome
    if run is not None:
        result = done[key]
        # a create's row as it came out (every value the server gave it), for history(run) to show as this run did
        came_out = result.changes if result.action == "create" and result.status in APPLIED else None
        run.outcome_of(
            key, result.status, error=result.error, source_id=result.id, maybe_applied=unknown, changes=came_out
        )


class _ThrottleNoted:
    """A progress bar that says "throttled" while the server is (``throttling()``)."""

    def __init__(self, bar: Any, throttling: Callable[[], bool] | None) -> None:
        self.bar, self.throttling, self.said = bar, throttling, False

    def update(self, n: int = 1) -> None:
        now = self.throttling is not None and self.throttling()
        if now != self.said:
            self.said = now
            self.bar.set_postfix_str("throttled" if now else "", refresh=False)
        self.bar.update(n)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bar, name)


def _run_into(
    future: Future[None], send: Callable[[KeyT, Callable[[], Any]], None], key: KeyT, task: Callable[[], Any]
) -> None:
    """Run ``send`` as ``future`` says: not at all once it is cancelled (Ctrl-C), else to its end."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        send(key, task)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(None)


def _wind_down(
    flight: _Flight, run: RunWriter | None, decided: Mapping[KeyT, Any], recorded: set[KeyT], state: str
) -> None:
    """Stop a run cut short: no task starts any more, those in flight finish, the run ends
    in ``state``. Each step can run again after Ctrl-C cut it short."""
    _step("close", lambda: _close(flight.items))
    _step("finish", lambda: _finish_in_flight(flight))
    if run is not None:
        try:
            _step("end", lambda: _close_run(run, decided, state, recorded))
        except JournalError:  # it cannot be written: the run reads as interrupted
            run.close()


def _close(items: Iterator[Any] | None) -> None:
    """Stop a generator of tasks (its reads of the server); closing it again does nothing."""
    close = getattr(items, "close", None)
    if close is not None:
        close()


def _finish_in_flight(flight: _Flight) -> None:
    """Let requests in flight finish (nothing new starts), then close the progress bar.

    It waits on the futures, not on the threads: a ``Thread.join`` cut short by
    Ctrl-C can mark a live thread as finished (CPython 3.11), and a report made
    then would miss the request that thread is still sending. Every future that
    has not started is cancelled (it never will); the rest are waited for."""
    if flight.pool is not None:
        flight.pool.shutdown(wait=False, cancel_futures=True)
    for future in flight.submitted:
        future.cancel()  # only one that has not started: a running one cannot be
    wait([f for f in flight.submitted if not f.cancelled()])
    if flight.bar is not None:
        flight.bar.close()


def _close_run(run: RunWriter, decided: Mapping[KeyT, Any], state: str, recorded: set[KeyT]) -> None:
    """Record the outcomes decided while sending (streamed conflict checks), then end the run.

    ``recorded``: the keys recorded already, by a call that Ctrl-C cut short (each is
    recorded once; one cut short between its line and its key is recorded twice, which
    a reader takes as one). Ending a run that has ended does nothing."""
    for key, outcome in list(decided.items()):
        if key not in recorded:
            run.outcome_of(key, outcome.status, error=outcome.error, source_id=outcome.id)
            recorded.add(key)
    run.finish(state)
