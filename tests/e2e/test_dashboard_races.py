"""The page stays true when the world moves under it: events during a timeline reload, a lease
renewed behind an open confirm dialog."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

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
            await page.wait_for_function(f"document.getElementById('cursor').textContent === '#{latest}'")
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
