"""Fixtures for the dashboard tests: one Chromium per session, and per test the demo service, its gateway
and a browser page that must log no error (checked when the test ends)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.async_api import Browser, Page

from examples.demo_service import create_app as demo_app
from tests.support import RunningGateway, running_gateway, serve
from tests.test_dashboard.browser import Console, chromium, new_page


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@dataclass
class Dashboard:
    gw: RunningGateway
    app: httpx.AsyncClient
    page: Page
    console: Console

    @property
    def url(self) -> str:
        return self.gw.url


@pytest.fixture
async def dashboard(database_url: str, browser: Browser) -> AsyncIterator[Dashboard]:
    """A dev gateway with the demo service synced, and a page; the page must log no error."""
    console = Console()
    async with (
        running_gateway(database_url) as gw,
        serve(demo_app(gateway_url=gw.url)) as app_url,
        httpx.AsyncClient(base_url=app_url) as app,
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        async with new_page(browser, console) as (_, page):
            yield Dashboard(gw=gw, app=app, page=page, console=console)
        assert console.errors == [], "the dashboard logged errors"
