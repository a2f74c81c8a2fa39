"""Shared fixtures: a sandbox server on loopback and a client for it."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest

from neuroio_nb import Client
from neuroio_nb.sandbox import Sandbox


@pytest.fixture(autouse=True, scope="session")
def journal_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Every test (and every process it starts) journals into a temporary folder, never the user's."""
    folder = tmp_path_factory.mktemp("journal")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEUROIO_NB_JOURNAL", str(folder))
        yield folder


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes with the given knobs; all are stopped after the test."""
    started: list[Sandbox] = []

    def make(**knobs) -> Sandbox:
        sb = Sandbox(**knobs).start()
        started.append(sb)
        return sb

    yield make
    for sb in started:
        sb.stop()


@pytest.fixture
def sandbox(make_sandbox) -> Sandbox:
    return make_sandbox(sources=120)


@pytest.fixture
def client_for() -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(sb: Sandbox, **options) -> Client:
        options.setdefault("max_retries", 8)
        c = Client(sb.token, sb.url, **options)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def client(sandbox, client_for) -> Client:
    return client_for(sandbox)


@pytest.fixture
def churn() -> Callable[..., list[int]]:
    """``churn(sb, {n: action})`` runs ``action(sb)`` as the n-th listing request arrives,
    as another user adding or deleting sources while a listing is read; returns the ids the
    actions say they added."""

    def start(sb: Sandbox, at: dict[int, Callable[[Sandbox], list[int] | None]]) -> list[int]:
        seen = {"n": 0}
        added: list[int] = []
        lock = threading.Lock()

        def hook(method: str, path: str) -> None:
            if method == "GET" and path == "/v1/sources/":
                with lock:
                    seen["n"] += 1
                    action = at.get(seen["n"])
                    if action is not None:
                        added.extend(action(sb) or [])

        sb.before_request = hook
        return added

    return start
