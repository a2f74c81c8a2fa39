"""Saved plans: a plan's writes in a file, to review now and apply later, exactly.

A saved plan is its conditional writes, nothing else: each update with the value the
plan saw (``expected``) and the one to write, each create with the body it sends, each
delete with every setting the source had (so that undo can make it again), and what the
checks of a sync compare with (the scope it read and the ids it held). Applying a loaded
plan sends exactly those writes, no re-planning, each conditional on what the plan saw:
a source changed since is a ``conflict`` (``on_conflict`` decides).

The file is JSON (UTF-8) with a format name and version, the base URL it was made for,
and a SHA-256 checksum of the rest: it catches damage (a file cut short, edited by
hand), not malice. It never holds the token. A damaged file, one made for another URL,
and one of a newer format version are refused with a clear error, before anything is
sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pandas as pd

from .._version import __version__
from ..errors import NeuroIOError, ValidationError
from .bulk import CHANGE_COLUMNS, Job, deletes_frame, no_changes, no_creates
from .parts import PlanParts, parts_of
from .plan import Plan, creates_frame
from .policy import VIOLATION_COLUMNS, Policy, empty_violations
from .review import json_label, json_value
from .unmatched import Unmatched

if TYPE_CHECKING:
    from .bulk import SourceCalls

FORMAT = "neuroio-nb saved plan"
#: The newest format version this toolkit writes and reads.
VERSION = 1


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> Path:
    """Write ``plan`` to ``path`` (atomically: a reader never sees half a file); returns the path."""
    body = _layout(plan_document(plan))
    text = f'{body}{CHECKSUM_KEY.decode()}"{checksum(body.encode("utf-8"))}"\n}}\n'
    target = Path(os.fspath(path))
    folder = target.parent if str(target.parent) else Path(".")
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def plan_document(plan: Plan) -> dict[str, Any]:
    """The file's content, without its checksum."""
    parts = parts_of(plan)
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "toolkit": __version__,
        "base_url": parts.sources.client.base_url,
        "made_with": json_value(dict(parts.made_with)),
        "summary": plan.summary(),
        "writes": writes_document(parts.job),
        "unmatched": [{"row": json_label(r), "name": json_value(n)} for r, n in plan.unmatched["name"].items()],
        "policy": parts.policy.as_list() if parts.policy is not None else None,
        "violations": json_value(plan.violations[VIOLATION_COLUMNS].to_dict("records")),
    }


