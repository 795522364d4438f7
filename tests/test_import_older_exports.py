"""`huddle import` of an export an older Huddle wrote: the schema is created at the file's version, the
rows go in, then the later migrations run over them, all in one transaction (storage/transfer.py).

The old exports are made honestly: a database migrated only up to the old version (the migration
files up to it, run one by one as that Huddle ran them), holding rows in that version's tables, and
exported by the export code of a Huddle that knows no later migration. Its rows come from a real
server's history, copied table by table into the old schema (every table up to 012 has the columns
it has today: the later migrations only add tables and indexes).
"""

from __future__ import annotations

import io
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from helpers import ServerProcess
from huddle.cli.main import main as huddle_in_process
from huddle.cli.runtime import DataDirLock
from huddle.storage import migrations, transfer
from huddle.storage.admin import open_database
from postgres_helpers import fresh_database, migrated_database
from test_cli_export_import import answers, fresh_writes_follow_on, populate
from test_daemon import huddle
from test_ops_cli import rest

NEWEST = max(migrations.known_versions("sqlite"))
AUDIT_LOG = 11  # the migration that added the audit log (and audit_origin, filled from the events)
NOT_COPIED = {"schema_migrations", "instances", "sqlite_sequence"}  # bookkeeping, heartbeats, counters


def files_up_to(dialect: str, version: int) -> list[Traversable]:
    return [f for f in migrations.migration_files(dialect) if migrations.version_of(f) <= version]


@contextmanager
def huddle_of_schema(version: int) -> Iterator[None]:
    """This process as the Huddle whose newest migration was `version`: its export writes that version."""
    real = migrations.migration_files
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            migrations,
            "migration_files",
            lambda dialect: [f for f in real(dialect) if migrations.version_of(f) <= version],
        )
        yield


@dataclass(frozen=True)
class History:
    """A real server's history on SQLite at this Huddle's schema, and what agents read from it."""

    db: Path
    repo: Path
    answers: dict[str, Any]
    alice_cursor: int


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    root = tmp_path_factory.mktemp("history")
    repo = root / "repo"
    repo.mkdir()
    server = ServerProcess(root / "data", repo).start()
    try:
        populate(server)
        alice_cursor = int(rest(server, "get_updates", agent_id="alice")["next_cursor"])
        seen = answers(server)
    finally:
        server.stop()
    return History(root / "data" / "huddle.db", repo, seen, alice_cursor)


def sqlite_tables(conn: sqlite3.Connection) -> list[str]:
    """The old schema's tables holding rows (the FTS index and its shadow tables are derived)."""
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    return [n for n in names if n not in NOT_COPIED and not n.startswith("shared_context_fts")]


def columns_of(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]


