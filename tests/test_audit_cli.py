"""`huddle audit verify` and `huddle audit show`, run as an operator would (subprocess), on SQLite and
PostgreSQL databases that real coordinators wrote and somebody then tampered with."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import psycopg

from helpers import make_coordinator
from postgres_helpers import migrated_database
from test_audit import some_history
from test_daemon import huddle


async def history_in(tmp_path: Path, repo: Path, **backend: str) -> None:
    """Writes some history with a real coordinator, then stops it (the CLI opens the database offline)."""
    c = make_coordinator(tmp_path, repo, **backend)
    await c.start()
    try:
        await some_history(c)
    finally:
        await c.stop()


def sqlite_tamper(path: Path, statement: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS audit_log_append_only")
        conn.execute(statement)


async def test_verify_passes_an_intact_log_and_names_the_edited_row_of_a_tampered_sqlite_file(
    tmp_path: Path, repo: Path
) -> None:
    await history_in(tmp_path, repo)
    data = tmp_path / "data"
    intact = huddle("audit", "verify", "--data-dir", str(data))
    assert intact.returncode == 0, intact.stderr
    assert "rows, chain intact" in intact.stdout and f"project {repo.name}:" in intact.stdout
    rows = int(intact.stdout.splitlines()[-1].split()[0])
    assert rows >= 5

    sqlite_tamper(data / "huddle.db", "UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    tampered = huddle("audit", "verify", "--data-dir", str(data))
    assert tampered.returncode == 1
    assert "chain broken at row 2 (edited)" in tampered.stderr and "row 1 verifies" in tampered.stderr
    assert "huddle audit show --from 2" in tampered.stderr and "Traceback" not in tampered.stderr


async def test_verify_names_the_deleted_row_of_a_postgresql_database(tmp_path: Path, repo: Path) -> None:
    with migrated_database() as url:
        await history_in(tmp_path, repo, db_url=url)
        assert huddle("audit", "verify", "--db-url", url).returncode == 0
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DELETE FROM audit_log WHERE seq = 3")
        tampered = huddle("audit", "verify", "--db-url", url, "--project", repo.name)
        assert tampered.returncode == 1
        assert "chain broken at row 3 (deleted): row 3 is missing" in tampered.stderr


async def test_show_lists_the_newest_rows_and_the_head_hash(tmp_path: Path, repo: Path) -> None:
    await history_in(tmp_path, repo)
    data = tmp_path / "data"
    verified = huddle("audit", "verify", "--data-dir", str(data)).stdout
    head = verified.split("sha256 ")[1].split(")")[0]
    shown = huddle("audit", "show", "--data-dir", str(data), "-n", "2")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"project {repo.name}:" and lines[1].split()[:3] == ["SEQ", "TIME", "(UTC)"]
    assert len(lines) == 5 and lines[-1].endswith(head)
    first = huddle("audit", "show", "--data-dir", str(data), "--from", "1", "-n", "1").stdout.splitlines()
    assert first[2].split()[0] == "1" and "agent.online" in first[2] and "alice" in first[2]


async def test_a_database_moved_with_export_and_import_still_verifies_with_the_same_head(
    tmp_path: Path, repo: Path
) -> None:
    await history_in(tmp_path, repo)
    data, out = tmp_path / "data", tmp_path / "moved.jsonl"
    before = huddle("audit", "verify", "--data-dir", str(data))
    assert huddle("export", "--data-dir", str(data), "--out", str(out)).returncode == 0
    with migrated_database() as url:
        imported = huddle("import", "--db-url", url, "--in", str(out))
        assert imported.returncode == 0, imported.stderr
        after = huddle("audit", "verify", "--db-url", url)
    assert after.returncode == 0, after.stderr
    assert before.stdout.splitlines()[1:] == after.stdout.splitlines()[1:]  # same rows, same head hash


async def test_bad_targets_get_one_clear_line_and_exit_1(tmp_path: Path, repo: Path) -> None:
    missing = huddle("audit", "verify", "--data-dir", str(tmp_path / "nowhere"))
    assert missing.returncode == 1 and "no database at" in missing.stderr and "Traceback" not in missing.stderr
    await history_in(tmp_path, repo)
    data = tmp_path / "data"
    unknown = huddle("audit", "verify", "--data-dir", str(data), "--project", "nope")
    assert unknown.returncode == 1 and "no project nope" in unknown.stderr and repo.name in unknown.stderr
    with sqlite3.connect(data / "huddle.db") as conn:  # as a database from before the audit log would be
        conn.execute("DROP TABLE audit_log")
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
    old = huddle("audit", "show", "--data-dir", str(data))
    assert old.returncode == 1 and "huddle migrate --data-dir" in old.stderr
    assert huddle("audit").returncode == 2
    assert huddle("audit", "show", "-n", "0", "--data-dir", str(data)).returncode == 2


async def test_an_import_whose_audit_log_does_not_end_where_the_header_says_is_refused(
    tmp_path: Path, repo: Path
) -> None:
    await history_in(tmp_path, repo)
    out = tmp_path / "moved.jsonl"
    assert huddle("export", "--data-dir", str(tmp_path / "data"), "--out", str(out)).returncode == 0
    lines = out.read_text().splitlines()
    header = json.loads(lines[0])
    seq, _ = header["audit_heads"][repo.name]
    header["audit_heads"][repo.name] = [seq, "0" * 64]
    out.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    target = tmp_path / "target"
    refused = huddle("import", "--data-dir", str(target), "--in", str(out))
    assert refused.returncode == 1 and f"the audit log of {repo.name} ends at" in refused.stderr
    assert "nothing was imported" in refused.stderr
    assert not (target / "huddle.db").exists()  # not even the schema: the import's transaction created it
