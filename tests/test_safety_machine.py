"""The safety net as a state machine (hypothesis.stateful): plans made without a base,
colleagues' edits between a plan and its apply and between runs, applies SIGKILLed at a
random write, then undo or resume from a fresh client reading the journal from disk. After
every step the server holds exactly what a simple model of the rules says.

The model, per source, is one number (``identify_facesize_threshold``):

- applying a plan writes a source's new value only while the server still holds the value
  the plan saw; a source a colleague changed since is left as the colleague left it;
- an apply killed mid-run leaves each planned source at the value the plan saw or at its new
  value (never anything else); ``resume`` takes each still at the value the plan saw to its
  new value and leaves the rest; ``undo`` puts back the value the plan saw wherever the
  server still holds the run's new value, and touches nothing else.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from neuroio_nb import Client
from neuroio_nb.sandbox import Sandbox

FIELD = "identify_facesize_threshold"
SOURCES = 10

APPLY = textwrap.dedent("""
    import json, os, sys
    from neuroio_nb import Client

    client = Client(max_workers=2)
    ids = json.loads(os.environ["IDS"])
    values = json.loads(os.environ["VALUES"])
    edited = client.sources.to_frame(progress=False).loc[ids, ["identify_facesize_threshold"]]
    edited["identify_facesize_threshold"] = values
    plan = client.sources.plan(edited)  # no base: the plan's own read is its base
    print("PLANNED", flush=True)
    sys.stdin.readline()  # the test's colleague edits the server now
    report = plan.apply(progress=False)
    print("RUN", report.attrs.get("run_id"), flush=True)
""")


class SafetyNet(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.sb = Sandbox(sources=SOURCES, seed=21).start()
        self.folder = Path(tempfile.mkdtemp(prefix="neuroio-nb-machine-"))
        self.model = {i: s[FIELD] for i, s in self.sb.sources.items()}
        self.ids = sorted(self.model)
        self.counter = 50_000  # every value written is new: the model tells whose write a value is
        self.last: dict | None = None  # the last apply: run id, {id: (seen, new)}, killed

    def teardown(self) -> None:
        self.sb.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def value(self) -> int:
        self.counter += 7
        return self.counter

    def fresh(self, act: Callable[[Any], Any]) -> Any:
        """``act(sources)`` with a fresh client, closed after: it knows nothing but what the
        journal on disk says (and leaves no connection open to hold ``wait_idle(closed=True)``)."""
        client = Client(self.sb.token, self.sb.url, journal=self.folder, max_retries=4)
        try:
            return act(client.sources)
        finally:
            client.close()

    @invariant()
    def server_is_where_the_model_says(self) -> None:
        assert {i: s[FIELD] for i, s in self.sb.sources.items()} == self.model

    @rule(source=st.integers(0, SOURCES - 1))
    def a_colleague_edits(self, source: int) -> None:
        sid = self.ids[source]
        self.model[sid] = self.sb.external_edit(sid, **{FIELD: self.value()})[FIELD]

    @rule(
        chosen=st.sets(st.integers(0, SOURCES - 1), min_size=1, max_size=5),
        meanwhile=st.sets(st.integers(0, SOURCES - 1), max_size=2),
        kill_at=st.integers(1, 6),
    )
    def plan_then_apply_maybe_killed(self, chosen: set[int], meanwhile: set[int], kill_at: int) -> None:
        ids = [self.ids[k] for k in sorted(chosen)]
        planned = {sid: (self.model[sid], self.value()) for sid in ids}
        killed = self._apply_in_a_process(planned, [self.ids[k] for k in sorted(meanwhile)], kill_at)
        self.sb.wait_idle(closed=True)
        now = {i: s[FIELD] for i, s in self.sb.sources.items()}
        for sid, (seen, new) in planned.items():
            if self.model[sid] != seen:  # a colleague's, since the plan: never overwritten
                assert now[sid] == self.model[sid], f"{sid}: a colleague's value was overwritten"
            elif killed:
                assert now[sid] in (seen, new), f"{sid}: neither the value the plan saw nor its new one"
                self.model[sid] = now[sid]
            else:
                assert now[sid] == new, f"{sid}: not written"
                self.model[sid] = new
        run = self.fresh(lambda sources: sources.history().index[0])
        self.last = {"run": run, "planned": planned, "killed": killed}

    def _apply_in_a_process(self, planned: dict, meanwhile: list[int], kill_at: int) -> bool:
        """Plan and apply ``planned`` in a process of its own; the colleague edits ``meanwhile``
        between its plan and its apply; SIGKILL it as its ``kill_at``-th PATCH arrives (that
        PATCH and those in flight are applied, their answers never read). Killed?"""
        env = dict(
            os.environ,
            NEUROIO_API_TOKEN=self.sb.token,
            NEUROIO_API_URL=self.sb.url,
            NEUROIO_NB_JOURNAL=str(self.folder),
            IDS=json.dumps(list(planned)),
            VALUES=json.dumps([new for _, new in planned.values()]),
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", APPLY], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline().strip() == "PLANNED"
        for sid in meanwhile:
            self.model[sid] = self.sb.external_edit(sid, **{FIELD: self.value()})[FIELD]
        patches = {"n": 0}
        lock = threading.Lock()

        def hook(method: str, path: str) -> None:
            if method == "PATCH":
                with lock:
                    patches["n"] += 1
                    if patches["n"] == kill_at:
                        proc.kill()
                        proc.wait()

        self.sb.before_request = hook
        try:
            proc.stdin.write("go\n")
            proc.stdin.flush()
            proc.wait(timeout=120)
        finally:
            self.sb.before_request = None
        return proc.returncode == -9

    @precondition(lambda self: self.last is not None)
    @rule()
    def undo_from_a_fresh_client(self) -> None:
        assert self.last is not None
        run = self.last["run"]
        self.fresh(lambda sources: sources.undo(run, progress=False))
        for sid, (seen, new) in self.last["planned"].items():
            if self.model[sid] == new:  # the run's value, still there: put back what it replaced
                self.model[sid] = seen
        self.last = None

    @precondition(lambda self: self.last is not None and self.last["killed"])
    @rule()
    def resume_from_a_fresh_client(self) -> None:
        assert self.last is not None
        run = self.last["run"]
        self.fresh(lambda sources: sources.resume(run, progress=False))
        for sid, (seen, new) in self.last["planned"].items():
            if self.model[sid] == seen:  # not written, nor changed since the plan: written now
                self.model[sid] = new
        self.last = None


#: No shrinking: each step starts processes, and a failing run's steps are printed as they are.
QUICK: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow],
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],
}


class TestSafetyNetMachine(SafetyNet.TestCase):  # type: ignore[name-defined]
    """A handful of runs of a few steps: about 15 s on two cores."""

    settings = settings(max_examples=8, stateful_step_count=5, **QUICK)


@pytest.mark.slow
class TestSafetyNetMachineThoroughly(SafetyNet.TestCase):  # type: ignore[name-defined]
    """The same, at length (``python3 tasks.py slow`` runs it, CI too)."""

    settings = settings(max_examples=40, stateful_step_count=6, **QUICK)
