"""The principal at the edge: every HTTP and WebSocket request is resolved once, before any route.

Token mode only (`auth = token`; open mode installs none of this and behaves as before):
- `AuthGate` (ASGI middleware) reads `Authorization: Bearer <token>`, or the dashboard's session
  cookie, verifies it (service/credentials.py), and runs the request as that `Principal`
  (`current_principal`, plus `scope["user"]` as the MCP SDK's `AuthenticatedUser`, so the SDK
  binds each MCP session to the principal that opened it). Anything else is a 401 with
  `WWW-Authenticate: Bearer … resource_metadata=…` (RFC 6750, RFC 9728), and nothing runs.
- the operation layer's rule (transports/acting.py): an agent acts only as itself.
- MCP tool calls run in the SDK's session task, not the request's: `principal_middleware`
  (transports/mcp_server.py) hands them the principal from `scope["huddle.principal"]`.

Public in token mode: /health and /readyz, the protected-resource metadata, sign-in endpoints (register,
refresh), the dashboard's page and sign-in form, and the `/mqtt` WebSocket (the broker checks
the CONNECT password itself).
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from huddle.domain.principal import SCOPES, Principal, current_principal
from huddle.errors import Forbidden, HuddleError, InvalidInput
from huddle.service.credentials import Credentials, WrongSecret, check_agent_id
from huddle.service.external_issuer import ExternalIssuer
from huddle.service.lockout import Lockout
from huddle.service.rate_limits import RateLimiter, address_key, agent_key
from huddle.service.token_codec import TokenRefused, audience_for
from huddle.settings import Settings
from huddle.transports.acting import running_as
from huddle.transports.arguments import parse_json_object
from huddle.transports.dashboard import SESSION_COOKIE
from huddle.transports.http import error_response, json_body_required
from huddle.transports.origin import is_loopback

RESOURCE_METADATA = "/.well-known/oauth-protected-resource"

CSRF_COOKIE = "huddle_csrf"
CSRF_HEADER = "x-huddle-csrf"
PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/readyz",  # probes carry no token; it shows only whether the database and sweeper are alive
        RESOURCE_METADATA,
        RESOURCE_METADATA + "/mcp",
        "/api/v1/auth/register",
        "/api/v1/auth/refresh",
        "/",
        "/dashboard",
        "/dashboard/",
        "/dashboard/login",
        "/dashboard/logout",
        "/mqtt",
    }
)
PUBLIC_PREFIXES = ("/dashboard/static/",)
# Public, but where secrets are tried: rate-limited and locked out by client address.
SIGN_IN_PATHS = frozenset({"/api/v1/auth/register", "/api/v1/auth/refresh", "/dashboard/login"})


class Unauthorized(HuddleError):
    code = "unauthorized"
    status = 401


def bearer_token(headers: Headers) -> str | None:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def cookie_value(headers: Headers, name: str) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # a malformed Cookie header proves nothing
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


def as_sdk_user(principal: Principal) -> AuthenticatedUser:
    """The principal as the MCP SDK's user, so the SDK ties each session to who opened it."""
    access = AccessToken(
        token=principal.token_id or secrets.token_hex(8),  # the id, not the secret: the SDK may log it
        client_id=principal.agent_id,
        scopes=sorted(principal.scopes),
        subject=principal.agent_id,
        claims={"iss": "huddle", "org": principal.org, "proj": principal.project},
    )
    return AuthenticatedUser(access)


class EdgeGuards:
    """Per-process rate limits and lockout (service/rate_limits.py, service/lockout.py) at the edge.

    Bad tokens count against the client address — except loopback addresses, which every local
    agent shares: there one agent retrying an expired token would lock all of them out, and a
    loopback caller is already on the machine. A wrong registration secret counts against the
    address and the agent id asked for.
    """

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst, clock)
        self.lockout = Lockout(settings.lockout_failures, settings.lockout_s, settings.lockout_s, clock)

    @staticmethod
    def address(scope: Scope) -> str | None:
        """The client's address key, or None for a loopback client (see the class doc)."""
        client = scope.get("client")
        host = str(client[0]) if client else ""
        return None if not host or is_loopback(host) else address_key(host)

    def check_address(self, scope: Scope) -> None:
        """Before anyone is known: refuse a locked-out address, count it against its rate limit."""
        address = self.address(scope)
        if address is not None:
            self.lockout.check(address)
            self.limiter.enforce(address)

    def failed(self, scope: Scope, *agents: str) -> None:
        for key in (self.address(scope), *(agent_key(a) for a in agents)):
            if key is not None:
                self.lockout.failed(key)


