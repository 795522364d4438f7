"""DNS-rebinding and cross-site protection for every HTTP and WebSocket route, /mcp included (F-90).

A web page from another site must not drive Huddle, whatever address it binds to:
- On every bind, a request carrying a foreign `Origin` is refused: only no Origin (agents, hooks,
  scripts), the server's own origin (same scheme-less host and port as the `Host` header), a
  loopback origin on a loopback bind, and the `allowed_origins` setting pass. A sandboxed page
  sends `Origin: null`; refused too.
- On a loopback bind the `Host` header must be a loopback name as well: a page that points its
  own host name at 127.0.0.1 (DNS rebinding) gives itself away there. A non-loopback bind is
  reached by names Huddle cannot know, so only the Origin rule applies.
REST additionally refuses bodies that are not declared JSON (transports/http.py), the kinds a
browser would send cross-site without asking first.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def _host_name(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def parse_allowed_origins(value: str) -> frozenset[str]:
    """`allowed_origins` is a comma-separated list of origins such as `https://board.example:8443`."""
    return frozenset(item.strip().rstrip("/").lower() for item in value.split(",") if item.strip())


def refusal(headers: Headers, bind_host: str, allowed: Iterable[str] = ()) -> str | None:
    """Why a request with these headers may not reach a server bound to `bind_host`, or None."""
    loopback = bind_host in LOOPBACK_BINDS
    host_header = headers.get("host", "127.0.0.1")
    if loopback and _host_name(host_header) not in LOOPBACK_NAMES:
        host = _host_name(host_header)
        return f"Host {host!r} is not allowed on a loopback server (DNS-rebinding protection); use 127.0.0.1"
    origin = headers.get("origin")
    if origin is None or origin.rstrip("/").lower() in allowed:
        return None
    parts = urlsplit(origin)
    name = parts.hostname or ""
    if loopback and (name in LOOPBACK_NAMES or f"[{name}]" in LOOPBACK_NAMES):
        return None
    if parts.netloc and parts.netloc.lower() == host_header.lower():
        return None  # same origin: a page Huddle itself served (the dashboard)
    return (
        f"Origin {origin!r} is not allowed (cross-site protection); requests from web pages must come from"
        " this server's own origin or one listed in the allowed_origins setting"
    )


class CrossSiteGuard:
    """ASGI middleware: refuses foreign Host/Origin with 403 (HTTP) or close code 1008 (WebSocket)."""

    def __init__(self, app: ASGIApp, bind_host: str, allowed_origins: str = ""):
        self.app = app
        self.bind_host = bind_host
        self.allowed = parse_allowed_origins(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        reason = refusal(Headers(scope=scope), self.bind_host, self.allowed)
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        else:
            await JSONResponse({"ok": False, "code": "forbidden", "error": reason}, status_code=403)(
                scope, receive, send
            )
