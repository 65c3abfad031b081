"""A run failed by a poison answer shows why on its page: the step, its attempts, and the run's error.

A raw service answers a step output Postgres cannot store (a NUL character); after its retries the run is
Failed, and the run page in Chromium says what was wrong and where, on the run and on the step.
"""

from __future__ import annotations

from playwright.async_api import Browser, expect

from tests.services import RawService, raw, step_run
from tests.support import route, running_gateway
from tests.test_dashboard.browser import Console, new_page

MESSAGE = "output contains a NUL character at data.note: Postgres cannot store it"


async def test_the_run_page_shows_why_a_poison_answer_failed_the_run(
    database_url: str, browser: Browser
) -> None:
    service = RawService(
        {"raw-note": lambda body: raw(206, step_run("write-note", '{"note": "gi\\u0000ft"}'))}
    )
    console = Console()
    async with service.serving() as url, running_gateway(database_url) as gw:
        await gw.publish(route("raw-note", url, {"event": "raw/note"}, retries=1))
        [event_id] = await gw.send({"name": "raw/note", "data": {}})
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Failed"
        async with new_page(browser, console) as (_, page):
            await page.goto(f"{gw.url}/#/runs/{run['id']}")
            await expect(page.locator(".page-head .badge")).to_have_text("Failed")
            await expect(page.get_by_text("The run failed")).to_be_visible()
            await expect(page.locator("#view")).to_contain_text(f"UnstorableAnswer: {MESSAGE}")
            step = page.locator('details[data-step="write-note"]')
            await expect(step.locator(".badge")).to_have_text("Failed")
            await expect(step).to_contain_text("2 attempts")
            await expect(step.locator(".attempts .error-block")).to_have_count(1)
            await expect(step.locator(".error-block").last).to_contain_text(MESSAGE)
            await expect(step.locator(".error-block").last).to_be_visible()
    assert console.errors == []
