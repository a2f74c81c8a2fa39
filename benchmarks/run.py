"""How fast is neuroio-nb, next to what a user would write, the network's limit and the machine's?

    .venv/bin/python benchmarks/run.py            # 3 repetitions of each (about 20 minutes)
    .venv/bin/python benchmarks/run.py --quick    # 1 repetition (about 8 minutes; the SDK's
                                                  # create loop alone takes 1-2 minutes)
    .venv/bin/python benchmarks/run.py --only create --only restore   # some parts only: their
                                                  # rows of results.md are replaced, the rest kept

Everything is measured in one run, against the embedded sandbox (served from a
child process, with ``--latency`` seconds added to every request), and printed
as one table: medians of the repetitions, the ratios and the targets. The
table is also written to ``benchmarks/results.md``. The SDK loops need
``pip install -e ".[bench]"`` (``neuroio==0.1.2``); without it they are skipped.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loops
from server import SandboxProcess

from neuroio_nb import Client, Policy
from neuroio_nb._jobs.frames import frame_from_records
from neuroio_nb._jobs.plan import make_plan
from neuroio_nb._jobs.validate import checked_frame
from neuroio_nb._schema import BY_NAME
from neuroio_nb.sandbox import generate_sources

WORKERS = 8  # Client's default max_workers
PARTS = ("network", "nobase", "limited", "cpu", "create", "stream", "restore", "big", "journal", "review")
FETCH_SOURCES = 2_000
BULK_SOURCES = 300
LIMITED_SOURCES = 1_000
ALLOWED_RATE = 50
CPU_SOURCES = 100_000


@dataclass
class Row:
    metric: str
    ours: str
    baseline: str
    ratio: str
    target: str
    ok: bool | None  # None: no target


def medians(
    contenders: dict[str, Callable[[], Any]], reps: int, before: Callable[[], Any] | None = None
) -> dict[str, float]:
    """Median seconds of each contender; repetitions interleaved, so that drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            if before is not None:
                before()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def rounds(requests: int) -> int:
    return math.ceil(requests / WORKERS)


def listing_rounds(count: int, page: int = loops.PAGE) -> int:
    """The first page (its ``count`` is needed first), then the fewest rounds for the rest."""
    return 1 + rounds(math.ceil(max(0, count - page) / page))


def sdk_problem() -> str | None:
    try:
        import neuroio  # noqa: F401  # only whether it imports
    except ImportError as exc:
        return f"neuroio SDK not installed ({exc}); pip install -e '.[bench]'"
    return None


# ---- 1 and 2: to_frame and bulk_update against the loops and the bounds ----------------


def works(fn: Callable[[], Any]) -> str | None:
    """None if ``fn`` runs, else why not (for the SDK, which may not fit this machine's httpx)."""
    try:
        fn()
    except Exception as exc:
        return f"the SDK loop failed: {type(exc).__name__}: {exc}"
    return None


def distinct_ids(result: Any) -> set[int]:
    """The source ids in a contender's result: a frame (ids as index or column), or pages."""
    if isinstance(result, pd.DataFrame):
        return set((result.index if result.index.name == "id" else result["id"]).tolist())
    return {row["id"] for page in result for row in page["results"]}


def edits(base: pd.DataFrame, n: int, seed: int = 1) -> tuple[pd.DataFrame, dict[int, dict]]:
    """``base`` with two settings changed on ``n`` sources; and the PATCH body of each."""
    ids = sorted(random.Random(seed).sample(list(base.index), n))
    edited = base.copy()
    edited.loc[ids, "identify_facesize_threshold"] += 500
    edited.loc[ids, "auto_check_liveness"] = ~edited.loc[ids, "auto_check_liveness"]
    bodies = {
        int(i): {
            "identify_facesize_threshold": int(edited.at[i, "identify_facesize_threshold"]),
            "auto_check_liveness": bool(edited.at[i, "auto_check_liveness"]),
        }
        for i in ids
    }
    return edited, bodies


