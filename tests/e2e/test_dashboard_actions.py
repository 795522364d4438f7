"""A person acts from the dashboard through the REST API, and agents see it: posts, tasks, leases."""

from __future__ import annotations

from typing import Any

from mcp import Client

from dashboard_helpers import PHONE, browser, open_page, require_chromium, screenshot
from helpers import call

SIGNED_IN = "localStorage.setItem('huddle.overseer', 'lead')"


async def test_task_board_reflects_claims_made_by_agents(huddle_server: Any) -> None:
    executable = require_chromium()
    async with browser(executable) as chromium:
        page = await open_page(chromium, huddle_server.url)
        board = page.locator('[data-testid="task-board"]')
        async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
            await call(alice, "register_agent", name="alice")
            await call(bob, "register_agent", name="bob")
            await call(
                alice,
                "add_tasks",
                tasks=[
                    {"task_id": "schema", "description": "Design the schema"},
                    {"task_id": "migrate", "description": "Write the migration", "depends_on": ["schema"]},
                    {"task_id": "docs", "description": "Document it"},
                ],
            )
            await board.locator('[data-status="pending"] [data-task="migrate"] .dep:text("schema")').wait_for()
            await call(alice, "claim_task", agent_id="alice", task_id="schema")
            await board.locator('[data-status="claimed"] [data-task="schema"]').get_by_text("by alice").wait_for()
            await call(bob, "claim_task", agent_id="bob", task_id="docs")
            await call(bob, "update_task", agent_id="bob", task_id="docs", status="in_progress")
            await board.locator('[data-status="in_progress"] [data-task="docs"]').wait_for()
            await call(alice, "update_task", agent_id="alice", task_id="schema", status="done")
            await board.locator('[data-status="done"] [data-task="schema"]').wait_for()
            # Its dependant is now available, and its dependency is ticked.
            await board.locator('[data-task="migrate"] .tag:text("available")').wait_for()
            await board.locator('[data-task="migrate"] .dep.done').wait_for()
            await call(bob, "update_task", agent_id="bob", task_id="docs", status="failed", error="no access")
            await board.locator('[data-status="failed"] [data-task="docs"]').get_by_text("no access").wait_for()

            # Filters narrow the board without a request.
            await page.select_option("#tasks-claimer", "alice")
            await board.locator('[data-task="docs"]').wait_for(state="detached")
            await page.select_option("#tasks-claimer", "")
            await page.fill("#tasks-search", "migr")
            assert await board.locator("[data-task]").count() == 1
            await page.fill("#tasks-search", "")
            await screenshot(page, "dashboard-task-board")

            # A person resets the failed task and adds one; both reach the agents.
            await page.evaluate(SIGNED_IN)
            await board.locator('[data-task="docs"] button:text("Reset")').click()
            await board.locator('[data-status="pending"] [data-task="docs"]').wait_for()
            await page.locator(".add-task summary").click()
            await page.fill("#task-id", "review")
            await page.fill("#task-desc", "Review the migration")
            await page.fill("#task-deps", "migrate")
            await page.locator('#task-form button[type="submit"]').click()
            await board.locator('[data-status="pending"] [data-task="review"]').wait_for()
            tasks = {t["task_id"]: t for t in (await call(alice, "list_tasks"))["tasks"]}
            assert tasks["review"]["depends_on"] == ["migrate"]
            assert tasks["review"]["created_by"] == "human:lead"
            assert tasks["docs"]["status"] == "pending"
            kinds = [e["event"] for e in (await call(bob, "get_updates", agent_id="bob"))["events"]]
            assert "task.reset" in kinds
        assert page.errors == []


async def test_a_human_post_from_the_page_reaches_the_agents_get_updates(huddle_server: Any) -> None:
    executable = require_chromium()
    async with browser(executable) as chromium:
        page = await open_page(chromium, huddle_server.url, PHONE)
        async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
            await call(alice, "register_agent", name="alice")
            await call(bob, "register_agent", name="bob")
            await call(alice, "announce_work", agent_id="alice", subject="auth", target_files=["src/auth.py"])
            opened = await call(bob, "announce_work", agent_id="bob", subject="auth too", target_files=["src/auth.py"])
            await page.locator('[data-testid="thread-status"]:text-is("open")').wait_for()

            # First action: the page asks who is overseeing, then posts signed human:<name>.
            await page.select_option("#thread-type", "warning")
            await page.fill("#thread-text", "Hold off: the auth rewrite lands tomorrow.")
            await page.locator("#thread-send").click()
            await page.fill("#name-input", "lead")
            await page.locator("#name-ok").click()
            await page.locator('[data-testid="thread-messages"] .msg.human').wait_for()
            await screenshot(page, "dashboard-human-post-phone")

            for client, agent in ((alice, "alice"), (bob, "bob")):
                events = (await call(client, "get_updates", agent_id=agent))["events"]
                [post] = [e for e in events if e["event"] == "thread.message"]
                assert (post["agent_id"], post["type"]) == ("human:lead", "warning")
                assert post["thread_id"] == opened["thread_id"]
                assert post["content"] == "Hold off: the auth rewrite lands tomorrow."
            overseer = [a for a in (await call(alice, "list_agents"))["agents"] if a["agent_id"] == "human:lead"]
            assert overseer[0]["client"] == "dashboard"
        assert page.errors == []


async def test_an_overseer_releases_a_lease_from_the_page_and_its_holder_is_told(huddle_server: Any) -> None:
    executable = require_chromium()
    async with browser(executable) as chromium:
        page = await open_page(chromium, huddle_server.url)
        await page.evaluate(SIGNED_IN)
        page.on("dialog", lambda dialog: dialog.accept())
        async with Client(huddle_server.mcp_url) as alice, Client(huddle_server.mcp_url) as bob:
            await call(alice, "register_agent", name="alice")
            await call(bob, "register_agent", name="bob")
            await call(alice, "acquire_lock", agent_id="alice", path="src/db.py")
            queued = await call(bob, "acquire_lock", agent_id="bob", path="src/db.py", wait_s=0)
            assert queued["granted"] is False
            lease = page.locator('[data-testid="locks"] [data-path="src/db.py"][data-holder="alice"]')
            await lease.wait_for()
            await screenshot(page, "dashboard-leases")
            await lease.locator("button:text('Release')").click()
            await lease.wait_for(state="detached")
            events = (await call(alice, "get_updates", agent_id="alice"))["events"]
            [released] = [e for e in events if e["event"] == "lock.released"]
            assert (released["holder"], released["forced_by"], released["path"]) == ("alice", "human:lead", "src/db.py")
            assert (await call(bob, "acquire_lock", agent_id="bob", path="src/db.py"))["granted"] is True
        assert page.errors == []