def _layout(document: dict[str, Any]) -> str:
    """The document as JSON text, unclosed (its checksum comes last), each top-level key on a
    line of its own (what the plan is for, at a glance, in any editor); the writes are one line."""

    def compact(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    return "{\n" + ",\n".join(f"{compact(key)}: {compact(value)}" for key, value in document.items())


#: What starts the file's last entry, its checksum: the SHA-256 of every byte before it.
CHECKSUM_KEY = b',\n"checksum": '


def checksum(body: bytes) -> str:
    """``sha256:<hex>`` of ``body``: the file's bytes before :data:`CHECKSUM_KEY`."""
    return "sha256:" + hashlib.sha256(body).hexdigest()


def writes_document(job: Job) -> dict[str, Any]:
    """The writes of a plan's :class:`~neuroio_nb._jobs.bulk.Job` and what each expects to
    find, as JSON values."""
    deletes = job.deletes[["id", "space_id", "name"]].itertuples(index=False, name=None)
    return {
        "updates": [
            {
                "id": int(sid),
                "name": _fast(job.names.get(sid)),
                "changes": {f: {"expected": _fast(old), "new": _fast(new)} for f, (old, new) in changes.items()},
            }
            for sid, changes in job.updates.items()
        ],
        "creates": [
            {
                "row": json_label(label),
                "body": json_value(body),
                "space_id": json_value(job.create_spaces.get(label)),
                "old_id": json_value(job.old_ids.get(label)),
            }
            for label, body in job.bodies.items()
        ],
        "deletes": [
            {
                "id": int(sid),
                "space_id": json_value(space),
                "name": json_value(name),
                "expected": json_value(job.deleted[sid]),
            }
            for sid, space, name in deletes
        ],
        "not_found": [{"id": json_value(sid), "reason": reason} for sid, reason in job.missing.items()],
        "scope": None if job.scope is None else {"q": job.scope[0], "spaces_ids": json_value(job.scope[1])},
        "seen": sorted(int(i) for i in job.seen),
        "spaces": json_value(job.spaces),
        "listing": json_value(job.listing),
    }


# ---- reading a file back -------------------------------------------------------------


def read_document(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's content, checked: the format, its version, the checksum. Raises a
    :class:`~neuroio_nb.errors.ValidationError` naming the file and what is wrong."""
    where = os.fspath(path)
    with open(where, "rb") as fh:
        raw = fh.read()
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _refused(where, "is not a saved plan, or it is damaged: it is not JSON (cut short?)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise _refused(where, f"is not a saved plan: it has no format {FORMAT!r} (plan.save and --out write one)")
    version = document.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _refused(where, "is damaged: its format version is not a number")
    if version > VERSION:
        raise _refused(
            where,
            f"was saved by a newer neuroio-nb (format version {version}; this one, {__version__}, "
            f"reads up to {VERSION}): upgrade neuroio-nb to apply it",
        )
    end = raw.rfind(CHECKSUM_KEY)
    if end < 0 or document.get("checksum") != checksum(raw[:end]):
        raise _refused(
            where, "is damaged: its checksum does not match its content (edited or cut short?); make the plan again"
        )
    return document


def load_plan(sources: SourceCalls, path: str | os.PathLike[str]) -> Plan:
    """The plan saved in ``path``, to apply with ``sources``: refused (nothing sent) for a
    file made for another base URL, and for any file :func:`read_document` refuses."""
    document = read_document(path)
    ours = str(sources.client.base_url).rstrip("/")
    theirs = str(document.get("base_url", "")).rstrip("/")
    if ours != theirs:
        raise _refused(
            os.fspath(path),
            f"was made for {theirs or 'no URL'}, and this client talks to {ours}: "
            "plan against this server instead (nothing was sent)",
        )
    return plan_of(sources, document, os.fspath(path))


def plan_of(sources: SourceCalls, document: dict[str, Any], where: str) -> Plan:
    """The :class:`~neuroio_nb._jobs.plan.Plan` of a checked document."""
    try:
        unmatched = pd.DataFrame(
            {"name": pd.Series([u["name"] for u in document["unmatched"]], dtype=object)},
            index=pd.Index([u["row"] for u in document["unmatched"]]),
        )
        rules = document.get("policy")
        parts = PlanParts(
            sources,
            _job(document["writes"]),
            unmatched=Unmatched(rows=unmatched),
            policy=Policy(rules) if rules is not None else None,
            violations=_violations(document["violations"]),
            made_with=dict(document.get("made_with") or {}),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _refused(where, f"is damaged: {type(exc).__name__} {exc} while reading it back") from None
    return Plan(parts)


def _job(writes: dict[str, Any]) -> Job:
    """The job of the saved writes, each conditional on what the plan saw."""
    updates, creates, deletes = writes["updates"], writes["creates"], writes["deletes"]
    changes = pd.DataFrame(
        [(int(u["id"]), u["name"], f, c["expected"], c["new"]) for u in updates for f, c in u["changes"].items()],
        columns=CHANGE_COLUMNS,
        dtype=object,  # None stays None, not NaN
    )
    scope, listing = writes["scope"], writes["listing"]
    job = Job(
        changes=changes.astype({"id": "int64"}) if len(changes) else no_changes(),
        names={int(u["id"]): u["name"] for u in updates},
        missing={_id(m["id"]): str(m["reason"]) for m in writes["not_found"]},
        creates=creates_frame({c["row"]: c["body"] for c in creates}) if creates else no_creates(),
        create_spaces={c["row"]: int(c["space_id"]) for c in creates if c["space_id"] is not None},
        old_ids={c["row"]: int(c["old_id"]) for c in creates if c["old_id"] is not None},
        deletes=deletes_frame(
            [int(d["id"]) for d in deletes], [d["space_id"] for d in deletes], [d["name"] for d in deletes]
        ),
        deleted={int(d["id"]): dict(d["expected"]) for d in deletes},
        scope=None if scope is None else (scope["q"], scope["spaces_ids"]),
        seen=frozenset(int(i) for i in writes["seen"]),
        spaces=None if writes["spaces"] is None else [int(s) for s in writes["spaces"]],
        listing=None if listing is None else (int(listing[0]), int(listing[1])),
    )
    return job


def _violations(rows: list[dict[str, Any]]) -> pd.DataFrame:
    if not rows:
        return empty_violations()
    frame = pd.DataFrame(rows, columns=VIOLATION_COLUMNS, dtype=object)
    frame["id"] = frame["id"].astype("Int64")
    frame["rule"] = frame["rule"].astype("string")
    frame["require"] = frame["require"].astype("string")
    frame["fields"] = [tuple(f) for f in frame["fields"]]
    return frame


def _id(value: Any) -> Any:
    return int(value) if isinstance(value, int) else value


def _refused(where: str, reason: str) -> ValidationError:
    return ValidationError.one(reason, what=f"plan file {where}")


class OfflineSources:
    """What a plan read only to be shown (``neuroio-nb show``) has instead of a server: its
    base URL, and no way to send anything."""

    #: The space the token's creates land in: not known without a server.
    landing_space: int | None = None

    def __init__(self, base_url: str) -> None:
        self.client = _OfflineClient(base_url)

    def __getattr__(self, name: str) -> Any:
        raise NeuroIOError("this plan was read to be shown: load it with client.sources.load_plan to apply it")


class _OfflineClient:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url


def shown_plan(path: str | os.PathLike[str]) -> tuple[Plan, dict[str, Any]]:
    """The plan saved in ``path`` and its document, to show (no server, no token needed)."""
    document = read_document(path)
    offline = cast("SourceCalls", OfflineSources(str(document.get("base_url", ""))))
    return plan_of(offline, document, os.fspath(path)), document


_PLAIN_TYPES = (str, int, float, bool, type(None))


def _fast(value: Any) -> Any:
    """:func:`json_value`, with no work for what is JSON already (most values of a plan)."""
    return value if type(value) in _PLAIN_TYPES else json_value(value)


def is_saved_plan(path: str | os.PathLike[str]) -> bool:
    """Does ``path`` hold a saved plan (JSON) rather than a CSV? False when it cannot be read."""
    try:
        with open(os.fspath(path), "rb") as fh:
            start = fh.read(4096)
    except OSError:
        return False
    return start.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{")
