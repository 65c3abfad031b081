"""Debian's Chromium driven by Playwright, for the dashboard tests and the screenshot script.

Never ``playwright install``: the browser is the system's (``apt-get install -y chromium``; scripts/test
installs it when missing), or the one named by ``STEPLINE_CHROMIUM``. ``Console`` gathers what a page logs
as an error, and errors thrown in it, so a test can require that there are none.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    ViewportSize,
    async_playwright,
)

ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}


def chromium_path() -> str:
    path = os.environ.get("STEPLINE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not os.path.exists(path):
        raise RuntimeError(
            f"no Chromium at {path}: run 'apt-get install -y chromium' (scripts/test does) "
            "or point STEPLINE_CHROMIUM at a Chromium binary; never 'playwright install'"
        )
    return path


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path(), args=ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Console:
    """Errors a page logged to its console or threw, as text."""

    errors: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._message)
        page.on("pageerror", self._thrown)

    def _message(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console error at {message.location.get('url')}: {message.text}")

    def _thrown(self, error: Error) -> None:
        self.errors.append(f"uncaught {error.name}: {error.message}")


@contextlib.asynccontextmanager
async def new_page(browser: Browser, console: Console) -> AsyncIterator[tuple[BrowserContext, Page]]:
    context = await browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(10_000)
    page = await context.new_page()
    console.watch(page)
    try:
        yield context, page
    finally:
        await context.close()
