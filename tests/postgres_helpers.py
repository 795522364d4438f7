"""PostgreSQL databases for tests, on the machine's server (127.0.0.1:5432, database `test`).

`fresh_database()` creates an empty database and drops it afterwards. `migrated_database()` hands
out a database that already holds Huddle's schema and no rows: creating and migrating a database
costs seconds on a busy machine, so these come from a pool kept for the test run and are emptied
(rows deleted, id sequences reset) when a test gives one back — as good as fresh, in milliseconds.

`HUDDLE_TEST_POSTGRES` overrides the admin URL. Where PostgreSQL cannot be reached the tests that
need it skip with the reason — except in CI (`CI` set), where they fail: CI must not skip them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from huddle.cli.runtime import pid_alive
from huddle.storage import migrations
from huddle.storage.postgres import connect, migrate

ADMIN_URL = os.environ.get("HUDDLE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


@functools.cache
def unreachable_reason() -> str | None:
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL is not reachable at {ADMIN_URL} ({exc}); set HUDDLE_TEST_POSTGRES to an admin URL"
    return None


def require_postgres() -> None:
    reason = unreachable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


# Test databases sort text like a typical production install (glibc's en_US.UTF-8, which ignores
# punctuation at first and folds case), not like the C locale this machine's PostgreSQL defaults to:
# SQL that only works under byte order (prefix ranges, ORDER BY on names) fails here, not in the field.
LINGUISTIC_ICU_LOCALE = "und-u-ka-shifted"


@functools.cache
def _create_options() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        icu = conn.execute("SELECT 1 FROM pg_collation WHERE collprovider = 'i' LIMIT 1").fetchone()
    if icu is None:  # PostgreSQL built without ICU: the server's default collation it is
        return ""
    return f" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE '{LINGUISTIC_ICU_LOCALE}'"


def _create(prefix: str = "huddle_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}{_create_options()}")
    return name


def _drop(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def fresh_database() -> Iterator[str]:
    """Creates an empty database, yields its URL, drops it (and any connection left on it)."""
    require_postgres()
    name = _create()
    try:
        yield url_for(name)
    finally:
        _drop(name)


POOL_PREFIX = "huddle_pool"


class _Pool:
    """Migrated databases of this test run not in use by a test; all dropped when the run ends.

    Their names carry the test run's pid, so a run that was killed before it could drop them has
    its leftovers dropped by the next run on this machine (never a live run's).
    """

    def __init__(self) -> None:
        self.idle: list[str] = []
        self.owned: set[str] = set()
        self.swept = False

    def take(self) -> str:
        if not self.swept:
            self.swept = True
            _drop_leftovers()
        if self.idle:
            return self.idle.pop()
        name = _create(f"{POOL_PREFIX}_{os.getpid()}")
        self.owned.add(name)
        try:
            with connect(url_for(name)) as conn:
                migrate(conn)
        except BaseException:
            self.discard(name)
            raise
        return name

    def give_back(self, name: str) -> None:
        try:
            reusable = _empty(name)
        except psycopg.Error:
            reusable = False
        if reusable:
            self.idle.append(name)
        else:
            self.discard(name)

    def discard(self, name: str) -> None:
        self.owned.discard(name)
        _drop(name)

    def drop_all(self) -> None:
        for name in list(self.owned):
            with contextlib.suppress(psycopg.Error):  # the server went away first: nothing to clean
                self.discard(name)


def _drop_leftovers() -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'huddle\\_pool\\_%'")]
    for name in names:
        pid = name.removeprefix(f"{POOL_PREFIX}_").split("_", 1)[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            with contextlib.suppress(psycopg.Error):  # another run dropped it first
                _drop(name)


def _empty(name: str) -> bool:
    """Deletes every row but the schema's and resets the id sequences; False if the schema was changed."""
    with psycopg.connect(url_for(name), autocommit=True) as conn:
        # Whatever a test left connected (a killed server's sessions, a store not closed) goes first.
        conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        if applied != migrations.known_versions("postgresql"):
            return False  # a test migrated it elsewhere (a newer version, a rollback): not fresh any more
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_migrations'"
            )
        ]
        sequences = [
            row[0]
            for row in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'S' AND n.nspname = 'public'"
            )
        ]
        # DELETE, not TRUNCATE: on tables this small it is a hundred times faster (no new files to sync).
        with conn.transaction():
            for table in tables:
                conn.execute(f'DELETE FROM "{table}"')
            for sequence in sequences:
                conn.execute("SELECT setval(%s, 1, false)", (sequence,))
    return True


_pool = _Pool()
atexit.register(_pool.drop_all)


@contextmanager
def migrated_database() -> Iterator[str]:
    """The URL of a database holding Huddle's current schema and no rows (from the run's pool)."""
    require_postgres()
    name = _pool.take()
    try:
        yield url_for(name)
    finally:
        _pool.give_back(name)


def url_for(name: str) -> str:
    """A postgresql:// URL (what a user passes as --db-url) for database `name` on the admin server."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{name}"
