"""Who may subscribe to, receive and publish which MQTT topic (SPEC F-91): pure rules, no broker.

Everything Huddle publishes sits under one root (`huddle/{project}`, topics.py). In token mode a
client is an agent with a principal, and what it may *receive* is what it could read through the
tools as that agent:

- project-wide topics of its own root: `consultations/…` (threads are read by every agent of the
  project, as `get_thread` is), `agents/{any}/status` (presence), `locks/…`, `tasks/…`, `quota/…`,
  `broadcast`, and raw topics other clients published under the root;
- of the `agents/…` subtree only its own `agents/{id}/inbox`; other agents' inboxes only with a
  token that `sees_everything` (dashboard, admin);
- nothing outside its root (another project's broker traffic is not its business).

*Subscribe* follows from it: an exact filter is granted when its topic may be received; a filter
with wildcards is granted when it reaches into the root at all (`#`, `+/…`, `{root}/#`,
`{root}/agents/+/inbox`), and the broker then delivers through it only what may be received — the
check is per delivery, so a wildcard never widens what arrives. A filter that cannot match anything
under the root (another project's root) is refused (SUBACK 0x80).

*Publish* is the `mqtt_publish` tool's rule (topics.check_publish_topic): under the root, never on
Huddle's own subtrees (`consultations`, `agents`, `locks`, `tasks`, `quota`), so no client can forge an
agent's status or a thread event; read-only tokens publish nothing. Open mode keeps MQTT open on
loopback (any topic, any subscription) except those subtrees: anonymous clients cannot spoof them either.
"""

from __future__ import annotations

from huddle.domain.principal import Principal
from huddle.push.topics import RESERVED, check_publish_topic, segment

AGENTS = "agents"


class TopicRules:
    """The rules for one root. `principal` None is open mode (no tokens, nobody to tell apart)."""

    def __init__(self, root: str):
        self.root = root
        self._prefix = root + "/"
        self._root_levels = root.split("/")

    def inbox(self, agent_id: str) -> str:
        return f"{self._prefix}{AGENTS}/{segment(agent_id)}/inbox"

    def may_receive(self, principal: Principal | None, topic: str) -> bool:
        if principal is None:
            return True
        if not topic.startswith(self._prefix):
            return False
        rest = topic[len(self._prefix) :]
        if rest.split("/", 1)[0] != AGENTS or principal.sees_everything:
            return True
        # Presence is public; an inbox is its agent's alone. Ids may hold `/`, so compare whole topics.
        return topic.endswith("/status") or topic == self.inbox(principal.agent_id)

    def may_subscribe(self, principal: Principal | None, topic_filter: str) -> bool:
        if principal is None:
            return True
        if "+" not in topic_filter and "#" not in topic_filter:
            return self.may_receive(principal, topic_filter)
        return self._reaches_under_root(topic_filter.split("/"))

    def _reaches_under_root(self, levels: list[str]) -> bool:
        """Whether a wildcard filter can match some topic `{root}/…` (the root's levels, then at least one)."""
        for i, want in enumerate(self._root_levels):
            if i >= len(levels):
                return False
            if levels[i] == "#":
                return True
            if levels[i] not in ("+", want):
                return False
        return len(levels) > len(self._root_levels)

    def publish_refusal(self, principal: Principal | None, topic: str, *, token_mode: bool) -> str | None:
        """Why a client may not publish on `topic`, or None when it may."""
        if not token_mode:
            if topic.startswith(self._prefix) and topic[len(self._prefix) :].split("/", 1)[0] in RESERVED:
                return check_publish_topic(topic, self.root)
            return None
        if principal is None:
            return "not signed in"
        if principal.read_only:
            return f"{principal.agent_id}'s token is read-only"
        return check_publish_topic(topic, self.root)
