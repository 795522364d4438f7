"""DNS-rebinding protection for the push endpoints (F-90), matching what /mcp enforces.

On a loopback bind, a browser page from another site must not read `/api/events` or talk MQTT over
`/mqtt` by pointing its own host name at 127.0.0.1: the Host header must be a loopback name and an
Origin, when sent, must be a loopback origin. Non-browser clients send no Origin and pass.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from huddle.settings import Settings

LOOPBACK_BINDS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def _host_name(value: str) -> str:
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def refusal(conn: HTTPConnection, settings: Settings) -> str | None:
    """Why this request may not use a push endpoint, or None when it may."""
    if settings.host not in LOOPBACK_BINDS:
        return None
    host = _host_name(conn.headers.get("host", "127.0.0.1"))
    if host not in LOOPBACK_NAMES:
        return f"Host {host!r} is not allowed on a loopback server (DNS-rebinding protection); use 127.0.0.1"
    origin = conn.headers.get("origin")
    if origin and origin != "null":
        name = urlsplit(origin).hostname or ""
        if name not in LOOPBACK_NAMES and f"[{name}]" not in LOOPBACK_NAMES:
            return f"Origin {origin!r} is not allowed on a loopback server (DNS-rebinding protection)"
    return None


def request_allowed(conn: HTTPConnection, settings: Settings) -> JSONResponse | None:
    reason = refusal(conn, settings)
    if reason is None:
        return None
    return JSONResponse({"ok": False, "code": "forbidden", "error": reason}, status_code=403)
