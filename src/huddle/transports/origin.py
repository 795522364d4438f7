"""DNS-rebinding and cross-site protection for every HTTP and WebSocket route, /mcp included (F-90).

A web page from another site must not drive Huddle, whatever address it binds to:
- On every bind, a request carrying a foreign `Origin` is refused: only no Origin (agents, hooks,
  scripts), a loopback origin on a loopback bind, an origin in the `allowed_origins` setting, and
  the server's own origin pass. A sandboxed page sends `Origin: null`; refused too.
- "Own origin" means the Origin's scheme, host and port equal the request's scheme and `Host`
  header AND that host is one Huddle knows is its own: an IP literal equal to the bound or served
  address, or a name in the `allowed_hosts` setting (or the host of an `allowed_origins` entry).
  Comparing Origin with Host alone is not enough: after DNS rebinding the attacker's page names
  its own host in both.
- A loopback bind is any loopback address (all of 127.0.0.0/8, ::1, `localhost`). There the
  `Host` header must be a loopback name (or in `allowed_hosts`) too: a page that points its own
  host name at 127.0.0.1 gives itself away.
This guard is the only Origin/Host check: the MCP SDK's own one is off, so /mcp and REST answer the
same Origin the same way.
REST additionally refuses bodies that are not declared JSON (transports/http.py), the kinds a
browser would send cross-site without asking first.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

LOCALHOST_NAMES = ("localhost", "localhost.")


def is_loopback(host: str) -> bool:
    """True for `localhost` and every loopback IP literal (127.0.0.0/8, ::1), bracketed or not."""
    name = host.strip("[]").lower()
    if name in LOCALHOST_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _split_host(value: str) -> tuple[str, int | None]:
    """`name[:port]` or `[v6][:port]` as (lower-case name without brackets, port or None)."""
    parts = urlsplit("//" + value)
    try:
        port = parts.port
    except ValueError:
        port = -1  # a malformed port: matches nothing
    return (parts.hostname or ""), port


def parse_allowed_origins(value: str) -> frozenset[str]:
    """`allowed_origins` is a comma-separated list of origins such as `https://board.example:8443`."""
    return frozenset(item.strip().rstrip("/").lower() for item in value.split(",") if item.strip())


def parse_allowed_hosts(value: str) -> frozenset[str]:
    """`allowed_hosts` is a comma-separated list of host names such as `huddle.internal`."""
    return frozenset(item.strip().strip("[]").rstrip(".").lower() for item in value.split(",") if item.strip())


DEFAULT_PORTS = {"http": 80, "https": 443}
VERDICTS_KEPT = 1024
MAX_REMEMBERED_BYTES = 512  # Host + Origin of a verdict worth remembering


def refusal(
    headers: Headers,
    bind_host: str,
    allowed: Iterable[str] = (),
    *,
    allowed_hosts: Iterable[str] = (),
    scheme: str = "http",
    served: str | None = None,
) -> str | None:
    """Why a request with these headers may not reach a server bound to `bind_host`, or None.

    `scheme` is the request's own (http or https); `served` the local address it arrived on.
    """
    allowed = frozenset(allowed)
    own_names = set(allowed_hosts) | {urlsplit(o).hostname or "" for o in allowed}
    loopback = is_loopback(bind_host)
    host_header = headers.get("host", "127.0.0.1")
    host, host_port = _split_host(host_header)
    if loopback and not is_loopback(host) and host.rstrip(".") not in own_names:
        return (
            f"Host {host[:100]!r} is not allowed on a loopback server (DNS-rebinding protection); use 127.0.0.1, "
            "or list the name in the allowed_hosts setting"
        )
    origin = headers.get("origin")
    if origin is None or origin.rstrip("/").lower() in allowed:
        return None
    parts = urlsplit(origin.strip())
    name = parts.hostname or ""
    origin_scheme = parts.scheme.lower()
    if loopback and is_loopback(name) and origin_scheme in DEFAULT_PORTS:
        return None
    try:
        origin_port = parts.port or DEFAULT_PORTS.get(origin_scheme)
    except ValueError:
        origin_port = None
    same = (
        origin_scheme == scheme
        and name == host
        and origin_port == (host_port or DEFAULT_PORTS.get(scheme))
        and (
            name.rstrip(".") in own_names
            or (_ip(name) is not None and _ip(name) in {_ip(bind_host), _ip(served or "")})
        )
    )
    if same:
        return None  # same origin: a page Huddle itself served (the dashboard)
    return (
        f"Origin {origin[:100]!r} is not allowed (cross-site protection); requests from web pages must come from"
        " this server's own address, or from an origin or host listed in the allowed_origins or allowed_hosts"
        " setting"
    )


class CrossSiteGuard:
    """ASGI middleware: refuses foreign Host/Origin with 403 (HTTP) or close code 1008 (WebSocket)."""

    def __init__(self, app: ASGIApp, bind_host: str, allowed_origins: str = "", allowed_hosts: str = ""):
        self.app = app
        self.bind_host = bind_host
        self.allowed = parse_allowed_origins(allowed_origins)
        self.allowed_hosts = parse_allowed_hosts(allowed_hosts)
        # The verdict depends only on (scheme, served address, Host, Origin) and the settings, and
        # every agent sends the same few: remembered, it costs a dict lookup instead of ~8 µs of
        # URL and IP parsing per request. Bounded: a client sending new values fills it, then it
        # starts over.
        self._verdicts: dict[tuple[str, str | None, bytes | None, bytes | None], str | None] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
        server = scope.get("server")
        served = str(server[0]) if server else None
        host = origin = None
        for name, value in scope.get("headers") or ():  # the first of each, as Headers.get reads them
            if name == b"host" and host is None:
                host = value
            elif name == b"origin" and origin is None:
                origin = value
        key = (scheme, served, host, origin)
        if key in self._verdicts:
            reason = self._verdicts[key]
        else:
            reason = refusal(
                Headers(scope=scope),
                self.bind_host,
                self.allowed,
                allowed_hosts=self.allowed_hosts,
                scheme=scheme,
                served=served,
            )
            # Real browsers and clients send short values; a long one (anyone can send 256 KB) is judged
            # each time rather than kept, so the table stays small in bytes as well as in entries.
            if len(host or b"") + len(origin or b"") <= MAX_REMEMBERED_BYTES:
                if len(self._verdicts) >= VERDICTS_KEPT:
                    self._verdicts.clear()
                self._verdicts[key] = reason
        if reason is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": reason[:120]})
        else:
            await JSONResponse({"ok": False, "code": "forbidden", "error": reason}, status_code=403)(
                scope, receive, send
            )
