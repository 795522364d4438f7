"""Small helpers for driving Huddle through the official MCP client in tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp import Client

from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.base import Store
from huddle.storage.postgres import PostgresStore
from huddle.storage.sqlite import SqliteStore
from huddle.testing import server_command, start_server, stop_server


class ToolFailed(AssertionError):
    pass


async def call(client: Client, tool: str, **args: Any) -> dict[str, Any]:
    """Calls a tool and returns its structured result; a tool error fails the test with its text."""
    result = await client.call_tool(tool, args)
    if result.is_error:
        raise ToolFailed(f"{tool} failed: {result.content[0].text}")  # type: ignore[union-attr]
    assert result.structured_content is not None
    return result.structured_content


async def call_error(client: Client, tool: str, **args: Any) -> str:
    """Calls a tool that must fail and returns the error text the agent would read."""
    result = await client.call_tool(tool, args)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return str(result.content[0].text)  # type: ignore[union-attr]


# Scenario S1 (SPEC.md): what each agent's get_updates shows of the consultation, in order.
S1_EXCHANGE = [
    "thread.opened",
    "thread.message",
    "thread.message",
    "thread.proposal",
    "thread.status",
    "thread.approval",
    "thread.status",
]


async def s1_consultation(
    alice: Client,
    bob: Client,
    *,
    names: tuple[str, str] = ("alice", "bob"),
    path: str = "src/models/user.ts",
    after_step: Callable[[str], Awaitable[None]] | None = None,
) -> str:
    """Scenario S1 through two agents' own MCP clients: both announce work on the same file, the
    consultation opens, they talk, bob proposes, alice approves; returns the resolved thread's id.

    `after_step(actor)` runs after each step that changes the thread (for checks in between)."""
    a, b = names

    async def step(actor: str) -> None:
        if after_step is not None:
            await after_step(actor)

    await call(alice, "register_agent", name=a)
    await call(bob, "register_agent", name=b)
    first = await call(alice, "announce_work", agent_id=a, subject="add updated_at", target_files=[path])
    assert first["verdict"] == "proceed"
    second = await call(
        bob, "announce_work", agent_id=b, subject="migrate user schema", target_files=[path, "migrations/004.sql"]
    )
    assert second["verdict"] == "consult"
    [impact] = second["impacts"]
    assert (impact["agent_id"], impact["score"], impact["category"]) == (a, 100, "concerned")
    assert impact["evidence"][0]["layer"] == "0a"
    thread_id = str(second["thread_id"])
    await step(b)
    thread = await call(alice, "get_thread", thread_id=thread_id)
    assert thread["expected_respondents"] == [a]
    assert thread["initiator"] == b
    await call(
        alice,
        "post_to_thread",
        thread_id=thread_id,
        agent_id=a,
        type="context",
        content="adding updated_at; land my field first",
    )
    await step(a)
    await call(
        bob, "post_to_thread", thread_id=thread_id, agent_id=b, type="question", content="ok if I wait for your commit?"
    )
    await step(b)
    await call(
        bob, "propose_resolution", thread_id=thread_id, agent_id=b, summary=f"{a} lands updated_at first, {b} after"
    )
    await step(b)
    approved = await call(alice, "approve_resolution", thread_id=thread_id, agent_id=a)
    assert approved["status"] == "resolved"
    await step(a)
    return thread_id


def make_coordinator(
    tmp_path: Path, repo: Path, *, clock: Callable[[], float] = time.time, **overrides: Any
) -> Coordinator:
    """A Coordinator with custom settings (start/stop it yourself); `clock` is the time its transactions see.

    With `db_url=` (a database from postgres_helpers.fresh_database) it runs on PostgreSQL.
    """
    base: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "repo": str(repo), "sweep_interval_s": 0.05}
    settings = load_settings({**base, **overrides}, environ={})
    store: Store
    if settings.db_url:
        store = PostgresStore(settings.db_url, settings.project_key, clock=clock, poll_s=0.2)
    else:
        store = SqliteStore(settings.sqlite_path, settings.project_key, clock=clock)
    return Coordinator(store, MemoryBus(), settings)


class ManualClock:
    """A clock that only moves when told: TTLs and timeouts pass by `advance`, never by sleeping."""

    def __init__(self, start: float = 1_800_000_000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


STARTUP_TIMEOUT_S = 20


@dataclass
class ServerProcess:
    data_dir: Path
    repo: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    mqtt_port: str | None = "0"  # None: leave the MQTT port to the server's settings
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return self.url + "/mcp"

    def start(self, timeout_s: float = STARTUP_TIMEOUT_S) -> ServerProcess:
        self.log_path = self.data_dir.parent / f"server-{time.monotonic_ns()}.log"
        command = server_command(self.data_dir, self.repo, *self.extra_args, mqtt_port=self.mqtt_port)
        self.process, url = start_server(command, self.data_dir, self.log_path, timeout_s=timeout_s, env=self.env)
        self.port = int(url.rsplit(":", 1)[1])
        return self

    def stop(self) -> None:
        stop_server(self.process, timeout_s=10)
        self.process = None

    def kill(self) -> None:
        """Simulates a crash: no shutdown, no cleanup."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def restart(self) -> ServerProcess:
        self.stop()
        return self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:] if self.log_path and self.log_path.exists() else ""
