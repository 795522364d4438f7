"""`huddle server start` as a user runs it: settings from flags and env, clear failures."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import httpx


def huddle(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "huddle.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_a_taken_port_is_a_clear_message_and_exit_1_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = huddle("server", "start", "--port", str(port), "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--port" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_setting_in_the_environment_is_a_clear_message(tmp_path: Path) -> None:
    result = huddle("server", "start", "--data-dir", str(tmp_path), env={"HUDDLE_MAX_ROUNDS": "many"})
    assert result.returncode == 1
    assert "max_rounds must be a int" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_reach_the_running_server_from_the_environment(server_factory, tmp_path: Path) -> None:
    server = server_factory(env={"HUDDLE_PROJECT": "shop"})
    health = httpx.get(server.url + "/health").json()
    assert health["project"] == "shop"
    runtime = json.loads((server.data_dir / "server.json").read_text())
    assert runtime["mcp_url"] == server.mcp_url


def test_help_lists_the_server_flags() -> None:
    result = huddle("server", "start", "--help")
    assert result.returncode == 0
    for flag in ("--host", "--port", "--data-dir", "--repo", "HUDDLE_PORT"):
        assert flag in result.stdout


def test_a_command_group_without_its_action_shows_that_groups_help() -> None:
    result = huddle("server")
    assert result.returncode == 2
    assert "usage: huddle server" in result.stdout and "start" in result.stdout
