"""SSE at /api/events: live events, Last-Event-ID resume without gaps or duplicates, filters, guards."""

from __future__ import annotations

import anyio
import httpx
import pytest

from huddle.push import sse as sse_module
from huddle.push.log import EventFilter
from huddle.settings import Settings
from push_helpers import s1, sse, tool

# The stream replays the event log by cursor: it must hold on PostgreSQL exactly as on SQLite.
pytestmark = pytest.mark.both_backends


async def all_cursors(http: httpx.AsyncClient) -> list[int]:
    """Every cursor in the event log, read back through a full replay (since=0)."""
    async with sse(http, since="0") as full:
        return [e.id for e in await full.until_live()]


async def test_a_client_that_resumes_with_last_event_id_receives_exactly_the_missed_events_in_order(huddle_server):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        async with sse(http) as first:
            await first.until_live()
            await tool(http, "register_agent", name="Alice", agent_id="alice")
            seen = await first.until(lambda e: e.data["event"] == "agent.online")
        last_seen = seen.id
        # Disconnected: these happen while nobody listens.
        thread_id = await s1(http)
        await tool(http, "post_to_thread", thread_id=thread_id, agent_id="alice", type="context", content="missed")
        expected = [c for c in await all_cursors(http) if c > last_seen]
        assert len(expected) >= 5
        async with sse(http, last_event_id=last_seen) as resumed:
            replayed = await resumed.until_live()
            assert [e.id for e in replayed] == expected
            assert replayed[-1].data["content"] == "missed"
            # …and then it is live, without repeating anything.
            await tool(http, "log_action_summary", agent_id="bob", summary="after the resume")
            live = await resumed.until(lambda e: e.data["event"] == "action.summary")
            assert live.id > expected[-1]
            assert [e.id for e in resumed.events] == [*expected, live.id]


async def test_the_switch_from_replay_to_live_has_no_gap_and_no_duplicate_under_concurrent_writes(huddle_server):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Writer", agent_id="writer")
        start = (await tool(http, "coordinator_status"))["latest_cursor"]
        total = 60

        async def write() -> None:
            for n in range(total):
                await tool(http, "log_action_summary", agent_id="writer", summary=f"note {n}")

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await anyio.sleep(0)  # let some writes land before the stream opens mid-way
            async with sse(http, last_event_id=start) as stream:
                with anyio.fail_after(20):
                    while sum(1 for e in stream.events if e.data["event"] == "action.summary") < total:
                        await stream.next_frame()
        received = [e.id for e in stream.events]
        assert received == sorted(set(received)), "duplicate or out of order"
        assert received == [c for c in await all_cursors(http) if c > start][: len(received)]


async def test_filters_select_an_agents_events_a_thread_and_kinds(huddle_server):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        thread_id = await s1(http)
        async with sse(http, since="0", agent="alice", exclude_self="1") as alice:
            for event in await alice.until_live():
                assert event.data["agent_id"] != "alice"
                assert "alice" in event.data["audience"] or "*" in event.data["audience"]
            kinds = {e.data["event"] for e in alice.events}
            assert "thread.opened" in kinds and "intent.announced" in kinds
        async with sse(http, since="0", thread=thread_id) as thread:
            assert {e.data["thread_id"] for e in await thread.until_live()} == {thread_id}
        async with sse(http, since="0", kinds="agent.*,thread.opened") as picked:
            assert {e.data["event"] for e in await picked.until_live()} == {"agent.online", "thread.opened"}


async def test_without_a_resume_point_the_stream_starts_now_and_says_where(huddle_server):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Alice")
        async with sse(http) as stream:
            assert int(stream.response.headers["x-huddle-cursor"]) >= 1
            assert await stream.until_live() == []
            await tool(http, "register_agent", name="Bob")
            event = await stream.until(lambda e: True)
            assert event.data["event"] == "agent.online" and event.data["agent_id"] == "bob"


async def test_bad_resume_points_filters_and_foreign_hosts_are_refused_with_the_json_envelope(huddle_server):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        bad_id = await http.get("/api/events", headers={"Last-Event-ID": "abc"})
        assert bad_id.status_code == 422 and bad_id.json()["code"] == "invalid_input"
        bad_kind = await http.get("/api/events", params={"kinds": "thread.opened;drop"})
        assert bad_kind.status_code == 422 and "kind filter" in bad_kind.json()["error"]
        rebinding = await http.get("/api/events", headers={"Host": "evil.example:80"})
        assert rebinding.status_code == 403 and rebinding.json()["code"] == "forbidden"
        cross_site = await http.get("/api/events", headers={"Origin": "https://evil.example"})
        assert cross_site.status_code == 403


async def test_a_stream_too_far_behind_resyncs_from_the_log_without_losing_an_event(coordinator, monkeypatch):
    monkeypatch.setattr(sse_module, "LIVE_QUEUE", 3)
    stream = sse_module.EventStream(coordinator.store, Settings())
    await stream.start()
    coordinator.bus.add_listener(stream.offer)
    await coordinator.agents.register("Writer", "writer")
    start = (await coordinator.status.status())["latest_cursor"]
    live = sse_module.LiveQueue(EventFilter())
    frames = stream.stream(live, start)
    assert (await anext(frames)).startswith(b"retry:")
    assert (await anext(frames)).startswith(b": live")
    for n in range(10):  # more than the live queue holds, before the stream reads any
        await coordinator.updates.log_action_summary("writer", f"note {n}")
    with anyio.fail_after(5):
        while not live.lagged:  # the dispatcher runs after the writes that woke it
            await anyio.sleep(0)
    received = b""
    with anyio.fail_after(5):
        while received.count(b"action.summary") < 10:
            received += await anext(frames)
    ids = [int(line[4:]) for line in received.decode().splitlines() if line.startswith("id: ")]
    assert ids == list(range(start + 1, start + 11))
    assert stream.resyncs == 1
    await frames.aclose()
    assert stream.open_streams == 0
    await stream.stop()


async def test_a_resume_point_beyond_the_log_starts_at_the_present_instead_of_skipping_new_events(huddle_server):
    async with httpx.AsyncClient(base_url=huddle_server.url) as http:
        await tool(http, "register_agent", name="Alice")
        async with sse(http, last_event_id=10_000) as stream:  # e.g. a client of a data dir since wiped
            latest = int(stream.response.headers["x-huddle-cursor"])
            assert latest < 10_000
            await stream.until_live()
            await tool(http, "register_agent", name="Bob")
            assert (await stream.until(lambda e: True)).id == latest + 1
