"""MQTT sign-in and ACLs for the embedded broker (SPEC F-91): a CONNECT's token, then every topic.

Token mode: a client's CONNECT carries username = its agent id and password = a Huddle access
token; `admit` checks the token with `Credentials.authenticate` (signature, HS256 only, audience,
expiry, revocation, sign-out-everywhere) and that the username is the token's agent. The result, a
`Grant`, rides on the amqtt session; `HuddleTopicPlugin` then asks acl.TopicRules on every SUBSCRIBE,
PUBLISH and delivery (amqtt's RECEIVE check) whether this grant may. A grant that expires or is
revoked while connected stops receiving at once and its connection is closed (broker.py).

Open mode admits everyone, as the rest of Huddle on loopback does; the publish rule still applies,
CONNECT's will topic included, so no anonymous client can forge Huddle's own topics.

Refusals are CONNACK return codes, which carry no text in MQTT 3.1.1, so the reason goes to the
server log (never the token): 4 "bad user name or password" for a token that proves nothing or
names another agent, 5 "not authorized" for no credentials or a will topic the client may not
publish on, 2 "identifier rejected" for a client id another agent's session holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from amqtt.contexts import Action
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, IDENTIFIER_REJECTED, NOT_AUTHORIZED
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from huddle.domain.principal import Principal
from huddle.push.acl import TopicRules
from huddle.service.credentials import Credentials
from huddle.service.token_codec import TokenRefused, audience_for

GRANT = "huddle_grant"  # the attribute a Grant is kept under on amqtt's session object


@dataclass
class Grant:
    """What one admitted CONNECT may do: its principal (None in open mode) until its token lapses."""

    principal: Principal | None
    token: str = ""
    expires_at: float = math.inf
    revoked: bool = False
    dropped: bool = False  # its connection was asked to close once already


class Refused(Exception):
    """A CONNECT Huddle does not accept: the CONNACK return code, and why (for the log)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class MqttAccess:
    """The embedded broker's gatekeeper, in open or token mode.

    One broker serves every project of a server (setting `projects`): each project's agents sign in
    with their own project's tokens and are held to their own project's root. `serve` adds a project.
    """

    def __init__(self, root: str, credentials: Credentials | None = None):
        self.rules = TopicRules(root)  # the server's own project (and everyone, in open mode)
        self.credentials = credentials
        self.token_mode = credentials is not None
        self._projects: dict[str, tuple[TopicRules, Credentials]] = {}
        # Set by the broker: closes the connection of a client id whose grant lapsed (expired, revoked).
        self.on_lapse: Callable[[str], None] | None = None

    def serve(self, root: str, credentials: Credentials) -> None:
        """Another project on this broker: its tokens sign in, its agents stay under `root`."""
        self._projects[credentials.project] = (TopicRules(root), credentials)

    def _credentials_for(self, token: str) -> Credentials:
        assert self.credentials is not None
        if not self._projects:
            return self.credentials
        served = [self.credentials, *(creds for _, creds in self._projects.values())]
        by_audience = {audience_for(c.org, c.project): c for c in served}
        audience = self.credentials.codec.audience_of(token, list(by_audience))
        return by_audience[audience] if audience is not None else self.credentials

    def _rules_for(self, principal: Principal | None) -> TopicRules:
        if principal is not None and principal.project in self._projects:
            return self._projects[principal.project][0]
        return self.rules

    def admit(
        self,
        username: str | None,
        password: str | None,
        will_topic: str | None,
        holder: tuple[str, str] | None = None,
    ) -> Grant:
        """The grant of a CONNECT, or Refused. `holder`: (project, agent) of the session that already has
        this client id — the same agent id in another project is another agent."""
        grant = Grant(None)
        if self.credentials is not None:
            if not username or not password:
                raise Refused(NOT_AUTHORIZED, "no credentials: send username = your agent id, password = your token")
            try:
                principal = self._credentials_for(password).authenticate(password)
            except TokenRefused as refused:
                raise Refused(BAD_USERNAME_PASSWORD, refused.message) from None
            if principal.agent_id != username:
                raise Refused(
                    BAD_USERNAME_PASSWORD, f"username {username[:64]!r} is not the token's agent; send your own id"
                )
            if holder is not None and holder != (principal.project, principal.agent_id):
                # Taking it over would hand this client the other agent's subscriptions and queued messages.
                raise Refused(IDENTIFIER_REJECTED, "the client id is another agent's session; use an id of your own")
            grant = Grant(principal, password, _expiry(password))
        if will_topic is not None:
            reason = self._rules_for(grant.principal).publish_refusal(
                grant.principal, will_topic, token_mode=self.token_mode
            )
            if reason is not None:
                raise Refused(NOT_AUTHORIZED, f"will topic refused: {reason}")
        return grant

    def live(self, grant: Grant) -> bool:
        """Whether a token-mode grant still holds (no signature check: cheap enough for every delivery)."""
        return not grant.revoked and (self.credentials is None or self.credentials.clock() < grant.expires_at)

    def recheck(self, grant: Grant) -> bool:
        """After a revocation or sign-out somewhere: does this grant's token still authenticate?"""
        if self.credentials is None or grant.principal is None or grant.revoked:
            return not grant.revoked
        try:
            self._credentials_for(grant.token).authenticate(grant.token)
        except TokenRefused:
            grant.revoked = True
        return not grant.revoked

    def allows(self, grant: Grant | None, topic: str, action: Action) -> bool:
        if not self.token_mode:
            if action == Action.PUBLISH:
                return self.rules.publish_refusal(None, topic, token_mode=False) is None
            return True
        if grant is None or grant.principal is None or not self.live(grant):
            return False
        rules = self._rules_for(grant.principal)
        if action == Action.RECEIVE:
            return rules.may_receive(grant.principal, topic)
        if action == Action.SUBSCRIBE:
            return rules.may_subscribe(grant.principal, topic)
        return rules.publish_refusal(grant.principal, topic, token_mode=True) is None

    def check(self, session: Any, topic: str, action: Action) -> bool:
        """`allows` for an amqtt session; a lapsed grant also has its connection closed, once."""
        grant: Grant | None = getattr(session, GRANT, None)
        if grant is not None and self.token_mode and not grant.dropped and not self.live(grant):
            grant.dropped = True
            if self.on_lapse is not None:
                self.on_lapse(session.client_id)
        return self.allows(grant, topic, action)

    def owner(self, session: Any) -> tuple[str, str] | None:
        """(project, agent) whose token opened an amqtt session (None in open mode, or for no session)."""
        grant = getattr(session, GRANT, None) if session is not None else None
        if grant is None or grant.principal is None:
            return None
        return grant.principal.project, grant.principal.agent_id