def network(args: argparse.Namespace, sdk: str | None) -> list[Row]:
    reps, latency = args.reps, args.latency
    rows: list[Row] = []
    with SandboxProcess(sources=FETCH_SOURCES, latency=latency) as server:

        def ours_fetch() -> pd.DataFrame:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                return client.sources.to_frame(progress=False)

        base = ours_fetch()  # also warms up imports and code paths
        assert len(base) == FETCH_SOURCES
        fetchers = {
            "ours": ours_fetch,
            "floor": lambda: loops.floor_fetch(server.url, server.token, WORKERS),
            "requests": lambda: loops.requests_fetch(server.url, server.token),
        }
        if sdk is None:
            fetchers["sdk"] = lambda: loops.sdk_fetch(server.url, server.token)
            sdk = works(fetchers["sdk"])
            if sdk is not None:
                del fetchers["sdk"]
        for name, fetcher in fetchers.items():  # each checked, and warmed up
            assert distinct_ids(fetcher()) == set(base.index), name
        fetch = medians(fetchers, reps)
        ideal_fetch = latency * listing_rounds(FETCH_SOURCES)

        edited, bodies = edits(base, BULK_SOURCES)

        def ours_update() -> None:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                report = client.sources.bulk_update(edited, base=base, progress=False)
            assert (report["status"] == "updated").sum() == BULK_SOURCES, report["status"].value_counts()

        server.restart()
        ours_update()
        gets_ours = checked_patches(server, bodies, "the loops do", acted_on=False)
        updaters = {
            "ours": ours_update,
            "floor": lambda: loops.floor_update(server.url, server.token, bodies, WORKERS, True),
            "requests": lambda: loops.requests_update(server.url, server.token, bodies),
        }
        if sdk is None:
            updaters["sdk"] = lambda: loops.sdk_update(server.url, server.token, bodies)
        bulk = medians(updaters, reps, server.restart)
        for name, update in updaters.items():  # each sent every PATCH: the server has them all
            server.restart()
            update()
            assert sum(1 for r in server.log() if r.method == "PATCH" and r.status == 200) == BULK_SOURCES, name
        ideal_bulk = latency * (listing_rounds(FETCH_SOURCES) + rounds(BULK_SOURCES))

    for label, times, ideal, what in (
        (f"to_frame(), {FETCH_SOURCES:,} sources", fetch, ideal_fetch, f"{listing_rounds(FETCH_SOURCES)} rounds"),
        (
            f"bulk_update(base=), {BULK_SOURCES} changed of {FETCH_SOURCES:,}",
            bulk,
            ideal_bulk,
            f"{listing_rounds(FETCH_SOURCES)} listing + {rounds(BULK_SOURCES)} PATCH rounds",
        ),
    ):
        ours = times["ours"]
        rows.append(
            Row(
                label + ": vs requests loop",
                ms(ours),
                ms(times["requests"]),
                f"{times['requests'] / ours:.1f}x faster",
                "",
                None,
            )
        )
        if "sdk" in times:
            rows.append(sdk_row(label, times, sdk))
        else:
            rows.append(
                Row(label + ": vs neuroio SDK loop", ms(ours), "not measured: " + (sdk or ""), "", ">= 8x faster", None)
            )
        rows.append(
            Row(
                label + ": vs bare floor",
                ms(ours),
                ms(times["floor"]),
                f"{ours / times['floor']:.2f}x floor",
                "<= 1.25x",
                ours / times["floor"] <= 1.25,
            )
        )
        if "sdk" in times:
            rows.append(
                Row(
                    label + ": the bare floor itself vs the SDK loop",
                    ms(times["floor"]),
                    ms(times["sdk"]),
                    f"{times['sdk'] / times['floor']:.1f}x faster",
                    "",
                    None,
                )
            )
        rows.append(
            Row(
                label + f": vs ideal ({what} x {latency * 1000:g} ms)",
                ms(ours),
                ms(ideal),
                f"{ours / ideal:.2f}x ideal",
                "",
                None,
            )
        )
    rows.append(
        Row(
            f"bulk_update: listing GETs sent (floor: {1 + len(loops.page_offsets(FETCH_SOURCES))})",
            str(gets_ours),
            str(1 + len(loops.page_offsets(FETCH_SOURCES))),
            "",
            "",
            None,
        )
    )
    return rows