class AuthGate:
    """ASGI middleware: resolves the principal of every request, or answers 401 (token mode)."""

    def __init__(
        self,
        app: ASGIApp,
        credentials: Credentials,
        guards: EdgeGuards,
        external: ExternalIssuer | None = None,
    ):
        self.app = app
        self.credentials = credentials
        self.guards = guards
        self.external = external

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        if path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES):
            if path in SIGN_IN_PATHS:
                try:
                    self.guards.check_address(scope)
                except HuddleError as exc:
                    await error_response(exc)(scope, receive, send)
                    return
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            address = self.guards.address(scope)
            if address is not None:
                self.guards.lockout.check(address)
            principal = await self._resolve(scope, headers)
            if principal is not None:
                # A good token does not clear the address's failures: one valid token must not buy
                # unlimited guesses at another secret from the same address.
                self.guards.limiter.enforce(agent_key(principal.agent_id), principal.agent_id)
        except TokenRefused as refused:
            self.guards.failed(scope)
            await self._refuse(scope, receive, send, refused.message, error="invalid_token")
            return
        except HuddleError as exc:  # CSRF (403), locked out or rate limited (429), issuer down (503)
            await error_response(exc)(scope, receive, send)
            return
        if principal is None:
            await self._refuse(
                scope,
                receive,
                send,
                "this server runs in token mode: send Authorization: Bearer <token> (get one with"
                " `huddle token issue --agent <id>`, or POST /api/v1/auth/register)",
                error=None,
            )
            return
        scope["user"] = as_sdk_user(principal)
        scope["auth"] = AuthCredentials(sorted(principal.scopes))
        scope["huddle.principal"] = principal
        with running_as(principal):
            await self.app(scope, receive, send)

    async def _resolve(self, scope: Scope, headers: Headers) -> Principal | None:
        token = bearer_token(headers)
        if token is not None:
            if self.external is not None and self.external.owns(token):
                return await self.external.authenticate(token)
            return self.credentials.authenticate(token)
        session = cookie_value(headers, SESSION_COOKIE)
        if session is None:
            return None
        principal = self.credentials.authenticate(session)
        # A cookie rides along with every same-site request; a state change must also prove it
        # comes from the page (double-submit: the page copies the CSRF cookie into a header).
        if scope.get("method", "GET") not in ("GET", "HEAD"):
            sent = headers.get(CSRF_HEADER, "")
            expected = cookie_value(headers, CSRF_COOKIE) or ""
            if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
                raise Forbidden(
                    f"a dashboard request must carry the {CSRF_HEADER} header (the page sends it); reload the page"
                )
        return principal

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, message: str, error: str | None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})
            return
        await unauthorized(scope, message, error)(scope, receive, send)


def unauthorized(scope: Scope, message: str, error: str | None = "invalid_token") -> JSONResponse:
    """401 with the challenge RFC 6750 asks for, pointing at the protected-resource metadata (RFC 9728)."""
    host = Headers(scope=scope).get("host", "127.0.0.1")
    scheme = "https" if scope.get("scheme") == "https" else "http"
    challenge = f'Bearer realm="huddle", resource_metadata="{scheme}://{host}{RESOURCE_METADATA}"'
    if error:
        description = message.replace('"', "'").replace("\\", "/")
        challenge += f', error="{error}", error_description="{description}"'
    return JSONResponse(Unauthorized(message).to_dict(), status_code=401, headers={"WWW-Authenticate": challenge})


