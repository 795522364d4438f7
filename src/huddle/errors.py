"""One error hierarchy for every layer.

Each error carries a machine `code` and an HTTP `status`; every transport renders it once
(MCP `ToolError`, REST `{ok: false, error, code}`, CLI stderr + exit 1). Messages are written
for the agent that reads them: they say what happened and what to do next.
"""

from __future__ import annotations

import math
from typing import Any


def escape_surrogates(text: str) -> str:
    """`text` with any lone surrogate written as its escape (`\\ud800`).

    Messages echo what a caller sent, and JSON may carry a lone surrogate that no UTF-8 response
    (REST's JSON, MCP's JSON-RPC) or log line can encode: answering about it must not fail.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class HuddleError(Exception):
    """Base of every error Huddle reports to a caller on purpose."""

    code = "error"
    status = 400

    def __init__(self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None):
        message = escape_surrogates(message)
        super().__init__(message)
        self.message = message
        self.field = None if field is None else escape_surrogates(field)
        self.details = details or {}

    @property
    def http_headers(self) -> dict[str, str]:
        """Headers an HTTP response carrying this error needs (e.g. Retry-After on a 429)."""
        return {}

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.message, "code": self.code}
        if self.field:
            body["field"] = self.field
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(HuddleError):
    """The request itself is wrong: a missing, mistyped, oversized or out-of-range field."""

    code = "invalid_input"
    status = 422


class NotFound(HuddleError):
    """A referenced agent, intent, thread, lock or task does not exist."""

    code = "not_found"
    status = 404


class Forbidden(HuddleError):
    """The caller is known but not allowed to do this (e.g. a non-participant approving)."""

    code = "forbidden"
    status = 403


class Conflict(HuddleError):
    """The request is valid but clashes with the current state (e.g. a thread already resolved)."""

    code = "conflict"
    status = 409


class LockHeld(Conflict):
    """A path is held by another agent in an incompatible mode."""

    code = "lock_held"


class Unavailable(HuddleError):
    """A dependency (database, broker) cannot serve the request right now."""

    code = "unavailable"
    status = 503


class RateLimited(HuddleError):
    """Too many requests: the caller should wait `retry_after_s` seconds (HTTP 429 + Retry-After)."""

    code = "rate_limited"
    status = 429

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float,
        field: str | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(message, field=field, details={**(details or {}), "retry_after_s": round(retry_after_s, 3)})
        self.retry_after_s = retry_after_s

    @property
    def retry_after_header(self) -> str:
        """The `Retry-After` value: whole seconds, rounded up, at least 1 (RFC 9110 allows no fractions)."""
        return str(max(1, math.ceil(self.retry_after_s)))

    @property
    def http_headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after_header}


class LockedOut(RateLimited):
    """Too many bad tokens or secrets from one client or for one agent: refused until the lockout ends."""

    code = "locked_out"
