"""HTTP plumbing: a threaded HTTP/1.1 keep-alive server around one callable.

The callable (the :class:`~neuroio_nb.sandbox.Sandbox`) turns a :class:`Request`
into a :class:`~neuroio_nb.sandbox.replies.Reply`; this module only reads and
writes bytes, so everything the API means lives elsewhere.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .replies import VALIDATION, Reply, error_reply


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    authorization: str | None
    user_agent: str | None
    body: bytes
    #: Every header as received, in order (an echoing error page shows them).
    headers: tuple[tuple[str, str], ...] = ()
    #: False when the connection ended before ``Content-Length`` bytes of body came (a
    #: client killed while sending): a real server drops such a request unprocessed.
    complete: bool = True


App = Callable[[Request], Reply]


class SandboxServer(ThreadingHTTPServer):
    """Serves ``app``; closes every open connection when closed itself."""

    daemon_threads = True
    # Keep-alive connections would make server_close() wait for their threads.
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, tls: tuple[str, str] | None = None) -> None:
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        if tls is not None:  # HTTPS: the handshake happens in the connection's thread, not in accept()
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks the host up in DNS (getfqdn): slow, and not needed.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self._connections_lock:
            (self._connections.add if open_ else self._connections.discard)(connection)

    @property
    def open_connections(self) -> int:
        """How many client connections are open now."""
        with self._connections_lock:
            return len(self._connections)

    def server_close(self) -> None:
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet about clients that went away; report anything else."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, the second
    # waits for the client's delayed ACK (40 ms on Linux) on every request.
    disable_nagle_algorithm = True
    #: Idle keep-alive connections end after this many seconds.
    timeout = 120
    server: SandboxServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    def _serve(self) -> None:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._write(error_reply(411, VALIDATION, "Chunked bodies are not supported."))
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._write(error_reply(400, VALIDATION, "Bad Content-Length."))
            return
        body = self.rfile.read(length) if length else b""
        reply = self.server.app(
            Request(
                self.command,
                self.path,
                self.headers.get("Authorization"),
                self.headers.get("User-Agent"),
                body,
                tuple(self.headers.items()),
                complete=len(body) == length,
            )
        )
        if reply.status is None:
            self.close_connection = True
            return
        self._write(reply)

    def _write(self, reply: Reply) -> None:
        assert reply.status is not None
        self.send_response(reply.status)
        for name, value in reply.headers:
            self.send_header(name, value)
        if reply.content_type:
            self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve
