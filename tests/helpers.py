"""Small helpers for driving Huddle through the official MCP client in tests."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
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

    def start(self) -> ServerProcess:
        self.log_path = self.data_dir.parent / f"server-{time.monotonic_ns()}.log"
        command = server_command(self.data_dir, self.repo, *self.extra_args, mqtt_port=self.mqtt_port)
        self.process, url = start_server(
            command, self.data_dir, self.log_path, timeout_s=STARTUP_TIMEOUT_S, env=self.env
        )
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
