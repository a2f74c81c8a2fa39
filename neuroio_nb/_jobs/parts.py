"""What a plan is made of, for the package's own modules; a user sees only :class:`Plan`'s face.

:class:`~neuroio_nb._jobs.plan.Plan` is what a user holds: its summary, changes, creates,
deletes, unmatched rows and violations, ``apply()``, ``save()``, ``to_markdown()`` and
``to_json()``. The modules that make a plan (``sync``, ``saved``), check it against a policy
(``review``), save or show it (``saved``, ``review``, the CLI) need more: the job it sends,
the sources it applies with, what create=True would do with its unmatched rows, the policy.
They read those here, through :func:`parts_of`, and make a plan as ``Plan(parts)``, never
by reaching into the plan's attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from .bulk import Job, SourceCalls
from .policy import Policy, empty_violations
from .unmatched import Unmatched

if TYPE_CHECKING:
    from .plan import Plan


@dataclass(frozen=True, eq=False)
class PlanParts:
    """The parts of a plan (see the module doc). Frozen: a plan that differs is a new one,
    ``Plan(dataclasses.replace(parts_of(plan), ...))``."""

    #: Where it is applied: the REST calls, the client (its base URL), the token's space.
    sources: SourceCalls
    #: What applying sends, and what each write expects to find: the plan's own read of the
    #: server (or the ``base`` given), so that every write is conditional on what it saw.
    job: Job = field(default_factory=Job)
    #: Rows (``key="name"``, no ``create=True``) that match no source, and what ``create=True``
    #: would do with them (:mod:`~neuroio_nb._jobs.unmatched`).
    unmatched: Unmatched = field(default_factory=Unmatched)
    #: The rules the plan was checked against (``plan(..., policy=)``), if any.
    policy: Policy | None = None
    #: What breaks them in the state the plan would leave (``plan.violations``).
    violations: pd.DataFrame = field(default_factory=empty_violations)
    #: (the edited rows that matched a source, what the plan read of those sources): the
    #: parts of the state the plan would leave, which a policy checks.
    compared: tuple[pd.DataFrame, pd.DataFrame] | None = None
    #: How it was asked for (``key``, ``q``, ``spaces_ids``, ``create``, ``delete``, ``base``):
    #: said in a saved plan, for its reviewer.
    made_with: Mapping[str, Any] = field(default_factory=dict)


def parts_of(plan: Plan) -> PlanParts:
    """What ``plan`` is made of (``Plan(parts)`` makes a plan of them)."""
    return plan._parts
