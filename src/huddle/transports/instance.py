"""Which instance answered: a name per Huddle process, for load balancers and for people debugging them.

Several Huddle processes can serve one project behind one address (team mode, docs/team-mode.md).
Most of what they serve is shared through the database, but a handshake-era MCP session (and the
dashboard's cookie secret) lives in the one process that created it. So each instance has a name
(`instance_name`, by default its port), starts its session ids and cookie with `<name>.`, and the
load balancer routes a request carrying one back to that instance (deploy/nginx/huddle.conf).
Every response says which instance answered in `X-Huddle-Instance`.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from huddle.settings import Settings

INSTANCE_HEADER = "X-Huddle-Instance"
SEPARATOR = "."


def instance_name(settings: Settings, port: int | None = None) -> str:
    """The configured name, else the port this instance listens on (`port`, else the setting)."""
    return settings.instance_name or str(settings.port if port is None else port)


def routed_id(instance: str, token: str) -> str:
    """An id a load balancer can route: `<instance>.<token>`."""
    return f"{instance}{SEPARATOR}{token}"


def owner_of(routed: str) -> str | None:
    """The instance named at the start of a routed id, or None when it names none."""
    name, dot, _ = routed.partition(SEPARATOR)
    return name if dot and name else None


class InstanceHeader:
    """ASGI middleware: every HTTP response names the instance that produced it."""

    def __init__(self, app: ASGIApp, instance: str):
        self.app = app
        self.header = (INSTANCE_HEADER.lower().encode(), instance.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), self.header]}
            await send(message)

        await self.app(scope, receive, send_named)
