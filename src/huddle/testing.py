"""Helpers shared by Huddle's tests and benchmarks (and usable by anyone testing against Huddle).

Only what a test and a benchmark both need lives here, so that the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

# The MCP revision raw requests speak (the official client negotiates its own).
PROTOCOL_VERSION = "2025-11-25"
# What a streamable-HTTP MCP request must accept.
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


def initialize_request(client: str = "raw", request_id: int = 1) -> dict[str, Any]:
    """A well-formed MCP `initialize` body, for raw HTTP callers that must misbehave in ways the
    official client cannot (hostile bodies, abandoned sessions, foreign Origins)."""
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "initialize",
        "params": {
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": client, "version": "1"},
        },
    }
