"""The MQTT topic map (SPEC F-61): which topics an event goes to, with which QoS and retain flag.

Pure and table-driven: `route(event, root)` looks the event's kind up in `ROUTES` (the exact kind first,
then its `group.*` wildcard) and renders the topic templates from the event. A kind the table does not
know still reaches its audience — `agents/{id}/inbox` for each addressee, or `broadcast` when it is
addressed to everyone — so new event kinds never get lost on the way to MQTT.

Topics sit under a root (default `huddle/{project}`), so one broker can serve several projects.
The payload is the event's wire form (`event`, `cursor`, `ts`, `agent_id`, `thread_id`, …) plus the
fields the seed's topic map promises (`name`, `type`, `content`, `status`, `claimed_by`, …).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from huddle.domain.events import EVERYONE, Event

Shape = Callable[[Event], dict[str, Any]]
NameOf = Callable[[str], str | None]

# Subtrees only Huddle publishes on; `mqtt_publish` refuses them so nobody can forge coordination state.
RESERVED = ("consultations", "agents", "locks", "tasks", "quota")
BROADCAST = "broadcast"


@dataclass(frozen=True)
class Route:
    """How one kind of event is published. `topics` are templates relative to the root."""

    topics: tuple[str, ...] = ()
    qos: int = 1
    retain: bool = False
    inbox: bool = True  # also to each addressee's agents/{id}/inbox (or `broadcast` when addressed to everyone)
    shape: Shape | None = field(default=None, compare=False)  # extra payload fields the seed's map promises


class Publication(NamedTuple):  # a tuple, not a frozen dataclass: a crowd's event renders a thousand
    topic: str
    qos: int
    retain: bool


@dataclass(frozen=True)
class Routed:
    """One event ready for MQTT: a payload (shared by every topic) and where it goes."""

    payload: dict[str, Any]
    fixed: tuple[Publication, ...]  # the event's own topics (and the broadcast)
    # Each addressee's inbox topic, kept apart: a crowd's event has a thousand, and a publisher that
    # knows who subscribes (the embedded broker) makes messages of the subscribed ones only.
    inboxes: tuple[str, ...] = ()
    inbox_qos: int = 0

    @property
    def publications(self) -> tuple[Publication, ...]:
        """Every topic the event goes to, inboxes last."""
        return self.fixed + tuple(Publication(topic, self.inbox_qos, False) for topic in self.inboxes)


def _message(kind: str, content_key: str | None = None, default: str = "") -> Shape:
    def shape(event: Event) -> dict[str, Any]:
        content = event.data.get(content_key) if content_key else None
        return {"type": kind, "content": content if content is not None else default}

    return shape


def _completed(event: Event) -> dict[str, Any]:
    return {"resolution": event.data.get("resolution")}


THREAD_MESSAGES = "consultations/{thread_id}/messages"

ROUTES: Mapping[str, Route] = {
    "thread.opened": Route(("consultations/new",)),
    "thread.message": Route((THREAD_MESSAGES,)),
    "thread.proposal": Route((THREAD_MESSAGES,), shape=_message("proposal", "summary")),
    "thread.approval": Route((THREAD_MESSAGES,), shape=_message("approval", default="approved")),
    "thread.respondent_left": Route((THREAD_MESSAGES,), shape=_message("respondent_left", "reason")),
    "thread.status": Route(("consultations/{thread_id}/status",)),
    "thread.claimed": Route(("consultations/{thread_id}/claimed",)),
    "thread.completed": Route(("consultations/{thread_id}/completed",), shape=_completed),
    # Retained: a subscriber that connects later learns every agent's presence at once.
    "agent.*": Route(("agents/{agent_id}/status",), retain=True, inbox=False),
    "lock.*": Route(("locks/{path}",)),
    "task.*": Route(("tasks/{task_id}",)),
    "quota.*": Route(("quota/update",), qos=0, inbox=False),
}
DEFAULT_ROUTE = Route()


def route_for(kind: str) -> Route:
    """The table row for a kind: exact match, then `group.*`, then the audience-only default."""
    found = ROUTES.get(kind)
    if found is None:
        found = ROUTES.get(kind.split(".", 1)[0] + ".*", DEFAULT_ROUTE)
    return found


def segment(value: object) -> str:
    """Makes a value safe inside a topic: `+`, `#` and NUL would change its meaning, so they are %-escaped.

    Slashes stay: `locks/src/auth/login.py` is meant to be matched by `locks/src/auth/#`.
    """
    text = str(value)
    # Four substring tests, not a generator over the characters: a crowd's event renders a thousand inboxes.
    if "%" in text or "+" in text or "#" in text or "\0" in text:
        text = text.replace("%", "%25").replace("+", "%2B").replace("#", "%23").replace("\0", "%00")
    return text


def render_root(template: str, project: str) -> str:
    """`huddle/{project}` → `huddle/myrepo`; the project key is escaped like any topic segment."""
    return template.replace("{project}", segment(project).replace("/", "_")).strip("/")


def _fields(event: Event) -> dict[str, Any]:
    return {"agent_id": event.actor, "thread_id": event.thread_id, **event.data}


def _render(template: str, values: Mapping[str, Any]) -> str | None:
    """Fills `{name}` placeholders from the event; None when one is missing (the topic is skipped)."""
    out = template
    while "{" in out:
        start = out.index("{")
        end = out.index("}", start)
        value = values.get(out[start + 1 : end])
        if value is None or value == "":
            return None
        out = out[:start] + segment(value) + out[end + 1 :]
    return out


def route(event: Event, root: str, name_of: NameOf | None = None) -> Routed:
    """Where `event` is published under `root`, and the JSON payload every subscriber receives."""
    rule = route_for(event.kind)
    payload = event.to_dict()
    if rule.shape is not None:
        payload.update(rule.shape(event))
    if "name" not in payload and event.actor and name_of is not None:
        payload["name"] = name_of(event.actor)
    values = _fields(event)
    topics: list[Publication] = []
    for template in rule.topics:
        rendered = _render(template, values)
        if rendered is not None:
            topics.append(Publication(f"{root}/{rendered}", rule.qos, rule.retain))
    inboxes: tuple[str, ...] = ()
    if rule.inbox:
        if EVERYONE in event.audience:
            topics.append(Publication(f"{root}/{BROADCAST}", rule.qos, False))
        else:
            # Nobody is woken by their own action on their own inbox (the payload's agent_id says who acted).
            inboxes = tuple(f"{root}/agents/{segment(agent)}/inbox" for agent in event.audience if agent != event.actor)
    return Routed(payload, tuple(topics), inboxes, rule.qos)


def check_publish_topic(topic: str, root: str) -> str | None:
    """Why a raw `mqtt_publish` to `topic` is refused, or None when it is fine."""
    example = f"{root}/{BROADCAST}"
    if not topic or any(c in topic for c in "+#\0"):
        return f"topic {topic!r} is not a valid MQTT topic to publish to (no +, # or empty); e.g. {example}"
    if not topic.startswith(root + "/"):
        return f"topic {topic!r} is outside Huddle's topic root {root!r}; publish under {root}/…, e.g. {example}"
    first = topic[len(root) + 1 :].split("/", 1)[0]
    if first in RESERVED:
        return (
            f"{root}/{first}/… carries Huddle's own coordination state and only the server publishes there;"
            f" use {example} or a topic of your own under {root}/"
        )
    return None
