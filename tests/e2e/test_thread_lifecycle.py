"""Thread rounds, forced resolution, timeouts and permissions over MCP against a real server."""

from __future__ import annotations

import anyio
from mcp import Client

from helpers import call, call_error


async def open_thread(alice: Client, bob: Client) -> str:
    await call(alice, "register_agent", name="alice")
    await call(bob, "register_agent", name="bob")
    await call(alice, "announce_work", agent_id="alice", subject="a", target_files=["shared.py"])
    result = await call(bob, "announce_work", agent_id="bob", subject="b", target_files=["shared.py"])
    return str(result["thread_id"])


async def test_contests_raise_the_round_until_max_rounds_forces_the_last_proposal(server_factory) -> None:
    server = server_factory("--max-rounds", "2")
    async with Client(server.mcp_url) as alice, Client(server.mcp_url) as bob:
        thread_id = await open_thread(alice, bob)
        await call(bob, "propose_resolution", thread_id=thread_id, agent_id="bob", summary="bob first")
        contested = await call(alice, "contest_resolution", thread_id=thread_id, agent_id="alice", reason="no")
        assert (contested["status"], contested["round"]) == ("open", 2)
        await call(bob, "propose_resolution", thread_id=thread_id, agent_id="bob", summary="bob first, really")
        forced = await call(alice, "contest_resolution", thread_id=thread_id, agent_id="alice", reason="still no")
        assert (forced["status"], forced["resolution"]) == ("max_rounds", "bob first, really")


async def test_an_unanswered_thread_times_out_on_a_short_deadline(server_factory) -> None:
    server = server_factory("--thread-timeout-s", "1", "--sweep-interval-s", "0.1")
    async with Client(server.mcp_url) as alice, Client(server.mcp_url) as bob:
        thread_id = await open_thread(alice, bob)
        with anyio.fail_after(10):
            while (await call(alice, "get_thread", thread_id=thread_id))["status"] != "timeout":
                await anyio.sleep(0.1)
        statuses = [
            e for e in (await call(alice, "get_updates", agent_id="alice"))["events"] if e["event"] == "thread.status"
        ]
        assert statuses[-1]["status"] == "timeout"


async def test_a_non_participant_cannot_propose_approve_or_close_and_nothing_changes(huddle_server) -> None:
    url = huddle_server.mcp_url
    async with Client(url) as alice, Client(url) as bob, Client(url) as mallory:
        thread_id = await open_thread(alice, bob)
        await call(mallory, "register_agent", name="mallory")
        await call(bob, "propose_resolution", thread_id=thread_id, agent_id="bob", summary="plan")
        before = await call(alice, "get_thread", thread_id=thread_id)
        for tool, extra in (
            ("propose_resolution", {"summary": "mine"}),
            ("approve_resolution", {}),
            ("close_thread", {}),
        ):
            error = await call_error(mallory, tool, thread_id=thread_id, agent_id="mallory", **extra)
            assert "mallory is not a participant" in error and "forbidden" in error
        after = await call(alice, "get_thread", thread_id=thread_id)
        assert (after["status"], after["proposal"], after["approvals"]) == (
            before["status"],
            before["proposal"],
            before["approvals"],
        )
