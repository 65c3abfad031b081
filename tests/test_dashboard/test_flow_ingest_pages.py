"""The dashboard shows flow control at ingest: an event skipped by a rate limit says so with the reason, and
a debounced run and a batching run say what they wait for."""

from __future__ import annotations

from typing import Any

import stepline
import stepline.asgi
from playwright.async_api import Browser, expect
from stepline_gateway.clock import ManualClock

from tests.support import eventually, running_gateway, serve
from tests.test_dashboard.browser import Console, new_page


def flow_app(gateway_url: str) -> Any:
    client = stepline.Client("shop", gateway_url=gateway_url, dev=True)

    @client.function(
        id="notify",
        trigger="shop/notify",
        rate_limit=stepline.RateLimit(limit=1, period="1h", key="event.data.user"),
    )
    async def notify(ctx: stepline.Context) -> None:
        return None

    @client.function(id="reindex", trigger="shop/reindex", debounce=stepline.Debounce(period="1m"))
    async def reindex(ctx: stepline.Context) -> None:
        return None

    @client.function(
        id="digest", trigger="shop/digest", batch_events=stepline.BatchEvents(max_size=10, timeout="30s")
    )
    async def digest(ctx: stepline.Context) -> int:
        return len(ctx.events)

    return stepline.asgi.serve_app(client, [notify, reindex, digest])


async def test_skipped_events_and_waiting_runs(database_url: str, browser: Browser) -> None:
    console = Console()
    async with (
        running_gateway(database_url, clock=ManualClock()) as gw,
        serve(flow_app(gw.url)) as app_url,
        new_page(browser, console) as (_, page),
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        [first, second] = await gw.send(
            {"name": "shop/notify", "data": {"user": "u-1"}}, {"name": "shop/notify", "data": {"user": "u-1"}}
        )
        await page.goto(f"{gw.url}/#/events/{second}")
        skipped = page.locator('.skipped li[data-reason="rate_limited"]')
        await expect(skipped).to_contain_text("shop-notify")
        await expect(skipped).to_contain_text("rate limited")
        await page.goto(f"{gw.url}/#/events/{first}")
        await expect(page.locator(".event-runs .run-chip")).to_have_count(1)
        await expect(page.locator(".skipped")).to_have_count(0)

        [debounced] = await gw.send({"name": "shop/reindex", "data": {}})
        [run] = await eventually(lambda: gw.runs_of(debounced))
        await page.goto(f"{gw.url}/#/runs/{run['id']}")
        await expect(page.locator("#run-waiting")).to_contain_text("debounced until ")

        batch = await gw.send(*({"name": "shop/digest", "data": {"n": n}} for n in range(3)))
        [run] = await eventually(lambda: gw.runs_of(batch[2]))
        await page.goto(f"{gw.url}/#/runs/{run['id']}")
        await expect(page.locator("#run-waiting")).to_contain_text("batch 3 of 10")
    assert console.errors == [], "the dashboard logged errors"
