"""Small helpers for driving Huddle through the official MCP client in tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from huddle.bus.memory import MemoryBus
from huddle.service.coordinator import Coordinator
from huddle.settings import load_settings
from huddle.storage.sqlite import SqliteStore


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


def make_coordinator(tmp_path: Path, repo: Path, **overrides: Any) -> Coordinator:
    """A Coordinator with custom settings (start/stop it yourself)."""
    base: dict[str, Any] = {"data_dir": str(tmp_path / "data"), "repo": str(repo), "sweep_interval_s": 0.05}
    settings = load_settings({**base, **overrides}, environ={})
    return Coordinator(SqliteStore(settings.sqlite_path, settings.project_key), MemoryBus(), settings)
