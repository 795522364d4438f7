"""`GET /api/events`: Server-Sent Events with `Last-Event-ID` resume (F-62).

Each SSE event is one Huddle event: `id:` is its cursor and `data:` its JSON wire form. A client that
reconnects with `Last-Event-ID` (browsers do it on their own) first gets everything it missed from the
event log, then the live stream — without a gap or a duplicate across the switch, because the live
subscription is opened *before* the log is read and everything at or below the last cursor sent is
skipped. Filters: `agent` (addressed to it), `thread`, `kinds` (`thread.*,lock.acquired`),
`exclude_self=1`; `since=CURSOR` resumes like `Last-Event-ID` for clients that cannot set headers.
Without either, the stream starts at the present (the `X-Huddle-Cursor` response header says where),
and a `: live CURSOR` comment marks the end of each replay from the log.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Sequence
from typing import cast

import anyio
from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from huddle.background import Background
from huddle.domain.events import Event
from huddle.domain.principal import Principal, current_principal
from huddle.errors import Forbidden, HuddleError, InvalidInput
from huddle.push import log as eventlog
from huddle.push.log import EventFilter
from huddle.service.credentials import REVOKED, SIGNED_OUT
from huddle.settings import Settings
from huddle.storage.base import Store

PING_S = 15
RETRY_MS = 1000
LIVE_QUEUE = 5_000  # a client this far behind resyncs from the log instead of growing memory
ENCODED_CACHE = 2_048


def watched_agent(asked: str | None) -> str | None:
    """Whose events a stream may carry: in token mode an agent sees its own slice only (another
    agent's is refused), while admins and the dashboard may watch anyone or everything."""
    principal = current_principal.get()
    if principal is None or principal.sees_everything:
        return asked
    if asked is not None and asked != principal.agent_id:
        raise Forbidden(
            f"you are signed in as {principal.agent_id!r} and may follow only your own events, not {asked!r};"
            " leave agent out or pass your own id",
            field="agent",
        )
    return principal.agent_id


class LiveQueue:
    """One stream's live side: filtered events queued by the dispatcher, a wake-up, and a stop flag.

    `set()` is what sse-starlette calls on the `shutdown_event` it is given when the server is going
    down: the stream then ends cleanly (a complete response) instead of being cut off.
    """

    __slots__ = ("alive", "closing", "events", "lagged", "wake", "wanted")

    def __init__(self, wanted: EventFilter, alive: Callable[[], bool] | None = None):
        self.wanted = wanted
        # Token mode: whether the token the stream was opened with is still good, asked before each
        # delivery; a revoked, signed-out or expired token ends the stream.
        self.alive = alive
        self.events: deque[Event] = deque()
        self.wake = asyncio.Event()
        self.lagged = False
        self.closing = False

    def push(self, events: list[Event]) -> None:
        """Events that passed this stream's filter; never blocks, never grows past LIVE_QUEUE."""
        if self.lagged:
            return
        if len(self.events) + len(events) > LIVE_QUEUE:
            self.lagged = True  # too far behind: the stream resyncs from the log
            self.events.clear()
        else:
            self.events.extend(events)
        self.wake.set()

    def set(self) -> None:
        self.closing = True
        self.wake.set()

    def ended(self) -> bool:
        return self.closing or (self.alive is not None and not self.alive())


class EventStream:
    """All SSE streams of the server, fed by one dispatcher task.

    The bus listener (`offer`) only appends to a list: the per-stream work — filtering, queueing,
    waking — runs in the dispatcher after the request that committed the events has been answered, so
    200 open streams do not slow down the call that caused the event. Streams with the same filter
    share one evaluation of it.
    """

    def __init__(self, store: Store, settings: Settings, still_valid: Callable[[Principal], bool] | None = None):
        self.store = store
        self.settings = settings
        self.still_valid = still_valid
        self.sent = 0
        self.resyncs = 0
        self._groups: dict[EventFilter, set[LiveQueue]] = {}
        self._pending: list[Event] = []
        self._wake = asyncio.Event()
        self._dispatcher = Background("huddle-sse-dispatch")
        self._encoded: OrderedDict[int, bytes] = OrderedDict()

    @property
    def open_streams(self) -> int:
        return sum(len(group) for group in self._groups.values())

    async def start(self) -> None:
        self._dispatcher.start(self._dispatch_forever())

    async def stop(self) -> None:
        self.close_all()
        await self._dispatcher.stop()

    def offer(self, events: Sequence[Event]) -> None:
        """Bus listener: O(1), on the commit path."""
        if self._groups:
            self._pending.extend(events)
            self._wake.set()

    async def _dispatch_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # The request that committed these events was woken after us: let it answer first.
            await asyncio.sleep(0)
            batch, self._pending = self._pending, []
            if any(event.kind in (REVOKED, SIGNED_OUT) for event in batch):
                for group in self._groups.values():
                    for live in group:
                        live.wake.set()  # each re-checks its token (LiveQueue.alive) and may end
            for wanted, group in self._groups.items():
                matched = [event for event in batch if wanted(event)]
                if matched:
                    for live in group:
                        live.push(matched)

    def close_all(self) -> None:
        for group in self._groups.values():
            for live in group:
                live.set()

    def encode(self, event: Event) -> bytes:
        """One event as an SSE frame; shared by every stream (encoded once, not once per subscriber)."""
        frame = self._encoded.get(event.cursor)
        if frame is None:
            data = json.dumps(event.to_dict(), separators=(",", ":"), default=str)
            frame = f"id: {event.cursor}\ndata: {data}\n\n".encode()
            self._encoded[event.cursor] = frame
            if len(self._encoded) > ENCODED_CACHE:
                self._encoded.popitem(last=False)
        return frame

    async def endpoint(self, request: Request) -> Response:
        q = request.query_params
        try:
            wanted = EventFilter.parse(
                agent=watched_agent(q.get("agent")),
                thread=q.get("thread"),
                kinds=q.get("kinds"),
                exclude_self=q.get("exclude_self", "").lower() in ("1", "true", "yes"),
            )
            resume = request.headers.get("last-event-id") or q.get("since") or q.get("cursor")
            if resume is not None and resume.strip() != "":
                if not (resume.strip().isascii() and resume.strip().isdigit()):
                    raise InvalidInput(
                        "Last-Event-ID / since must be an event cursor (a non-negative integer)", field="since"
                    )
                # A cursor beyond the log's end comes from another database (a reset data dir): start at
                # the present rather than skipping every new event until the cursors catch up.
                after = min(int(resume), await eventlog.latest_cursor(self.store))
            else:
                after = await eventlog.latest_cursor(self.store)  # no resume point: live from now on
        except HuddleError as exc:
            return JSONResponse(exc.to_dict(), status_code=exc.status)
        principal = current_principal.get()
        still_valid = self.still_valid
        alive = (lambda: still_valid(principal)) if principal is not None and still_valid is not None else None
        live = LiveQueue(wanted, alive)
        return EventSourceResponse(
            self.stream(live, after),
            ping=PING_S,
            sep="\n",
            headers={"X-Huddle-Cursor": str(after)},
            shutdown_event=cast(anyio.Event, live),  # sse-starlette only calls .set() on it
            shutdown_grace_period=1.0,
        )

    async def stream(self, live: LiveQueue, after: int) -> AsyncIterator[bytes]:
        """Replay from the log after `after`, then live; resync from the log whenever the live queue overflowed.

        The live queue is registered *before* the log is read, and everything at or below the last
        cursor sent is skipped, so the switch from replay to live has neither a gap nor a duplicate.
        """
        self._groups.setdefault(live.wanted, set()).add(live)
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            cursor = after
            while not live.ended():
                while True:
                    page = await eventlog.read_after(self.store, cursor, live.wanted)
                    for event in page:
                        if live.ended():
                            return
                        yield self.encode(event)
                        cursor = event.cursor
                        self.sent += 1
                    if len(page) < eventlog.PAGE:
                        break
                # A comment (invisible to EventSource): the replay is done, what follows is live.
                yield f": live {cursor}\n\n".encode()
                while not live.lagged and not live.ended():
                    if not live.events:
                        live.wake.clear()
                        await live.wake.wait()
                        continue
                    frames = []
                    while live.events:
                        event = live.events.popleft()
                        if event.cursor > cursor:
                            frames.append(self.encode(event))
                            cursor = event.cursor
                    if frames:
                        self.sent += len(frames)
                        yield b"".join(frames)
                if live.lagged:
                    self.resyncs += 1
                    live.events.clear()
                    live.lagged = False
        finally:
            group = self._groups.get(live.wanted)
            if group is not None:
                group.discard(live)
                if not group:
                    del self._groups[live.wanted]
