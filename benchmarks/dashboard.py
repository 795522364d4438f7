"""Dashboard speed in Debian's headless Chromium: event → page latency, and the page's cost after a flood.

1. Latency: one agent logs an action over REST, one at a time; the page stamps `Date.now()` when the
   event's row is in the DOM (window.__huddle.renderedAt). Reported from the event's commit timestamp
   (taken inside the transaction that stores it; same machine, same clock) as p50 / p99 over the samples,
   at millisecond resolution (both clocks are read in whole milliseconds).
2. Flood: EVENTS more events from 16 concurrent REST writers; once the page has received them all, the
   page's JS heap (CDP Performance.getMetrics after a forced GC), its DOM node count, the timeline rows
   it keeps, and how many REST reads its panels made while the flood lasted (throttled refreshes).

    python benchmarks/dashboard.py            # 200 latency samples, 10,000 flood events
    python benchmarks/dashboard.py --quick    # CI: 20 samples, 1,000 events (no timing claims)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
from datetime import datetime
from typing import Any

import httpx

from _harness import huddle_server, machine, summarise

WRITERS = 16


def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


async def rest(client: httpx.AsyncClient, operation: str, **args: Any) -> dict[str, Any]:
    body = (await client.post(f"/api/v1/tools/{operation}", json=args)).json()
    if not body["ok"]:
        raise SystemExit(f"{operation} failed: {body}")
    result: dict[str, Any] = body["result"]
    return result


def epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


async def latency(page: Any, client: httpx.AsyncClient, samples: int) -> dict[str, Any]:
    answered: list[int] = []
    for index in range(samples):
        cursor = (await rest(client, "log_action_summary", agent_id="bench", summary=f"latency {index}"))["cursor"]
        answered.append(cursor)
        await page.wait_for_function("c => window.__huddle.renderedAt.has(c)", arg=cursor, polling=5)
    rendered: dict[str, float] = await page.evaluate(
        "cs => Object.fromEntries(cs.map(c => [c, window.__huddle.renderedAt.get(c)]))", answered
    )
    first = min(answered)
    log = await rest(client, "list_events", after=first - 1, limit=500, kinds="action.*")
    committed = {e["cursor"]: epoch_ms(e["ts"]) for e in log["events"]}
    from_commit = [(rendered[str(c)] - committed[c]) / 1000 for c in answered]
    stats = summarise(from_commit)
    stats.pop("calls_per_s")  # one at a time, paced by the page: not a throughput
    return {"commit_to_page": stats}


async def flood(page: Any, client: httpx.AsyncClient, events: int) -> dict[str, Any]:
    reads: list[str] = []
    page.on("request", lambda r: reads.append(r.url) if "/api/v1/tools/" in r.url else None)
    before = await page.evaluate("window.__huddle.events")
    started = time.perf_counter()
    counter = iter(range(events))

    async def writer() -> None:
        for index in counter:
            await rest(client, "log_action_summary", agent_id="bench", summary=f"flood {index}")

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    written_s = time.perf_counter() - started
    await page.wait_for_function("n => window.__huddle.events >= n", arg=before + events, polling=100, timeout=300_000)
    received_s = time.perf_counter() - started
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("HeapProfiler.collectGarbage")
    await cdp.send("Performance.enable")
    metrics = {m["name"]: m["value"] for m in (await cdp.send("Performance.getMetrics"))["metrics"]}
    dom = await page.evaluate("document.getElementsByTagName('*').length")
    rows = await page.evaluate("document.querySelectorAll('#timeline-list > li').length")
    return {
        "events": events,
        "writers": WRITERS,
        "written_s": round(written_s, 2),
        "page_received_all_s": round(received_s, 2),
        "js_heap_used_mb": round(metrics["JSHeapUsedSize"] / 2**20, 2),
        "js_heap_total_mb": round(metrics["JSHeapTotalSize"] / 2**20, 2),
        "dom_elements": dom,
        "cdp_dom_nodes": int(metrics["Nodes"]),
        "timeline_rows": rows,
        "panel_reads_during_flood": len(reads),
    }


async def run(quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"benchmark": "dashboard", "quick": quick, "machine": machine()}
    executable = chromium()
    if executable is None:
        out["skipped"] = "chromium not found: apt-get install -y chromium"
        return out
    from playwright.async_api import async_playwright

    samples, events = (20, 1000) if quick else (200, 10_000)
    with huddle_server("--mqtt-broker", "off") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client, async_playwright() as pw:
            await rest(client, "register_agent", name="bench", agent_id="bench")
            browser = await pw.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
            )
            try:
                page = await browser.new_page(viewport={"width": 1440, "height": 1000})
                await page.goto(server.url + "/dashboard")
                await page.wait_for_selector('#conn[data-state="live"]')
                out["latency"] = await latency(page, client, samples)
                out["flood"] = await flood(page, client, events)
            finally:
                await browser.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small run for CI (no timing claims)")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(run(args.quick)), indent=2))
