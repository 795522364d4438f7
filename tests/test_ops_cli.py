"""Operator commands run as a user would (subprocess): doctor, status tables, backup and restore."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from helpers import ServerProcess
from huddle.push.ports import free_port
from postgres_helpers import fresh_database
from test_daemon import huddle


@pytest.fixture
def git_repo(tmp_path: Path) -> Path:
    path = tmp_path / "gitrepo"
    path.mkdir()
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def rest(server: ServerProcess, tool: str, **args: object) -> dict[str, object]:
    body = httpx.post(f"{server.url}/api/v1/tools/{tool}", json=args, timeout=30).json()
    assert body["ok"], body
    return dict(body["result"])


def test_doctor_fails_with_the_start_hint_when_the_server_is_down_and_passes_when_it_is_up(
    tmp_path: Path, git_repo: Path
):
    data = tmp_path / "data"
    data.mkdir()
    # The port this data dir's server would take, free, so a server someone else runs on the
    # default 3100 cannot answer the health check.
    (data / "config.toml").write_text(f"port = {free_port('127.0.0.1')}\n")
    down = huddle("doctor", "--data-dir", str(data), "--repo", str(git_repo))
    assert down.returncode == 1
    assert (
        "FAIL  server" in down.stdout and f"→ start one: huddle server start --daemon --data-dir {data}" in down.stdout
    )
    assert "FAIL  health" in down.stdout

    server = ServerProcess(data, git_repo).start()
    try:
        (git_repo / ".mcp.json").write_text(json.dumps({"mcpServers": {"huddle": {"type": "http", "url": "http://x"}}}))
        wrong = huddle("doctor", "--data-dir", str(data))
        assert wrong.returncode == 1 and "FAIL  client .mcp.json" in wrong.stdout
        assert f"set its huddle url to {server.mcp_url}" in wrong.stdout

        entry = {"mcpServers": {"huddle": {"type": "http", "url": server.mcp_url}}}
        (git_repo / ".mcp.json").write_text(json.dumps(entry))
        up = huddle("doctor", "--data-dir", str(data))
        assert up.returncode == 0, up.stdout
        report = json.loads(
            huddle("doctor", "--json", "--url", server.url, "--repo", str(git_repo), "--data-dir", str(data)).stdout
        )
        names = {c["name"]: c for c in report["checks"]}
        assert report["ok"] and {"config", "data dir", "server", "health", "mcp", "mqtt", "dashboard", "git"} <= set(
            names
        )
        assert "tools listed" in names["mcp"]["detail"] and names["mqtt"]["detail"].startswith("connected")
        assert names["client .mcp.json"]["ok"]
    finally:
        server.stop()


def test_doctor_checks_the_postgresql_database_and_its_schema_version(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()

    def database_check(db_url: str) -> dict[str, object]:
        (data / "config.toml").write_text(f"port = {free_port('127.0.0.1')}\ndb_url = {json.dumps(db_url)}\n")
        report = json.loads(huddle("doctor", "--json", "--data-dir", str(data)).stdout)
        return dict(next(c for c in report["checks"] if c["name"] == "database"))

    with fresh_database() as url:
        empty = database_check(url)
        assert empty["ok"] and "no Huddle schema yet" in str(empty["detail"])
        assert huddle("migrate", "--db-url", url).returncode == 0
        current = database_check(url)
        assert current["ok"] and "(current)" in str(current["detail"])
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM schema_migrations WHERE version = (SELECT MAX(version) FROM schema_migrations)")
        older = database_check(url)
        assert not older["ok"] and "huddle migrate --db-url" in str(older["hint"])
    away = database_check("postgresql://postgres@127.0.0.1:1/nowhere")
    assert not away["ok"] and "cannot connect to PostgreSQL" in str(away["detail"]) and "db_url" in str(away["hint"])


def test_doctor_says_when_the_repository_is_not_a_git_repository(huddle_server: ServerProcess):
    result = huddle("doctor", "--data-dir", str(huddle_server.data_dir))
    assert result.returncode == 1
    assert "FAIL  git" in result.stdout and "is not a git repository" in result.stdout and "git init" in result.stdout


def test_status_agents_threads_and_locks_print_tables_and_json(huddle_server: ServerProcess):
    rest(huddle_server, "register_agent", name="alice")
    rest(huddle_server, "register_agent", name="bob")
    rest(huddle_server, "announce_work", agent_id="alice", subject="login", target_files=["src/a.py"])
    opened = rest(huddle_server, "announce_work", agent_id="bob", subject="session", target_files=["src/a.py"])
    thread = str(opened["thread_id"])
    where = ["--url", huddle_server.url]

    status = huddle("status", *where)
    assert status.returncode == 0 and "agents   2 online of 2" in status.stdout and "threads  1 active" in status.stdout
    assert json.loads(huddle("status", "--json", *where).stdout)["agents"]["online"] == 2
    agents = huddle("agents", *where).stdout.splitlines()
    assert agents[0].split() == ["AGENT", "ACTIVITY", "BRANCH", "FILE", "WAITING", "ON", "LAST", "SEEN"]
    assert any(line.startswith("alice") and thread in line for line in agents)

    posted = huddle("threads", "post", thread, "I will split the file", "--agent", "alice", *where)
    assert posted.returncode == 0 and f"to {thread}" in posted.stdout
    listing = huddle("threads", *where).stdout
    assert thread in listing and "session" in listing
    shown = huddle("threads", thread, *where).stdout
    assert "I will split the file" in shown and "respondents alice" in shown
    assert json.loads(huddle("threads", thread, "--json", *where).stdout)["messages"][0]["agent_id"] == "alice"

    granted = huddle("locks", "acquire", "src/", "--agent", "bob", *where)
    assert granted.returncode == 0 and granted.stdout.startswith("granted src/ (exclusive)")
    refused = huddle("locks", "acquire", "src/a.py", "--agent", "alice", *where)
    assert refused.returncode == 1 and "held by bob (exclusive)" in refused.stdout
    assert "src/" in huddle("locks", "list", *where).stdout


def test_a_backup_taken_under_write_load_restores_to_a_consistent_state_with_every_acknowledged_write(
    tmp_path: Path, repo: Path
):
    server = ServerProcess(tmp_path / "data", repo).start()
    rest(server, "register_agent", name="writer")
    acknowledged: list[int] = []
    stop = threading.Event()
    progress = threading.Condition()

    def write_load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            i = 0
            while not stop.is_set():
                body = {"agent_id": "writer", "type": "note", "content": f"note {i}"}
                result = client.post("/api/v1/tools/share_context", json=body).json()["result"]
                with progress:
                    acknowledged.append(int(str(result["id"]).split("-")[-1]))
                    progress.notify_all()
                i += 1

    writers = [threading.Thread(target=write_load) for _ in range(3)]
    for w in writers:
        w.start()
    try:
        with progress:  # the load is running before the backup starts
            assert progress.wait_for(lambda: len(acknowledged) >= 50, timeout=60)
            before_backup = set(acknowledged)
        backup = huddle("backup", str(tmp_path / "snap.db"), "--data-dir", str(server.data_dir))
        assert backup.returncode == 0, backup.stderr
        with progress:  # and keeps writing after it
            assert progress.wait_for(lambda: len(acknowledged) >= len(before_backup) + 50, timeout=60)
    finally:
        stop.set()
        for w in writers:
            w.join()
        server.stop()

    restored_dir = tmp_path / "restored"
    assert huddle("restore", str(tmp_path / "snap.db"), "--data-dir", str(restored_dir)).returncode == 0
    with contextlib.closing(sqlite3.connect(restored_dir / "huddle.db")) as db:
        ids = {row[0] for row in db.execute("SELECT id FROM shared_context")}
    restored = ServerProcess(restored_dir, repo).start()  # the restored data dir serves
    try:
        newest = rest(restored, "query_context", type="note", limit=1)["entries"]
        assert [e["id"] for e in newest] == [f"C-{max(ids)}"]  # type: ignore[attr-defined]
    finally:
        restored.stop()
    assert before_backup <= ids, "every write acknowledged before the backup began is in it"
    assert ids == set(range(1, max(ids) + 1)), "a consistent snapshot is a prefix of the commit order"
    assert ids <= set(acknowledged)


def test_restore_is_refused_while_a_server_runs_on_the_data_dir(huddle_server: ServerProcess, tmp_path: Path):
    snapshot = tmp_path / "snap.db"
    assert huddle("backup", str(snapshot), "--data-dir", str(huddle_server.data_dir)).returncode == 0
    again = huddle("backup", str(snapshot), "--data-dir", str(huddle_server.data_dir))
    assert again.returncode == 1 and "already exists; pass another path or --force" in again.stderr
    refused = huddle("restore", str(snapshot), "--data-dir", str(huddle_server.data_dir))
    assert refused.returncode == 1 and "stop it first: huddle server stop" in refused.stderr
    assert f"pid {huddle_server.process.pid}" in refused.stderr  # type: ignore[union-attr]
    not_db = tmp_path / "notes.txt"
    not_db.write_text("hello")
    bad = huddle("restore", str(not_db), "--data-dir", str(tmp_path / "elsewhere"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "huddle backup" in bad.stderr
