"""Shared fixtures: a real Huddle server process on a free port, and an in-process coordinator.

`huddle_server` starts `huddle server start --port 0` exactly as a user would and reads the port
from the data dir's server.json; `restart()` stops it and starts it again on the same data dir.
`coordinator` is the service API for logic tests without HTTP, run twice: on a fresh SQLite file
and on a fresh PostgreSQL database (the storage contract holds on both backends).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers import ServerProcess, make_coordinator
from huddle.service.coordinator import Coordinator
from postgres_helpers import migrated_database


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


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """Settings overrides selecting a backend: nothing for SQLite, an empty migrated database for PostgreSQL."""
    if request.param == "sqlite":
        yield {}
        return
    with migrated_database() as url:
        yield {"db_url": url}


@pytest.fixture
async def coordinator(tmp_path: Path, repo: Path, backend: dict[str, str]) -> AsyncIterator[Coordinator]:
    """The service API on a fresh database of each backend, with the sweeper running."""
    coord = make_coordinator(tmp_path, repo, **backend)
    await coord.start()
    try:
        yield coord
    finally:
        await coord.stop()
