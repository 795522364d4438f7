"""`huddle migrate`, `huddle export` and `huddle import`, run as an operator would (subprocess),
against real servers on SQLite and on the machine's PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg

from helpers import ServerProcess
from huddle.storage.admin import describe_versions
from huddle.storage.migrations import migration_files, version_of
from postgres_helpers import fresh_database
from test_daemon import huddle
from test_ops_cli import rest


def populate(server: ServerProcess) -> None:
    """Agents, intents, a consultation thread, a lock, tasks, messages, shared context and their events."""
    rest(server, "register_agent", name="alice", agent_id="alice")
    rest(server, "register_agent", name="bob", agent_id="bob")
    rest(server, "announce_work", agent_id="bob", subject="bob's work", target_files=["a.py"])
    consult = rest(server, "announce_work", agent_id="alice", subject="alice's work", target_files=["a.py"])
    assert consult["verdict"] == "consult"
    rest(server, "post_to_thread", thread_id=consult["thread_id"], agent_id="bob", type="question", content="who?")
    rest(server, "acquire_lock", agent_id="alice", path="src/", mode="exclusive")
    rest(server, "add_task", task_id="t1", description="write the docs")
    rest(server, "add_task", task_id="t2", description="review the docs", depends_on=["t1"])
    rest(server, "claim_task", agent_id="bob", task_id="t1")
    rest(server, "send_message", from_agent="alice", to_agent="bob", content="the docs are yours")
    rest(server, "share_context", agent_id="alice", type="decision", content="Writers take an advisory lock")
    # The newest entry is deleted: its number must never be handed out again, on any backend.
    doomed = rest(server, "share_context", agent_id="bob", type="note", content="scratch advisory note")
    rest(server, "delete_context", id=doomed["id"], agent_id="bob")


def answers(server: ServerProcess) -> dict[str, Any]:
    """What agents and the dashboard read: the same data must give the same answers on any backend."""
    status = rest(server, "coordinator_status")
    return {
        "alice": rest(server, "get_updates", agent_id="alice", cursor=0, limit=500),
        "bob": rest(server, "get_updates", agent_id="bob", cursor=0, limit=500),
        "events": rest(server, "list_events", after=0, limit=500),
        "search": rest(server, "query_context", keyword="advisory"),
        "threads": rest(server, "list_threads"),
        # expires_in_s left out: it counts down between the two reads
        "locks": [{k: v for k, v in h.items() if k != "expires_in_s"} for h in rest(server, "list_locks")["locks"]],
        "tasks": rest(server, "list_tasks"),
        "messages": rest(server, "list_messages", agent_id="bob"),
        "status": {
            "latest_cursor": status["latest_cursor"],
            "intents": status["intents"],
            "threads": status["threads"],
            # last_seen left out: every read above is also a heartbeat
            "agents": [{k: v for k, v in a.items() if k != "last_seen"} for a in status["agents"]["list"]],
        },
    }


def number(ref: str) -> int:
    return int(ref.split("-", 1)[1])


def fresh_writes_follow_on(server: ServerProcess, before: dict[str, Any], cursor: int) -> int:
    """New rows get numbers after every imported (and deleted) one; the agent's old cursor still works."""
    handed_out = max(number(e["context_id"]) for e in before["events"]["events"] if "context_id" in e)
    shared = rest(server, "share_context", agent_id="bob", type="discovery", content="imports keep cursors")
    assert number(shared["id"]) == handed_out + 1
    intent = rest(server, "announce_work", agent_id="bob", subject="more", target_files=["b.py"])
    known = [number(i["intent_id"]) for i in before["status"]["intents"]["list"]]
    assert number(intent["intent_id"]) > max(known)
    updates = rest(server, "get_updates", agent_id="alice", cursor=cursor)
    fresh = [e for e in updates["events"] if e["event"] == "context.shared"]
    assert fresh and fresh[0]["cursor"] > before["status"]["latest_cursor"]
    assert [e["cursor"] for e in updates["events"]] == sorted({e["cursor"] for e in updates["events"]})
    return int(updates["next_cursor"])


