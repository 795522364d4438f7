"""The coordination scenarios S1–S4 end to end: a real server, one official MCP client per agent."""

from __future__ import annotations

import anyio
from mcp import Client

from helpers import S1_EXCHANGE, call, s1_consultation


async def test_s1_same_file_opens_a_consultation_that_resolves_and_replays_in_order(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        thread_id = await s1_consultation(alice, bob)
        for client, agent in ((alice, "alice"), (bob, "bob")):
            updates = await call(client, "get_updates", agent_id=agent, cursor=0)
            exchange = [
                e for e in updates["events"] if e["thread_id"] == thread_id and e["event"] != "intent.announced"
            ]
            assert [e["event"] for e in exchange] == S1_EXCHANGE, agent
            cursors = [e["cursor"] for e in updates["events"]]
            assert cursors == sorted(cursors)
            assert exchange[-1]["status"] == "resolved"
            # Resuming from the returned cursor yields nothing new: no duplicates on replay.
            again = await call(client, "get_updates", agent_id=agent, cursor=updates["next_cursor"])
            assert again["events"] == []


async def test_s2_same_module_different_files_is_a_gray_zone_without_a_thread(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        await call(alice, "register_agent", name="alice", modules=["src/auth"])
        await call(bob, "register_agent", name="bob", modules=["src/auth"])
        await call(alice, "announce_work", agent_id="alice", subject="login", target_files=["src/auth/login.py"])
        result = await call(
            bob, "announce_work", agent_id="bob", subject="session", target_files=["src/auth/session.py"]
        )
        assert (result["verdict"], result["thread_id"]) == ("caution", None)
        assert [(i["score"], i["category"]) for i in result["impacts"]] == [(30, "gray_zone")]
        for client, agent in ((alice, "alice"), (bob, "bob")):
            events = (await call(client, "get_updates", agent_id=agent))["events"]
            assert any(e["event"] == "impact.awareness" and e["intent_id"] == result["intent_id"] for e in events)
        assert (await call(alice, "list_threads"))["threads"] == []


async def test_s3_dependencies_score_80_in_both_directions(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        await call(alice, "register_agent", name="alice")
        await call(bob, "register_agent", name="bob")
        await call(alice, "announce_work", agent_id="alice", subject="user model", target_files=["src/user.py"])
        mine_depends = await call(
            bob,
            "announce_work",
            agent_id="bob",
            subject="profile",
            target_files=["src/profile.py"],
            depends_on_files=["src/user.py"],
        )
        assert [(i["score"], i["evidence"][0]["layer"]) for i in mine_depends["impacts"]] == [(80, "0b")]
        theirs_depend = await call(alice, "check_conflicts", agent_id="alice", target_files=["src/profile.py"])
        assert theirs_depend["impacts"][0]["score"] == 100  # bob targets it directly
        reverse = await call(alice, "check_conflicts", agent_id="alice", target_files=["src/user.py"])
        assert [(i["score"], i["evidence"][0]["layer"]) for i in reverse["impacts"]] == [(80, "0c")]


async def test_s4_unrelated_work_proceeds(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        await call(alice, "register_agent", name="alice", modules=["docs"])
        await call(bob, "register_agent", name="bob", modules=["src/api"])
        await call(alice, "announce_work", agent_id="alice", subject="docs", target_files=["docs/guide.md"])
        result = await call(bob, "announce_work", agent_id="bob", subject="api", target_files=["src/api/v2.py"])
        assert (result["verdict"], result["impacts"], result["thread_id"]) == ("proceed", [], None)


async def test_claim_thread_over_mcp_has_exactly_one_winner_among_20_clients(huddle_server) -> None:
    async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
        await call(alice, "register_agent", name="alice")
        await call(bob, "register_agent", name="bob")
        await call(alice, "announce_work", agent_id="alice", subject="x", target_files=["a.py"])
        thread_id = (await call(bob, "announce_work", agent_id="bob", subject="y", target_files=["a.py"]))["thread_id"]
        outcomes: list[dict] = []

        async def claimer(index: int) -> None:
            async with Client(huddle_server.mcp_url) as client:
                await call(client, "register_agent", name=f"worker-{index}")
                outcomes.append(await call(client, "claim_thread", thread_id=thread_id, agent_id=f"worker-{index}"))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for index in range(20):
                    tg.start_soon(claimer, index)
        winners = {o["claimed_by"] for o in outcomes if o["claimed"]}
        assert len(outcomes) == 20
        assert len([o for o in outcomes if o["claimed"]]) == 1
        assert {o["claimed_by"] for o in outcomes} == winners
