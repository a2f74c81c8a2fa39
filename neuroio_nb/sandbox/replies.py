"""What the sandbox answers: replies, and the API's error format.

Every status >= 400 carries ``{"error_codes": [...], "message": ..., "fields": [...]}``,
as NeuroIO's API does; only the injected proxy page (502) is HTML.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: Error codes. 1001, 1002 and 1004 are the API's; the others are the sandbox's own.
INTERNAL = 1000
VALIDATION = 1001
AUTH = 1002
NOT_FOUND = 1004
THROTTLED = 1005
UNAVAILABLE = 1006


@dataclass(frozen=True)
class Reply:
    """An HTTP answer; ``status`` None means "close the connection, answer nothing"."""

    status: int | None
    body: bytes = b""
    content_type: str | None = None
    headers: tuple[tuple[str, str], ...] = ()


DROP = Reply(None)


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    return Reply(status, json.dumps(payload).encode(), "application/json", headers)


def error_reply(
    status: int,
    code: int,
    message: str,
    fields: Iterable[dict[str, Any]] = (),
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    payload = {"error_codes": [code], "message": message, "fields": list(fields)}
    return json_reply(status, payload, headers)


def field_error(name: str, message: str) -> dict[str, Any]:
    return {"name": name, "message": message, "error_code": VALIDATION}


class ApiFailure(Exception):
    """Raised inside the sandbox to answer with an error (never escapes to users)."""

    def __init__(self, status: int, code: int, message: str, fields: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = list(fields)

    @classmethod
    def invalid(cls, fields: Iterable[dict[str, Any]]) -> ApiFailure:
        return cls(400, VALIDATION, "Validation failed", fields)

    @classmethod
    def not_found(cls) -> ApiFailure:
        return cls(404, NOT_FOUND, "Not found.")

    def reply(self) -> Reply:
        return error_reply(self.status, self.code, self.message, self.fields)

    def describe(self) -> str:
        """One line per field problem, for errors raised to Python callers."""
        return "; ".join([self.message] + [f"{f['name']}: {f['message']}" for f in self.fields])