def sqlite_at(path: Path, version: int, rows_from: Path) -> None:
    """A SQLite database at schema `version`, holding the rows of `rows_from` its tables have."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute(migrations.CREATE_TABLE)
        for f in files_up_to("sqlite", version):
            conn.executescript(f.read_text())
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (migrations.version_of(f), f.name))
        conn.execute("ATTACH DATABASE ? AS src", (str(rows_from),))
        conn.execute("BEGIN")
        tables = sqlite_tables(conn)
        for table in tables:
            cols = ", ".join(f'"{c}"' for c in columns_of(conn, table))
            conn.execute(f'INSERT INTO main."{table}" ({cols}) SELECT {cols} FROM src."{table}"')
        # The counters as the source left them: past the ids of rows deleted since, too.
        conn.execute("DELETE FROM main.sqlite_sequence")
        marks = ", ".join("?" for _ in tables)
        conn.execute(
            f"INSERT INTO main.sqlite_sequence SELECT * FROM src.sqlite_sequence WHERE name IN ({marks})", tables
        )
        conn.execute("COMMIT")


def postgres_at(url: str, version: int, rows_from: Path | None) -> None:
    """The PostgreSQL database at `url` (empty) brought to schema `version`, with the rows of the
    SQLite database `rows_from` its tables have (COPY keeps the ids, as the old import did)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(migrations.CREATE_TABLE)
        for f in files_up_to("postgresql", version):
            for statement in migrations.split_sql(f.read_text()):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (migrations.version_of(f), f.name))
        if rows_from is None:
            return
        with closing(sqlite3.connect(rows_from)) as source, conn.transaction():
            counters = dict(source.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
            for table in sqlite_tables(source):
                cols = columns_of(source, table)
                quoted = ", ".join(f'"{c}"' for c in cols)
                with conn.cursor().copy(f'COPY "{table}" ({quoted}) FROM STDIN') as copy:
                    for row in source.execute(f'SELECT {quoted} FROM "{table}"'):
                        copy.write_row(row)
                if counters.get(table):
                    conn.execute(
                        "SELECT setval(pg_get_serial_sequence(%s, column_name), %s) FROM information_schema.columns"
                        " WHERE table_schema = current_schema() AND table_name = %s AND is_identity = 'YES'",
                        (f'"{table}"', counters[table], table),
                    )


def export_at(version: int, *, path: Path | None = None, url: str = "", out: Path) -> dict[str, Any]:
    """Exported by the Huddle of schema `version`: the file says so, and holds that schema's tables.

    Before the audit log (011) the header had no audit_heads: that Huddle's export did not read them."""
    buffer = io.StringIO()
    with (
        huddle_of_schema(version),
        pytest.MonkeyPatch.context() as patch,
        open_database(url=url, path=path, readonly=not url) as db,
    ):
        if version < AUDIT_LOG:
            patch.setattr(transfer, "_audit_heads", lambda db, projects: {})
        summary = transfer.export(db, buffer)
    header, *rest = buffer.getvalue().splitlines()
    written = json.loads(header)
    if version < AUDIT_LOG:
        del written["audit_heads"]
    out.write_text("\n".join([json.dumps(written), *rest]) + "\n")
    assert written["schema_version"] == version == summary["schema_version"]
    return dict(written)


def sqlite_rows(path: Path, table: str, columns: list[str]) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        quoted = ", ".join(f'"{c}"' for c in columns)
        return sorted(json.dumps(list(r)) for r in conn.execute(f'SELECT {quoted} FROM "{table}"'))


def postgres_rows(url: str, table: str, columns: list[str]) -> list[str]:
    with psycopg.connect(url) as conn:
        quoted = ", ".join(f'"{c}"' for c in columns)
        return sorted(json.dumps(list(r)) for r in conn.execute(f'SELECT {quoted} FROM "{table}"').fetchall())


def old_tables(path: Path) -> dict[str, list[str]]:
    with closing(sqlite3.connect(path)) as conn:
        return {t: columns_of(conn, t) for t in sqlite_tables(conn)}


def assert_same_rows(old: Path, *, path: Path | None = None, url: str = "") -> None:
    """Every row of every table of the old database arrived as it was (ids and cursors included)."""
    for table, columns in old_tables(old).items():
        got = postgres_rows(url, table, columns) if url else sqlite_rows(path or old, table, columns)
        assert got == sqlite_rows(old, table, columns), table


def versions_of(*, path: Path | None = None, url: str = "") -> set[int]:
    if url:
        with psycopg.connect(url) as conn:
            return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return {int(r[0]) for r in conn.execute("SELECT version FROM schema_migrations")}


def integrity(path: Path) -> str:
    """SQLite's own check: every index (012's rebuilt ones, 013's new one) holds exactly the table's rows."""
    with closing(sqlite3.connect(path)) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def exported_at(version: int, tmp_path: Path, history: History) -> tuple[Path, Path, dict[str, Any]]:
    """The history in a genuine schema-`version` SQLite database, and that database's export file."""
    old = tmp_path / "old.db"
    sqlite_at(old, version, history.db)
    file = tmp_path / f"at-{version}.jsonl"
    return old, file, export_at(version, path=old, out=file)


def imported(*where: str, file: Path) -> str:
    result = huddle("import", *where, "--in", str(file))
    assert result.returncode == 0, result.stderr
    return result.stdout


def verified(*where: str) -> str:
    result = huddle("audit", "verify", *where)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "chain intact" in result.stdout
    return result.stdout


def test_an_export_made_at_schema_12_imports_into_empty_sqlite_and_postgresql_and_ends_at_the_newest_version(
    tmp_path: Path, history: History
) -> None:
    old, file, header = exported_at(12, tmp_path, history)
    assert header["audit_heads"], "the history has an audit log (schema 011) and the file carries its heads"

    data = tmp_path / "sqlite"
    out = imported("--data-dir", str(data), file=file)
    assert f"imported schema 12, upgraded to {NEWEST}" in out and "013 (intent_modules_by_agent)" in out
    target = data / "huddle.db"
    assert versions_of(path=target) == migrations.known_versions("sqlite")
    assert_same_rows(old, path=target)
    assert integrity(target) == "ok"
    verified("--data-dir", str(data))

    with fresh_database() as url:
        out = imported("--db-url", url, file=file)
        assert f"imported schema 12, upgraded to {NEWEST}" in out and "created the schema" in out
        assert versions_of(url=url) == migrations.known_versions("postgresql")
        assert_same_rows(old, url=url)
        verified("--db-url", url)
        # A server on it answers every agent as the old database did, keeps their cursors, numbers new
        # rows after the imported ones, and announces are scored against the imported intents (read
        # through migration 013's index on intent_modules).
        server = ServerProcess(tmp_path / "pg-server", history.repo, ["--db-url", url]).start()
        try:
            assert answers(server) == history.answers
            fresh_writes_follow_on(server, history.answers, history.alice_cursor)
            rest(server, "register_agent", name="carol", agent_id="carol")
            carol = rest(server, "announce_work", agent_id="carol", subject="carol's work", target_files=["a.py"])
            assert carol["verdict"] == "consult", carol
        finally:
            server.stop()
        verified("--db-url", url)  # the chain continued from the imported head


def test_an_export_made_before_the_audit_log_gets_its_audit_origin_from_migration_011_after_the_rows_are_in(
    tmp_path: Path, history: History
) -> None:
    old, file, header = exported_at(10, tmp_path, history)
    assert "audit_log" not in old_tables(old) and "audit_heads" not in header
    project = history.repo.name
    with closing(sqlite3.connect(old)) as conn:
        newest_event = int(conn.execute("SELECT MAX(cursor) FROM events").fetchone()[0])

    with fresh_database() as url:
        out = imported("--db-url", url, file=file)
        assert f"imported schema 10, upgraded to {NEWEST}" in out and "011 (audit)" in out
        assert_same_rows(old, url=url)
        with psycopg.connect(url) as conn:
            # 011 ran over the imported events: their past predates the audit log, as on the source
            assert conn.execute("SELECT project, audited_after FROM audit_origin").fetchall() == [
                (project, newest_event)
            ]
            assert conn.execute("SELECT COUNT(*) FROM audit_log").fetchone() == (0,)
        verified("--db-url", url)

    data = tmp_path / "sqlite"
    imported("--data-dir", str(data), file=file)
    assert_same_rows(old, path=data / "huddle.db")
    server = ServerProcess(data, history.repo).start()
    try:
        rest(server, "share_context", agent_id="bob", type="note", content="after the upgrade")
    finally:
        server.stop()
    with closing(sqlite3.connect(data / "huddle.db")) as conn:
        assert conn.execute("SELECT audited_after FROM audit_origin").fetchall() == [(newest_event,)]
        first = conn.execute("SELECT seq, cursor FROM audit_log ORDER BY seq LIMIT 1").fetchone()
    assert first[0] == 1 and first[1] > newest_event  # the chain starts at the first change after it
    assert " 0 rows" not in verified("--data-dir", str(data))


def test_an_export_made_at_schema_12_on_postgresql_imports_into_an_empty_sqlite_data_dir(
    tmp_path: Path, history: History
) -> None:
    old = tmp_path / "old.db"
    sqlite_at(old, 12, history.db)
    file = tmp_path / "pg-at-12.jsonl"
    with fresh_database() as url:
        postgres_at(url, 12, old)
        header = export_at(12, url=url, out=file)
    assert header["dialect"] == "postgresql" and header["projects"] == [history.repo.name]

    data = tmp_path / "sqlite"
    out = imported("--data-dir", str(data), file=file)
    assert f"imported schema 12, upgraded to {NEWEST}" in out
    assert versions_of(path=data / "huddle.db") == migrations.known_versions("sqlite")
    assert_same_rows(old, path=data / "huddle.db")
    assert integrity(data / "huddle.db") == "ok"
    verified("--data-dir", str(data))
    server = ServerProcess(data, history.repo).start()
    try:
        assert answers(server) == history.answers
        assert rest(server, "query_context", keyword="advisory")["entries"]  # full-text index rebuilt
    finally:
        server.stop()


def dump(path: Path) -> list[str]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        return list(conn.iterdump())


def test_an_older_export_into_a_database_with_a_newer_schema_is_refused_even_with_force_and_nothing_is_written(
    tmp_path: Path, history: History
) -> None:
    _, file, _ = exported_at(12, tmp_path, history)
    current = tmp_path / "current.jsonl"
    assert huddle("export", "--data-dir", str(history.db.parent), "--out", str(current)).returncode == 0

    data = tmp_path / "data"  # a data dir at this Huddle's schema, with rows
    assert huddle("import", "--data-dir", str(data), "--in", str(current)).returncode == 0
    before = dump(data / "huddle.db")
    for force in ([], ["--force"]):
        refused = huddle("import", "--data-dir", str(data), "--in", str(file), *force)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr
        assert f"already has schema version {NEWEST}, which cannot be taken back to 12" in refused.stderr
        assert "Import it into a database without Huddle's schema instead" in refused.stderr
        assert f"upgrades them to {NEWEST}" in refused.stderr and "Nothing was imported" in refused.stderr
        assert dump(data / "huddle.db") == before

    with migrated_database() as url:  # `huddle migrate` ran on it (the set-up steps say so): no rows yet
        refused = huddle("import", "--db-url", url, "--in", str(file), "--force")
        assert refused.returncode == 1 and "cannot be taken back to 12" in refused.stderr
        assert versions_of(url=url) == migrations.known_versions("postgresql")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)

    lines = file.read_text().splitlines()
    never = tmp_path / "never.jsonl"
    never.write_text("\n".join([json.dumps({**json.loads(lines[0]), "schema_version": 7}), *lines[1:]]) + "\n")
    unknown = huddle("import", "--data-dir", str(tmp_path / "fresh"), "--in", str(never))
    assert unknown.returncode == 1 and "schema version 7, which no Huddle had" in unknown.stderr
    assert not (tmp_path / "fresh" / "huddle.db").exists()


