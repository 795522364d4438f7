"""`/dashboard`: the live web page for people overseeing the agents (SPEC F-70 … F-74).

Plain HTML, CSS and JavaScript modules shipped inside the package (huddle/dashboard/static): no
build step and nothing fetched from elsewhere at run time. The page reads through the REST API
(`POST /api/v1/tools/{name}`) and goes live over `GET /api/events` (SSE with Last-Event-ID resume),
so it sees exactly what agents see and its actions fan out as ordinary events. The loopback guard
applies here as on every route; the page is same-origin, so its own requests pass.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=SECURITY_HEADERS)


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


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/", to_dashboard, methods=["GET", "HEAD"]),
        Route("/dashboard", index, methods=["GET", "HEAD"]),
        Route("/dashboard/", to_dashboard, methods=["GET", "HEAD"]),
        Mount("/dashboard/static", app=_WithHeaders(StaticFiles(directory=STATIC)), name="dashboard-static"),
    ]
