"""MQTT sign-in and ACLs of the embedded broker (SPEC F-91), with real aiomqtt (paho) clients over TCP
and over WebSocket (`/mqtt` on the HTTP port) against a real Huddle app on ephemeral ports.

Deliveries are checked, not only SUBACK codes: after the events that must not arrive, something
that must arrive is sent on the same path, and only once it is in is the absence asserted.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from helpers import make_coordinator
from huddle.domain.principal import Principal
from huddle.errors import HuddleError
from huddle.push.acl import TopicRules
from huddle.push.bridge import Message
from huddle.push.hub import PushHub
from huddle.testing import server_command
from mqtt_auth_helpers import (
    ACCEPTED,
    BAD_CREDENTIALS,
    ID_REJECTED,
    NOT_AUTHORIZED,
    OTHER_SECRET,
    REFUSED_FILTER,
    SECRET,
    Served,
    alg_none,
    connack,
    listener,
    other_credentials,
    raw_connack,
    register,
    serve,
    tool,
)

TRANSPORTS = ["tcp", "ws"]
REFUSALS = {
    "no credentials": NOT_AUTHORIZED,
    "no token": NOT_AUTHORIZED,
    "expired": BAD_CREDENTIALS,
    "wrong key": BAD_CREDENTIALS,
    "alg=none": BAD_CREDENTIALS,
    "wrong audience": BAD_CREDENTIALS,
    "revoked": BAD_CREDENTIALS,
    "another agent's identity": BAD_CREDENTIALS,
}


@pytest.fixture
async def token_server(tmp_path: Path, repo: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path, repo, auth="token") as served:
        yield served


@pytest.fixture
async def open_server(tmp_path: Path, repo: Path) -> AsyncIterator[Served]:
    async with serve(tmp_path, repo, auth="open") as served:
        yield served


async def refused_credentials(served: Served, case: str) -> tuple[str | None, str | None]:
    """(username, password) of one way to knock without a valid token of one's own."""
    if case == "no credentials":
        return None, None
    if case == "no token":
        return "alice", None
    if case == "expired":
        past = other_credentials(served, clock=lambda: served.clock.now - 7200)
        return "alice", (await past.issue("alice", ttl_s=60, with_refresh=False))["access_token"]
    if case == "wrong key":
        foreign = other_credentials(served, auth_secret=OTHER_SECRET)
        return "alice", (await foreign.issue("alice", with_refresh=False))["access_token"]
    if case == "alg=none":
        return "alice", alg_none(await served.token("alice"))
    if case == "wrong audience":
        other_org = other_credentials(served, org="another-org")
        return "alice", (await other_org.issue("alice", with_refresh=False))["access_token"]
    if case == "revoked":
        token = await served.token("alice")
        assert served.credentials is not None
        await served.credentials.revoke(token)
        return "alice", token
    assert case == "another agent's identity"
    return "alice", await served.token("bob")


# -- CONNECT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", list(REFUSALS))
async def test_a_connect_without_a_valid_token_of_its_own_agent_is_refused_with_a_connack_code(
    token_server: Served, transport: str, case: str
):
    username, password = await refused_credentials(token_server, case)
    answer = await connack(token_server, transport, username=username, password=password)
    assert answer == REFUSALS[case]
    embedded = token_server.app.push.embedded
    assert embedded is not None
    # Refused before amqtt's session table: no half-open session is left behind to count as a client.
    status = token_server.app.push.mqtt_status()
    assert status["auth"] == "token" and status["refused_connects"] == 1 and status["clients"] == 0


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_valid_token_of_its_own_agent_connects_and_receives_its_inbox(token_server: Served, transport: str):
    root = token_server.root
    await register(token_server, "alice", "bob")
    token = await token_server.token("alice")
    async with listener(token_server, transport, username="alice", password=token) as alice:
        assert await alice.subscribe(f"{root}/agents/alice/inbox") == {f"{root}/agents/alice/inbox": 1}
        await tool(token_server, "send_message", from_agent="bob", to_agent="alice", content="hello alice")
        payload = await alice.wait_for(f"{root}/agents/alice/inbox")
        assert payload["content"] == "hello alice" and payload["agent_id"] == "bob"
    assert token_server.app.push.mqtt_status()["refused_connects"] == 0