def _expiry(token: str) -> float:
    # `authenticate` has just verified this token; its `exp` is read again only to know when to stop.
    exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
    return float(exp) if isinstance(exp, int | float) else math.inf


@dataclass
class _AccessConfig:
    access: Any = None  # an MqttAccess; handed to amqtt through the plugin's config


class HuddleAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]  # amqtt ships no types
    """amqtt's CONNECT check: admits through MqttAccess and keeps the grant on the session.

    The broker's listeners already refused what `admit` refuses, before amqtt touched its session
    table (broker.py); this is the same check on the same packet, so a grant is where ACLs find it.
    """

    Config = _AccessConfig

    async def authenticate(self, *, session: Any) -> bool:
        access: MqttAccess = self.config.access
        will = session.will_topic if session.will_flag else None
        try:
            # A resumed session still carries its previous grant: its agent holds the client id.
            grant = access.admit(session.username, session.password, will, access.owner(session))
        except Refused:
            return False
        setattr(session, GRANT, grant)
        return True


class HuddleTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """amqtt's SUBSCRIBE / PUBLISH / delivery (RECEIVE) check: TopicRules for the session's grant."""

    Config = _AccessConfig

    async def topic_filtering(self, *, session: Any = None, topic: str | None = None, action: Any = None) -> bool:
        access: MqttAccess = self.config.access
        if session is None or topic is None or action is None:
            return False
        return access.check(session, topic, action)
