"""MCP push: an agent's inbox and a thread as resources, with change notifications for both protocol
eras — `resources/subscribe` (≤ 2025-11-25) and `subscriptions/listen` (2026-07-28)."""

from __future__ import annotations

import anyio
import httpx
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated

from push_helpers import Notifications, read_json, s1, subscribe, tool

ALICE_INBOX = "huddle://agents/alice/inbox"


async def test_a_client_subscribed_to_its_inbox_is_notified_when_a_consultation_opens(huddle_server):
    notes = Notifications()
    async with (
        Client(huddle_server.mcp_url, mode="legacy", message_handler=notes) as alice,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        assert alice.session.server_capabilities.resources.subscribe is True
        await tool(http, "register_agent", name="Alice", agent_id="alice")
        await subscribe(alice, ALICE_INBOX)
        thread_id = await s1(http)  # bob's announce collides with alice's
        await notes.wait_for(ALICE_INBOX)
        inbox = await read_json(alice, ALICE_INBOX)
        opened = [e for e in inbox["events"] if e["event"] == "thread.opened"]  # type: ignore[union-attr]
        assert opened and opened[0]["thread_id"] == thread_id
        assert inbox["latest_cursor"] == inbox["events"][-1]["cursor"]  # type: ignore[index]


async def test_a_thread_subscriber_is_notified_of_each_post_and_reads_the_thread(huddle_server):
    notes = Notifications()
    async with (
        Client(huddle_server.mcp_url, mode="legacy", message_handler=notes) as watcher,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        thread_id = await s1(http)
        uri = f"huddle://threads/{thread_id}"
        await subscribe(watcher, uri)
        await tool(http, "post_to_thread", thread_id=thread_id, agent_id="alice", type="context", content="first")
        await notes.wait_for(uri)
        await tool(http, "post_to_thread", thread_id=thread_id, agent_id="bob", type="question", content="second")
        await notes.wait_for(uri, count=2)
        thread = await read_json(watcher, uri)
        assert thread["thread_id"] == thread_id
        assert [m["content"] for m in thread["messages"]][-2:] == ["first", "second"]  # type: ignore[index]


async def test_an_agent_is_not_notified_of_its_own_actions(huddle_server):
    notes = Notifications()
    async with (
        Client(huddle_server.mcp_url, mode="legacy", message_handler=notes) as alice,
        httpx.AsyncClient(base_url=huddle_server.url) as http,
    ):
        await tool(http, "register_agent", name="Alice", agent_id="alice")
        await tool(http, "register_agent", name="Bob", agent_id="bob")
        await subscribe(alice, ALICE_INBOX)
        await tool(http, "log_action_summary", agent_id="alice", summary="my own doing")  # addressed to everyone
        await tool(http, "log_action_summary", agent_id="bob", summary="bob's doing")
        await notes.wait_for(ALICE_INBOX)
        # Notifications leave in event order on one stream: had alice's own event counted, it came first.
        await tool(http, "log_action_summary", agent_id="bob", summary="again")
        await notes.wait_for(ALICE_INBOX, count=2)
        assert notes.uris == [ALICE_INBOX, ALICE_INBOX]


async def test_a_2026_client_listening_to_its_inbox_receives_resource_updated_events(huddle_server):
    async with Client(huddle_server.mcp_url) as alice, httpx.AsyncClient(base_url=huddle_server.url) as http:
        assert alice.protocol_version == "2026-07-28"
        await tool(http, "register_agent", name="Alice", agent_id="alice")
        async with alice.listen(resource_subscriptions=[ALICE_INBOX]) as events:
            await s1(http)
            with anyio.fail_after(10):
                event = await events.__anext__()
            assert event == ResourceUpdated(uri=ALICE_INBOX)
        inbox = await read_json(alice, ALICE_INBOX)
        assert any(e["event"] == "thread.opened" for e in inbox["events"])  # type: ignore[union-attr]


async def test_the_resource_of_an_unknown_thread_is_a_clear_error(huddle_server):
    async with Client(huddle_server.mcp_url) as client:
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert {"huddle://agents/{agent_id}/inbox", "huddle://threads/{thread_id}"} <= templates
        try:
            await client.read_resource("huddle://threads/T-999")
        except MCPError as exc:
            assert "T-999" in str(exc)
        else:
            raise AssertionError("reading an unknown thread succeeded")