# -- SUBSCRIBE / deliveries ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wildcards_deliver_nothing_of_another_agents_inbox_nor_of_another_project(
    token_server: Served, transport: str
):
    root = token_server.root
    bob_inbox, alice_inbox = f"{root}/agents/bob/inbox", f"{root}/agents/alice/inbox"
    wildcards = ["#", "huddle/#", "+/#", "+/+/agents/+/inbox", f"{root}/#", f"{root}/agents/+/inbox"]
    await register(token_server, "alice", "bob", "carol")
    async with (
        listener(token_server, transport, username="alice", password=await token_server.token("alice")) as alice,
        listener(token_server, username="bob", password=await token_server.token("bob")) as bob,
        listener(token_server, username="carol", password=await token_server.token("carol", "dashboard")) as carol,
    ):
        granted = await alice.subscribe(*wildcards, "huddle/another-project/#", "another/#", bob_inbox)
        assert granted == {**dict.fromkeys(wildcards, 1), **dict.fromkeys(granted.keys() - set(wildcards), 0x80)}
        assert granted["huddle/another-project/#"] == granted[bob_inbox] == REFUSED_FILTER
        await bob.subscribe(bob_inbox)
        await carol.subscribe(f"{root}/agents/+/inbox")

        await tool(token_server, "send_message", from_agent="carol", to_agent="bob", content="for bob only")
        await tool(token_server, "send_message", from_agent="bob", to_agent="alice", content="for alice")
        # The message to bob exists on the broker: bob and the dashboard's token get it.
        assert (await bob.wait_for(bob_inbox))["content"] == "for bob only"
        await carol.wait_for(bob_inbox)
        await carol.wait_for(alice_inbox)
        # Sent after bob's: once alice has hers, bob's was routed already (one broker queue, in order).
        assert (await alice.wait_for(alice_inbox))["content"] == "for alice"
    assert bob_inbox not in alice.topics()
    assert all(topic.startswith(root + "/") for topic in alice.topics())


async def test_a_retained_message_on_another_agents_topic_is_not_replayed_to_a_wildcard(token_server: Served):
    root = token_server.root
    embedded = token_server.app.push.embedded
    assert embedded is not None
    # As the bridge would hand them over: one private retained message, then a public one as a marker.
    await embedded.publish(
        [
            Message(f"{root}/agents/bob/inbox", b'{"secret": true}', 1, True),
            Message(f"{root}/team/marker", b'{"marker": true}', 1, True),
        ]
    )
    async with (
        listener(token_server, username="alice", password=await token_server.token("alice")) as alice,
        listener(token_server, username="carol", password=await token_server.token("carol", "admin")) as admin,
    ):
        await alice.subscribe("#")
        await admin.subscribe("#")
        await admin.wait_for(f"{root}/agents/bob/inbox")
        await alice.wait_for(f"{root}/team/marker")
    assert alice.topics() == [f"{root}/team/marker"]


# -- PUBLISH ----------------------------------------------------------------------------------------


FORGED = [
    "agents/alice/status",
    "agents/bob/status",
    "agents/bob/inbox",
    "consultations/new",
    "consultations/T-1/messages",
    "consultations/T-1/status",
    "locks/src/app.py",
    "tasks/T-1",
    "quota/update",
]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_an_agent_cannot_publish_on_huddles_own_topics_nor_outside_its_root(token_server: Served, transport: str):
    root = token_server.root
    embedded = token_server.app.push.embedded
    assert embedded is not None
    await register(token_server, "alice")  # her real, retained status
    retained_before = embedded.info()["retained"]
    async with (
        listener(token_server, username="carol", password=await token_server.token("carol", "admin")) as admin,
        listener(token_server, transport, username="alice", password=await token_server.token("alice")) as alice,
    ):
        await admin.subscribe("#")
        await admin.wait_for(f"{root}/agents/alice/status")  # the retained replay is in
        for topic in [f"{root}/{rest}" for rest in FORGED] + ["huddle/another-project/broadcast", "elsewhere"]:
            await alice.client.publish(topic, b'{"status": "offline", "agent_id": "alice"}', qos=1, retain=True)
        await alice.client.publish(f"{root}/team/notes", b'{"note": 1}', qos=1, retain=True)
        await alice.client.publish(f"{root}/broadcast", b'{"hello": 1}', qos=1)
        await admin.wait_for(f"{root}/team/notes")
        await admin.wait_for(f"{root}/broadcast")
    on_forged_topics = [(t, p) for t, p in admin.messages if t[len(root) + 1 :] in FORGED]
    # Only the genuine one, replayed at subscribe: Huddle's event, with its cursor.
    assert [(t, p["event"]) for t, p in on_forged_topics] == [(f"{root}/agents/alice/status", "agent.online")]
    assert embedded.info()["retained"] == retained_before + 1  # team/notes only