def without_base(args: argparse.Namespace) -> list[Row]:
    """``bulk_update(edited)`` with no base, 300 changed of 2,000: the plan's own read is its
    base, and the apply reads again to check each change against it (design.md, "A plan always
    has a base"), exactly as with ``base=``. The floor is the same as that row's: one listing
    (what a bare loop needs to know what to PATCH), then the PATCHes."""
    with SandboxProcess(sources=FETCH_SOURCES, latency=args.latency) as server:
        with Client(server.token, server.url, max_workers=WORKERS) as client:
            base = client.sources.to_frame(progress=False)
        edited, bodies = edits(base, BULK_SOURCES)

        def ours(given: pd.DataFrame | None = None) -> None:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                report = client.sources.bulk_update(edited, base=given, progress=False)
            assert (report["status"] == "updated").sum() == BULK_SOURCES, report["status"].value_counts()

        server.restart()
        ours()
        gets = checked_patches(server, bodies, "the floor does")
        floor = lambda: loops.floor_update(server.url, server.token, bodies, WORKERS, True)  # noqa: E731
        times = medians({"ours": ours, "floor": floor, "base": lambda: ours(base)}, args.reps, server.restart)
    label = f"bulk_update() without base, {BULK_SOURCES} changed of {FETCH_SOURCES:,}"
    listing = 1 + len(loops.page_offsets(FETCH_SOURCES))
    return [
        floor_row(label, times, 1.2, "bare floor (the listing, then the PATCHes)"),
        Row(
            label + ": vs bulk_update(base=) measured beside it",
            ms(times["ours"]),
            ms(times["base"]),
            f"{times['ours'] / times['base']:.2f}x",
            "",
            None,
        ),
        Row(label + ": GETs sent (the plan's read, the check's)", str(gets), f"{listing} + {listing}", "", "", None),
    ]


# ---- the journal's cost ----------------------------------------------------------------------

JOURNAL_SOURCES = 1_000


def journal_cost(args: argparse.Namespace) -> list[Row]:
    """A 1,000-source bulk update with the journal on (intents fsynced before sending) vs off."""
    with (
        SandboxProcess(sources=JOURNAL_SOURCES, latency=args.latency) as server,
        tempfile.TemporaryDirectory() as folder,
    ):
        with Client(server.token, server.url, max_workers=WORKERS) as client:
            base = client.sources.to_frame(progress=False)
        edited, _ = edits(base, JOURNAL_SOURCES)

        def update(journal: Any) -> Callable[[], None]:
            def run() -> None:
                with Client(server.token, server.url, max_workers=WORKERS, journal=journal) as client:
                    report = client.sources.bulk_update(edited, base=base, progress=False)
                assert (report["status"] == "updated").sum() == JOURNAL_SOURCES

            return run

        update(folder)()  # warm up
        server.restart()
        times = medians({"on": update(folder), "off": update(False)}, args.reps, server.restart)
    ratio = times["on"] / times["off"]
    return [
        Row(
            f"bulk_update of {JOURNAL_SOURCES:,}: journal on vs off",
            ms(times["on"]),
            ms(times["off"]),
            f"{ratio:.2f}x off",
            "<= 1.10x",
            ratio <= 1.10,
        )
    ]


# ---- 4: a rate-limited server ---------------------------------------------------------------


def rate_limited(args: argparse.Namespace) -> list[Row]:
    shares, lost, elapsed_all, throttled_all = [], [], [], []
    with SandboxProcess(sources=LIMITED_SOURCES, latency=args.latency, rate_limit=ALLOWED_RATE) as server:
        for _ in range(args.reps):
            server.restart()
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                base = client.sources.to_frame(progress=False)
            edited = base.copy()
            edited["auto_check_liveness"] = ~edited["auto_check_liveness"]
            time.sleep(0.5)  # let the server's token bucket fill up again
            server.clear()
            # A new client: it knows nothing of the server's rate when it starts.
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                start = time.perf_counter()
                report = client.sources.bulk_update(edited, base=base, progress=False)
                elapsed = time.perf_counter() - start
            seen = server.log()
            accepted = sum(1 for r in seen if r.status is not None and r.status != 429)
            shares.append(accepted / elapsed / ALLOWED_RATE)
            elapsed_all.append(elapsed)
            throttled_all.append(sum(1 for r in seen if r.status == 429))
            lost.append(int((report["status"] != "updated").sum()) + LIMITED_SOURCES - len(report))
    share = statistics.median(shares)
    listing = 2 + len(loops.page_offsets(LIMITED_SOURCES))  # the conflict check's probe, then the listing
    return [
        Row(
            f"rate-limited ({ALLOWED_RATE}/s): bulk_update of {LIMITED_SOURCES:,}, accepted rate",
            f"{share * ALLOWED_RATE:.1f}/s",
            f"{ALLOWED_RATE}/s allowed",
            f"{share:.1%} of allowed" + (f" (min {min(shares):.1%})" if len(shares) > 1 else ""),
            ">= 95%",
            share >= 0.95,
        ),
        Row("rate-limited: rows not updated (worst repetition)", str(max(lost)), "0", "", "0", max(lost) == 0),
        Row(
            "rate-limited: elapsed; 429 answers (median)",
            ms(statistics.median(elapsed_all)),
            f"{(LIMITED_SOURCES + listing) / ALLOWED_RATE:.1f} s at the allowed rate",
            f"{statistics.median(throttled_all):.0f} x 429",
            "",
            None,
        ),
    ]


