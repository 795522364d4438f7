"""The page stays true when the world moves under it: events during a timeline reload, a lease
renewed behind an open confirm dialog."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from playwright.async_api import expect

from dashboard_helpers import browser, open_page, require_chromium, rest


async def shown_cursors(page: Any) -> list[int]:
    cursors: list[int] = await page.evaluate(
        "[...document.querySelectorAll('#timeline-list li')].map((li) => Number(li.dataset.cursor))"
    )
    return cursors


async def test_events_arriving_while_a_filter_reloads_the_timeline_are_kept_once(huddle_server: Any) -> None:
    executable = require_chromium()
    url = huddle_server.url
    async with browser(executable) as chromium:
        page = await open_page(chromium, url)
        rest(url, "register_agent", agent_id="fw", name="fw")
        before = rest(url, "log_action_summary", agent_id="fw", summary="before the click")
        await page.locator("#timeline-list li", has_text="before the click").wait_for()
        held = asyncio.Event()

        async def hold_the_page(route: Any) -> None:
            # The reload's page is read now; then agents write before it reaches the page.
            response = await route.fetch()
            latest = 0
            async with httpx.AsyncClient(base_url=url) as client:
                for i in range(3):
                    body = (
                        await client.post(
                            "/api/v1/tools/log_action_summary", json={"agent_id": "fw", "summary": f"during {i}"}
                        )
                    ).json()
                    assert body["ok"], body
                latest = (await client.post("/api/v1/tools/coordinator_status", json={})).json()["result"][
                    "latest_cursor"
                ]
            # Those events reach the page over the live stream while its reload is still pending.
            # A locator assertion, not wait_for_function: the page's CSP (no unsafe-eval) stops the
            # in-page polling of a string predicate whenever the first check comes too early.
            await expect(page.locator("#cursor")).to_have_text(f"#{latest}", timeout=10_000)
            await route.fulfill(response=response)
            held.set()

        await page.route("**/api/v1/tools/list_events", hold_the_page)
        await page.click("#timeline-filters button[data-group='all']")
        await asyncio.wait_for(held.wait(), timeout=15)
        await page.unroute("**/api/v1/tools/list_events")
        await page.locator("#timeline-list li", has_text="during 2").wait_for()

        log = rest(url, "list_events", limit=100)["events"]
        shown = await shown_cursors(page)
        assert shown == [event["cursor"] for event in log]  # every event once, newest first
        assert before is not None and not page.errors


async def test_release_refuses_a_lease_renewed_while_the_person_was_confirming(huddle_server: Any) -> None:
    executable = require_chromium()
    url = huddle_server.url
    rest(url, "register_agent", agent_id="carol", name="carol")
    seen = rest(url, "acquire_lock", agent_id="carol", path="src/s.py", mode="exclusive")["fencing_token"]
    async with browser(executable) as chromium:
        page = await open_page(chromium, url)
        await page.evaluate("localStorage.setItem('huddle.overseer', 'ann')")
        fresh: list[int] = []

        async def renew_then_confirm(dialog: Any) -> None:
            assert "src/s.py" in dialog.message
            rest(url, "release_lock", agent_id="carol", path="src/s.py")
            fresh.append(
                rest(url, "acquire_lock", agent_id="carol", path="src/s.py", mode="exclusive")["fencing_token"]
            )
            await dialog.accept()

        page.on("dialog", lambda dialog: asyncio.ensure_future(renew_then_confirm(dialog)))
        await page.locator("li.lease:has-text('src/s.py') button:has-text('Release')").click()
        await page.locator("#toast").get_by_text("the lease changed since you looked").wait_for()
        assert fresh and fresh[0] != seen
        holders = rest(url, "check_lock", path="src/s.py")["holders"]
        assert [(h["agent_id"], h["fencing_token"]) for h in holders] == [("carol", fresh[0])]


async def test_a_long_thread_shows_its_newest_messages_and_catches_up_without_refetching(huddle_server: Any) -> None:
    executable = require_chromium()
    url = huddle_server.url
    with httpx.Client(base_url=url, timeout=10) as client:
        for agent in ("p1", "p2"):
            rest(url, "register_agent", client, agent_id=agent, name=agent)
        rest(url, "announce_work", client, agent_id="p1", subject="big", target_files=["big.py"])
        thread_id = rest(url, "announce_work", client, agent_id="p2", subject="big2", target_files=["big.py"])[
            "thread_id"
        ]
        for i in range(505):
            rest(
                url,
                "post_to_thread",
                client,
                thread_id=thread_id,
                agent_id=f"p{1 + i % 2}",
                type="context",
                content=f"msg {i}",
            )
    async with browser(executable) as chromium:
        page = await open_page(chromium, url)
        view = page.locator('[data-testid="thread-view"]')
        await view.locator('[data-testid="thread-hidden"]:text-is("5 older messages not shown")').wait_for()
        messages = view.locator('[data-testid="thread-messages"] li.msg')
        assert await messages.count() == 500
        assert await messages.first.locator("p").text_content() == "msg 5"
        asked: list[dict[str, Any]] = []
        page.on("request", lambda r: asked.append(r.post_data_json) if r.url.endswith("/get_thread") else None)
        rest(url, "post_to_thread", agent_id="p1", thread_id=thread_id, type="warning", content="the newest")
        await view.locator('[data-testid="thread-messages"] li.msg p:text-is("the newest")').wait_for()
        await view.locator('[data-testid="thread-hidden"]:text-is("6 older messages not shown")').wait_for()
        assert await messages.count() == 500
        # The page asked only for what came after the message it already had.
        assert asked and all("after_message_id" in body for body in asked)
        assert not page.errors