def test_a_project_moves_from_sqlite_to_postgresql_and_back_with_the_same_answers_and_cursors(
    tmp_path: Path, repo: Path
) -> None:
    source = ServerProcess(tmp_path / "sqlite", repo).start()
    try:
        populate(source)
        alice_cursor = int(rest(source, "get_updates", agent_id="alice")["next_cursor"])
        on_sqlite = answers(source)
        # Exported while the server runs.
        exported = huddle("export", "--data-dir", str(source.data_dir), "--out", str(tmp_path / "a.jsonl"))
        assert exported.returncode == 0, exported.stderr
        assert f"up to cursor {on_sqlite['status']['latest_cursor']}" in exported.stdout
    finally:
        source.stop()

    with fresh_database() as url:
        imported = huddle("import", "--db-url", url, "--in", str(tmp_path / "a.jsonl"))
        assert imported.returncode == 0, imported.stderr
        assert "migrated" in imported.stdout and "cursors kept" in imported.stdout
        on_pg = ServerProcess(tmp_path / "pg", repo, ["--db-url", url]).start()
        try:
            assert answers(on_pg) == on_sqlite
            alice_cursor = fresh_writes_follow_on(on_pg, on_sqlite, alice_cursor)
            after_writes = answers(on_pg)
            back = huddle("export", "--db-url", url, "--out", str(tmp_path / "b.jsonl"))  # while it runs
            assert back.returncode == 0, back.stderr
        finally:
            on_pg.stop()

    home = tmp_path / "sqlite-again"
    restored = huddle("import", "--data-dir", str(home), "--in", str(tmp_path / "b.jsonl"))
    assert restored.returncode == 0, restored.stderr
    again = ServerProcess(home, repo).start()
    try:
        assert answers(again) == after_writes
        # The full-text index was rebuilt from the rows: the entry written on PostgreSQL is found.
        assert rest(again, "query_context", keyword="imports")["entries"]
        fresh_writes_follow_on(again, after_writes, alice_cursor)
    finally:
        again.stop()


def export_of(tmp_path: Path, repo: Path, name: str = "x.jsonl") -> Path:
    server = ServerProcess(tmp_path / f"src-{name}", repo).start()
    try:
        populate(server)
    finally:
        server.stop()
    out = tmp_path / name
    assert huddle("export", "--data-dir", str(server.data_dir), "--out", str(out)).returncode == 0
    return out


def test_import_refuses_a_non_empty_target_unless_forced_and_then_replaces_the_project(
    tmp_path: Path, repo: Path
) -> None:
    export = export_of(tmp_path, repo)
    with fresh_database() as url:
        assert huddle("import", "--db-url", url, "--in", str(export)).returncode == 0
        with psycopg.connect(url) as conn:
            conn.execute(
                "INSERT INTO agents (project, agent_id, name, status, registered_at, session_start,"
                " last_seen) VALUES ('other', 'zoe', 'zoe', 'online', 0, 0, 0)"
            )
            rows_before = conn.execute("SELECT COUNT(*) FROM events").fetchone()
        refused = huddle("import", "--db-url", url, "--in", str(export))
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert "is not empty" in refused.stderr and "--force" in refused.stderr
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == rows_before

        forced = huddle("import", "--db-url", url, "--in", str(export), "--force")
        assert forced.returncode == 0, forced.stderr
        assert "after deleting" in forced.stdout
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == rows_before
            assert conn.execute("SELECT agent_id FROM agents WHERE project = 'other'").fetchall() == [("zoe",)]
            members = conn.execute("SELECT COUNT(*) FROM thread_members").fetchone()
            assert members is not None and members[0] == 2  # thread rows replaced, not doubled


