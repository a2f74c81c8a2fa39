"""Shared fixtures: a sandbox server on loopback and a client for it."""
from __future__ import annotations

from typing import Callable, Iterator

import pytest

from neuroio_nb import Client
from neuroio_nb.sandbox import Sandbox


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
