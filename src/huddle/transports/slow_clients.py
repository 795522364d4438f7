"""Deadlines for slow clients: a request's headers and its body must arrive in bounded time.

uvicorn times out idle keep-alive connections but not a request being sent: a client that sends
half its headers, or a body shorter than its Content-Length, holds a descriptor (and, for the
body, an ASGI task) forever — a slowloris. These deadlines are totals, not per-read idle timers,
so a client trickling one byte every few seconds is cut off too:

- `header_timeout_s` from the connection's first byte of a request (or from the connection being
  opened) until the end of its headers;
- `body_timeout_s` from the end of the headers until the end of the body.

On expiry the client gets `408 Request Timeout` (if nothing was answered yet) and the connection
is closed; a handler waiting on the body sees `http.disconnect`. Streaming responses (SSE, the
MCP GET stream) are not affected: the deadlines end when the request has been received.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
)


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header and body deadlines (see the module docstring)."""

    header_timeout_s = 10.0
    body_timeout_s = 30.0

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is None or not self.cycle.response_started:
            body = (
                b'{"ok":false,"code":"request_timeout","error":"the request '
                + what.encode()
                + b' did not arrive in time; send the whole request at once"}'
            )
            self.transport.write(REQUEST_TIMEOUT % len(body) + body)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout_s, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm(self.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.parser.should_upgrade():
            self._disarm()  # a WebSocket: its frames are not a request body
        else:
            self._arm(self.body_timeout_s, "body")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def deadline_protocol(header_timeout_s: float, body_timeout_s: float) -> type[DeadlineProtocol]:
    """The protocol class for uvicorn's `http=` option, with these deadlines."""
    return type(
        "DeadlineProtocol",
        (DeadlineProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
