"""Composition root: builds store, bus, coordinator, MCP server and HTTP app from Settings, once.

Nothing else in Huddle creates these or holds globals; tests build as many apps as they like.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from huddle.bus.memory import MemoryBus
from huddle.errors import Unavailable
from huddle.metrics import Metrics
from huddle.push.hub import PushHub
from huddle.service.coordinator import Coordinator
from huddle.service.credentials import Credentials
from huddle.service.external_issuer import ExternalIssuer
from huddle.service.guard import GuardService
from huddle.service.hooks import ClaudeHookService
from huddle.settings import Settings, Tenant, tenants_of
from huddle.storage.base import Store
from huddle.storage.postgres import PostgresStore
from huddle.storage.sqlite import SqliteStore
from huddle.transports.auth import AuthGate, EdgeGuards, Projects, auth_routes
from huddle.transports.dashboard import DashboardCredential, DashboardCredentialGate, dashboard_routes
from huddle.transports.hooks import hook_routes
from huddle.transports.http import BodySizeLimit, json_error_handlers, rest_routes
from huddle.transports.instance import InstanceHeader, instance_name
from huddle.transports.mcp_server import build_mcp_server
from huddle.transports.mcp_sessions import bounded_sessions
from huddle.transports.openapi import ops_routes
from huddle.transports.origin import CrossSiteGuard
from huddle.transports.tenants import TenantRouter
from huddle.transports.tools import all_operations
from huddle.transports.tools_dashboard import REST_ONLY
from huddle.transports.toolsets import ToolCatalogue

log = logging.getLogger(__name__)


@dataclass
class Huddle:
    settings: Settings
    coordinator: Coordinator
    mcp: MCPServer
    http: Starlette
    push: PushHub
    credentials: Credentials | None = None
    # What the server serves: `http`, or on a server of several projects the router in front of them.
    asgi: ASGIApp | None = None
    # The other projects' apps (setting `projects`), by project name.
    projects: dict[str, Huddle] = field(default_factory=dict)

    @property
    def served(self) -> ASGIApp:
        return self.asgi or self.http


def build_store(settings: Settings) -> Store:
    if settings.db_url:
        return PostgresStore(settings.db_url, settings.project_key)
    return SqliteStore(settings.sqlite_path, settings.project_key)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The SDK's own Host/Origin check is off on every bind: CrossSiteGuard (transports/origin.py)
    guards every route, /mcp included, with one rule, so /mcp and REST answer an Origin alike."""
    return TransportSecuritySettings(enable_dns_rebinding_protection=False)


def build_app(settings: Settings) -> Huddle:
    """The server: its own project's app, and on a server of several projects (setting `projects`)
    one app per other project behind a router that picks the app by the request's token."""
    tenants = tenants_of(settings)
    if not tenants:
        return build_project(settings)
    others = []
    for tenant in tenants:
        project_settings = tenant_settings(settings, tenant)
        project_settings.repo_path.mkdir(parents=True, exist_ok=True)  # a project with no repository given
        others.append(build_project(project_settings))
    main = build_project(settings, also_run=others)
    main.projects = {other.settings.project_key: other for other in others}

    directory: Projects = main.http.state.projects  # projects need token mode (settings validate it)
    for other in others:
        assert other.credentials is not None
        directory.others[other.settings.project_key] = other.credentials
        other.push.share(main.push)  # one embedded broker, each project under its own root
    assert main.credentials is not None
    main.asgi = TenantRouter(
        main.http, {(o.settings.org, o.settings.project_key): o.http for o in others}, main.credentials.codec
    )
    return main


def tenant_settings(settings: Settings, tenant: Tenant) -> Settings:
    """Another project's settings: the server's, with its own project, org and repository.

    It runs no broker of its own: its hub publishes into the server's embedded broker, under its own
    root (PushHub.share), when the server has one.
    """
    return replace(
        settings,
        project=tenant.project,
        org=tenant.org,
        registration_secret=project_registration_secret(settings.registration_secret, tenant),
        repo=tenant.repo or str(settings.data_path / "projects" / tenant.project),
        analysis=settings.analysis if tenant.repo else "off",
        projects="",
        mqtt_broker="off",
        mqtt_url="",
    )