@contextmanager
def a_broken_migration_after(version: int, tmp_path: Path) -> Iterator[None]:
    """This process as a Huddle whose migration after `version` fails half-way (its first statement runs)."""
    broken = tmp_path / f"{version + 1:03d}_broken.sql"
    broken.write_text("CREATE TABLE half_done (x INTEGER);\nSELECT * FROM no_such_table;\n")
    real = migrations.migration_files
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(migrations, "migration_files", lambda dialect: [*real(dialect), broken])
        yield


def test_a_failure_while_upgrading_the_imported_rows_leaves_no_half_upgraded_target(
    tmp_path: Path, history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    _, file, _ = exported_at(12, tmp_path, history)

    data = tmp_path / "sqlite"
    with a_broken_migration_after(NEWEST, tmp_path):
        assert huddle_in_process(["import", "--data-dir", str(data), "--in", str(file)]) == 1
    assert "no such table: no_such_table" in capsys.readouterr().err
    assert not (data / "huddle.db").exists()  # a new data dir's database is not left behind, not even empty

    with fresh_database() as url:
        postgres_at(url, 12, None)  # an empty database a Huddle of schema 12 migrated
        with a_broken_migration_after(NEWEST, tmp_path):
            assert huddle_in_process(["import", "--db-url", url, "--in", str(file)]) == 1
        assert "no_such_table" in capsys.readouterr().err
        # Neither the rows nor 013 (which ran) nor the broken one's first statement stayed.
        assert versions_of(url=url) == set(range(1, 13)) & migrations.known_versions("postgresql")
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (0,)
            assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
            assert conn.execute("SELECT to_regclass('intent_modules_by_agent')").fetchone() == (None,)
        # and the same import, without the broken migration, then goes through
        assert f"upgraded to {NEWEST}" in imported("--db-url", url, file=file)

    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(file.read_text().splitlines()[:-3]) + "\n")
    truncated = huddle("import", "--data-dir", str(tmp_path / "cut"), "--in", str(cut))
    assert truncated.returncode == 1 and "ends early" in truncated.stderr
    assert not (tmp_path / "cut" / "huddle.db").exists()


