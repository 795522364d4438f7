"""State survives a restart on the same data dir, and an acknowledged write survives a crash."""

from __future__ import annotations

from mcp import Client

from helpers import call


async def seed(url: str) -> tuple[str, dict]:
    async with Client(url) as alice, Client(url) as bob:
        await call(alice, "register_agent", name="alice", modules=["src/auth"])
        await call(bob, "register_agent", name="bob")
        await call(alice, "announce_work", agent_id="alice", subject="auth", target_files=["src/auth.py"])
        opened = await call(bob, "announce_work", agent_id="bob", subject="auth too", target_files=["src/auth.py"])
        thread_id = opened["thread_id"]
        await call(alice, "post_to_thread", thread_id=thread_id, agent_id="alice", type="context", content="hi")
        await call(bob, "propose_resolution", thread_id=thread_id, agent_id="bob", summary="alice first")
        await call(
            bob,
            "send_message",
            from_agent="bob",
            to_agent="alice",
            channel="coordination",
            content="ping me when your field lands",
        )
        updates = await call(alice, "get_updates", agent_id="alice")
        return thread_id, updates


async def test_agents_intents_threads_messages_and_cursors_are_intact_after_a_restart(huddle_server) -> None:
    thread_id, updates_before = await seed(huddle_server.mcp_url)
    huddle_server.restart()
    async with Client(huddle_server.mcp_url) as alice:
        agents = {a["agent_id"]: a for a in (await call(alice, "list_agents"))["agents"]}
        assert set(agents) == {"alice", "bob"}
        assert agents["alice"]["modules"] == ["src/auth"]
        thread = await call(alice, "get_thread", thread_id=thread_id)
        assert (thread["status"], thread["proposal"]["summary"]) == ("resolving", "alice first")
        assert [m["content"] for m in thread["messages"]] == ["hi"]
        intents = (await call(alice, "coordinator_status"))["intents"]["list"]
        assert {i["agent_id"] for i in intents} == {"alice", "bob"}
        inbox = (await call(alice, "list_messages", agent_id="alice"))["messages"]
        assert [m["content"] for m in inbox] == ["ping me when your field lands"]
        replay = await call(alice, "get_updates", agent_id="alice")
        assert replay["events"] == updates_before["events"]
        # New events continue after the old cursors: nothing is reused.
        await call(alice, "approve_resolution", thread_id=thread_id, agent_id="alice")
        after = await call(alice, "get_updates", agent_id="alice", cursor=updates_before["next_cursor"])
        assert after["events"] and all(e["cursor"] > updates_before["next_cursor"] for e in after["events"])


async def test_an_acknowledged_write_survives_a_crash(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice:
        await call(alice, "register_agent", name="alice")
        ack = await call(alice, "announce_work", agent_id="alice", subject="durable", target_files=["d.py"])
    huddle_server.kill()  # SIGKILL straight after the acknowledgement: no shutdown, no checkpoint
    huddle_server.start()
    async with Client(huddle_server.mcp_url) as alice:
        intents = (await call(alice, "coordinator_status"))["intents"]["list"]
        assert [i["intent_id"] for i in intents] == [ack["intent_id"]]
