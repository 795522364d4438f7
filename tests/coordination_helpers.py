"""Helpers for the lock, message, context and task tests: agents, events to wait on, many MCP sessions."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from mcp import Client

from huddle.bus.memory import Subscription
from huddle.domain.events import Event
from huddle.service.coordinator import Coordinator

WAIT_S = 10


async def register(coordinator: Coordinator, *names: str) -> None:
    for name in names:
        await coordinator.agents.register(name, agent_id=name)


def watch(coordinator: Coordinator, kind: str, **match: Any) -> Subscription:
    """Subscribes to committed events of `kind` whose data contains `match` (subscribe before acting)."""

    def accept(event: Event) -> bool:
        return event.kind == kind and all(event.data.get(k) == v for k, v in match.items())

    return coordinator.bus.subscribe(accept)


async def next_event(subscription: Subscription, timeout: float = WAIT_S) -> Event:
    with anyio.fail_after(timeout):
        event = await subscription.next_event()
    assert event is not None
    return event


async def until(predicate: Callable[[], Any], timeout: float = WAIT_S) -> None:
    """Waits for a condition that no event announces (yields to the loop between checks)."""
    with anyio.fail_after(timeout):
        while not await predicate():
            await anyio.sleep(0.005)


async def event_count(coordinator: Coordinator) -> int:
    return await coordinator.updates.latest_cursor()


@contextlib.asynccontextmanager
async def mcp_sessions(url: str, count: int) -> AsyncIterator[list[Client]]:
    """`count` independent MCP sessions to one server (entered and left in this task)."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for _ in range(count)]
        yield clients