def project_registration_secret(secret: str, tenant: Tenant) -> str:
    """Another project's own registration secret, derived from the server's: the secret handed to one
    org's agents admits them into their project only (`huddle token registration-secret --project P`)."""
    if not secret:
        return ""
    message = f"huddle-registration:{tenant.org}/{tenant.project}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def build_project(settings: Settings, also_run: list[Huddle] | None = None) -> Huddle:
    """One project's app: coordinator, MCP server, REST, SSE, hooks and dashboard routes.

    `also_run`: apps whose lifespans run inside this one's (the other projects of the server).
    """
    bus = MemoryBus()
    coordinator = Coordinator(build_store(settings), bus, settings)
    # Token mode (docs/security.md): every request is resolved into a principal at the edge.
    credentials = Credentials(coordinator.store, settings) if settings.auth == "token" else None
    guards = EdgeGuards(settings)
    projects = Projects(credentials) if credentials is not None else None
    external = ExternalIssuer.from_settings(settings, project=settings.project_key) if credentials else None
    if credentials is not None:
        bus.add_listener(credentials.apply)
        coordinator.sweep_steps.append(credentials.forget_expired)
    push = PushHub(settings, coordinator, credentials=credentials)
    metrics = Metrics()
    metrics.bind(coordinator, push)
    if credentials is not None:
        metrics.bind_guards(rate_limits=guards.limiter, lockout=guards.lockout)
    catalogue = ToolCatalogue([*all_operations(coordinator), *push.operations()], settings.tools, REST_ONLY)
    # Instrumented once the catalogue is complete, so introspection is counted like every tool.
    catalogue.operations = operations = metrics.instrument(catalogue.operations)
    # Overseer actions need the dashboard cookie, which an MCP client never has: REST only (kept
    # in the MCP server for its schema, refused there and never listed).
    mcp = build_mcp_server(operations, rest_only=REST_ONLY)
    mcp.middleware.append(metrics.mcp_middleware)
    catalogue.attach(mcp)
    push.attach_mcp(mcp, sessions=settings.mcp_stateless == "off")
    # Plain JSON responses (not an SSE stream per POST) save ~0.3 ms a call; server-initiated
    # notifications still flow over the standalone GET stream.
    # Stateless: every request stands alone, so any instance behind a load balancer can answer it
    # (docs/team-mode.md says what handshake-era clients lose).
    mcp.streamable_http_app(
        json_response=True,
        stateless_http=settings.mcp_stateless == "on",
        transport_security=transport_security(settings),
        host=settings.host,
    )
    instance = instance_name(settings)
    sessions = bounded_sessions(mcp, settings, instance)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await coordinator.start()
        try:
            if credentials is not None:
                await credentials.load()
            if external is not None:
                try:
                    await external.prefetch()
                except Unavailable as exc:  # start anyway: the first external token fetches the keys again
                    log.warning("external issuer keys not fetched at start: %s", exc.message)
            await push.start()
            async with sessions.run(), contextlib.AsyncExitStack() as others:
                for other in also_run or []:
                    await others.enter_async_context(other.http.router.lifespan_context(other.http))
                yield
        finally:
            await push.stop()
            await coordinator.stop()

    hooks = ClaudeHookService(coordinator)
    credential = DashboardCredential(instance=instance)
    http = Starlette(
        routes=[
            # /mcp first: it is what agents call most, and Starlette matches routes in order.
            sessions.route(),
            *rest_routes(operations),
            *ops_routes(metrics, catalogue),
            *hook_routes(hooks, GuardService(coordinator, hooks)),
            *push.routes(),
            *auth_routes(projects, [settings.auth_issuer] if settings.auth_issuer else None, guards),
            *dashboard_routes(credential, token_mode=credentials is not None),
        ],
        middleware=[
            Middleware(InstanceHeader, instance=instance),
            Middleware(
                CrossSiteGuard,
                bind_host=settings.host,
                allowed_origins=settings.allowed_origins,
                allowed_hosts=settings.allowed_hosts,
            ),
            Middleware(BodySizeLimit, max_bytes=settings.max_body_bytes, hook_max_bytes=settings.max_hook_body_bytes),
            *(
                [Middleware(AuthGate, credentials=credentials, guards=guards, external=external)]
                if credentials is not None
                else []
            ),
            Middleware(metrics.rest_middleware),
            # Open mode's proof of a person at the page; token mode signs people in instead.
            *([Middleware(DashboardCredentialGate, credential=credential)] if credentials is None else []),
        ],
        exception_handlers=json_error_handlers(),
        lifespan=lifespan,
    )
    http.state.project = settings.project_key
    http.state.mcp = mcp
    http.state.coordinator = coordinator
    http.state.catalogue = catalogue
    http.state.credentials = credentials
    http.state.projects = projects

    async def readiness() -> dict[str, Any]:
        return {**await coordinator.readiness(), "mqtt": push.readiness()}

    http.state.readiness = readiness
    return Huddle(settings, coordinator, mcp, http, push, credentials)
