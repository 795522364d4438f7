"""Helpers shared by Huddle's tests and benchmarks (and usable by anyone testing against Huddle):
raw MCP requests, and a real `huddle server start` process to run them against.

Only what a test and a benchmark both need lives here, so that the two cannot drift apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

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


def server_command(data_dir: Path, repo: Path, *extra: str, port: int = 0, mqtt_port: str | None = "0") -> list[str]:
    """The argv of `huddle server start` on `data_dir` and `repo` (port 0: a free one)."""
    mqtt = ["--mqtt-port", mqtt_port] if mqtt_port is not None else []
    return [
        sys.executable,
        "-m",
        "huddle.cli.main",
        "server",
        "start",
        "--port",
        str(port),
        *mqtt,
        "--data-dir",
        str(data_dir),
        "--repo",
        str(repo),
        *extra,
    ]


def start_server(
    command: list[str], data_dir: Path, log_path: Path, *, timeout_s: float, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Starts `command` (see server_command) and returns it with its URL once /health answers.

    Output goes to `log_path` (appended), never to a pipe: nobody reads a pipe while the server
    runs, and one that fills (~64 KB) blocks the server on its next log line. The URL is taken from
    the server.json this process wrote (an old one, left by a kill -9, names a dead port).
    Raises RuntimeError with the log's tail when the server exits or does not become healthy.
    """
    runtime = data_dir / "server.json"
    runtime.unlink(missing_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    full_env = {**os.environ, "HUDDLE_LOG_LEVEL": "WARNING", **(env or {})}
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=full_env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"huddle exited with {process.returncode} (log {log_path}): {log_tail(log_path)}")
        with contextlib.suppress(ValueError, KeyError, OSError, httpx.HTTPError):
            info = json.loads(runtime.read_text())
            if info.get("pid") in (None, process.pid):
                url = f"http://127.0.0.1:{info['port']}"
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    return process, url
        time.sleep(0.05)  # polling a file another process writes
    stop_server(process)
    raise RuntimeError(f"huddle did not become healthy within {timeout_s:g} s (log {log_path}): {log_tail(log_path)}")


def stop_server(process: subprocess.Popen[bytes] | None, timeout_s: float = 15) -> None:
    """A clean stop (SIGINT, as Ctrl-C; SIGCONT first in case it was frozen), else SIGKILL."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGCONT)
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def log_tail(log_path: Path, limit: int = 4000) -> str:
    """The end of a server log, for an error message."""
    return log_path.read_bytes()[-limit:].decode(errors="replace") if log_path.exists() else "(no log)"
