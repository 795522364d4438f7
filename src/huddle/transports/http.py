"""HTTP surface: /mcp (Streamable HTTP), /health, and REST under /api/v1 for every operation.

REST mirrors the MCP tools one-to-one (`POST /api/v1/tools/{name}` with the same JSON arguments)
so scripts, hooks and the dashboard use exactly the validation and services agents use. Every
error is the envelope `{ok: false, error, code}`; bad input is a 4xx, never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle import __version__
from huddle.errors import HuddleError, NotFound
from huddle.transports.arguments import BoundOperation, parse_json_object
from huddle.transports.tools import Operation

log = logging.getLogger(__name__)


def error_response(exc: HuddleError) -> JSONResponse:
    return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.http_headers or None)


class UnsupportedMediaType(HuddleError):
    code = "unsupported_media_type"
    status = 415


def json_body_required(request: Request) -> None:
    """A body must be declared JSON: a cross-site form or text/plain post is never an API call.

    Browsers send text/plain and form bodies cross-site without a preflight; an application/json
    body from another origin needs one, which Huddle never grants.
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaType(
            f"Content-Type {media or '(none)'!r} is not accepted; send the arguments as JSON with"
            " Content-Type: application/json"
        )


class OperationEndpoint:
    """POST /api/v1/tools/{name}: validate the JSON body against the operation's signature, call it."""

    def __init__(self, operations: Iterable[Operation]):
        self._ops = {op.name: op for op in operations}
        self._calls = {op.name: BoundOperation(op) for op in self._ops.values()}

    async def call(self, request: Request) -> Response:
        name = request.path_params["name"]
        call = self._calls.get(name)
        if call is None:
            return error_response(NotFound(f"no operation named {name!r}; GET /api/v1/tools lists them"))
        try:
            body = await request.body()
            if body.strip():
                json_body_required(request)
            result = await call(parse_json_object(body))
        except HuddleError as exc:
            return error_response(exc)
        return JSONResponse({"ok": True, "result": result})

    async def index(self, request: Request) -> Response:
        schemas = {tool.name: tool.input_schema for tool in await request.app.state.mcp.list_tools()}
        return JSONResponse(
            {
                "ok": True,
                "tools": [
                    {
                        "name": op.name,
                        "toolset": op.toolset,
                        "read_only": op.read_only,
                        "description": op.description,
                        "input_schema": schemas.get(op.name),
                    }
                    for op in self._ops.values()
                ],
            }
        )


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "service": "huddle", "version": __version__, "project": request.app.state.project})


async def readyz(request: Request) -> Response:
    """Readiness: every dependency check of `app.state.readiness` passes (503 otherwise)."""
    checks: dict[str, Any] = await request.app.state.readiness()
    ok = all(check.get("ok") for check in checks.values())
    if getattr(request.app.state, "credentials", None) is not None:
        # Token mode: probes carry no token, so the public answer says only what is up.
        checks = {name: {"ok": bool(check.get("ok"))} for name, check in checks.items()}
    return JSONResponse({"ok": ok, "checks": checks}, status_code=200 if ok else 503)


class BodySizeLimit:
    """Refuses request bodies over the cap with a 413 envelope before any handler reads them."""

    def __init__(self, app: ASGIApp, max_bytes: int, hook_max_bytes: int | None = None):
        self.app = app
        self.max_bytes = max_bytes
        # Claude Code hook bodies carry whole files (Write); refusing one would let the edit through.
        self.hook_max_bytes = hook_max_bytes or max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.hook_max_bytes if str(scope.get("path", "")).startswith("/hooks/claude/") else self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            await self._refuse(scope, receive, send, cap)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send, cap)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, cap: int) -> None:
        body = {
            "ok": False,
            "code": "too_large",
            "error": f"request body is larger than {cap} bytes; send less (split lists, trim text)",
        }
        await JSONResponse(body, status_code=413)(scope, receive, send)


class _TooLarge(Exception):
    pass


def rest_routes(operations: Iterable[Operation]) -> list[BaseRoute]:
    endpoint = OperationEndpoint(list(operations))
    return [
        Route("/health", health, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/api/v1/tools", endpoint.index, methods=["GET"]),
        Route("/api/v1/tools/{name}", endpoint.call, methods=["POST"]),
    ]


def json_error_handlers() -> dict[Any, Callable[[Request, Exception], Awaitable[Response]]]:
    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {
                "ok": False,
                "code": "not_found",
                "error": f"no route {request.url.path}; see /api/v1/tools, /mcp, /health",
            },
            404,
        )

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {
                "ok": False,
                "code": "method_not_allowed",
                "error": f"{request.method} is not allowed on {request.url.path}",
            },
            405,
        )

    async def client_gone(request: Request, exc: Exception) -> Response:
        # The client left mid-body (or was cut off by body_timeout_s): nobody reads this answer,
        # and it is not a server error worth a traceback in the log.
        return Response(status_code=400)

    async def crash(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"ok": False, "code": "internal", "error": "internal error; see the server log"}, 500)

    return {404: not_found, 405: method_not_allowed, ClientDisconnect: client_gone, Exception: crash}