def test_import_refuses_damaged_foreign_and_mismatched_files_and_writes_nothing(tmp_path: Path, repo: Path) -> None:
    export = export_of(tmp_path, repo)
    lines = export.read_text().splitlines()
    target = tmp_path / "target"

    def refused(content: str, *expected: str) -> None:
        bad = tmp_path / "bad.jsonl"
        bad.write_text(content)
        result = huddle("import", "--data-dir", str(target), "--in", str(bad))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        for text in expected:
            assert text in result.stderr, result.stderr
        if (target / "huddle.db").exists():
            with sqlite3.connect(target / "huddle.db") as db:
                assert db.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)

    refused("not json at all\n", "not a file written by huddle export")
    refused("\n".join(lines[: len(lines) // 2]) + "\n", "ends early", "nothing was imported")
    header = json.loads(lines[0])
    newer = json.dumps({**header, "schema_version": header["schema_version"] + 1})
    refused("\n".join([newer, *lines[1:]]) + "\n", "upgrade Huddle")
    broken_row = next(i for i, line in enumerate(lines) if line.startswith("["))
    refused("\n".join([*lines[:broken_row], '["too", "short"]', *lines[broken_row + 1 :]]) + "\n", "is not a row of")
    refused("\n".join([*lines, '{"junk":1}']) + "\n", "follows the end line", "nothing was imported")
    refused("\n".join([*lines, "", "[1]"]) + "\n", f"line {len(lines) + 2} of", "follows the end line")
    missing = huddle("import", "--data-dir", str(target), "--in", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 1 and "is not a file" in missing.stderr


def test_import_is_refused_while_a_server_runs_on_the_target(tmp_path: Path, repo: Path) -> None:
    export = export_of(tmp_path, repo)
    server = ServerProcess(tmp_path / "busy", repo).start()
    try:
        result = huddle("import", "--data-dir", str(server.data_dir), "--in", str(export))
        assert result.returncode == 1 and "a server is running" in result.stderr
    finally:
        server.stop()
    with fresh_database() as url:
        on_pg = ServerProcess(tmp_path / "busy-pg", repo, ["--db-url", url]).start()
        try:
            result = huddle("import", "--db-url", url, "--in", str(export))
            assert result.returncode == 1 and "stop every server" in result.stderr, result.stderr
        finally:
            on_pg.stop()


def test_export_of_one_project_carries_only_its_rows_thread_rows_included(tmp_path: Path, repo: Path) -> None:
    with fresh_database() as url:
        other = tmp_path / "other-repo"
        other.mkdir()
        for where in (repo, other):
            server = ServerProcess(tmp_path / f"pg-{where.name}", where, ["--db-url", url]).start()
            try:
                populate(server)
            finally:
                server.stop()
        out = tmp_path / "one.jsonl"
        result = huddle("export", "--db-url", url, "--project", repo.name, "--out", str(out))
        assert result.returncode == 0, result.stderr
        unknown = huddle("export", "--db-url", url, "--project", "nope", "--out", str(tmp_path / "n.jsonl"))
        assert unknown.returncode == 1 and "no rows of project(s) nope" in unknown.stderr
        with psycopg.connect(url) as conn:
            wanted = conn.execute(
                "SELECT COUNT(*) FROM thread_members WHERE thread_id IN (SELECT id FROM threads WHERE project = %s)",
                (repo.name,),
            ).fetchone()
        sections: dict[str, int] = {}
        columns: list[str] = []
        for line in out.read_text().splitlines()[1:-1]:
            item = json.loads(line)
            if isinstance(item, dict):
                sections[item["table"]], columns = item["rows"], item["columns"]
            elif "project" in columns:
                assert item[columns.index("project")] == repo.name
        assert wanted is not None and sections["thread_members"] == wanted[0] > 0
    assert json.loads(out.read_text().splitlines()[0])["projects"] == [repo.name]


def test_migrate_applies_lists_pending_and_refuses_a_newer_schema(tmp_path: Path) -> None:
    data = tmp_path / "data"
    dry = huddle("migrate", "--data-dir", str(data), "--dry-run")
    assert dry.returncode == 0 and "001 (core)" in dry.stdout and not (data / "huddle.db").exists()
    applied = huddle("migrate", "--data-dir", str(data))
    # The newest migration, whichever it is: this test is about migrate, not about one schema version.
    files = migration_files("postgresql")
    newest = describe_versions([(version_of(files[-1]), files[-1].name)])
    assert applied.returncode == 0 and "schema version 0 →" in applied.stdout and newest in applied.stdout
    assert "up to date" in huddle("migrate", "--data-dir", str(data)).stdout
    with sqlite3.connect(data / "huddle.db") as db:
        db.execute("INSERT INTO schema_migrations (version, name) VALUES (999, '999_future.sql')")
    newer = huddle("migrate", "--data-dir", str(data))
    assert newer.returncode == 1 and "[999]" in newer.stderr and "upgrade Huddle" in newer.stderr

    with fresh_database() as url:
        pending = huddle("migrate", "--db-url", url, "--dry-run")
        assert pending.returncode == 0 and f"{len(files)} pending" in pending.stdout
        done = huddle("migrate", "--db-url", url)
        assert done.returncode == 0 and newest in done.stdout
        again = huddle("migrate", "--db-url", url, "--dry-run")
        assert "nothing pending" in again.stdout
    unreachable = huddle("migrate", "--db-url", "postgresql://postgres@127.0.0.1:1/nowhere")
    assert unreachable.returncode == 1 and "Traceback" not in unreachable.stderr
    assert "cannot connect to PostgreSQL" in unreachable.stderr and "--db-url" in unreachable.stderr


def test_import_needs_a_target_and_export_will_not_overwrite_a_file(tmp_path: Path) -> None:
    no_target = huddle("import", "--in", str(tmp_path / "x.jsonl"))
    assert no_target.returncode == 2 and "--db-url" in no_target.stderr
    (tmp_path / "taken.jsonl").write_text("")
    taken = huddle("export", "--data-dir", str(tmp_path), "--out", str(tmp_path / "taken.jsonl"))
    assert taken.returncode == 1 and "already exists" in taken.stderr and "--force" in taken.stderr
    bad_url = huddle("export", "--db-url", "mysql://x", "--out", str(tmp_path / "y.jsonl"))
    assert bad_url.returncode == 1 and "must be a PostgreSQL URL" in bad_url.stderr


def test_export_names_the_column_holding_a_value_json_cannot_carry(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert huddle("migrate", "--data-dir", str(data)).returncode == 0
    with sqlite3.connect(data / "huddle.db") as db:
        db.execute(
            "INSERT INTO agents (project, agent_id, name, status, registered_at, session_start, last_seen)"
            " VALUES ('p', 'a', ?, 'online', 0, 0, 0)",
            (b"\x00\x01",),
        )
    result = huddle("export", "--data-dir", str(data), "--out", str(tmp_path / "x.jsonl"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "table agents column name holds a bytes value" in result.stderr
    assert not (tmp_path / "x.jsonl").exists() and not list(tmp_path.glob(".x.jsonl*"))


def test_blank_lines_after_the_end_line_are_accepted(tmp_path: Path, repo: Path) -> None:
    export = export_of(tmp_path, repo)
    padded = tmp_path / "padded.jsonl"
    padded.write_text(export.read_text() + "\n  \n\n")
    result = huddle("import", "--data-dir", str(tmp_path / "target"), "--in", str(padded))
    assert result.returncode == 0, result.stderr


def test_instance_heartbeats_are_neither_exported_nor_imported_nor_make_a_target_non_empty(
    tmp_path: Path, repo: Path
) -> None:
    source = tmp_path / "src"
    server = ServerProcess(source, repo).start()
    try:
        populate(server)
    finally:
        server.stop()
    with sqlite3.connect(source / "huddle.db") as db:
        db.execute("INSERT OR REPLACE INTO instances VALUES ('x', 'old-host', 1, 2)")
    out = tmp_path / "x.jsonl"
    assert huddle("export", "--data-dir", str(source), "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    assert not any(json.loads(line).get("table") == "instances" for line in lines if line.startswith("{"))

    # a file from before instances were left out: its section is read past, not imported
    end = json.loads(lines[-1])
    older = [
        *lines[:-1],
        json.dumps({"table": "instances", "columns": ["project", "instance", "started_at", "last_seen"], "rows": 1}),
        '["x", "old-host", 1, 2]',
        json.dumps({**end, "rows": end["rows"] + 1}),
    ]
    (tmp_path / "older.jsonl").write_text("\n".join(older) + "\n")
    target = tmp_path / "target"
    assert huddle("migrate", "--data-dir", str(target)).returncode == 0
    with sqlite3.connect(target / "huddle.db") as db:  # a heartbeat left by a server that ran there
        db.execute("INSERT INTO instances VALUES ('x', 'target-host', 1, 2)")
    result = huddle("import", "--data-dir", str(target), "--in", str(tmp_path / "older.jsonl"))
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(target / "huddle.db") as db:
        assert db.execute("SELECT instance FROM instances").fetchall() == [("target-host",)]
        assert db.execute("SELECT COUNT(*) FROM agents").fetchone() != (0,)
