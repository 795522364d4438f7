"""`/api/v1/openapi.json` (OpenAPI 3.1, F-87) and `/metrics`, both derived, never written by hand.

The document is generated from the operation catalogue — the same compact input schemas the MCP
tools/list and `introspection` show — so REST, MCP and the document cannot drift apart. OpenAPI 3.1
uses JSON Schema 2020-12, so the pydantic-made schemas go in unchanged.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from huddle import __version__
from huddle.metrics import Metrics
from huddle.transports.toolsets import ToolCatalogue, one_line

ENVELOPE_ERROR = {
    "type": "object",
    "required": ["ok", "error", "code"],
    "properties": {
        "ok": {"const": False},
        "error": {"type": "string", "description": "What went wrong and what to do next."},
        "code": {"type": "string", "description": "invalid_input, not_found, forbidden, conflict, unavailable…"},
        "field": {"type": "string", "description": "The argument at fault, when there is one."},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors() -> dict[str, Any]:
    ref = {"$ref": "#/components/schemas/Error"}
    return {
        "4XX": _json(ref, "Bad input, unknown tool or refused action (the envelope names the field)."),
        "5XX": _json(ref, "The server could not complete the call (e.g. the database is unavailable)."),
    }


async def build_document(catalogue: ToolCatalogue, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every operation (listed over MCP or not) plus the health routes."""
    schemas = await catalogue.schemas()
    paths: dict[str, Any] = {}
    for op in catalogue.operations:
        description = one_line(op.description)
        paths[f"/api/v1/tools/{op.name}"] = {
            "post": {
                "operationId": op.name,
                "tags": [op.toolset],
                "summary": description.split(". ")[0].rstrip(".")[:120],
                "description": description,
                "requestBody": {"required": True, "content": {"application/json": {"schema": schemas[op.name]}}},
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["ok", "result"],
                            "properties": {"ok": {"const": True}, "result": {"type": "object"}},
                        },
                        "The operation's result.",
                    ),
                    **_errors(),
                },
            }
        }
    plain = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    paths["/health"] = {"get": {"operationId": "health", "responses": {"200": _json(plain, "Liveness.")}}}
    paths["/readyz"] = {
        "get": {
            "operationId": "readyz",
            "responses": {"200": _json(plain, "Every check passes."), "503": _json(plain, "A check fails.")},
        }
    }
    paths["/metrics"] = {
        "get": {
            "operationId": "metrics",
            "responses": {
                "200": {
                    "description": "Prometheus text exposition format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    }
    paths["/api/v1/tools"] = {
        "get": {"operationId": "list_tools", "responses": {"200": _json(plain, "Every operation and its schema.")}}
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Huddle",
            "version": __version__,
            "description": "Coordination server for parallel AI coding agents. Every MCP tool is also "
            "POST /api/v1/tools/{name} with the same JSON arguments.",
        },
        "paths": paths,
        "components": {"schemas": {"Error": ENVELOPE_ERROR}},
        "tags": [{"name": t} for t in sorted({op.toolset for op in catalogue.operations})],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


def ops_routes(metrics: Metrics, catalogue: ToolCatalogue) -> list[BaseRoute]:
    async def openapi(request: Request) -> Response:
        base = f"{request.url.scheme}://{request.url.netloc}"
        return JSONResponse(await build_document(catalogue, base))

    return [
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/api/v1/openapi.json", openapi, methods=["GET"]),
    ]
