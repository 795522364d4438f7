"""The write path both backends share: one writer thread per process, group commit, savepoints.

Why this shape (after Datasette): a single thread owns the write connection and runs whole
transaction functions — one thread hop per request. Requests that arrive while a commit is in
flight are batched into the next transaction, each in its own SAVEPOINT so one failing request
rolls back alone (a request alone in its transaction needs none). One durable commit then covers
the whole batch, which is what keeps full durability cheap under load on SQLite
(`synchronous=FULL`) and PostgreSQL (`fsync` + WAL) alike.

A backend supplies the connection and the few statements that differ: how a write transaction
begins (SQLite's BEGIN IMMEDIATE; PostgreSQL's BEGIN plus the project's advisory lock, which is
what serialises writers across instances), what runs just before COMMIT, and how committed events
reach the process's listeners.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from huddle.domain.events import Event
from huddle.errors import Unavailable
from huddle.storage.base import CommitListener, Tx, Unit

T = TypeVar("T")
C = TypeVar("C")  # the backend's connection type
log = logging.getLogger(__name__)
MAX_BATCH = 128


@dataclass
class _Job:
    fn: Callable[[Unit], Any]
    future: asyncio.Future[Any]
    # The caller's context variables (who is calling: domain/principal.py), for the writer thread:
    # the audit row a job's events append names the principal of the request that wrote them.
    context: contextvars.Context


_STOP = object()
Outcome = tuple[_Job, Any, BaseException | None, list[Event]]


class GroupCommitStore(ABC, Generic[C]):
    """Runs transaction functions on one writer thread; subclasses open connections and read."""

    dialect: str
    # True when other Huddle processes may write the same database (PostgreSQL): background jobs
    # then run on one elected leader, and commits reach this process through the event feed.
    shared: bool = False
    db_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, project: str, *, clock: Callable[[], float] = time.time):
        self.project = project
        # This server process among those that may share the database; lock-queue entries are
        # tagged with it, and on PostgreSQL every connection carries it in its application_name.
        self.instance = uuid.uuid4().hex
        self._clock = clock
        self.clock = clock  # the store's time, for services that compare with it (token expiry)
        self._queue: queue.SimpleQueue[_Job | object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._listeners: list[CommitListener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.schema_version = 0
        # Observer of each group commit: (jobs in the batch, seconds COMMIT took). Set by metrics.
        # A lone job that failed is rolled back, not committed, and not observed.
        self.on_batch: Callable[[int, float], None] | None = None

    # -- what a backend supplies -------------------------------------------------------------

    @abstractmethod
    def _connect_writer(self) -> C: ...

    @abstractmethod
    def _tx(self, conn: C) -> Tx: ...

    @abstractmethod
    def _begin(self, conn: C) -> None:
        """Starts a write transaction holding whatever lock makes this the only writer."""

    def _before_commit(self, tx: Tx, events: list[Event]) -> None:
        """Runs inside the transaction after every job, before COMMIT (e.g. NOTIFY)."""

    @abstractmethod
    def _commit(self, conn: C) -> None: ...

    @abstractmethod
    def _rollback(self, conn: C) -> C:
        """Undoes a failed transaction; returns the connection to go on with (a new one if it broke)."""

    @abstractmethod
    def _close_writer(self, conn: C) -> None: ...

    def _publish(self, events: list[Event]) -> None:
        """Hands a commit's events to the listeners (on the event loop, in commit order)."""
        self.notify_listeners(events)

    # -- the contract --------------------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Write jobs queued for the writer thread (approximate, for metrics)."""
        return self._queue.qsize()

    def on_commit(self, listener: CommitListener) -> None:
        self._listeners.append(listener)

    def notify_listeners(self, events: Sequence[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:  # a broken push channel must never fail a committed write
                log.exception("commit listener failed")

    def _start_writer(self, conn: C) -> None:
        self._loop = asyncio.get_running_loop()
        self._writer = threading.Thread(
            target=self._write_loop, args=(conn,), name=f"huddle-{self.dialect}-writer", daemon=True
        )
        self._writer.start()

    async def _stop_writer(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.get_running_loop().run_in_executor(None, self._writer.join)
            self._writer = None

    async def write(self, fn: Callable[[Unit], T]) -> T:
        if self._writer is None:
            raise Unavailable("the database is not open; is the server shutting down?")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put(_Job(fn, future, contextvars.copy_context()))
        return await future

    # -- the writer thread -------------------------------------------------------------------

    def _write_loop(self, conn: C) -> None:
        stopping = False
        while not stopping:
            batch: list[_Job] = []
            item = self._queue.get()
            while True:
                if item is _STOP:
                    stopping = True
                    break
                batch.append(cast(_Job, item))
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                conn = self._run_batch(conn, batch)
        self._close_writer(conn)

    def _run_batch(self, conn: C, batch: list[_Job]) -> C:
        outcomes: list[Outcome] = []
        try:
            try:
                self._begin(conn)
            except self.db_errors:
                # The server dropped the idle connection (a restart, a failover, an idle timeout):
                # no job has run yet, so the batch begins once more on a fresh connection.
                fresh = self._rollback(conn)
                if fresh is conn:
                    raise
                conn = fresh
                self._begin(conn)
            tx = self._tx(conn)
            # A job alone in its transaction needs no savepoint: its failure undoes the whole
            # transaction. That spares the common case, one call at a time, the SAVEPOINT and its
            # RELEASE and SQLite's copy of every page the job changes (8 µs of a lease call's
            # transaction; on PostgreSQL two round trips).
            alone = len(batch) == 1
            committing = True
            for job in batch:
                if not alone:
                    tx.execute("SAVEPOINT job")
                unit = Unit(tx, self._clock(), self.project)
                try:
                    result = job.context.run(job.fn, unit)
                except BaseException as exc:
                    # The job's own failure: undo just this job. If the connection itself broke,
                    # this rollback fails too and the whole batch is refused below.
                    if alone:
                        tx.execute("ROLLBACK")
                        committing = False
                    else:
                        tx.execute("ROLLBACK TO SAVEPOINT job")
                        tx.execute("RELEASE SAVEPOINT job")
                    outcomes.append((job, None, exc, []))
                else:
                    if not alone:
                        tx.execute("RELEASE SAVEPOINT job")
                    outcomes.append((job, result, None, unit.events))
            if committing:
                self._before_commit(tx, [e for *_, events in outcomes for e in events])
                started = time.perf_counter()
                self._commit(conn)
                if self.on_batch is not None:
                    self.on_batch(len(batch), time.perf_counter() - started)
        except self.db_errors as exc:
            conn = self._rollback(conn)
            failure = Unavailable(f"the database could not commit ({exc}); retry the call")
            outcomes = [(job, None, failure, []) for job in batch]
        assert self._loop is not None
        # call_soon_threadsafe is FIFO, so listeners see events in commit order.
        self._loop.call_soon_threadsafe(self._deliver, outcomes)
        return conn

    def _deliver(self, outcomes: list[Outcome]) -> None:
        committed = [event for _, _, _, events in outcomes for event in events]
        if committed:
            self._publish(committed)
        for job, result, error, _ in outcomes:
            if job.future.done():  # the caller went away (cancelled); the write still stands
                continue
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result(result)
