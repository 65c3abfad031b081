"""A run waiting on flow control says why on its page and in the runs list: "concurrency key `acct-7`: 2 of 2
running" behind a limit, "throttled until <time>" behind a throttle."""

from __future__ import annotations

from playwright.async_api import Browser, expect
from stepline_gateway.clock import ManualClock

from tests.services import OverlapService
from tests.support import eventually, running_gateway
from tests.test_dashboard.browser import Console, new_page
from tests.test_flow.support import flow_route, runs_of_function


async def test_waiting_runs_say_why(database_url: str, browser: Browser) -> None:
    console = Console()
    service = OverlapService(hold_s=20)
    async with (
        service.serving() as url,
        running_gateway(database_url, clock=ManualClock()) as gw,
        new_page(browser, console) as (_, page),
    ):
        await gw.publish(
            flow_route("wait-slot", url, "wait/slot", concurrency={"limit": 2, "key": "event.data.acct"}),
            flow_route("wait-pace", url, "wait/pace", throttle={"limit": 1, "period": "1h"}),
        )
        await gw.send(*({"name": "wait/slot", "data": {"acct": "acct-7"}} for _ in range(3)))
        await gw.send(*({"name": "wait/pace", "data": {}} for _ in range(2)))

        async def waiting(function_id: str) -> dict[str, object] | None:
            runs = [run for run in await runs_of_function(gw, function_id) if run["waiting"]]
            return runs[0] if runs else None

        slot = await eventually(lambda: waiting("wait-slot"))
        pace = await eventually(lambda: waiting("wait-pace"))

        await page.goto(f"{gw.url}/#/runs/{slot['id']}")
        await expect(page.locator("#run-waiting")).to_have_text("concurrency key `acct-7`: 2 of 2 running")
        await page.goto(f"{gw.url}/#/runs/{pace['id']}")
        await expect(page.locator("#run-waiting")).to_contain_text("throttled until ")

        await page.goto(f"{gw.url}/#/runs")
        await expect(page.locator("td .waiting").first).to_be_visible()
        await expect(
            page.locator("td .waiting", has_text="concurrency key `acct-7`: 2 of 2 running")
        ).to_have_count(1)
        await expect(page.locator("td .waiting", has_text="throttled until")).to_have_count(1)
    assert console.errors == []
