"""The MQTT topic map is a pure function of the event: tested here without a broker."""

from __future__ import annotations

from huddle.domain.events import EVERYONE, Event
from huddle.push.bridge import encode
from huddle.push.topics import check_publish_topic, render_root, route

ROOT = "huddle/demo"


def event(
    kind: str,
    actor: str | None = "bob",
    audience: tuple[str, ...] = (EVERYONE,),
    thread_id: str | None = None,
    **data: object,
) -> Event:
    return Event(
        cursor=7,
        ts=1_700_000_000.0,
        project="demo",
        kind=kind,
        actor=actor,
        audience=audience,
        thread_id=thread_id,
        data=dict(data),
    )


def topics(e: Event) -> dict[str, tuple[int, bool]]:
    return {p.topic: (p.qos, p.retain) for p in route(e, ROOT).publications}


def test_a_new_thread_goes_to_consultations_new_and_to_every_member_but_its_initiator():
    e = event(
        "thread.opened",
        audience=("bob", "alice", "carol"),
        thread_id="T-3",
        subject="s",
        initiator_id="bob",
        target_files=["a.py"],
    )
    assert topics(e) == {
        f"{ROOT}/consultations/new": (1, False),
        f"{ROOT}/agents/alice/inbox": (1, False),
        f"{ROOT}/agents/carol/inbox": (1, False),
    }
    payload = route(e, ROOT).payload
    assert payload["event"] == "thread.opened" and payload["cursor"] == 7 and payload["ts"].endswith("Z")
    assert payload["thread_id"] == "T-3" and payload["initiator_id"] == "bob" and payload["agent_id"] == "bob"


def test_thread_posts_proposals_and_approvals_share_the_messages_topic_with_a_type():
    proposal = route(
        event("thread.proposal", audience=("alice",), thread_id="T-3", summary="me first"), ROOT, {"bob": "Bob"}.get
    )
    assert f"{ROOT}/consultations/T-3/messages" in {p.topic for p in proposal.publications}
    assert proposal.payload["type"] == "proposal" and proposal.payload["content"] == "me first"
    assert proposal.payload["name"] == "Bob"
    approval = route(event("thread.approval", audience=("alice",), thread_id="T-3"), ROOT).payload
    assert approval["type"] == "approval" and approval["content"] == "approved"


def test_agent_status_is_retained_and_not_broadcast():
    assert topics(event("agent.online", status="online", name="Bob", modules=[])) == {
        f"{ROOT}/agents/bob/status": (1, True)
    }


def test_locks_and_tasks_have_topics_and_odd_characters_cannot_turn_into_wildcards():
    lock = topics(event("lock.acquired", audience=("bob", "alice"), path="src/a+b/#x.py"))
    assert f"{ROOT}/locks/src/a%2Bb/%23x.py" in lock and f"{ROOT}/agents/alice/inbox" in lock
    assert f"{ROOT}/tasks/build-1" in topics(event("task.claimed", task_id="build-1"))


def test_unknown_kinds_still_reach_their_audience_and_everyone_means_broadcast():
    assert topics(event("weather.changed", audience=("alice",))) == {f"{ROOT}/agents/alice/inbox": (1, False)}
    assert topics(event("weather.changed")) == {f"{ROOT}/broadcast": (1, False)}
    assert topics(event("message.sent", actor="bob", audience=("alice",), content="hi")) == {
        f"{ROOT}/agents/alice/inbox": (1, False)
    }


def test_a_topic_template_with_a_missing_field_is_skipped_not_rendered_half():
    assert topics(event("thread.status", audience=("alice",), thread_id=None, status="open")) == {
        f"{ROOT}/agents/alice/inbox": (1, False)
    }


def test_the_root_takes_the_project_key_and_raw_publishes_stay_under_it():
    assert render_root("huddle/{project}", "my repo+x") == "huddle/my repo%2Bx"
    assert check_publish_topic(f"{ROOT}/broadcast", ROOT) is None
    assert check_publish_topic(f"{ROOT}/team/notes", ROOT) is None
    assert "outside Huddle's topic root" in str(check_publish_topic("other/broadcast", ROOT))
    assert "outside" in str(check_publish_topic("huddle/demo-evil/x", ROOT))
    assert "only the server publishes" in str(check_publish_topic(f"{ROOT}/consultations/new", ROOT))
    assert "not a valid MQTT topic" in str(check_publish_topic(f"{ROOT}/+/x", ROOT))


def test_inbox_messages_are_made_only_for_the_topics_a_publisher_wants_and_for_all_when_it_cannot_tell():
    crowd = tuple(f"agent-{i:03d}" for i in range(300))
    routed = route(event("intent.announced", actor="bob", audience=("bob", *crowd), intent_id="I-1"), ROOT)
    subscribed = {f"{ROOT}/agents/agent-007/inbox"}

    wanted_only = encode(routed, subscribed.__contains__)
    everyone = encode(routed)

    own_topics = {p.topic for p in routed.fixed}
    assert {m.topic for m in wanted_only} == own_topics | subscribed
    assert {m.topic for m in everyone} == {p.topic for p in routed.publications}
    assert len(everyone) == len(own_topics) + len(crowd)  # bob is not woken by his own announce
    assert len({m.payload for m in everyone}) == 1  # one payload for every topic
