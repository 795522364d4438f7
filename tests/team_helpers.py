"""Three real Huddle servers acting as one (issue 9): `huddle server start` three times on one fresh
PostgreSQL database and one repository, each with its own data dir and port, all publishing to the
machine's Mosquitto (127.0.0.1:1883) under one topic root of their own.

`three_instances` is shared by a module's tests (three servers take seconds each to start on a
loaded two-core machine), so its tests use names of their own, and a test that kills an instance
comes last in its module.

The drivers the tests run (races, tails, crashes) live in benchmarks/proof/_team.py (on pytest's
pythonpath), shared with the many-round proof `benchmarks/proof/cluster_team.py`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import ServerProcess
from postgres_helpers import fresh_database
from push_helpers import accepts

MOSQUITTO_PORT = 1883
# Three servers starting at once on two busy cores: far more than one needs alone.
TEAM_STARTUP_TIMEOUT_S = 120.0


@dataclass
class Team:
    db_url: str
    topic_root: str
    servers: list[ServerProcess]

    @property
    def urls(self) -> list[str]:
        return [server.url for server in self.servers]

    def kill(self, index: int) -> None:
        """kill -9 one instance: no shutdown, no cleanup, its connections cut mid-request."""
        self.servers[index].kill()

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.servers)) as pool:
            list(pool.map(lambda server: server.stop(), self.servers))


def require_mosquitto() -> None:
    """The machine's Mosquitto must answer on 1883: skipped locally without it, a failure in CI."""
    if accepts(MOSQUITTO_PORT):
        return
    reason = f"no MQTT broker on 127.0.0.1:{MOSQUITTO_PORT} (team mode publishes to the machine's Mosquitto)"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def start_team(base: Path, db_url: str, count: int = 3) -> Team:
    """`count` servers on `db_url` and one repository under `base`, started at once."""
    repo = base / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    root = f"huddle-test/{uuid.uuid4().hex[:10]}"
    args = ["--db-url", db_url, "--mqtt-url", f"mqtt://127.0.0.1:{MOSQUITTO_PORT}", "--topic-root", root]
    servers = [
        ServerProcess(base / f"instance{i + 1}" / "data", repo, list(args), mqtt_port=None) for i in range(count)
    ]
    team = Team(db_url, root, servers)
    with ThreadPoolExecutor(count) as pool:
        started = [pool.submit(server.start, TEAM_STARTUP_TIMEOUT_S) for server in servers]
        failures = [f.exception() for f in started if f.exception() is not None]
    if failures:
        team.stop()
        raise RuntimeError(f"{len(failures)} of {count} instances did not start: {failures[0]}")
    return team


@pytest.fixture(scope="module")
def three_instances(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """Three instances for a module's tests (a test that kills one comes last)."""
    with fresh_database() as url:
        team = start_team(tmp_path_factory.mktemp("team"), url)
        try:
            yield team
        finally:
            team.stop()
