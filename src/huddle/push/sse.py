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
from collections import OrderedDict
from collections.abc import AsyncIterator

from sse_starlette.sse import EventSourceResponse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from huddle.bus.memory import EventBus
from huddle.domain.events import Event
from huddle.errors import HuddleError, InvalidInput
from huddle.push import log as eventlog
from huddle.push.guard import request_allowed
from huddle.push.log import EventFilter
from huddle.settings import Settings
from huddle.storage.base import Store

PING_S = 15
RETRY_MS = 1000
LIVE_QUEUE = 5_000  # a client this far behind resyncs from the log instead of growing memory
ENCODED_CACHE = 2_048


class EventStream:
    def __init__(self, store: Store, bus: EventBus, settings: Settings):
        self.store = store
        self.bus = bus
        self.settings = settings
        self.open_streams = 0
        self.sent = 0
        self.resyncs = 0
        self._encoded: OrderedDict[int, bytes] = OrderedDict()

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
        denied = request_allowed(request, self.settings)
        if denied is not None:
            return denied
        q = request.query_params
        try:
            wanted = EventFilter.parse(
                agent=q.get("agent"),
                thread=q.get("thread"),
                kinds=q.get("kinds"),
                exclude_self=q.get("exclude_self", "").lower() in ("1", "true", "yes"),
            )
            resume = request.headers.get("last-event-id") or q.get("since") or q.get("cursor")
            if resume is not None and resume.strip() != "":
                if not resume.strip().isdigit():
                    raise InvalidInput(
                        "Last-Event-ID / since must be an event cursor (a non-negative integer)", field="since"
                    )
                after = int(resume)
            else:
                after = await eventlog.latest_cursor(self.store)  # no resume point: live from now on
        except HuddleError as exc:
            return JSONResponse(exc.to_dict(), status_code=exc.status)
        return EventSourceResponse(
            self.stream(wanted, after), ping=PING_S, sep="\n", headers={"X-Huddle-Cursor": str(after)}
        )

    async def stream(self, wanted: EventFilter, after: int) -> AsyncIterator[bytes]:
        """Replay from the log after `after`, then live; resync from the log whenever the live queue overflowed."""
        subscription = self.bus.subscribe(wanted, maxsize=LIVE_QUEUE)
        self.open_streams += 1
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            cursor = after
            while True:
                while True:
                    page = await eventlog.read_after(self.store, cursor, wanted)
                    for event in page:
                        yield self.encode(event)
                        cursor = event.cursor
                        self.sent += 1
                    if len(page) < eventlog.PAGE:
                        break
                # A comment (invisible to EventSource): the replay is done, what follows is live.
                yield f": live {cursor}\n\n".encode()
                while not subscription.lagged:
                    first = await subscription.next_event()
                    # Woken by a commit: let the request that made it send its response first (it was
                    # scheduled after us), then send everything queued by now as one chunk.
                    await asyncio.sleep(0)
                    frames = []
                    for live in (first, *subscription.drain()):
                        if live is not None and live.cursor > cursor:
                            frames.append(self.encode(live))
                            cursor = live.cursor
                    if frames:
                        self.sent += len(frames)
                        yield b"".join(frames)
                # Too far behind: drop the queue and read the rest from the log (drain first, then read).
                self.resyncs += 1
                subscription.lagged = False
                subscription.drain()
        finally:
            subscription.close()
            self.open_streams -= 1