def resource_metadata(issuers: list[str]) -> Callable[[Request], Awaitable[Response]]:
    async def metadata(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        body = {
            "resource": f"{base}/mcp",
            # Huddle's own tokens come from `huddle token issue` or self-registration; an external
            # OIDC issuer, when configured, is the authorization server clients can use.
            "authorization_servers": issuers or [base],
            "bearer_methods_supported": ["header"],
            "scopes_supported": list(SCOPES),
            "resource_name": "Huddle",
            "resource_documentation": f"{base}/dashboard",
        }
        return JSONResponse(body)

    return metadata


class Projects:
    """The credentials of every project a server serves (setting `projects`), for the routes that
    carry a token or a project name in their body rather than a bearer header the router could read.
    All projects share one signing key, so one codec tells which project a token is for."""

    def __init__(self, own: Credentials):
        self.own = own
        self.others: dict[str, Credentials] = {}

    def named(self, project: str | None) -> Credentials:
        if project is None or project == self.own.project:
            return self.own
        if project in self.others:
            return self.others[project]
        served = ", ".join([self.own.project, *self.others])
        raise InvalidInput(f"no project {project[:64]!r} on this server; it serves {served}", field="project")

    def of_token(self, token: str) -> Credentials:
        if not self.others:
            return self.own
        by_audience = {audience_for(c.org, c.project): c for c in (self.own, *self.others.values())}
        audience = self.own.codec.audience_of(token, list(by_audience))
        return by_audience[audience] if audience is not None else self.own

    def authenticate(self, token: str) -> Principal:
        return self.of_token(token).authenticate(token)


def text(body: dict[str, Any], key: str, what: str, *, required: bool = True) -> str | None:
    """A string field of an auth route's body: present when required, and plain text (a lone UTF-16
    surrogate cannot be compared with a secret or sent as a header)."""
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{key} is required: {what}", field=key)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{key} is not valid text (a lone surrogate); send {what}", field=key) from None
    return value