async def test_a_read_only_token_publishes_nothing(token_server: Served):
    root = token_server.root
    async with (
        listener(token_server, username="bot", password=await token_server.token("bot", "read")) as bot,
        listener(token_server, username="alice", password=await token_server.token("alice")) as alice,
    ):
        assert await bot.subscribe(f"{root}/team/#") == {f"{root}/team/#": 1}
        await bot.client.publish(f"{root}/team/from-bot", b"{}", qos=1)
        await alice.client.publish(f"{root}/team/from-alice", b"{}", qos=1)
        await bot.wait_for(f"{root}/team/from-alice")
    assert bot.topics() == [f"{root}/team/from-alice"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_will_on_huddles_own_topics_is_refused_at_connect(token_server: Served, transport: str):
    root = token_server.root
    token = await token_server.token("alice")
    forged = (f"{root}/agents/alice/status", b'{"status": "offline"}')
    answer = await connack(token_server, transport, username="alice", password=token, will=forged)
    assert answer == NOT_AUTHORIZED
    fine = (f"{root}/team/wills", b"gone")
    assert await connack(token_server, transport, username="alice", password=token, will=fine) == ACCEPTED


# -- open mode --------------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_open_mode_subscribes_freely_but_refuses_anonymous_publishing_on_huddles_own_topics(
    open_server: Served, transport: str
):
    root = open_server.root
    await register(open_server, "alice", "bob", "carol")
    async with listener(open_server) as anyone, listener(open_server, transport) as spoofer:
        await anyone.subscribe("#")
        await anyone.wait_for(f"{root}/agents/alice/status")
        await tool(open_server, "send_message", from_agent="carol", to_agent="bob", content="open mode")
        assert (await anyone.wait_for(f"{root}/agents/bob/inbox"))["content"] == "open mode"
        for rest in FORGED:
            await spoofer.client.publish(f"{root}/{rest}", b'{"status": "offline"}', qos=1, retain=True)
        for allowed in (f"{root}/broadcast", f"{root}/team/x", "elsewhere/x"):
            await spoofer.client.publish(allowed, b'{"ok": 1}', qos=1)
            await anyone.wait_for(allowed)
    on_forged_topics = [p for t, p in anyone.messages if t.startswith(root + "/") and t[len(root) + 1 :] in FORGED]
    assert len(on_forged_topics) == 3  # alice's and bob's status, bob's inbox: all Huddle's own
    assert all(isinstance(p, dict) and "cursor" in p for p in on_forged_topics)
    async with listener(open_server) as late:  # the retained status is still Huddle's
        await late.subscribe(f"{root}/agents/alice/status")
        assert (await late.wait_for(f"{root}/agents/alice/status"))["event"] == "agent.online"
    forged_will = (f"{root}/agents/alice/status", b'{"status": "offline"}')
    assert await connack(open_server, transport, will=forged_will) == NOT_AUTHORIZED


# -- a token that lapses while connected, and client ids --------------------------------------------


@pytest.mark.parametrize("how", ["revoke", "sign out everywhere"])
async def test_revoking_a_connected_agents_token_closes_its_connection(token_server: Served, how: str):
    root = token_server.root
    credentials = token_server.credentials
    assert credentials is not None
    await register(token_server, "alice", "bob")
    token = await token_server.token("alice")
    async with listener(token_server, username="alice", password=token) as alice:
        await alice.subscribe(f"{root}/agents/alice/inbox")
        if how == "revoke":
            await credentials.revoke(token)
        else:
            await credentials.sign_out_everywhere("alice")
        await alice.wait_closed()
        await tool(token_server, "send_message", from_agent="bob", to_agent="alice", content="after revocation")
    assert alice.messages == []
    assert await connack(token_server, username="alice", password=token) == BAD_CREDENTIALS


async def test_a_token_that_expires_while_connected_receives_nothing_more_and_is_disconnected(token_server: Served):
    root = token_server.root
    await register(token_server, "alice", "bob", "carol")
    token = await token_server.token("alice", ttl_s=60)
    async with (
        listener(token_server, username="alice", password=token) as alice,
        listener(token_server, username="bob", password=await token_server.token("bob", ttl_s=3600)) as bob,
    ):
        await alice.subscribe(f"{root}/broadcast")
        await bob.subscribe(f"{root}/broadcast")
        await tool(token_server, "send_message", from_agent="carol", content="before expiry")
        await alice.wait_for(f"{root}/broadcast")
        token_server.clock.advance(120)
        await tool(token_server, "send_message", from_agent="carol", content="after expiry")
        await bob.wait_for(f"{root}/broadcast", count=2)
        await alice.wait_closed()
    assert [p["content"] for _, p in alice.messages] == ["before expiry"]
    assert await connack(token_server, username="alice", password=token) == BAD_CREDENTIALS


async def test_another_agent_cannot_take_over_a_persistent_session_by_its_client_id(token_server: Served):
    root = token_server.root
    await register(token_server, "alice", "bob", "carol")
    alice_token, bob_token = await token_server.token("alice"), await token_server.token("bob")
    async with listener(
        token_server, username="alice", password=alice_token, identifier="desk-1", clean_session=False
    ) as alice:
        await alice.subscribe(f"{root}/agents/alice/inbox")
    await tool(token_server, "send_message", from_agent="carol", to_agent="alice", content="queued for alice")
    answer = await connack(token_server, username="bob", password=bob_token, identifier="desk-1", clean_session=False)
    assert answer == ID_REJECTED
    async with listener(
        token_server, username="alice", password=alice_token, identifier="desk-1", clean_session=False
    ) as again:
        assert (await again.wait_for(f"{root}/agents/alice/inbox"))["content"] == "queued for alice"


