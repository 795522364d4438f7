"""The dashboard in headless Chromium against a real server: S1 played by two MCP clients shows up live."""

from __future__ import annotations

from typing import Any

from mcp import Client

from dashboard_helpers import PHONE, browser, open_page, require_chromium, screenshot
from helpers import call


async def test_s1_played_by_two_mcp_clients_appears_live_without_a_reload(huddle_server: Any) -> None:
    executable = require_chromium()
    async with browser(executable) as chromium:
        page = await open_page(chromium, huddle_server.url)
        # A reload would drop this marker: everything below must arrive over the live stream.
        await page.evaluate("window.__noReload = true")
        async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
            await call(alice, "register_agent", name="alice")
            await call(bob, "register_agent", name="bob")
            await page.wait_for_selector('[data-agent="alice"][data-activity="idle"]')
            await page.wait_for_selector('[data-agent="bob"][data-activity="idle"]')

            await call(alice, "announce_work", agent_id="alice", subject="add updated_at", target_files=["src/user.ts"])
            await call(alice, "log_file_edit", agent_id="alice", path="src/user.ts")
            await page.wait_for_selector('[data-agent="alice"][data-activity="working"]')

            opened = await call(
                bob,
                "announce_work",
                agent_id="bob",
                subject="migrate user schema",
                target_files=["src/user.ts", "migrations/004.sql"],
            )
            thread_id = opened["thread_id"]
            view = page.locator('[data-testid="thread-view"]')
            await view.get_by_text("migrate user schema").wait_for()
            await page.wait_for_selector('[data-testid="thread-status"]:text-is("open")')
            await page.wait_for_selector('#thread-view .tag.t-layer:text-is("L0a 100")')
            # The timeline shows the consultation with its verdict and score.
            await page.locator('[data-kind="thread.opened"]').first.wait_for()
            await page.locator('[data-kind="intent.announced"] .tag.t-consult').first.wait_for()

            await call(
                alice, "post_to_thread", thread_id=thread_id, agent_id="alice", type="context", content="mine first"
            )
            await view.get_by_text("mine first").wait_for()
            await call(bob, "propose_resolution", thread_id=thread_id, agent_id="bob", summary="alice first, then bob")
            await page.wait_for_selector('[data-testid="thread-status"]:text-is("resolving")')
            await view.get_by_text("alice first, then bob").wait_for()
            await screenshot(page, "dashboard-s1-resolving-desktop")

            await call(alice, "approve_resolution", thread_id=thread_id, agent_id="alice")
            await page.wait_for_selector('[data-testid="thread-status"]:text-is("resolved")')
            await page.locator('[data-kind="thread.status"] .tag.t-resolved').first.wait_for()
            # The 24 h charts count the consultation: layer 0a fired, and it ended agreed.
            await page.locator('#signals .legend li:has-text("agreed") strong:text-is("1")').wait_for()
            await page.locator('#signals .legend li:has-text("L0a") strong:text-is("1")').wait_for()

        assert await page.evaluate("window.__noReload") is True
        assert page.errors == []
        await screenshot(page, "dashboard-s1-resolved-desktop")
        phone = await open_page(chromium, huddle_server.url, PHONE)
        await phone.locator('[data-testid="thread-status"]:text-is("resolved")').wait_for()
        await screenshot(phone, "dashboard-s1-phone")
        dark = await open_page(chromium, huddle_server.url, scheme="dark")
        await dark.locator('[data-testid="thread-status"]:text-is("resolved")').wait_for()
        await screenshot(dark, "dashboard-s1-dark")


async def test_an_agent_owing_an_answer_shows_as_waiting_on_its_thread(huddle_server: Any) -> None:
    executable = require_chromium()
    async with browser(executable) as chromium:
        page = await open_page(chromium, huddle_server.url)
        async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
            await call(alice, "register_agent", name="alice")
            await call(bob, "register_agent", name="bob")
            await call(alice, "announce_work", agent_id="alice", subject="a", target_files=["a.py"])
            opened = await call(bob, "announce_work", agent_id="bob", subject="b", target_files=["a.py"])
            row = page.locator('[data-agent="alice"][data-activity="waiting"]')
            await row.wait_for()
            await row.get_by_text(opened["thread_id"]).wait_for()
            thread_id = opened["thread_id"]
            await call(alice, "post_to_thread", thread_id=thread_id, agent_id="alice", type="context", content="ok")
            await page.wait_for_selector('[data-agent="alice"][data-activity="idle"]')
        assert page.errors == []