def test_an_import_waits_for_no_one_and_deletes_nothing_in_a_data_dir_another_process_holds(
    tmp_path: Path, history: History
) -> None:
    """A server starting, or a second import, holds the data dir's lock: an import into it is refused
    before it opens the database, so a failure can never remove a file another process made."""
    _, file, _ = exported_at(12, tmp_path, history)
    data = tmp_path / "held"
    data.mkdir()
    lock = DataDirLock(data)
    lock.acquire()
    try:
        theirs = data / "huddle.db"
        theirs.write_bytes(b"")  # what the other process is about to make its database
        refused = huddle("import", "--data-dir", str(data), "--in", str(file))
        assert refused.returncode == 1 and "another Huddle process holds data dir" in refused.stderr
        assert theirs.exists() and theirs.read_bytes() == b""
    finally:
        lock.release()
    assert "imported schema 12" in imported("--data-dir", str(tmp_path / "fresh"), file=file)


def test_a_failed_import_leaves_a_dangling_symlink_named_huddle_db_in_place(tmp_path: Path) -> None:
    data = tmp_path / "linked"
    data.mkdir()
    (data / "huddle.db").symlink_to(tmp_path / "elsewhere" / "real.db")
    damaged = tmp_path / "damaged.jsonl"
    damaged.write_text('{"format": "huddle-export"}\n')
    refused = huddle("import", "--data-dir", str(data), "--in", str(damaged))
    assert refused.returncode == 1
    assert (data / "huddle.db").is_symlink()