@pytest.mark.parametrize("case", ["no token", "another agent's identity", "another agent, its own token"])
async def test_a_refused_connect_with_a_connected_clients_id_leaves_that_client_alone(token_server: Served, case: str):
    root = token_server.root
    await register(token_server, "alice", "bob")
    if case == "another agent, its own token":
        username, password, expected = "bob", await token_server.token("bob"), ID_REJECTED
    else:
        username, password = await refused_credentials(token_server, case)
        expected = REFUSALS[case]
    async with listener(
        token_server, username="alice", password=await token_server.token("alice"), identifier="desk-2"
    ) as alice:
        await alice.subscribe(f"{root}/agents/alice/inbox")
        for clean in (True, False):  # amqtt would delete (clean) or take over (persistent) the session first
            answer = await connack(
                token_server, username=username, password=password, identifier="desk-2", clean_session=clean
            )
            assert answer == expected
        await tool(token_server, "send_message", from_agent="bob", to_agent="alice", content="still here")
        assert (await alice.wait_for(f"{root}/agents/alice/inbox"))["content"] == "still here"
        assert not alice.closed


# -- brokers Huddle cannot secure ------------------------------------------------------------------


def test_token_mode_refuses_the_managed_mosquitto_naming_the_alternatives(tmp_path: Path):
    done = subprocess.run(
        server_command(tmp_path / "data", tmp_path, "--mqtt-broker", "mosquitto"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HUDDLE_AUTH": "token", "HUDDLE_AUTH_SECRET": SECRET},
    )
    assert done.returncode == 1
    assert "--mqtt-broker mosquitto cannot check Huddle's tokens" in done.stderr
    assert "--mqtt-broker embedded" in done.stderr and "--mqtt-url" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_token_mode_without_credentials_refuses_to_open_the_embedded_broker(tmp_path: Path, repo: Path):
    coordinator = make_coordinator(tmp_path, repo, auth="token", auth_secret=SECRET, mqtt_port=0)
    hub = PushHub(coordinator.settings, coordinator)
    with pytest.raises(HuddleError, match="token mode needs the server's credentials for MQTT"):
        hub.bind()


# -- the rules themselves ---------------------------------------------------------------------------


def agent(agent_id: str, *scopes: str) -> Principal:
    return Principal(agent_id, "demo", "default", frozenset(scopes or ("agent",)))


def test_an_agent_id_with_a_slash_opens_no_neighbours_inbox():
    rules = TopicRules("huddle/demo")
    team = agent("team")
    assert rules.may_receive(team, "huddle/demo/agents/team/inbox")
    assert not rules.may_receive(team, "huddle/demo/agents/team/alice/inbox")  # agent "team/alice"
    assert rules.may_receive(agent("team/alice"), "huddle/demo/agents/team/alice/inbox")
    assert rules.may_receive(team, "huddle/demo/agents/team/alice/status")  # presence is public
    assert not rules.may_subscribe(team, "huddle/demo/agents/team/alice/inbox")
    assert rules.may_subscribe(team, "huddle/demo/agents/team/+/inbox")  # granted; deliveries decide
    assert not rules.may_subscribe(team, "huddle/demo")
    assert not rules.may_subscribe(team, "huddle/+")  # matches only the root itself, where nothing is sent
    assert not rules.may_subscribe(team, "$SYS/#")


def test_admins_may_read_every_inbox_but_publish_on_huddles_topics_no_more_than_anyone():
    rules = TopicRules("huddle/demo")
    admin = agent("ops", "admin")
    assert rules.may_receive(admin, "huddle/demo/agents/bob/inbox")
    assert not rules.may_receive(admin, "huddle/other/broadcast")
    assert rules.publish_refusal(admin, "huddle/demo/agents/bob/status", token_mode=True) is not None
    assert rules.publish_refusal(admin, "huddle/demo/team/x", token_mode=True) is None
    assert rules.publish_refusal(None, "huddle/demo/locks/a.py", token_mode=False) is not None
    assert rules.publish_refusal(None, "anything/else", token_mode=False) is None


async def test_the_refusals_are_mqtt_3_1_1_connack_codes_on_the_wire(token_server: Served):
    bob = await token_server.token("bob")
    assert await raw_connack(token_server.mqtt_port) == 5  # not authorized: no credentials
    assert await raw_connack(token_server.mqtt_port, "alice", bob) == 4  # bad user name or password
    assert await raw_connack(token_server.mqtt_port, "bob", bob) == 0
