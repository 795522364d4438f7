"""Driving the dashboard in Debian's headless Chromium through Playwright (its `executable_path`).

Playwright's own browser downloads are never used: `.ci/run` installs the `chromium` package, and
`chromium_path()` finds it. Screenshots go to artifacts/screenshots/ (gitignored) for people to look at.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
DESKTOP = {"width": 1440, "height": 1000}
PHONE = {"width": 390, "height": 844}


def chromium_path() -> str | None:
    """The Chromium executable: $HUDDLE_CHROMIUM, else the first of CANDIDATES on PATH."""
    configured = os.environ.get("HUDDLE_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """Chromium's path; skips the test with the fix when it is missing — but fails in CI, where .ci/run installs it."""
    path = chromium_path()
    if path is not None:
        return path
    message = (
        "Chromium is not installed: run `apt-get install -y chromium` (or set HUDDLE_CHROMIUM) for the browser tests"
    )
    if os.environ.get("CI"):
        pytest.fail(message + " — .ci/run should have installed it")
    pytest.skip(message)


@contextlib.asynccontextmanager
async def browser(executable: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--enable-precise-memory-info"],
        )
        try:
            yield instance
        finally:
            await instance.close()


async def open_page(instance: Any, url: str, viewport: dict[str, int] = DESKTOP, scheme: str = "light") -> Any:
    """A fresh page on the dashboard, with console errors collected in `page.errors`."""
    context = await instance.new_context(viewport=viewport, color_scheme=scheme, device_scale_factor=1)
    page = await context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    await page.goto(url + "/dashboard")
    await page.wait_for_selector('#conn[data-state="live"]', timeout=15_000)
    return page


async def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=full_page)
    print(f"screenshot: {path}")
    return path


def rest(url: str, operation: str, client: httpx.Client | None = None, **args: Any) -> dict[str, Any]:
    """One REST call (`POST /api/v1/tools/{operation}`) that must succeed; returns its result.

    Pass a `client` to reuse its connection for many calls (not across a server restart)."""
    post = client.post if client is not None else httpx.post
    body = post(f"{url}/api/v1/tools/{operation}", json=args, timeout=10).json()
    assert body["ok"], body
    result: dict[str, Any] = body["result"]
    return result