def auth_routes(
    projects: Projects | None,
    issuers: list[str] | None = None,
    guards: EdgeGuards | None = None,
) -> list[BaseRoute]:
    """`/api/v1/auth/*`, the protected-resource metadata and the dashboard's sign-in (token mode;
    in open mode they say so). `projects` is None in open mode."""

    async def body_of(request: Request, *known: str) -> dict[str, Any]:
        """The JSON body, refused (422) when it names a field the route does not take: a misspelled
        `agent_id` must not quietly act on the caller."""
        raw = await request.body()
        if raw.strip():
            json_body_required(request)
        body = parse_json_object(raw)
        unknown = sorted(set(body) - set(known))
        if unknown:
            raise InvalidInput(
                f"unknown field(s) {', '.join(map(repr, unknown))[:200]}; this route takes {', '.join(known)}",
                field=str(unknown[0])[:64],
            )
        return body

    def need_token_mode() -> Projects:
        if projects is None:
            raise InvalidInput("this server runs in open mode (auth = open): no token is needed or issued")
        return projects

    def required(body: dict[str, Any], key: str, what: str) -> str:
        value = text(body, key, what)
        assert value is not None
        return value

    def endpoint(fn: Callable[[Request], Awaitable[dict[str, Any]]]) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            try:
                return JSONResponse({"ok": True, **await fn(request)})
            except TokenRefused as refused:
                if guards is not None:
                    guards.failed(request.scope)
                return unauthorized(request.scope, refused.message)
            except HuddleError as exc:
                return error_response(exc)

        return run

    async def register(request: Request) -> dict[str, Any]:
        directory = need_token_mode()
        body = await body_of(request, "agent_id", "registration_secret", "project")
        agent_id = required(body, "agent_id", "the id you will act as, e.g. claude-frontend")
        secret = required(body, "registration_secret", "the server's registration secret")
        creds = directory.named(text(body, "project", "the project to join", required=False))
        check_agent_id(agent_id)  # before the lockout table keeps anything of it
        if guards is not None:
            guards.lockout.check(agent_key(agent_id))
        try:
            return await creds.register(agent_id, secret)
        except WrongSecret:
            if guards is not None:
                guards.failed(request.scope, agent_id)
            raise

    async def refresh(request: Request) -> dict[str, Any]:
        directory = need_token_mode()
        body = await body_of(request, "refresh_token")
        token = required(body, "refresh_token", "the refresh token you were given with your last")
        return await directory.of_token(token).refresh(token)

    async def revoke(request: Request) -> dict[str, Any]:
        directory = need_token_mode()
        body = await body_of(request, "token")
        token = required(body, "token", "the access or refresh token to revoke")
        try:
            return await directory.of_token(token).revoke(token, by=_caller())
        except TokenRefused as refused:  # the token to revoke is an argument, not the caller's credential
            raise InvalidInput(f"token: {refused.message}", field="token") from None

    async def sign_out(request: Request) -> dict[str, Any]:
        directory = need_token_mode()
        body = await body_of(request, "agent_id")
        caller = _caller()
        agent = text(body, "agent_id", "the agent to sign out (yours when left out)", required=False)
        return await directory.named(caller.project).sign_out_everywhere(agent or caller.agent_id, by=caller)

    async def whoami(request: Request) -> dict[str, Any]:
        need_token_mode()
        caller = _caller()
        return {
            "agent_id": caller.agent_id,
            "org": caller.org,
            "project": caller.project,
            "scopes": sorted(caller.scopes),
        }

    async def login(request: Request) -> Response:
        """The dashboard's sign-in form posts a token with the dashboard or admin scope."""
        if projects is None:
            return RedirectResponse("/dashboard", status_code=303)
        try:
            form = await request.form()
        except Exception:  # a malformed multipart or urlencoded body: the form's own fault, not ours
            return error_response(InvalidInput("the sign-in form is malformed; post token=<your dashboard token>"))
        token = str(form.get("token") or "").strip()
        try:
            principal = projects.authenticate(token)
        except TokenRefused as refused:
            if guards is not None:
                guards.failed(request.scope)
            return unauthorized(request.scope, f"{refused.message}; go back and paste a dashboard token")
        if not principal.sees_everything:
            return error_response(
                Forbidden(
                    "this token is an agent's; sign in with a dashboard token (huddle token issue --scope dashboard)"
                )
            )
        response = RedirectResponse("/dashboard", status_code=303)
        secure = request.url.scheme == "https"
        response.set_cookie(SESSION_COOKIE, token, path="/", httponly=True, samesite="strict", secure=secure)
        response.set_cookie(
            CSRF_COOKIE, secrets.token_urlsafe(24), path="/", httponly=False, samesite="strict", secure=secure
        )
        return response

    async def logout(request: Request) -> Response:
        """Signs the page out: its session token is revoked, not just forgotten by the browser."""
        session = request.cookies.get(SESSION_COOKIE)
        if projects is not None and session:
            with contextlib.suppress(TokenRefused, HuddleError):
                await projects.of_token(session).revoke(session)
        response = RedirectResponse("/dashboard", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        response.delete_cookie(CSRF_COOKIE, path="/")
        return response

    return [
        Route(RESOURCE_METADATA, resource_metadata(issuers or []), methods=["GET"]),
        Route(RESOURCE_METADATA + "/mcp", resource_metadata(issuers or []), methods=["GET"]),
        Route("/api/v1/auth/register", endpoint(register), methods=["POST"]),
        Route("/api/v1/auth/refresh", endpoint(refresh), methods=["POST"]),
        Route("/api/v1/auth/revoke", endpoint(revoke), methods=["POST"]),
        Route("/api/v1/auth/sign_out", endpoint(sign_out), methods=["POST"]),
        Route("/api/v1/auth/whoami", endpoint(whoami), methods=["GET"]),
        Route("/dashboard/login", login, methods=["POST"]),
        Route("/dashboard/logout", logout, methods=["POST"]),
    ]


def _caller() -> Principal:
    principal = current_principal.get()
    if principal is None:  # the gate lets no request without one reach these routes
        raise Unauthorized("sign in first: send Authorization: Bearer <token>")
    return principal
