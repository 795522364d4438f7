"""Several projects, of several organisations, on one server (setting `projects`, token mode).

Each project is served by its own complete Huddle app (coordinator, MCP server, REST, SSE, hooks),
built from the same code with the project's settings; every row, event and query is already scoped
by project in storage, so isolation is structural: a request reaches exactly one project's app and
that app can only see its own project. `TenantRouter` picks the app from the request's token —
its audience names one org and project, checked against the signature before any routing — and
sends everything else (no token, a bad one, public pages) to the server's own project, whose
`AuthGate` answers it. A token for a project the server does not serve is refused there too.
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from huddle.service.token_codec import TokenCodec, TokenRefused, audience_for
from huddle.transports.auth import SIGN_IN_PATHS, bearer_token, cookie_value
from huddle.transports.dashboard import SESSION_COOKIE


class TenantRouter:
    def __init__(self, main: ASGIApp, projects: Mapping[tuple[str, str], ASGIApp], codec: TokenCodec):
        self.main = main
        self.codec = codec
        self.apps = {audience_for(org, project): app for (org, project), app in projects.items()}
        self.audiences = list(self.apps)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Sign-in routes name their project in the body (or their token does): the server's own app
        # answers them for every project, whatever bearer header rides along.
        if scope["type"] in ("http", "websocket") and scope.get("path") not in SIGN_IN_PATHS:
            headers = Headers(scope=scope)
            token = bearer_token(headers) or cookie_value(headers, SESSION_COOKIE)
            if token:
                try:
                    audience = self.codec.audience_of(token, self.audiences)
                except TokenRefused:
                    audience = None  # the server's own project answers it: 401 with the reason
                if audience is not None:
                    await self.apps[audience](scope, receive, send)
                    return
        await self.main(scope, receive, send)
