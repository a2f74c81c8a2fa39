"""The sandbox for the benchmarks, in a process of its own.

A real NeuroIO server does not share the client's interpreter. Run in the
benchmark's own process, the sandbox's request handling (HTTP parsing, copying
and JSON-encoding pages) would compete with the client for the GIL and be
charged to whichever contender happens to be running. So it runs in a child
process, driven through a pipe: ``restart`` gives a fresh server (the
original sources again, a new port), ``log`` what it saw since then, ``call``
changes the state as another user would.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Seen:
    """One request the server saw (a slim :class:`neuroio_nb.sandbox.RequestRecord`)."""

    method: str
    path: str
    params: dict[str, str]
    body: Any
    status: int | None
    started: float
    ended: float


def _serve(conn: Any, knobs: dict[str, Any]) -> None:
    from neuroio_nb.sandbox import Sandbox, generate_sources

    if isinstance(knobs.get("sources"), int):  # generated once; each restart starts from a copy
        knobs = {**knobs, "sources": generate_sources(knobs["sources"], knobs.get("seed", 0))}
    sandbox = Sandbox(**knobs).start()
    try:
        while True:
            command = conn.recv()
            if isinstance(command, tuple):  # ("call", method name, args, kwargs): change the state
                _, name, args, kwargs = command
                conn.send(getattr(sandbox, name)(*args, **kwargs))
            elif command == "restart":
                sandbox.stop()
                sandbox = Sandbox(**knobs).start()
                conn.send((sandbox.url, sandbox.token))
            elif command == "clear":
                sandbox.clear_log()
                conn.send(None)
            elif command == "log":
                conn.send([Seen(r.method, r.path, r.params, r.body, r.status, r.started, r.ended) for r in sandbox.log])
            elif command == "address":
                conn.send((sandbox.url, sandbox.token))
            else:  # "stop"
                conn.send(None)
                return
    finally:
        sandbox.stop()


class SandboxProcess:
    """``Sandbox(**knobs)`` served from a child process.

    with SandboxProcess(sources=2000, latency=0.02) as server:
        client = Client(server.token, server.url)
    """

    def __init__(self, **knobs: Any) -> None:
        self.knobs = knobs
        self._conn: Any = None
        self._process: Any = None
        self.url = self.token = ""

    def __enter__(self) -> SandboxProcess:
        context = mp.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self.knobs), daemon=True)
        self._process.start()
        self.url, self.token = self._ask("address")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._ask("stop")
        finally:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.terminate()

    def _ask(self, command: Any) -> Any:
        self._conn.send(command)
        return self._conn.recv()

    def restart(self) -> None:
        """A fresh server: the original sources, an empty log."""
        self.url, self.token = self._ask("restart")

    def clear(self) -> None:
        self._ask("clear")

    def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``sandbox.method(*args, **kwargs)`` in the child: another user changing sources."""
        return self._ask(("call", method, args, kwargs))

    def log(self) -> list[Seen]:
        return self._ask("log")
