"""The cross-instance event feed: every commit on a shared database reaches this process's bus.

Several Huddle processes write one PostgreSQL database; each process's bus (lock queues, blocking
waits, SSE, MQTT, MCP notifications) must hear of every commit, whoever made it. The feed keeps the
cursor of the last event it delivered and hands the bus everything after it, in cursor order,
exactly once:

- this process's own commits go straight through when they follow on from the last delivered
  cursor (the common case, no extra query);
- otherwise — another instance committed in between — the feed reads `cursor > last` from the
  database, which is complete because cursors are assigned in commit order (storage/postgres.py);
- it is woken by PostgreSQL NOTIFY (a payload-free ping per commit), and polls every `poll_s`
  anyway, so a dropped notification or a listener that reconnects misses nothing, only waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

import psycopg

from huddle.background import Background
from huddle.domain.events import Event
from huddle.storage.base import Unit, event_from_row, latest_cursor

if TYPE_CHECKING:
    from huddle.storage.postgres import PostgresStore

log = logging.getLogger(__name__)
PAGE = 1000


def _events_after(cursor: int, unit: Unit) -> list[Event]:
    rows = unit.tx.all(
        "SELECT * FROM events WHERE project = ? AND cursor > ? ORDER BY cursor LIMIT ?", (unit.project, cursor, PAGE)
    )
    return [event_from_row(r) for r in rows]


class EventFeed:
    def __init__(self, store: PostgresStore, *, poll_s: float = 1.0):
        self.store = store
        self.poll_s = poll_s
        self.last = 0
        self._wake = asyncio.Event()
        self._tail = Background("huddle-event-feed")
        self._listen = Background("huddle-event-listen")

    async def start(self) -> None:
        # Like the SQLite bus, the feed carries what is committed from now on; history is read by cursor.
        self.last = await self.store.read(latest_cursor)
        self._wake = asyncio.Event()
        self._tail.start(self._tail_forever())
        self._listen.start(self._listen_forever())

    async def stop(self) -> None:
        await self._listen.stop()
        await self._tail.stop()

    def local_commit(self, events: list[Event]) -> None:
        """This process committed `events` (on the event loop, in commit order)."""
        if events[0].cursor == self.last + 1:
            self._deliver(events)
        else:
            self._wake.set()  # someone else's commit comes first: read the gap from the log

    def wake(self) -> None:
        self._wake.set()

    def _deliver(self, events: list[Event]) -> None:
        fresh = [e for e in events if e.cursor > self.last]  # a read racing a local commit
        if not fresh:
            return
        self.last = fresh[-1].cursor
        self.store.notify_listeners(fresh)

    async def catch_up(self) -> None:
        """Delivers every committed event after the last delivered cursor."""
        while True:
            events = await self.store.read(functools.partial(_events_after, self.last))
            if events:
                self._deliver(events)
            if len(events) < PAGE:
                return

    async def _tail_forever(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel from stop().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.catch_up()
            except Exception as exc:  # the database is away: try again on the next wake or poll
                log.warning("event feed could not read the log: %s", exc)

    async def _listen_forever(self) -> None:
        """LISTEN for commit pings; reconnects after a failure and then catches up."""
        from huddle.storage.postgres import NOTIFY_CHANNEL, connection_name

        while True:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.store.url,
                    autocommit=True,
                    application_name=connection_name("feed", self.store.instance),
                )
                await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self._wake.set()  # anything committed while we were not listening
                async for note in conn.notifies():
                    if note.payload == self.store.project:
                        self._wake.set()
            except psycopg.Error as exc:
                log.warning("event feed listener lost its connection (%s); reconnecting", exc)
            finally:
                if conn is not None:
                    await conn.close()
            await asyncio.sleep(self.poll_s)  # back off before reconnecting; polling covers the gap
