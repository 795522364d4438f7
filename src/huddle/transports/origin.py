"""DNS-rebinding and cross-site protection for every HTTP and WebSocket route (F-90).

On a loopback bind, a web page from another site must not drive Huddle: not by pointing its own
host name at 127.0.0.1 (DNS rebinding: the Host header gives it away), nor by posting to
http://127.0.0.1 from its own origin (the Origin header gives it away; a sandboxed page sends
`Origin: null`, refused too). Agents, hooks and scripts send no Origin and pass. `/mcp` is guarded
by the MCP SDK's own transport security with the same rules, so this middleware leaves it alone.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
SDK_GUARDED_PATHS = ("/mcp",)


def _host_name(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(headers: Headers, bind_host: str) -> str | None:
    """Why a request with these headers may not reach a server bound to `bind_host`, or None."""
    if bind_host not in LOOPBACK_BINDS:
        return None
    host = _host_name(headers.get("host", "127.0.0.1"))
    if host not in LOOPBACK_NAMES:
        return f"Host {host!r} is not allowed on a loopback server (DNS-rebinding protection); use 127.0.0.1"
    origin = headers.get("origin")
    if origin is not None:
        name = urlsplit(origin).hostname or ""
        if name not in LOOPBACK_NAMES and f"[{name}]" not in LOOPBACK_NAMES:
            return f"Origin {origin!r} is not allowed on a loopback server (cross-site protection)"
    return None


class LoopbackGuard:
    """ASGI middleware: refuses foreign Host/Origin with 403 (HTTP) or close code 1008 (WebSocket)."""

    def __init__(self, app: ASGIApp, bind_host: str):
        self.app = app
        self.bind_host = bind_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in SDK_GUARDED_PATHS:
            await self.app(scope, receive, send)
            return
        reason = refusal(Headers(scope=scope), self.bind_host)
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        else:
            await JSONResponse({"ok": False, "code": "forbidden", "error": reason}, status_code=403)(
                scope, receive, send
            )
