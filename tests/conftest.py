"""Shared fixtures: a real Huddle server process on a free port, and an in-process coordinator.

`huddle_server` starts `huddle server start --port 0` exactly as a user would and reads the port
from the data dir's server.json; `restart()` stops it and starts it again on the same data dir.
`coordinator` is the service API on a fresh SQLite file, for logic tests without HTTP.
"""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from helpers import make_coordinator
from huddle.service.coordinator import Coordinator

STARTUP_TIMEOUT_S = 20


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: Any) -> None:
    """Every async test runs on asyncio through anyio's plugin, without a marker on each."""
    if collector.funcnamefilter(name) and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty directory standing in for the coordinated repository."""
    path = tmp_path / "repo"
    path.mkdir()
    return path


@dataclass
class ServerProcess:
    data_dir: Path
    repo: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
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
        runtime = self.data_dir / "server.json"
        runtime.unlink(missing_ok=True)
        self.log_path = self.data_dir.parent / f"server-{time.monotonic_ns()}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "huddle.cli.main", "server", "start", "--port", "0",
                "--mqtt-port", "0",
                "--data-dir", str(self.data_dir), "--repo", str(self.repo), *self.extra_args]
        env = {**os.environ, "HUDDLE_LOG_LEVEL": "WARNING", **self.env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"huddle exited with {self.process.returncode}: {self.log()}")
            if runtime.exists():
                try:
                    self.port = json.loads(runtime.read_text())["port"]
                    if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                        return self
                except (ValueError, KeyError, httpx.HTTPError):
                    pass
            time.sleep(0.05)
        raise RuntimeError(f"huddle did not become healthy in {STARTUP_TIMEOUT_S}s: {self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
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


@pytest.fixture
def server_factory(tmp_path: Path, repo: Path) -> Iterator[Any]:
    """Starts real servers: `server_factory(*extra_args, env={...})`; all stop at teardown."""
    started: list[ServerProcess] = []

    def start(*extra_args: str, env: dict[str, str] | None = None, data_dir: Path | None = None) -> ServerProcess:
        server = ServerProcess(data_dir or tmp_path / f"data{len(started)}", repo, list(extra_args), env or {})
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def huddle_server(server_factory: Any) -> ServerProcess:
    """One real server on a free port, on a fresh data dir."""
    server: ServerProcess = server_factory()
    return server


@pytest.fixture
async def coordinator(tmp_path: Path, repo: Path) -> AsyncIterator[Coordinator]:
    """The service API on a fresh SQLite database, with the sweeper running."""
    coord = make_coordinator(tmp_path, repo)
    await coord.start()
    try:
        yield coord
    finally:
        await coord.stop()
