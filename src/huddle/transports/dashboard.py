"""`/dashboard`: the live web page for people overseeing the agents (SPEC F-70 … F-74).

Plain HTML, CSS and JavaScript modules shipped inside the package (huddle/dashboard/static): no
build step and nothing fetched from elsewhere at run time. The page reads through the REST API
(`POST /api/v1/tools/{name}`) and goes live over `GET /api/events` (SSE with Last-Event-ID resume),
so it sees exactly what agents see and its actions fan out as ordinary events. The loopback guard
applies here as on every route; the page is same-origin, so its own requests pass.

The page is also how a person proves to be one: `GET /dashboard` sets a cookie holding a secret
drawn at server start (HttpOnly, SameSite=Strict, only sent to the REST tools), and
`DashboardCredentialGate` marks a tool call that carries it, so registering a `human:` id and
`force_release_lock` work from the page and nowhere else (service/overseers.py). Until token auth
this keeps agents from impersonating a person; a local user who can open the page can still act.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.service.overseers import acting_as_dashboard
from huddle.transports.instance import routed_id

SESSION_COOKIE = "huddle_session"  # set by the sign-in form (transports/auth.py)
STATIC = Path(__file__).resolve().parent.parent / "dashboard" / "static"
# Everything the page loads comes from this server; no inline script, no framing by other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # The files change with the installed version; revalidate instead of serving a stale page.
    "Cache-Control": "no-cache",
}


COOKIE = "huddle_dashboard"
COOKIE_PATH = "/api/v1/tools"


class DashboardCredential:
    """The per-server-start secret the page gets as a cookie and sends back with every tool call.

    With `instance` it starts `<instance>.`: the secret lives in this process only, so behind a load
    balancer the page's tool calls must come back here, and the balancer routes them by that prefix
    (deploy/nginx/huddle.conf), as it does MCP session ids.
    """

    def __init__(self, secret: str | None = None, instance: str | None = None):
        token = secret or secrets.token_urlsafe(32)
        self.secret = routed_id(instance, token) if instance else token

    def grants(self, cookie_header: str) -> bool:
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(cookie_header)
        except Exception:  # a malformed Cookie header proves nothing; it is not an error either
            return False
        morsel = jar.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.secret.encode())


class DashboardCredentialGate:
    """ASGI middleware: a REST tool call carrying the dashboard cookie runs as the dashboard."""

    def __init__(self, app: ASGIApp, credential: DashboardCredential):
        self.app = app
        self.credential = credential

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(COOKIE_PATH + "/"):
            cookies = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie")
            if cookies and self.credential.grants(cookies.decode("latin-1")):
                with acting_as_dashboard():
                    await self.app(scope, receive, send)
                return
        await self.app(scope, receive, send)


def index_for(credential: DashboardCredential, token_mode: bool = False) -> Callable[[Request], Awaitable[Response]]:
    async def index(request: Request) -> Response:
        if token_mode:
            # People sign in with a dashboard token (transports/auth.py sets the session cookie);
            # until then the page is the sign-in form, and no secret is handed out.
            page = "index.html" if SESSION_COOKIE in request.cookies else "login.html"
            return FileResponse(STATIC / page, headers=SECURITY_HEADERS)
        response = FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)
        response.set_cookie(COOKIE, credential.secret, path=COOKIE_PATH, httponly=True, samesite="strict", secure=False)
        return response

    return index


async def to_dashboard(request: Request) -> Response:
    return RedirectResponse("/dashboard", status_code=307)


class _WithHeaders:
    """Adds SECURITY_HEADERS to every static file response."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in SECURITY_HEADERS.items():
                    if key.lower().encode() not in present:
                        headers.append((key.lower().encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def dashboard_routes(credential: DashboardCredential, *, token_mode: bool = False) -> list[BaseRoute]:
    return [
        Route("/", to_dashboard, methods=["GET", "HEAD"]),
        Route("/dashboard", index_for(credential, token_mode), methods=["GET", "HEAD"]),
        Route("/dashboard/", to_dashboard, methods=["GET", "HEAD"]),
        Mount("/dashboard/static", app=_WithHeaders(StaticFiles(directory=STATIC)), name="dashboard-static"),
    ]
