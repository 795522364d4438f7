"""The dashboard survives a server restart: it reconnects on its own and misses no event."""

from __future__ import annotations

from typing import Any

from dashboard_helpers import browser, open_page, require_chromium, rest, screenshot


async def test_after_a_server_restart_the_page_reconnects_and_resumes_with_nothing_missing(huddle_server: Any) -> None:
    executable = require_chromium()
    rest(huddle_server.url, "register_agent", name="alice")
    async with browser(executable) as chromium:
        page = await open_page(chromium, huddle_server.url)
        await page.evaluate("window.__noReload = true")
        for index in range(3):
            rest(huddle_server.url, "log_action_summary", agent_id="alice", summary=f"before restart {index}")
        await page.get_by_text("before restart 2").wait_for()

        # Same data dir and the same port (the page's origin), as after `huddle server restart`.
        huddle_server.extra_args += ["--port", str(huddle_server.port)]
        huddle_server.stop()
        await page.wait_for_selector('#conn:not([data-state="live"])')
        huddle_server.start()
        # Written right after the restart, before the page is back: the resume must replay them.
        for index in range(5):
            rest(huddle_server.url, "log_action_summary", agent_id="alice", summary=f"after restart {index}")
        await page.wait_for_selector('#conn[data-state="live"]', timeout=20_000)
        await page.get_by_text("after restart 4").wait_for()

        rows = "#timeline-list [data-cursor]"
        shown = await page.eval_on_selector_all(rows, "rows => rows.map(r => +r.dataset.cursor)")
        log = rest(huddle_server.url, "list_events", limit=500)["events"]
        assert sorted(shown, reverse=True) == shown
        assert shown == [e["cursor"] for e in log]  # every event once, in order, none missing
        assert await page.evaluate("window.__noReload") is True
        assert not [e for e in page.errors if "ERR_CONNECTION_REFUSED" not in e and "net::" not in e]
        await screenshot(page, "dashboard-after-restart")


async def test_a_server_on_a_fresh_data_dir_is_followed_from_its_own_cursors(
    server_factory: Any, tmp_path: Any
) -> None:
    executable = require_chromium()
    old = server_factory()
    rest(old.url, "register_agent", name="alice")
    for index in range(10):
        rest(old.url, "log_action_summary", agent_id="alice", summary=f"old {index}")
    async with browser(executable) as chromium:
        page = await open_page(chromium, old.url)
        await page.get_by_text("old 9").wait_for()
        old.stop()
        # A new database behind the same address: its cursors start again below the page's.
        new = server_factory("--port", str(old.port), data_dir=tmp_path / "fresh")
        rest(new.url, "register_agent", name="bob")
        await page.wait_for_selector('#conn[data-state="live"]', timeout=20_000)
        rest(new.url, "log_action_summary", agent_id="bob", summary="from the new server")
        await page.get_by_text("from the new server").wait_for()
        assert await page.get_by_text("old 9").count() == 0
