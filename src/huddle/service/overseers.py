"""The reserved `human:` agent ids and the dashboard credential that unlocks them (SPEC F-74).

Its own module because both agents.py (registering) and oversight.py (releasing) check it, and
oversight.py already imports agents.py. The edge (transports/dashboard.py) sets
`overseer_credential` for a request that carried the server's dashboard secret; anything else
(MCP, hooks, stdio, REST without the cookie) runs with it False.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from huddle.errors import Forbidden

OVERSEER_PREFIX = "human:"

# True only while a request that carried the dashboard credential is being served (set at the edge).
overseer_credential: ContextVar[bool] = ContextVar("overseer_credential", default=False)


@contextlib.contextmanager
def acting_as_dashboard() -> Iterator[None]:
    """Marks the calls made inside as coming from the dashboard (the REST edge, or in-process code)."""
    token = overseer_credential.set(True)
    try:
        yield
    finally:
        overseer_credential.reset(token)


def require_dashboard(field: str, ident: str) -> None:
    """Forbidden unless the current call carries the dashboard credential."""
    if not overseer_credential.get():
        raise Forbidden(
            f"{field} {ident!r}: ids starting with {OVERSEER_PREFIX!r} are reserved for people at the"
            " dashboard, and overseer actions are only available from it; agents use their own id",
            field=field,
        )