# ---- 5: CPU work, no network ----------------------------------------------------------------


def changed_copy(frame: pd.DataFrame, share: float, seed: int = 2) -> pd.DataFrame:
    """``frame`` with ``share`` of its cells changed, in its writable columns."""
    rng = np.random.default_rng(seed)
    columns = [c for c in frame.columns if c not in BY_NAME or BY_NAME[c].writable]
    n = len(frame)
    picks = rng.choice(n * len(columns), size=int(share * n * len(frame.columns)), replace=False)
    edited = frame.copy()
    for number, column in enumerate(columns):
        rows = np.sort(picks[picks // n == number] % n)
        old = frame[column].iloc[rows]
        kind = BY_NAME[column].kind if column in BY_NAME else "int"
        if kind == "bool":
            new = ~old
        elif kind == "int":
            new = old + 5
        elif kind in ("str", "license"):
            new = old.astype("string") + " (2)"
        else:  # the list column
            new = pd.Series(
                [["new"] if v is not None and "det" in v else ["det"] for v in old], index=old.index, dtype=object
            )
        edited.iloc[rows, edited.columns.get_loc(column)] = new.to_numpy() if kind == "list" else new
    return edited


def bare_changed_cells(a: pd.DataFrame, b: pd.DataFrame) -> int:
    total = 0
    for column in b.columns:
        x, y = a[column], b[column]
        total += int(((x != y) & ~(x.isna() & y.isna())).fillna(False).sum())
    return total


def cpu(args: argparse.Namespace) -> list[Row]:
    start = time.perf_counter()
    records = generate_sources(CPU_SOURCES)
    print(f"  generated {CPU_SOURCES:,} sources in {time.perf_counter() - start:.0f} s", flush=True)
    frame = frame_from_records(records)
    reps = max(args.reps, 3)  # cheap enough to always take 3
    builds = medians(
        {"ours": lambda: frame_from_records(records), "pandas": lambda: pd.DataFrame.from_records(records)}, reps
    )
    build, pandas_build = builds["ours"], builds["pandas"]
    deep = frame.memory_usage(deep=True).sum()
    tracemalloc.start()
    frame_from_records(records)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    edited = changed_copy(frame, 0.01)
    sources = Client("benchmark", "http://127.0.0.1:9").sources  # never used: base is given
    plan = make_plan(sources, edited, frame)
    bare_count = bare_changed_cells(frame, edited)
    assert len(plan.changes) == bare_count, (len(plan.changes), bare_count)
    plans = medians(
        {
            "plan": lambda: make_plan(sources, edited, frame),
            "validate": lambda: checked_frame(edited),
            "bare": lambda: bare_changed_cells(frame, edited),
        },
        reps,
    )
    planning, validating, bare = plans["plan"], plans["validate"], plans["bare"]
    cells = f"{CPU_SOURCES:,} x {len(frame.columns)}"
    return [
        Row(
            f"plan(), {cells}, {len(plan.changes):,} cells changed (1%)",
            ms(planning),
            ms(bare) + " bare comparison",
            f"{planning / bare:.1f}x bare",
            "<= 3x",
            planning / bare <= 3,
        ),
        Row("plan(): time", ms(planning), "", "", "< 1 s", planning < 1),
        Row(
            "plan(): of which validating the edited frame (validate.checked_frame)",
            ms(validating),
            ms(planning - validating) + " the rest of plan()",
            f"{(planning - validating) / bare:.1f}x bare without it",
            "",
            None,
        ),
        Row(
            f"frame_from_records, {CPU_SOURCES:,} source dicts",
            ms(build),
            ms(pandas_build) + " DataFrame.from_records",
            f"{build / pandas_build:.2f}x from_records",
            "<= 1.5x",
            build / pandas_build <= 1.5,
        ),
        Row(
            f"frame of {CPU_SOURCES:,} sources: memory",
            f"{deep / 2**20:.1f} MiB",
            f"tracemalloc peak while building: {peak / 2**20:.1f} MiB",
            "memory_usage(deep=True)",
            "",
            None,
        ),
    ]


#: Ten rules of the kinds a compliance file holds: a where and a require, switches, thresholds, text.
REVIEW_RULES = [
    {"name": "liveness in space 2", "where": "space_id == 2", "require": "auto_check_liveness == True"},
    {"name": "faces big enough", "require": "identify_facesize_threshold >= 3000"},
    {"name": "create only big faces", "require": "auto_create_facesize_threshold >= identify_facesize_threshold"},
    {"name": "blur checked", "where": "auto_create_persons == True", "require": "auto_create_check_blur == True"},
    {"name": "exposure checked", "where": "auto_create_persons", "require": "auto_create_check_exposure"},
    {"name": "no junk persons", "require": "not (auto_create_on_junk == True and manual_create_on_junk == True)"},
    {"name": "named", "require": "name.str.len() > 0"},
    {"name": "licensed", "require": "license_id == license_id"},
    {
        "name": "lobby thresholds",
        "where": "name.str.contains('Lobby')",
        "require": "identify_facesize_threshold <= 20000",
    },
    {"name": "some images kept", "where": "space_id in [1, 3]", "require": "store_images_for_results.str.len() > 0"},
]


def review(args: argparse.Namespace) -> list[Row]:
    """Saving and loading a plan of 100,000 sources (1% of cells changed); a policy of 10 rules."""
    frame = frame_from_records(generate_sources(CPU_SOURCES))
    edited = changed_copy(frame, 0.01)
    sources = Client("benchmark", "http://127.0.0.1:9").sources  # never sends: the base is given
    plan = make_plan(sources, edited, frame)
    rules = Policy(REVIEW_RULES)
    reps = max(args.reps, 3)  # cheap enough to always take 3
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "change.plan"
        plan.save(path)
        loaded = sources.load_plan(path)
        assert loaded.to_json() == plan.to_json()  # exactly the saved writes
        times = medians(
            {
                "save": lambda: plan.save(path),
                "load": lambda: sources.load_plan(path),
                "check": lambda: rules.check(frame),
            },
            reps,
        )
        size = path.stat().st_size
    violations = len(rules.check(frame))
    what = f"{CPU_SOURCES:,} sources, {len(plan.changes):,} values changed (1%)"
    return [
        Row(f"plan.save(), {what}", ms(times["save"]), f"file {size / 2**20:.1f} MiB", "", "< 1 s", times["save"] < 1),
        Row("load_plan() of it", ms(times["load"]), "checksum checked", "", "< 1 s", times["load"] < 1),
        Row(
            f"Policy.check(), {CPU_SOURCES:,} sources x {len(rules)} rules (check() after the read)",
            ms(times["check"]),
            f"{violations:,} violations",
            "",
            "< 1 s",
            times["check"] < 1,
        ),
    ]


# ---- 6-9: jobs at scale: create, a streamed update, a restore, a big frame --------------------

CREATE_SOURCES = 1_000
STREAM_ACCOUNT = 20_000
STREAM_LATENCY = 0.05
RESTORE_DELETED, RESTORE_CHANGED = 50, 100
BIG_FRAME = 100_000
SDK_CREATE_FIELDS = ("name", "license_id", "identify_facesize_threshold", "use_pps_time")


def checked_patches(server: SandboxProcess, bodies: dict[int, Any], whose: str, *, acted_on: bool = True) -> int:
    """Check that the PATCHes the server logged (``acted_on``: only those it answered 2xx) are
    exactly ``bodies`` (id -> body), what ``whose`` sends too; the GETs it logged."""
    patches = sent(server, "PATCH") if acted_on else [r for r in server.log() if r.method == "PATCH"]
    patched = {int(r.path.strip("/").rsplit("/", 1)[1]): r.body for r in patches}
    assert patched == bodies, f"ours sent other PATCH bodies than {whose}"
    return sum(1 for r in server.log() if r.method == "GET")


def sent(server: SandboxProcess, method: str) -> list[Any]:
    """The bodies of the requests of ``method`` the server acted on (answered 2xx)."""
    return [r for r in server.log() if r.method == method and r.status is not None and r.status < 300]


def sdk_row(label: str, times: dict[str, float], sdk: str | None) -> Row:
    ours = times["ours"]
    if "sdk" not in times:
        return Row(label + ": vs neuroio SDK loop", ms(ours), "not measured: " + (sdk or ""), "", ">= 8x faster", None)
    return Row(
        label + ": vs neuroio SDK loop",
        ms(ours),
        ms(times["sdk"]),
        f"{times['sdk'] / ours:.1f}x faster",
        ">= 8x faster",
        times["sdk"] / ours >= 8,
    )


def floor_row(label: str, times: dict[str, float], limit: float, what: str = "bare floor") -> Row:
    ratio = times["ours"] / times["floor"]
    return Row(
        f"{label}: vs {what}",
        ms(times["ours"]),
        ms(times["floor"]),
        f"{ratio:.2f}x floor",
        f"<= {limit:g}x",
        ratio <= limit,
    )


def creating(args: argparse.Namespace, sdk: str | None) -> list[Row]:
    """1,000 new names (a site's CSV: no ids) planned with key="name", create=True, and applied."""
    new = pd.DataFrame(
        {
            "name": [f"Site 7 cam {n:04d}" for n in range(CREATE_SOURCES)],
            "identify_facesize_threshold": 9000,
            "use_pps_time": True,
        }
    )
    with SandboxProcess(sources=FETCH_SOURCES, latency=args.latency) as server:

        def ours() -> None:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                report = client.sources.plan(new, key="name", create=True).apply(progress=False)
            assert (report["status"] == "created").sum() == CREATE_SOURCES, report["status"].value_counts()

        server.restart()
        ours()
        bodies = [r.body for r in sent(server, "POST")]
        assert len(bodies) == CREATE_SOURCES
        gets = sum(1 for r in server.log() if r.method == "GET")
        contenders = {
            "ours": ours,
            "floor": lambda: loops.floor_writes(server.url, server.token, WORKERS, posts=bodies),
        }
        if sdk is None:
            sdk_bodies = [{k: v for k, v in b.items() if k in SDK_CREATE_FIELDS} for b in bodies]
            contenders["sdk"] = lambda: loops.sdk_create(server.url, server.token, sdk_bodies)
        times = medians(contenders, args.reps, server.restart)
    label = f"create {CREATE_SOURCES:,} sources (plan key=name, create=True; account of {FETCH_SOURCES:,})"
    return [
        sdk_row(label, times, sdk),
        floor_row(label, times, 1.3, f"bare floor ({CREATE_SOURCES:,} POSTs, 8 threads)"),
        Row(
            label + ": listing GETs before the POSTs",
            str(gets),
            f"{1 + len(loops.page_offsets(FETCH_SOURCES))} to read the account",
            "",
            "",
            None,
        ),
    ]


def streamed_update(args: argparse.Namespace) -> list[Row]:
    """300 edited rows (with their base) in an account of 20,000, at 50 ms a request."""
    with SandboxProcess(sources=STREAM_ACCOUNT, latency=STREAM_LATENCY) as server:
        with Client(server.token, server.url, max_workers=WORKERS) as client:
            everything = client.sources.to_frame(progress=False)
        edited_all, bodies = edits(everything, BULK_SOURCES)
        ids = sorted(bodies)
        edited, base = edited_all.loc[ids], everything.loc[ids]

        def ours() -> None:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                report = client.sources.bulk_update(edited, base=base, progress=False)
            assert (report["status"] == "updated").sum() == BULK_SOURCES, report["status"].value_counts()

        server.restart()
        ours()
        gets = checked_patches(server, bodies, "the floor does")
        times = medians(
            {"ours": ours, "floor": lambda: loops.floor_writes(server.url, server.token, WORKERS, patches=bodies)},
            args.reps,
            server.restart,
        )
    label = f"bulk_update(base=), {BULK_SOURCES} of {STREAM_ACCOUNT:,}, conflict-checked, {STREAM_LATENCY * 1000:g} ms"
    return [
        floor_row(label, times, 1.5, f"bare PATCH-only floor ({rounds(BULK_SOURCES)} rounds)"),
        Row(
            label + ": GETs sent for the conflict check",
            str(gets),
            f"{1 + len(loops.page_offsets(STREAM_ACCOUNT))} to list the account",
            "",
            "",
            None,
        ),
    ]


def restoring(args: argparse.Namespace) -> list[Row]:
    """A backup of 2,000 restored (key="name", create=True) after 50 deletions and 100 changes."""
    with SandboxProcess(sources=FETCH_SOURCES, latency=args.latency) as server:
        with Client(server.token, server.url, max_workers=WORKERS) as client:
            backup = client.sources.to_frame(progress=False)
        home = backup[backup["space_id"] == backup["space_id"].min()]  # re-created sources land there
        unique = home[~home["name"].isin(backup["name"][backup["name"].duplicated(keep=False)])]
        picked = random.Random(3).sample(list(unique.index), RESTORE_DELETED)
        changed = random.Random(4).sample([i for i in backup.index if i not in picked], RESTORE_CHANGED)

        def damage() -> None:
            server.restart()
            for sid in picked:
                server.call("remove_source", int(sid))
            for sid in changed:
                server.call(
                    "external_edit",
                    int(sid),
                    identify_facesize_threshold=int(backup.at[sid, "identify_facesize_threshold"]) + 5,
                )
            server.clear()

        def ours() -> None:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                report = client.sources.plan(backup, key="name", create=True).apply(progress=False)
            counts = report["status"].value_counts().to_dict()
            assert counts == {"created": RESTORE_DELETED, "updated": RESTORE_CHANGED}, counts

        damage()
        ours()
        posts = [r.body for r in sent(server, "POST")]
        patches = {int(r.path.strip("/").rsplit("/", 1)[1]): r.body for r in sent(server, "PATCH")}
        gets = sum(1 for r in server.log() if r.method == "GET")
        pages = [(int(r.params["limit"]), int(r.params.get("offset") or 0)) for r in server.log() if r.method == "GET"]
        reread = pages[len(pages) // 2 :]  # the apply's read of the scope; the plan's came first
        assert sorted(reread) == sorted(pages[: len(pages) // 2]), "the apply read other pages than the plan"
        times = medians(
            {
                "ours": ours,
                "floor": lambda: loops.floor_writes(
                    server.url, server.token, WORKERS, posts=posts, patches=patches, listing=True, relisting=reread
                ),
                "one listing": lambda: loops.floor_writes(
                    server.url, server.token, WORKERS, posts=posts, patches=patches, listing=True
                ),
            },
            args.reps,
            damage,
        )
    label = f"restore {RESTORE_DELETED} deleted + {RESTORE_CHANGED} changed of {FETCH_SOURCES:,} (key=name)"
    return [
        floor_row(label, times, 1.3, "bare floor of the same requests (the listing, then it again and the writes)"),
        Row(
            label + ": vs a bare restore without the re-read (the listing, then the writes)",
            ms(times["ours"]),
            ms(times["one listing"]),
            f"{times['ours'] / times['one listing']:.2f}x",
            "",
            None,
        ),
        Row(
            label + ": GETs sent (the plan's read, the apply's)",
            str(gets),
            f"{1 + len(loops.page_offsets(FETCH_SOURCES))} + {len(reread)}",
            "",
            "",
            None,
        ),
    ]


def big_frame(args: argparse.Namespace) -> list[Row]:
    """to_frame() of 100,000 sources vs the floor's decoded pages; the frame's memory."""
    with SandboxProcess(sources=BIG_FRAME, latency=args.latency) as server:

        def ours() -> pd.DataFrame:
            with Client(server.token, server.url, max_workers=WORKERS) as client:
                return client.sources.to_frame(progress=False)

        frame = ours()
        assert len(frame) == BIG_FRAME
        times = medians(
            {"ours": ours, "floor": lambda: loops.floor_fetch(server.url, server.token, WORKERS)}, args.reps
        )
        tracemalloc.start()
        ours()
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    label = f"to_frame(), {BIG_FRAME:,} sources"
    return [
        floor_row(label, times, 1.2, f"bare floor ({listing_rounds(BIG_FRAME)} rounds)"),
        Row(
            label + ": memory",
            f"{frame.memory_usage(deep=True).sum() / 2**20:.1f} MiB frame",
            f"tracemalloc peak while reading: {peak / 2**20:.0f} MiB",
            "memory_usage(deep=True)",
            "",
            None,
        ),
    ]


# ---- the table ----------------------------------------------------------------------------

HEAD = ("metric", "ours", "baseline", "ratio", "target", "pass")


def cells(row: Row) -> tuple[str, ...]:
    verdict = "" if row.ok is None else ("PASS" if row.ok else "FAIL")
    return (row.metric, row.ours, row.baseline, row.ratio, row.target, verdict)


def text_table(rows: list[Row]) -> str:
    table = [HEAD, *(cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEAD))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(rows: list[Row], args: argparse.Namespace, command: str, seconds: float) -> str:
    lines = [
        "# neuroio-nb benchmarks",
        "",
        f"- date: {dt.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- machine: {os.cpu_count()} CPUs (nproc), {_cpu_model()}, {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, pandas {pd.__version__}, numpy {np.__version__}",
        f"- command: `{command}` ({args.reps} repetition(s), medians; {seconds:.0f} s in all)",
        f"- sandbox in a child process, {args.latency * 1000:g} ms added to every request; "
        f"`Client(token, url, max_workers={WORKERS})`",
        "",
        "| " + " | ".join(HEAD) + " |",
        "|" + "|".join("---" for _ in HEAD) + "|",
    ]
    lines += [table_line(r) for r in rows]
    return "\n".join(lines) + "\n"


def table_line(row: Row) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells(row)) + " |"


#: What :func:`merged` adds to the metric of a part's first row: how and when it was measured.
MEASURED_APART = re.compile(r" \(`--only [^`]*`[^)]*\)")


def metric_of(line: str) -> str:
    """The metric of a line of results.md's table, without what :func:`merged` added to it."""
    cell = re.split(r"(?<!\\)\|", line)[1].strip()
    return MEASURED_APART.sub("", cell).replace("\\|", "|")


def merged(old: str, by_part: dict[str, list[Row]], args: argparse.Namespace) -> str:
    """``old`` (a results.md) with the rows of the parts just measured in place of theirs (found
    by metric), each part's first row saying how and when (with the machine's load) it was
    measured; every other row, and the header of the full run, as they were. A part with no
    row there yet is added at the end."""
    lines = old.rstrip("\n").splitlines()
    latency = "" if args.latency == 0.02 else f", {args.latency * 1000:g} ms a request"
    when = f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    for part, rows in by_part.items():
        if not rows:
            continue
        how = f" (`--only {part}`, {args.reps} repetition(s){latency}, {when})"
        fresh = [table_line(replace(rows[0], metric=rows[0].metric + how)), *map(table_line, rows[1:])]
        metrics = {r.metric for r in rows}
        at = [k for k, line in enumerate(lines) if line.startswith("| ") and metric_of(line) in metrics]
        if at:
            lines[at[0] : at[-1] + 1] = fresh
        else:
            lines += fresh
    return "\n".join(lines) + "\n"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def part_runs(args: argparse.Namespace, sdk: str | None) -> dict[str, tuple[str, Callable[[], list[Row]]]]:
    """Each part of :data:`PARTS`: what it says as it starts, and what measures it."""
    latency = f"{args.latency * 1000:g} ms a request"
    return {
        "network": (f"1-3. to_frame and bulk_update, {latency} ...", lambda: network(args, sdk)),
        "nobase": (f"2b. bulk_update without base, {latency} ...", lambda: without_base(args)),
        "limited": (f"4. a server allowing {ALLOWED_RATE} requests a second ...", lambda: rate_limited(args)),
        "cpu": ("5. CPU work ...", lambda: cpu(args)),
        "create": (f"6. creating {CREATE_SOURCES:,} sources ...", lambda: creating(args, sdk)),
        "stream": (
            f"7. a conflict-checked update in an account of {STREAM_ACCOUNT:,} ...",
            lambda: streamed_update(args),
        ),
        "restore": ("8. a restore from a backup ...", lambda: restoring(args)),
        "big": (f"9. to_frame() of {BIG_FRAME:,} sources ...", lambda: big_frame(args)),
        "journal": ("10. the journal's cost ...", lambda: journal_cost(args)),
        "review": (f"11. saving, loading and checking {CPU_SOURCES:,} sources ...", lambda: review(args)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, --quick 1)")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds added per request (0.02)")
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts (repeatable)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md", help="markdown file to write")
    args = parser.parse_args(argv)
    args.reps = args.reps or (1 if args.quick else 3)
    parts = args.only or list(PARTS)
    warnings.simplefilter("ignore", UserWarning)
    journals = tempfile.TemporaryDirectory()  # the runs measured are journaled here, not in the user's folder
    os.environ.setdefault("NEUROIO_NB_JOURNAL", journals.name)
    started = time.perf_counter()
    sdk = sdk_problem()
    by_part: dict[str, list[Row]] = {}
    for part, (what, measure) in part_runs(args, sdk).items():
        if part in parts:
            print(what, flush=True)
            by_part[part] = measure()
    rows = [row for part_rows in by_part.values() for row in part_rows]
    seconds = time.perf_counter() - started
    print()
    print(text_table(rows))
    command = ".venv/bin/python benchmarks/run.py" + (
        " " + " ".join(argv if argv is not None else sys.argv[1:])
        if (argv if argv is not None else sys.argv[1:])
        else ""
    )
    if args.only and args.out.exists():  # the other parts' rows stay as the last run measured them
        args.out.write_text(merged(args.out.read_text(), by_part, args))
    else:
        args.out.write_text(markdown(rows, args, command.rstrip(), seconds))
    print(f"\nwritten to {args.out}")
    return 0 if all(r.ok is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
