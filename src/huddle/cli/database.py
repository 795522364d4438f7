"""`huddle migrate`, `huddle export` and `huddle import`: the database, for operators.

Each acts on one database: `--db-url postgresql://…`, or the data dir's (`--data-dir`, default
~/.huddle): its huddle.db, unless its config.toml or HUDDLE_DB_URL names a db_url, exactly as
`huddle server start` on that data dir would choose. Every command says which database it used.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huddle.cli.runtime import IMPORT_HOLDER, DataDirLock, data_dir_of, importing, prepare_data_dir, running_server
from huddle.errors import HuddleError
from huddle.settings import load_settings

DB_NAME = "huddle.db"


@dataclass(frozen=True)
class Target:
    url: str  # a PostgreSQL URL, or "" for the SQLite file below
    data_dir: Path

    @property
    def path(self) -> Path:
        return self.data_dir / DB_NAME

    @property
    def flag(self) -> str:
        """How to name this database again on the command line, for hints."""
        from huddle.storage.postgres import redact

        return f"--db-url {redact(self.url)}" if self.url else f"--data-dir {self.data_dir}"


def _where(parser: Any, *, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--db-url", help="a PostgreSQL database: postgresql://user@host:5432/db")
    group.add_argument(
        "--data-dir",
        help="a data dir: its huddle.db, or the db_url its config.toml / HUDDLE_DB_URL names"
        " [env HUDDLE_DATA_DIR; default ~/.huddle]",
    )


def add_database_parsers(commands: Any) -> None:
    migrate = commands.add_parser(
        "migrate",
        help="apply pending schema migrations (a server start does it too)",
        description="Apply the schema migrations the database lacks, and print what was applied and the"
        " resulting version. `huddle server start` migrates on its own; run this to migrate separately,"
        " e.g. once before starting several instances on one PostgreSQL database.",
    )
    _where(migrate, required=False)
    migrate.add_argument("--dry-run", action="store_true", help="list the pending migrations; change nothing")

    export = commands.add_parser(
        "export",
        help="write every row of a project to a JSON lines file (consistent while the server runs)",
        description="Export from one consistent snapshot, while servers keep writing. Move a project"
        " between SQLite and PostgreSQL with huddle export and huddle import.",
    )
    _where(export, required=False)
    export.add_argument("--out", required=True, help="file to write (refused if it exists, unless --force)")
    export.add_argument("--project", action="append", help="export only this project (repeatable; default: all)")
    export.add_argument("--force", action="store_true", help="overwrite --out if it exists")

    import_ = commands.add_parser(
        "import",
        help="load a huddle export file into a database, in one transaction",
        description="Import a file written by huddle export, in one transaction: the target's schema is"
        " brought to the file's version, the rows go in, then the migrations the file's Huddle lacked are"
        " applied, so an export of an older Huddle's imports into an empty database and ends at this"
        ' Huddle\'s schema ("imported schema 12, upgraded to 13"). A target whose schema is newer than'
        " the file's is refused (a schema is never taken back), and one with rows unless --force. Rows"
        " keep their ids and event cursors (clients' cursors stay valid) and new rows are numbered after"
        " them; any failure leaves the target as it was. Stop the servers on the target first.",
    )
    _where(import_, required=True)
    import_.add_argument("--in", dest="in_", required=True, metavar="FILE", help="a file written by huddle export")
    import_.add_argument(
        "--force",
        action="store_true",
        help="import into a database that has rows: the file's projects are replaced, other projects kept",
    )


def target_of(args: argparse.Namespace) -> Target:
    url = getattr(args, "db_url", None)
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise HuddleError("--db-url must be a PostgreSQL URL such as postgresql://huddle@127.0.0.1:5432/huddle")
        return Target(url, data_dir_of(args))
    settings = load_settings({"data_dir": str(data_dir_of(args))})
    return Target(settings.db_url, settings.data_path)


@contextlib.contextmanager
def opened(target: Target, *, create: bool, readonly: bool = False) -> Iterator[Any]:
    """The target database, open; driver errors become one clear line."""
    from huddle.storage.admin import database_errors, open_database

    if not target.url:
        if not create and not target.path.is_file():
            raise HuddleError(f"no database at {target.path}; pass the --data-dir your server uses (or --db-url)")
        if create:
            prepare_data_dir(target.data_dir)
    db = open_database(url=target.url, path=target.path, readonly=readonly)  # unreachable: one clear line
    with database_errors(target.flag), db:
        yield db


def run_migrate(args: argparse.Namespace) -> int:
    from huddle.storage.admin import describe_versions

    target = target_of(args)
    if args.dry_run and not target.url and not target.path.is_file():
        from huddle.storage import migrations

        files = migrations.migration_files("sqlite")
        print(f"database {target.path} does not exist yet; every migration is pending:")
        print("  " + describe_versions((migrations.version_of(f), f.name) for f in files))
        return 0
    with opened(target, create=not args.dry_run) as db:
        if args.dry_run:
            pending = db.pending()
            version = db.schema_version()
            if not pending:
                print(f"database {db.label}: schema version {version}, nothing pending")
            else:
                print(f"database {db.label}: schema version {version}; {len(pending)} pending:")
                print("  " + describe_versions(pending))
            return 0
        before = db.schema_version()
        pending = dict(db.pending())
        version, applied = db.migrate()
        if applied:
            print(f"database {db.label}: schema version {before} → {version}; applied:")
            print("  " + describe_versions((v, pending.get(v, f"{v:03d}")) for v in applied))
        else:
            print(f"database {db.label}: schema version {version}, up to date (nothing to apply)")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from huddle.storage.transfer import export

    target = target_of(args)
    out = Path(args.out).expanduser()
    if out.exists() and not args.force:
        raise HuddleError(f"{out} already exists; pass another --out or --force")
    if not out.parent.is_dir():
        raise HuddleError(f"{out.parent} is not a directory; create it first")
    partial = out.with_name(f".{out.name}.partial")
    try:
        with opened(target, create=False, readonly=True) as db, partial.open("w", encoding="utf-8") as f:
            summary = export(db, f, args.project or ())
            f.flush()
            os.fsync(f.fileno())
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    rows = sum(summary["tables"].values())
    cursors = ", ".join(f"{p} up to cursor {c}" for p, c in summary["cursors"].items()) or "no events"
    print(
        f"exported {db.label} to {out}: project(s) {', '.join(summary['projects']) or '(none)'}, {rows} rows in"
        f" {len(summary['tables'])} tables, schema {summary['schema_version']}, events {cursors}"
    )
    return 0


def run_import(args: argparse.Namespace) -> int:
    from huddle.storage.transfer import read_header

    target = target_of(args)
    source = Path(args.in_).expanduser()
    if not source.is_file():
        raise HuddleError(f"{source} is not a file; pass the --out file of huddle export")
    with source.open(encoding="utf-8", errors="replace") as f:
        read_header(f, str(source))  # refuse a foreign file before touching the target
    with _holding_data_dir(target):
        # Decided under the data dir's lock: no server or other import can create the file meanwhile.
        # lexists: a dangling symlink named huddle.db is the user's, not a file this import makes.
        new_file = not target.url and not os.path.lexists(target.path)
        try:
            summary, db = _import_into(target, source, force=args.force)
        except BaseException:
            if new_file:  # the import rolled back: leave no empty database file behind either
                _remove_sqlite_files(target.path)
            raise
    schema = _schema_story(db.dialect, db.label, summary)
    if schema:
        print(schema)
    rows = sum(summary["tables"].values())
    cursors = ", ".join(f"{p} up to cursor {c}" for p, c in summary["cursors"].items()) or "no events"
    replaced = f", after deleting {summary['replaced']} rows of those projects" if summary["replaced"] else ""
    print(
        f"imported {source} into {db.label}: project(s) {', '.join(summary['projects']) or '(none)'}, {rows} rows"
        f" in {len(summary['tables'])} tables{replaced}, events {cursors} (cursors kept), in"
        f" {summary['seconds']:.2f}s"
    )
    print(
        f"start the server on it with the same project: huddle server start {target.flag}"
        + (f" --project {summary['projects'][0]}" if len(summary["projects"]) == 1 else "")
    )
    return 0


@contextlib.contextmanager
def _holding_data_dir(target: Target) -> Iterator[None]:
    """Holds a SQLite data dir's server lock for an import: no server starts on the file, and no
    second import writes it, until this one has committed or cleaned up after itself."""
    if target.url:
        yield
        return
    prepare_data_dir(target.data_dir)
    lock = DataDirLock(target.data_dir, IMPORT_HOLDER)
    try:
        lock.acquire()
    except HuddleError as refused:
        if importing(target.data_dir):
            raise refused from None  # another import: its own words say so
        server = running_server(target.data_dir)
        if server is not None and server.url != "(starting)":
            raise HuddleError(
                f"a server is running on {target.data_dir} (pid {server.pid} at {server.url}); stop it first:"
                f" huddle server stop --data-dir {target.data_dir}"
            ) from None
        raise HuddleError(
            f"another Huddle process holds data dir {target.data_dir} (a server starting, or another import);"
            f" let it finish or stop it (huddle server stop --data-dir {target.data_dir}), then import again"
        ) from None
    try:
        yield
    finally:
        lock.release()


def _import_into(target: Target, source: Path, *, force: bool) -> tuple[dict[str, Any], Any]:
    """Runs the import into the open target; (its summary, the database it wrote)."""
    from huddle.storage.transfer import import_

    with opened(target, create=True) as db:
        if target.url:
            sessions = db.server_sessions()
            if sessions:
                raise HuddleError(
                    f"Huddle servers hold {len(sessions)} connection(s) to {db.label}; stop every server on"
                    " that database before importing into it"
                )
        with source.open(encoding="utf-8") as f:
            return import_(db, f, str(source), force=force), db


def _schema_story(dialect: str, label: str, summary: dict[str, Any]) -> str:
    """What the import did to the target's schema, in one line ("" if nothing)."""
    from huddle.storage import migrations
    from huddle.storage.admin import describe_versions

    names = {migrations.version_of(f): f.name for f in migrations.migration_files(dialect)}
    before, at_file, now = summary["target_schema_version"], summary["file_schema_version"], summary["schema_version"]
    if summary["upgraded"]:
        if not summary["created"]:
            first = f"{label} had the file's schema {at_file}"
        elif before == 0:
            first = f"created the schema of {label} at the file's version {at_file}"
        else:
            first = f"migrated {label} from schema version {before} to the file's {at_file}"
        applied = describe_versions((v, names[v]) for v in summary["upgraded"])
        return (
            f"imported schema {at_file}, upgraded to {now}: {first}, imported the rows, then applied {applied},"
            " in one transaction"
        )
    if summary["created"]:
        return f"migrated {label} to schema version {now} first (in the import's transaction)"
    return ""


def _remove_sqlite_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
