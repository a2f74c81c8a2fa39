"""What neuroio-nb is measured against: the loops a user writes, and the bare floor.

- ``requests_*``: the loop a user writes with requests: one session, pages of
  100 read one after another, a frame built at the end; one PATCH after another.
- ``sdk_*``: the same loops with the ``neuroio`` 0.1.2 SDK from PyPI (it opens a
  new httpx client, so a new connection, for every call).
- ``floor_*``: the least this machine can do for the same job: a bare
  ``requests.Session`` and a ``ThreadPoolExecutor(max_workers)`` sending the very
  same requests (same page offsets and limits, same PATCH bodies), decoding the
  JSON answers, and nothing else: no frame, no validation, no conflict check.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import requests

PATH = "/v1/sources/"
PAGE = 100


def session(token: str) -> requests.Session:
    http = requests.Session()
    http.headers["Authorization"] = f"Token {token}"
    return http


# ---- the loops a user writes with requests ---------------------------------------


def requests_fetch(url: str, token: str) -> pd.DataFrame:
    with session(token) as http:
        rows: list[dict] = []
        while True:
            reply = http.get(url + PATH, params={"limit": PAGE, "offset": len(rows)})
            reply.raise_for_status()
            page = reply.json()
            rows += page["results"]
            if not page["results"] or len(rows) >= page["count"]:
                return pd.DataFrame(rows)


def requests_update(url: str, token: str, bodies: dict[int, dict]) -> int:
    with session(token) as http:
        for sid, body in bodies.items():
            http.patch(f"{url}{PATH}{sid}/", json=body).raise_for_status()
    return len(bodies)


# ---- the same loops with the neuroio SDK ------------------------------------------


def sdk_client(url: str, token: str) -> Any:
    """A ``neuroio.Client`` pointed at ``url`` (the SDK reads its base URL from a class)."""
    import neuroio
    from neuroio.base import APIBaseBase

    APIBaseBase.base_url = url
    return neuroio.Client(api_token=token)


def sdk_fetch(url: str, token: str) -> pd.DataFrame:
    client = sdk_client(url, token)
    rows: list[dict] = []
    while True:
        reply = client.sources.list(limit=PAGE, offset=len(rows))
        reply.raise_for_status()
        page = reply.json()
        rows += page["results"]
        if not page["results"] or len(rows) >= page["count"]:
            return pd.DataFrame(rows)


def sdk_create(url: str, token: str, bodies: list[dict]) -> int:
    """One ``sources.create`` after another (the SDK sends its defaults for the rest)."""
    client = sdk_client(url, token)
    for body in bodies:
        client.sources.create(**body).raise_for_status()
    return len(bodies)


def sdk_update(url: str, token: str, bodies: dict[int, dict]) -> int:
    client = sdk_client(url, token)
    for sid, body in bodies.items():
        client.sources.update(id=sid, **body).raise_for_status()
    return len(bodies)


# ---- the floor ------------------------------------------------------------------------


def page_offsets(count: int, size: int = PAGE) -> list[int]:
    """The offsets ``Sources.records()`` reads after the first page (each page overlaps the last by a row)."""
    step = size - 1 if size > 1 else size
    return list(range(step, count - (size - step), step))


def _listing(http: requests.Session, pool: ThreadPoolExecutor, url: str) -> Iterator[dict]:
    first = http.get(url + PATH, params={"limit": PAGE, "offset": 0})
    first.raise_for_status()
    page = first.json()
    yield page
    count = page["count"]

    def get(offset: int) -> dict:
        reply = http.get(url + PATH, params={"limit": min(PAGE, count - offset), "offset": offset})
        reply.raise_for_status()
        return reply.json()

    yield from pool.map(get, page_offsets(count))


def floor_fetch(url: str, token: str, max_workers: int) -> list[dict]:
    """Every page of the listing, as decoded JSON."""
    with session(token) as http, ThreadPoolExecutor(max_workers) as pool:
        return list(_listing(http, pool, url))


def floor_update(url: str, token: str, bodies: dict[int, dict], max_workers: int, listing: bool) -> int:
    """The PATCHes, after the listing a conflict check needs when ``listing``."""
    with session(token) as http, ThreadPoolExecutor(max_workers) as pool:
        if listing:
            for _ in _listing(http, pool, url):
                pass

        def patch(item: tuple[int, dict]) -> dict:
            reply = http.patch(f"{url}{PATH}{item[0]}/", json=item[1])
            reply.raise_for_status()
            return reply.json()

        return sum(1 for _ in pool.map(patch, bodies.items()))


def floor_writes(
    url: str,
    token: str,
    max_workers: int,
    *,
    posts: Sequence[dict] = (),
    patches: dict[int, dict] | None = None,
    listing: bool = False,
    relisting: Sequence[tuple[int, int]] = (),
) -> int:
    """The POSTs and PATCHes, all at once (after the whole listing when ``listing``). With
    ``relisting`` (pages as ``(limit, offset)``), those pages are asked for too, queued ahead of
    the writes in the same pool: the requests of a sync that reads its scope again to check
    for conflicts."""
    with session(token) as http, ThreadPoolExecutor(max_workers) as pool:
        if listing:
            for _ in _listing(http, pool, url):
                pass

        def send(item: tuple[str, str, dict | None]) -> dict:
            reply = http.request(item[0], item[1], json=item[2])
            reply.raise_for_status()
            return reply.json()

        work: list[tuple[str, str, dict | None]] = [
            ("GET", f"{url}{PATH}?limit={limit}&offset={offset}", None) for limit, offset in relisting
        ]
        work += [("POST", url + PATH, body) for body in posts]
        work += [("PATCH", f"{url}{PATH}{sid}/", body) for sid, body in (patches or {}).items()]
        return sum(1 for _ in pool.map(send, work))
