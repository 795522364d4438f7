"""Who is calling: one `Principal` per request, resolved once at the edge (SPEC F-90 … F-95).

Every transport turns its request into a principal before any operation runs: the HTTP edge from
a bearer token or the dashboard's session cookie (transports/auth.py), the MCP server from the
request its message arrived with, the MQTT broker from the CONNECT password. Services and the
operation layer read it from `current_principal`; they never trust a declared `agent_id` in
token mode.

Open mode (the default) resolves no principal at all: `current_principal` stays None and the
declared `agent_id` is who the caller is, exactly as before tokens existed.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

# Scopes a token can carry. `agent`: act as the token's own agent. `read`: read-only tools only
# (CI bots, reporting). `dashboard`: a person at the dashboard (overseer actions, every stream).
# `admin`: everything, on behalf of any agent (the operator's CLI).
AGENT, READ, DASHBOARD, ADMIN = "agent", "read", "dashboard", "admin"
SCOPES = (AGENT, READ, DASHBOARD, ADMIN)
DEFAULT_ORG = "default"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the agent it is, the project and org it belongs to, what it may do."""

    agent_id: str
    project: str
    org: str
    scopes: frozenset[str]
    # The token it presented (`jti`), for audit lines; never the token itself.
    token_id: str = ""
    # What a stream opened with the token re-checks before each delivery (service/credentials.py).
    expires_at: float = math.inf
    epoch: int = 0
    family: str = ""

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.scopes

    @property
    def sees_everything(self) -> bool:
        """Admins and people at the dashboard watch every agent's stream; agents only their own."""
        return ADMIN in self.scopes or DASHBOARD in self.scopes

    @property
    def read_only(self) -> bool:
        return not (self.scopes & {AGENT, DASHBOARD, ADMIN})


# Set at the edge for the duration of one request; None in open mode and for in-process calls.
current_principal: ContextVar[Principal | None] = ContextVar("huddle_principal", default=None)


@contextlib.contextmanager
def acting_as(principal: Principal | None) -> Iterator[None]:
    """Runs the calls made inside as `principal` (the edge, or a test standing in for one)."""
    token = current_principal.set(principal)
    try:
        yield
    finally:
        current_principal.reset(token)
