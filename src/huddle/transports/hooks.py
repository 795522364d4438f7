"""HTTP routes for agent-client hooks and the git guard.

- `POST /hooks/claude/{event}`: Claude Code's hook input as the body (what an `"type": "http"`
  hook sends, and what `huddle hook claude EVENT` forwards); the answer is the hook output.
  `X-Huddle-Agent` names the agent (the http hook fills it from `$HUDDLE_AGENT`).
- `GET /hooks/claude/agent?cwd=DIR`: the agent of the live session in DIR (for `huddle channel`).
- `POST /hooks/git/pre-commit` `{paths, agent_id?, worktree?}` and `POST /hooks/git/pre-push`
  `{branch, agent_id?, worktree?}`: the git guard's checks.

Errors use the REST envelope; Claude Code treats a non-2xx answer as a non-blocking error, so a
bad payload never blocks the agent.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from huddle.domain.principal import current_principal
from huddle.errors import Forbidden, HuddleError, InvalidInput
from huddle.service.guard import GuardService
from huddle.service.hooks import ClaudeHookService, parse_body
from huddle.transports.arguments import check_values, parse_json_value
from huddle.transports.http import error_response, json_body_required

AGENT_HEADER = "x-huddle-agent"


def _guarded(fn: Callable[[Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return JSONResponse(await fn(request))
        except HuddleError as exc:
            return error_response(exc)

    return endpoint


def _payload(body: bytes) -> dict[str, Any]:
    """The hook payload through the bounded parse every transport uses: a body nested too deep or
    holding a huge number is a 422 naming where, not a 500."""
    try:
        value = parse_json_value(body) if body.strip() else None
    except InvalidInput as exc:
        if exc.field is None:  # the body as a whole is wrong
            raise InvalidInput(f"the hook payload: {exc.message}", field="body") from None
        raise
    if isinstance(value, dict):
        check_values(value)
        return value
    return parse_body(body)  # says what a hook payload must be


def hook_routes(hooks: ClaudeHookService, guard: GuardService) -> list[BaseRoute]:
    async def claude(request: Request) -> dict[str, Any]:
        json_body_required(request)  # a cross-site form or text/plain post must not mutate state
        payload = _payload(await request.body())
        declared = signed_in_as(request.headers.get(AGENT_HEADER, "").strip() or None, AGENT_HEADER)
        return await hooks.handle(request.path_params["event"], payload, declared)

    async def agent(request: Request) -> dict[str, Any]:
        cwd = request.query_params.get("cwd")
        if not cwd:
            raise InvalidInput("cwd is required: the directory the client session runs in", field="cwd")
        return {"ok": True, "agent_id": await hooks.agent_in(cwd)}

    async def pre_commit(request: Request) -> dict[str, Any]:
        json_body_required(request)  # a cross-site form or text/plain post must not mutate state
        body = _payload(await request.body())
        paths = _required(body, "paths", list, "a list of staged repo-relative paths")
        return await guard.pre_commit(paths, signed_in_as(_opt(body, "agent_id")), _opt(body, "worktree"))

    async def pre_push(request: Request) -> dict[str, Any]:
        json_body_required(request)  # a cross-site form or text/plain post must not mutate state
        body = _payload(await request.body())
        branch = _required(body, "branch", str, "the name of the branch being pushed")
        return await guard.pre_push(branch, signed_in_as(_opt(body, "agent_id")), _opt(body, "worktree"))

    return [
        Route("/hooks/claude/agent", _guarded(agent), methods=["GET"]),
        Route("/hooks/claude/{event}", _guarded(claude), methods=["POST"]),
        Route("/hooks/git/pre-commit", _guarded(pre_commit), methods=["POST"]),
        Route("/hooks/git/pre-push", _guarded(pre_push), methods=["POST"]),
    ]


def signed_in_as(declared: str | None, field: str = "agent_id") -> str | None:
    """The hook's agent: in token mode the token's (a different declared one is refused), else as declared."""
    principal = current_principal.get()
    if principal is None or principal.is_admin:
        return declared
    if principal.read_only:
        raise Forbidden("hooks act for an agent and change state; this token may only read (scope read)")
    if declared is not None and declared != principal.agent_id:
        raise Forbidden(
            f"you are signed in as {principal.agent_id!r}, not {declared!r}; a hook acts as its token's agent",
            field=field,
        )
    return principal.agent_id


def _required(body: dict[str, Any], key: str, kind: type, what: str) -> Any:
    value = body.get(key)
    if not isinstance(value, kind):
        raise InvalidInput(f"{key} must be {what}", field=key)
    return value


def _opt(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{key} must be a string", field=key)
    return value
