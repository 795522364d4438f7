"""A fresh PostgreSQL database per test, on the machine's server (127.0.0.1:5432, database `test`).

`HUDDLE_TEST_POSTGRES` overrides the admin URL. Where PostgreSQL cannot be reached the tests that
need it skip with the reason — except in CI (`CI` set), where they fail: CI must not skip them.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

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


@contextmanager
def fresh_database() -> Iterator[str]:
    """Creates an empty database, yields its URL, drops it (and any connection left on it)."""
    require_postgres()
    name = f"huddle_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield url_for(name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def url_for(name: str) -> str:
    """A postgresql:// URL (what a user passes as --db-url) for database `name` on the admin server."""
    info = psycopg.conninfo.conninfo_to_dict(ADMIN_URL)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    return f"postgresql://{user}@{host}:{port}/{name}"
