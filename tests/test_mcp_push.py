"""MCP push: an agent's inbox and a thread as resources, with change notifications for both protocol
eras — `resources/subscribe` (≤ 2025-11-25) and `subscriptions/listen` (2026-07-28)."""

from __future__ import annotations

import json
import warnings

import anyio
import httpx
import mcp_types as types
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated

from push_helpers import s1, tool

ALICE_INBOX = "huddle://agents/alice/inbox"


class Notifications:
    """A message_handler that records resources/updated notifications and lets a test wait for one."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self._changed = anyio.Event()

    async def __call__(self, message: object) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            self.uris.append(str(message.params.uri))
            self._changed.set()

    async def wait_for(self, uri: str, count: int = 1, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while self.uris.count(uri) < count:
                self._changed = anyio.Event()
                await self._changed.wait()


async def subscribe(client: Client, uri: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated as of 2026-07-28, and exactly what older clients send
        await client.subscribe_resource(uri)


async def read_json(client: Client, uri: str) -> dict[str, object]:
    result = await client.read_resource(uri)
    content = result.contents[0]
    assert isinstance(content, types.TextResourceContents) and content.mime_type == "application/json"
    return dict(json.loads(content.text))


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
