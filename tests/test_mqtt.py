"""MQTT push through real brokers and real clients: the embedded amqtt broker over TCP and WebSocket,
Mosquitto as an external broker, a broker that is down or restarts, and a taken port."""

from __future__ import annotations

import json
import socket
import subprocess
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from helpers import ServerProcess
from huddle.testing import server_command
from push_helpers import (
    TestBroker,
    accepts,
    free_port,
    mosquitto_binary,
    mqtt_subscriber,
    runtime,
    s1,
    tool,
    wait_until,
)

needs_mosquitto = pytest.mark.skipif(mosquitto_binary() is None, reason="the mosquitto binary is not installed")


def new_thread(root: str):
    return lambda m: m.topic == f"{root}/consultations/new"


async def test_subscribers_over_tcp_and_websocket_see_the_new_consultation_of_s1(huddle_server):
    info = runtime(huddle_server)
    root = info["mqtt_topic_root"]
    assert info["mqtt_broker"] == "embedded" and info["mqtt_port"] > 0
    async with (
        mqtt_subscriber(info["mqtt_port"], f"{root}/#") as tcp,
        mqtt_subscriber(huddle_server.port, f"{root}/#", websocket_path="/mqtt") as ws,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        thread_id = await s1(http)
        for subscriber in (tcp, ws):
            message = await subscriber.wait_for(new_thread(root))
            payload = message.payload
            assert message.qos == 1
            assert payload["event"] == "thread.opened"
            assert payload["thread_id"] == thread_id
            assert payload["subject"] == "fix app bug"
            assert payload["initiator_id"] == "bob" and payload["agent_id"] == "bob"
            assert payload["target_files"] == ["src/app.py"]
            assert isinstance(payload["cursor"], int) and payload["ts"].endswith("Z")
            inbox = await subscriber.wait_for(
                lambda m: m.topic == f"{root}/agents/alice/inbox" and m.payload["event"] == "thread.opened"
            )
            assert inbox.payload["thread_id"] == thread_id


async def test_thread_messages_status_claims_and_completion_have_their_own_topics(huddle_server):
    info = runtime(huddle_server)
    root = info["mqtt_topic_root"]
    async with (
        mqtt_subscriber(info["mqtt_port"], f"{root}/consultations/#") as sub,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        thread_id = await s1(http)
        await tool(
            http,
            "post_to_thread",
            thread_id=thread_id,
            agent_id="alice",
            type="context",
            content="I am renaming run() to start()",
        )
        await tool(http, "propose_resolution", thread_id=thread_id, agent_id="bob", summary="alice goes first")
        await tool(http, "claim_thread", thread_id=thread_id, agent_id="bob")
        await tool(http, "complete_thread", thread_id=thread_id, agent_id="bob", resolution="merged")
        base = f"{root}/consultations/{thread_id}"
        posted = await sub.wait_for(lambda m: m.topic == f"{base}/messages" and m.payload["type"] == "context")
        assert posted.payload["agent_id"] == "alice" and posted.payload["name"] == "Alice"
        assert posted.payload["content"] == "I am renaming run() to start()"
        proposal = await sub.wait_for(lambda m: m.topic == f"{base}/messages" and m.payload["type"] == "proposal")
        assert proposal.payload["content"] == "alice goes first"
        status = await sub.wait_for(lambda m: m.topic == f"{base}/status")
        assert status.payload["status"] == "resolving"
        claimed = await sub.wait_for(lambda m: m.topic == f"{base}/claimed")
        assert claimed.payload["claimed_by"] == "bob" and claimed.payload["thread_id"] == thread_id
        completed = await sub.wait_for(lambda m: m.topic == f"{base}/completed")
        assert completed.payload["resolution"] == "merged" and completed.payload["agent_id"] == "bob"


async def test_an_agent_never_receives_its_own_events_on_its_own_inbox(huddle_server):
    info = runtime(huddle_server)
    root = info["mqtt_topic_root"]
    async with (
        mqtt_subscriber(info["mqtt_port"], f"{root}/agents/bob/inbox") as bob,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        thread_id = await s1(http)  # bob opens the thread: his own events
        await tool(http, "post_to_thread", thread_id=thread_id, agent_id="bob", type="question", content="ok?")
        await tool(http, "post_to_thread", thread_id=thread_id, agent_id="alice", type="context", content="yes")
        # Messages on one topic arrive in order, so once alice's reply is in, anything of bob's would be too.
        await bob.wait_for(lambda m: m.payload.get("content") == "yes")
        assert bob.messages and all(m.payload["agent_id"] != "bob" for m in bob.messages)


async def test_agent_status_is_retained_for_subscribers_that_connect_later(huddle_server):
    info = runtime(huddle_server)
    root = info["mqtt_topic_root"]
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Alice", agent_id="alice", modules=["auth"])
        # Registered before anyone listened: the broker still has her presence, retained.
        async with mqtt_subscriber(info["mqtt_port"], f"{root}/agents/+/status") as late:
            message = await late.wait_for(lambda m: m.topic == f"{root}/agents/alice/status")
            assert message.retain
            assert message.payload["status"] == "online" and message.payload["name"] == "Alice"
            assert message.payload["modules"] == ["auth"]
            await tool(http, "deregister_agent", agent_id="alice")
            gone = await late.wait_for(lambda m: m.payload["status"] == "deregistered")
            assert gone.topic == f"{root}/agents/alice/status"


async def test_mqtt_publish_broadcasts_under_the_root_and_refuses_anything_else(huddle_server):
    info = runtime(huddle_server)
    root = info["mqtt_topic_root"]
    async with (
        mqtt_subscriber(info["mqtt_port"], f"{root}/#") as sub,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        result = await tool(
            http, "mqtt_publish", topic=f"{root}/broadcast", payload={"hello": "team"}, agent_id="alice"
        )
        assert result["published"] is True
        message = await sub.wait_for(lambda m: m.topic == f"{root}/broadcast")
        assert message.payload == {"hello": "team", "agent_id": "alice"}
        outside = (await http.post("/api/v1/tools/mqtt_publish", json={"topic": "elsewhere/x", "payload": 1})).json()
        assert outside["ok"] is False and f"outside Huddle's topic root {root!r}" in outside["error"]
        forged = (
            await http.post(
                "/api/v1/tools/mqtt_publish",
                json={"topic": f"{root}/agents/bob/status", "payload": {"status": "offline"}},
            )
        ).json()
        assert forged["ok"] is False and "only the server publishes there" in forged["error"]
        wildcard = (await http.post("/api/v1/tools/mqtt_publish", json={"topic": f"{root}/#", "payload": 1})).json()
        assert wildcard["ok"] is False and "not a valid MQTT topic" in wildcard["error"]


async def test_coordinator_status_reports_the_mqtt_broker(huddle_server):
    info = runtime(huddle_server)
    async with mqtt_subscriber(info["mqtt_port"], "x/#"), httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Alice")
        status = (await tool(http, "coordinator_status"))["mqtt"]
    assert status["broker"] == "embedded" and status["connected"] is True
    assert status["mqtt_port"] == info["mqtt_port"] and status["clients"] >= 1
    assert status["topic_root"] == info["mqtt_topic_root"]


@needs_mosquitto
@pytest.mark.skipif(not accepts(1883), reason="no MQTT broker on 127.0.0.1:1883")
async def test_s1_reaches_subscribers_of_the_external_mosquitto_on_1883(server_factory):
    root = f"huddle-test/{uuid.uuid4().hex[:10]}"
    server = server_factory("--mqtt-url", "mqtt://127.0.0.1:1883", "--topic-root", root)
    assert runtime(server)["mqtt_broker"] == "external"
    async with mqtt_subscriber(1883, f"{root}/#") as sub, httpx.AsyncClient(base_url=server.url) as http:
        await wait_until(lambda: _connected(http))
        thread_id = await s1(http)
        message = await sub.wait_for(new_thread(root))
        assert message.payload["thread_id"] == thread_id and message.payload["initiator_id"] == "bob"
        status = await sub.wait_for(lambda m: m.topic == f"{root}/agents/alice/status")
        assert status.payload["status"] == "online"
        # /mqtt on the HTTP port reaches the external broker too.
        async with mqtt_subscriber(server.port, f"{root}/consultations/#", websocket_path="/mqtt") as ws:
            await tool(http, "post_to_thread", thread_id=thread_id, agent_id="alice", type="warning", content="hm")
            await ws.wait_for(lambda m: m.topic.endswith("/messages") and m.payload["content"] == "hm")


async def _connected(http: httpx.AsyncClient) -> bool:
    return bool((await tool(http, "coordinator_status"))["mqtt"]["connected"])


async def _prepare_persistent_watcher(broker: TestBroker, root: str, client_id: str) -> None:
    """A subscriber session that outlives its connection: the broker queues QoS 1 messages for it."""
    async with mqtt_subscriber(broker.port, f"{root}/#", identifier=client_id, clean_session=False):
        pass


@needs_mosquitto
async def test_a_broker_that_is_down_does_not_block_tool_calls_and_events_catch_up_when_it_returns(
    server_factory, tmp_path: Path
):
    root = f"huddle-test/{uuid.uuid4().hex[:10]}"
    broker = TestBroker(tmp_path / "broker")
    await broker.start()
    await _prepare_persistent_watcher(broker, root, "watcher")
    broker.stop()  # down before Huddle even starts: the URL points at a closed port
    server = server_factory("--mqtt-url", broker.url, "--topic-root", root)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            # A bound on a hang, not a speed check: waiting for the dead broker would take far longer.
            with anyio.fail_after(5):
                thread_id = await s1(http)
                await tool(
                    http,
                    "post_to_thread",
                    thread_id=thread_id,
                    agent_id="alice",
                    type="context",
                    content="while the broker was down",
                )
            assert not await _connected(http)
            await broker.start()
            await wait_until(lambda: _connected(http), timeout=15)
            async with mqtt_subscriber(
                broker.port, f"{root}/#", identifier="watcher", clean_session=False, subscribe=False
            ) as watcher:
                opened = await watcher.wait_for(new_thread(root), timeout=15)
                assert opened.payload["thread_id"] == thread_id
                await watcher.wait_for(lambda m: m.payload.get("content") == "while the broker was down")
            published = (await tool(http, "coordinator_status"))["mqtt"]["published"]
            assert published["catch_ups"] >= 1 and published["caught_up_events"] >= 1, json.dumps(published)
    finally:
        broker.stop()


@needs_mosquitto
async def test_a_broker_restart_loses_no_event_for_a_persistent_subscriber(server_factory, tmp_path: Path):
    root = f"huddle-test/{uuid.uuid4().hex[:10]}"
    broker = await TestBroker(tmp_path / "broker").start()
    await _prepare_persistent_watcher(broker, root, "watcher")
    server = server_factory("--mqtt-url", broker.url, "--topic-root", root)
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            await wait_until(lambda: _connected(http))
            thread_id = await s1(http)
            broker.stop()
            with anyio.fail_after(5):
                for n in range(5):
                    await tool(
                        http,
                        "post_to_thread",
                        thread_id=thread_id,
                        agent_id="alice",
                        type="context",
                        content=f"during restart {n}",
                    )
            await broker.start()
            async with mqtt_subscriber(
                broker.port, f"{root}/#", identifier="watcher", clean_session=False, subscribe=False
            ) as watcher:
                await watcher.wait_for(new_thread(root), timeout=15)
                for n in range(5):
                    await watcher.wait_for(lambda m, n=n: m.payload.get("content") == f"during restart {n}", timeout=15)
                contents = [m.payload["content"] for m in watcher.on(f"{root}/consultations/{thread_id}/messages")]
                assert [c for c in contents if c.startswith("during")] == [f"during restart {n}" for n in range(5)]
    finally:
        broker.stop()


def _start_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        server_command(tmp_path / "data", tmp_path, *args, mqtt_port=None),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_taken_mqtt_port_is_a_clear_message_and_a_non_zero_exit(tmp_path: Path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = _start_cli(tmp_path, "--mqtt-port", str(port))
    assert done.returncode == 1
    assert f"MQTT port {port} on 127.0.0.1 is already in use" in done.stderr
    assert "--mqtt-port" in done.stderr and f"--mqtt-url mqtt://127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.skipif(not accepts(1883), reason="no MQTT broker on 127.0.0.1:1883")
def test_a_chosen_port_taken_by_a_broker_suggests_using_that_broker(tmp_path: Path):
    done = _start_cli(tmp_path, "--mqtt-port", "1883")
    assert done.returncode == 1
    assert "MQTT port 1883 on 127.0.0.1 is already in use (an MQTT broker answers there)" in done.stderr
    assert "--mqtt-url mqtt://127.0.0.1:1883" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.skipif(not accepts(1883), reason="no MQTT broker on 127.0.0.1:1883")
def test_the_default_port_taken_warns_with_the_choices_and_serves_on_a_free_port(repo: Path, tmp_path: Path):
    # No --mqtt-port: the default 1883 is taken by the machine's broker.
    server = ServerProcess(tmp_path / "data", repo, mqtt_port=None).start()
    try:
        info = json.loads((server.data_dir / "server.json").read_text())
        assert info["mqtt_broker"] == "embedded" and info["mqtt_port"] not in (0, 1883)
        assert accepts(info["mqtt_port"])
        log = server.log()
        assert "MQTT port 1883 on 127.0.0.1 is already in use (an MQTT broker answers there)" in log
        assert "--mqtt-url mqtt://127.0.0.1:1883" in log and "Traceback" not in log
    finally:
        server.stop()


@needs_mosquitto
async def test_the_managed_mosquitto_child_serves_subscribers_and_stops_with_the_server(server_factory):
    server = server_factory("--mqtt-broker", "mosquitto")
    info = runtime(server)
    assert info["mqtt_broker"] == "mosquitto" and info["mqtt_port"] != 1883
    root = info["mqtt_topic_root"]
    async with mqtt_subscriber(info["mqtt_port"], f"{root}/#") as sub, httpx.AsyncClient(base_url=server.url) as http:
        await wait_until(lambda: _connected(http))
        thread_id = await s1(http)
        assert (await sub.wait_for(new_thread(root))).payload["thread_id"] == thread_id
        child = (await tool(http, "coordinator_status"))["mqtt"]["child_pid"]
    config = (server.data_dir / "mosquitto.conf").read_text()
    assert f"listener {info['mqtt_port']} 127.0.0.1" in config
    server.stop()
    assert not accepts(info["mqtt_port"])
    assert not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text().lower()


def test_free_port_helper_returns_a_closed_port():
    assert not accepts(free_port())
