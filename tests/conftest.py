"""Shared fixtures: a real Huddle server process on a free port, and an in-process coordinator.

`huddle_server` starts `huddle server start --port 0` exactly as a user would and reads the port
from the data dir's server.json; `restart()` stops it and starts it again on the same data dir.
`coordinator` is the service API for logic tests without HTTP, run twice: on a fresh SQLite file
and on a fresh PostgreSQL database (the storage contract holds on both backends). Server tests
marked `both_backends` run twice too: their servers start with `--db-url` of a fresh database.
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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "both_backends: run the test's Huddle servers on SQLite and on PostgreSQL (--db-url)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_backends"):
        metafunc.parametrize("server_backend", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def server_backend(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """The --db-url the test's servers use: None (SQLite in the data dir) unless marked `both_backends`."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield None
        return
    with migrated_database() as url:
        yield url


@pytest.fixture
def server_factory(tmp_path: Path, repo: Path, server_backend: str | None) -> Iterator[Any]:
    """Starts real servers: `server_factory(*extra_args, env={...})`; all stop at teardown.

    On PostgreSQL (`server_backend`) every server of the test shares the database, as a restart or
    another instance of the same team would.
    """
    started: list[ServerProcess] = []

    def start(*extra_args: str, env: dict[str, str] | None = None, data_dir: Path | None = None) -> ServerProcess:
        args = list(extra_args)
        if server_backend is not None and "--db-url" not in args:
            args += ["--db-url", server_backend]
        server = ServerProcess(data_dir or tmp_path / f"data{len(started)}", repo, args, env or {})
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
