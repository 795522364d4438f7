"""Token mode's rule for every operation, applied to MCP and REST alike: an agent acts only as itself.

An operation's acting argument (`agent_id`; `from_agent` for send_message) left out is filled with
the caller's id; naming another agent is a 403 that says so. Reading another agent's inbox
(get_updates, list_messages, wait_for_message…) is acting as it, so it is refused the same way.
Open mode (no principal) and in-process calls are untouched; an admin token acts for anyone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from huddle.domain.principal import DASHBOARD, Principal, acting_as, current_principal
from huddle.errors import Forbidden
from huddle.service.overseers import acting_as_dashboard
from huddle.transports.operation import Operation

# The operation whose acting agent is not called `agent_id`.
ACTING_ARGUMENT = {"send_message": "from_agent", "force_release_lock": "overseer_id"}
# Operations that show every agent's events, private messages included: for people and admins only.
EVERYONES_EVENTS = frozenset({"list_events"})
# Operations where `agent_id` picks whose records to look at (public board information), not who acts.
SUBJECT_ARGUMENT = frozenset(
    {"get_agent", "list_intents", "list_threads", "list_locks", "get_session_files", "query_context"}
)


def acting_argument(op: Operation, parameters: list[str]) -> str | None:
    """The argument naming the agent an operation acts as (None: it acts as nobody in particular)."""
    if op.name in SUBJECT_ARGUMENT:
        return None
    name = ACTING_ARGUMENT.get(op.name, "agent_id")
    return name if name in parameters else None


def authorize(op: Operation, acting: str | None, args: dict[str, Any]) -> None:
    """Token mode's rule for one call, in place on `args`: the caller acts only as itself.

    Open mode (no principal) and in-process calls are untouched. An admin token may act for anyone.
    """
    principal = current_principal.get()
    if principal is None or principal.is_admin:
        return
    if principal.read_only and not op.read_only:
        raise Forbidden(f"{op.name} changes state, and this token may only read (scope read); ask for an agent token")
    if op.name in EVERYONES_EVENTS and not principal.sees_everything:
        raise Forbidden(
            f"{op.name} shows every agent's events, private messages included: it needs a dashboard or admin"
            " token; your own events come from get_updates"
        )
    if acting is None:
        return
    declared = args.get(acting)
    if declared is None:
        args[acting] = principal.agent_id
    elif declared != principal.agent_id:
        raise Forbidden(
            f"you are signed in as {principal.agent_id!r} and may act only as yourself, not as {declared!r};"
            f" leave {acting} out or pass your own id",
            field=acting,
        )


@contextlib.contextmanager
def running_as(principal: Principal) -> Iterator[None]:
    """Runs the calls made inside as `principal` — and, for a person at the dashboard (scope
    dashboard), with the overseer credential open mode's dashboard cookie gives (service/overseers.py)."""
    with acting_as(principal):
        if DASHBOARD in principal.scopes:
            with acting_as_dashboard():
                yield
        else:
            yield
