"""``client.sources``: the facade over every layer (layer 5).

:class:`Sources` is the REST resource (:class:`~neuroio_nb._rest.SourcesAPI`: list,
iter, get, create, update, delete, ...) plus the jobs built on it, each delegated to
its own module: the typed frame (``frames``), plan, bulk update and undo (``plan``,
``bulk``), CSV export (``csvio``) and the form (``form``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import pandas as pd

from ._jobs.csvio import write_csv
from ._jobs.frames import frame_from_records
from ._jobs.history import history
from ._jobs.history import resume as resume_run
from ._jobs.history import undo as undo_run
from ._jobs.outcomes import Report, check_on_conflict
from ._jobs.plan import Plan, with_policy
from ._jobs.policy import Policy
from ._jobs.saved import load_plan
from ._jobs.sync import make_sync_plan
from ._jobs.sync import undo as undo_report
from ._journal import labelled
from ._rest import SourcesAPI
from .errors import ListingChangedWarning


class Sources(SourcesAPI):
    """Every call about sources. Get it as ``client.sources``."""

    def to_frame(
        self,
        q: str | None = None,
        spaces_ids: Iterable[int] | int | None = None,
        progress: bool | None = None,
        *,
        consistent: bool = False,
        attempts: int = 3,
    ) -> pd.DataFrame:
        """Every source as one typed frame (index ``id``).

        If sources were added or deleted while the pages were read, the frame
        holds no duplicate ids and a :class:`ListingChangedWarning` says so;
        ``consistent=True`` re-reads (up to ``attempts`` times) until a read
        sees no change.

        Example::

            frame = client.sources.to_frame()                         # every source
            lobby = client.sources.to_frame(q="lobby", spaces_ids=[1, 2])
        """
        with self.client.job():
            for attempt in range(1, attempts + 1):
                rows, changed = self.records(q, spaces_ids, progress)
                if not changed or not consistent or attempt == attempts:
                    break
            if changed:
                warnings.warn(
                    "The listing changed while it was read (sources added or deleted meanwhile): "
                    "the frame has no duplicate ids, but it may lack sources that were there all along "
                    "(the pages shifted under the read) and still hold ones deleted meanwhile. "
                    + (
                        f"It did not settle after {attempts} reads."
                        if consistent
                        else "Pass consistent=True to re-read until it is stable."
                    ),
                    ListingChangedWarning,
                    stacklevel=2,
                )
            return frame_from_records(rows)

    def plan(
        self,
        edited: pd.DataFrame,
        base: pd.DataFrame | None = None,
        *,
        key: str = "id",
        create: bool = False,
        delete: bool = False,
        q: str | None = None,
        spaces_ids: Iterable[int] | int | None = None,
        policy: Policy | Any = None,
    ) -> Plan:
        """What applying ``edited`` would change (against ``base``, or the server now).

        ``key="name"`` matches rows to sources by name; ``create=True`` creates the rows
        that match none (without it they are kept in ``plan.unmatched``, said by the plan's
        views and by an :class:`~neuroio_nb._jobs.sync.UnmatchedRowsWarning`); ``delete=True``
        deletes the sources in scope (``q``, ``spaces_ids``) that no row matches. See
        :mod:`neuroio_nb._jobs.sync`.

        ``policy`` (a :class:`Policy`, a TOML file's path or a list of rules; checked before
        anything is read): ``plan.violations`` lists what breaks its rules in the state the
        plan would leave, and ``plan.apply()`` refuses while any remain.

        Example::

            edited = frame.copy()
            edited.loc[edited["space_id"] == 2, "auto_check_liveness"] = True
            plan = client.sources.plan(edited, base=frame)   # nothing sent yet
            plan.summary()
        """
        with self.client.job():
            rules = None if policy is None else Policy.coerce(policy)
            if spaces_ids is not None and not isinstance(spaces_ids, (int, str)):
                spaces_ids = list(spaces_ids)  # read twice: by the plan, and in made_with
            plan = make_sync_plan(self, edited, base, key=key, create=create, delete=delete, q=q, spaces_ids=spaces_ids)
            return plan if rules is None else with_policy(plan, rules)

    def load_plan(self, path: str | os.PathLike[str]) -> Plan:
        """The plan saved with ``plan.save(path)`` (or ``neuroio-nb plan ... --out``), to apply
        as it was saved: ``load_plan(path).apply()`` sends exactly its writes, no re-planning,
        each conditional on what the plan saw (a source changed since is a ``conflict``;
        ``on_conflict`` decides). Refused, before anything is sent, for a damaged file, one
        made for another base URL, or one saved by a newer neuroio-nb.

        Example::

            plan = client.sources.load_plan("change.plan")
            report = plan.apply()          # a source changed since it was saved: "conflict"
        """
        return load_plan(self, path)

    def check(
        self,
        policy: Policy | Any,
        *,
        q: str | None = None,
        spaces_ids: Iterable[int] | int | None = None,
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Audit the account now: every source (matching ``q`` / ``spaces_ids``) against
        ``policy`` (a :class:`Policy`, a TOML file's path or a list of rules; checked before
        anything is read). One row per source and rule it breaks (``id``, ``name``, ``rule``,
        ``require``, ``fields``, ``values``); no row when every source meets every rule.

        Example::

            violations = client.sources.check("rules.toml", spaces_ids=[2])
            violations.empty   # True when every source meets every rule
        """
        with self.client.job():
            rules = Policy.coerce(policy)
            return rules.check(self.to_frame(q=q, spaces_ids=spaces_ids, progress=progress))

    def bulk_update(
        self,
        edited: pd.DataFrame,
        base: pd.DataFrame | None = None,
        *,
        dry_run: bool = False,
        on_conflict: str = "skip",
        progress: bool | None = None,
    ) -> pd.DataFrame:
        """Apply ``edited``: one PATCH per changed source; a report row per source.

        Example::

            report = client.sources.bulk_update(edited, base=frame, on_conflict="skip")
            report.summary()   # "297 updated, 2 conflict"
        """
        with self.client.job():
            check_on_conflict(on_conflict)
            return self.plan(edited, base).apply(dry_run=dry_run, on_conflict=on_conflict, progress=progress)

    def undo(self, report: pd.DataFrame | str, *, on_conflict: str = "skip", progress: bool | None = None) -> Report:
        """Put back what a report's writes replaced (see :func:`neuroio_nb._jobs.sync.undo`), or what a
        journaled run changed, given its id (see :func:`neuroio_nb._jobs.history.undo`).

        Example::

            report = plan.apply()
            client.sources.undo(report)                     # or a journaled run: undo("20261129-101538-80ec68")
        """
        with self.client.job():
            if isinstance(report, (str, os.PathLike)):
                return undo_run(self, os.fspath(report), on_conflict=on_conflict, progress=progress)
            with labelled("undo"):
                return undo_report(self, report, on_conflict=on_conflict, progress=progress)

    def history(self, run_id: str | None = None, *, prune_before: Any = None) -> pd.DataFrame:
        """The journal: every run, newest first; one run's report (``run_id``); or, with
        ``prune_before``, remove the runs started before then (and get them back as a frame).

        Example::

            client.sources.history()                        # every run, newest first
            client.sources.history("20261129-101538")        # that run's report
        """
        return history(self, run_id, prune_before=prune_before)

    def resume(self, run_id: str, *, on_conflict: str = "skip", progress: bool | None = None) -> Report:
        """Finish an interrupted run: send exactly what it did not; the report covers the whole run.

        Example::

            client.sources.resume("20261129-101538-80ec68")   # after a crash: send the rest
        """
        with self.client.job():
            return resume_run(self, run_id, on_conflict=on_conflict, progress=progress)

    def export_csv(self, path: Any, frame: pd.DataFrame | None = None) -> pd.DataFrame:
        """Write every source (or ``frame``) to CSV; returns the frame written.

        Example::

            client.sources.export_csv("sources.csv")
            frame = read_csv("sources.csv")
        """
        with self.client.job():
            frame = self.to_frame() if frame is None else frame
            write_csv(frame, path)
            return frame

    def form(self, source_id: int | None = None) -> Any:
        """An ipywidgets form for one source (a searchable picker when no id).

        Example::

            client.sources.form(42)   # the form of source 42
            client.sources.form()     # a searchable picker above the form
        """
        from ._form import source_form  # ipywidgets only when a form is asked for: the CLI never loads it

        return source_form(self, source_id)


__all__ = ["ListingChangedWarning", "Sources"]
