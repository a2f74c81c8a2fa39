"""The sources API itself: routes, pages and their optional corruption."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from .replies import VALIDATION, ApiFailure, Reply, field_error, json_reply
from .store import Store

LIST_PATH = "/v1/sources/"
DEFAULT_LIMIT = 20
CORRUPT_MODES = ("truncated", "results_not_list", "missing_id")
#: The parsed body of a request whose bytes are not JSON.
INVALID_JSON = object()

_ITEM = re.compile(r"/v1/sources/([^/]+)/")
_NON_NEGATIVE = re.compile(r"[0-9]+")
_SPACES = re.compile(r"[0-9]+(,[0-9]+)*")


@dataclass(frozen=True)
class PageOptions:
    """How list pages are shaped; read from the sandbox's attributes per request."""

    base_url: str
    cap: int
    omit_count: bool = False
    corrupt: str | None = None
    #: A ``count`` every page claims instead of the true one (``next`` goes on until it): a server that lies.
    claimed_count: int | None = None


def parse_body(raw: bytes) -> Any:
    """The JSON in ``raw``, None for no body, :data:`INVALID_JSON` for anything else."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return INVALID_JSON


def handle(store: Store, method: str, path: str, params: dict[str, str], body: Any, options: PageOptions) -> Reply:
    """Answer one authorized request."""
    try:
        return _route(store, method, path, params, body, options)
    except ApiFailure as failure:
        return failure.reply()


def _route(store: Store, method: str, path: str, params: dict[str, str], body: Any, options: PageOptions) -> Reply:
    if path == LIST_PATH:
        if method == "GET":
            return _list(store, params, options)
        if method == "POST":
            return json_reply(201, store.create(_object(body)))
        raise ApiFailure.not_found()
    match = _ITEM.fullmatch(path)
    if match is None or not _NON_NEGATIVE.fullmatch(match.group(1)):
        raise ApiFailure.not_found()
    source_id = int(match.group(1))
    if method == "GET":
        return json_reply(200, store.get(source_id))
    if method == "PATCH":
        return json_reply(200, store.update(source_id, _object(body)))
    if method == "DELETE":
        store.delete(source_id)
        return Reply(202)
    raise ApiFailure.not_found()


def _object(body: Any) -> dict[str, Any]:
    """A write's body; no body at all counts as ``{}``, as in Django REST framework."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiFailure(400, VALIDATION, "JSON parse error")
    return body


def _list(store: Store, params: dict[str, str], options: PageOptions) -> Reply:
    problems = []
    for name in ("limit", "offset"):
        if name in params and not _NON_NEGATIVE.fullmatch(params[name]):
            problems.append(field_error(name, "must be a non-negative integer"))
    raw_spaces = params.get("spaces_ids") or None
    if raw_spaces is not None and not _SPACES.fullmatch(raw_spaces):
        problems.append(field_error("spaces_ids", "must be comma-separated integers"))
    if problems:
        raise ApiFailure.invalid(problems)
    # limit=0 means "the default", as in Django REST framework's LimitOffsetPagination.
    limit = min(int(params.get("limit") or 0) or DEFAULT_LIMIT, options.cap)
    offset = int(params.get("offset") or 0)
    q = params.get("q") or None
    spaces = {int(s) for s in raw_spaces.split(",")} if raw_spaces else None
    count, rows = store.page(q, spaces, offset, limit)
    if options.claimed_count is not None:
        count = options.claimed_count
    if options.corrupt == "missing_id" and rows:
        rows[0].pop("id", None)
    results: Any = rows
    if options.corrupt == "results_not_list":
        results = {str(i): row for i, row in enumerate(rows)}
    if options.omit_count:
        page: dict[str, Any] = {"results": results}
    else:
        kept = [("q", q), ("spaces_ids", raw_spaces), ("limit", str(limit))]
        end = offset + len(rows)
        page = {
            "count": count,
            "next": _url(options.base_url, kept, end) if end < count else None,
            "previous": _url(options.base_url, kept, max(0, offset - limit)) if offset else None,
            "results": results,
        }
    reply = json_reply(200, page)
    if options.corrupt == "truncated":
        return Reply(200, reply.body[: len(reply.body) // 2], reply.content_type)
    return reply


def _url(base: str, kept: list[tuple[str, str | None]], offset: int) -> str:
    query = [(k, v) for k, v in kept if v is not None]
    if offset:
        query.append(("offset", str(offset)))
    return f"{base.rstrip('/')}{LIST_PATH}?{urlencode(query, safe=',')}"
