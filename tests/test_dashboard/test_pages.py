"""The dashboard in Chromium over the demo service: runs, a run's steps, replay, events, functions.

Every test ends with no console error and no uncaught exception on the page (the ``dashboard`` fixture).
"""

from __future__ import annotations

import asyncio
import datetime
import re
from typing import Any

import stepline
import stepline.asgi
from playwright.async_api import Browser, Locator, Page, expect
from stepline_gateway.clock import ManualClock

from tests.support import RunningGateway, eventually, running_gateway, serve
from tests.test_dashboard.browser import Console, new_page
from tests.test_dashboard.conftest import Dashboard

HOUR = datetime.timedelta(hours=1)


def nav(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Sections").get_by_role("link", name=name)


async def test_a_failed_run_shows_its_error_and_a_replay_completes(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    await dashboard.app.post("/faults/warehouse")
    [event_id] = await gw.send({"name": "inventory/sync", "data": {"sku": "sku-9"}})
    [failed] = await gw.finished_runs(event_id)

    await page.goto(f"{dashboard.url}/")
    row = page.locator(f'tr[data-run="{failed["id"]}"]')
    await expect(row.locator(".badge")).to_have_text("Failed")
    await expect(row).to_contain_text("ConnectionError: the warehouse refused the connection")

    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("sync-inventory")
    step = page.locator('details[data-step="call-warehouse"]')
    await expect(step).to_contain_text("2 attempts")
    # The final error, after the first attempt's own error block.
    await expect(step.locator(".attempts .error-block")).to_have_count(1)
    await expect(step.locator(".error-block").last).to_contain_text("the warehouse refused the connection")
    await expect(step.locator(".stack").last).to_contain_text("raise ConnectionError")
    await expect(page.locator("#event-payload")).to_contain_text('"sku": "sku-9"')
    await expect(page.get_by_role("button", name="Cancel", exact=True)).to_be_disabled()

    await dashboard.app.delete("/faults/warehouse")
    await page.get_by_role("button", name="Replay", exact=True).click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_contain_text("Replay this run?")
    await dialog.get_by_role("button", name="Replay", exact=True).click()
    await expect(page.get_by_text("Replay of")).to_be_visible()
    await expect(page.locator(".page-head .badge")).to_have_text("Completed")
    replay_id = page.url.rsplit("/", 1)[-1]
    assert replay_id != failed["id"]

    await nav(page, "Runs").click()
    replayed = page.locator(f'tr[data-run="{replay_id}"]')
    await expect(replayed.locator(".badge")).to_have_text("Completed")
    await expect(replayed).to_contain_text('"sku-9: 7 in stock"')
    await expect(row.locator(".badge")).to_have_text("Failed")
    replay = await gw.run(replay_id)
    assert (replay["status"], replay["replay_of"]) == ("Completed", failed["id"])


async def test_the_runs_list_updates_live_and_filters(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    await page.goto(f"{dashboard.url}/#/runs")
    await expect(page.locator("td.empty")).to_contain_text("No runs")
    await page.evaluate("window.notReloaded = true")

    [order] = await gw.send({"name": "order/created", "data": {"order_id": "o-7", "amount": 10}})
    await dashboard.app.post("/faults/warehouse")
    [sync] = await gw.send({"name": "inventory/sync", "data": {"sku": "sku-1"}})
    await gw.finished_runs(order)
    await gw.finished_runs(sync)
    await expect(page.locator("tr[data-run]")).to_have_count(2)
    await expect(page.locator("tr[data-run] .badge")).to_have_text(["Failed", "Completed"])
    assert await page.evaluate("window.notReloaded") is True

    await page.get_by_label("Status", exact=True).select_option("Failed")
    await expect(page.locator("tr[data-run]")).to_have_count(1)
    await expect(page.locator("tr[data-run]")).to_contain_text("sync-inventory")
    assert "status=Failed" in page.url

    await page.get_by_label("Status", exact=True).select_option("")
    await page.get_by_label("Function", exact=True).select_option("shop-process-new-order")
    await expect(page.locator("tr[data-run]")).to_have_count(1)
    await expect(page.locator("tr[data-run]")).to_contain_text("process-new-order")

    await page.get_by_label("Function", exact=True).select_option("")
    await page.get_by_label("Time", exact=True).select_option("15m")
    await expect(page.locator("tr[data-run]")).to_have_count(2)
    await page.get_by_label("Time", exact=True).select_option("custom")
    await page.get_by_label("To", exact=True).fill("2020-01-01T00:00")
    await page.get_by_label("To", exact=True).dispatch_event("change")
    await expect(page.locator("td.empty")).to_be_visible()


async def test_the_run_detail_shows_every_step_with_its_output(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    [event_id] = await gw.send({"name": "order/created", "data": {"order_id": "o-1", "amount": 120}})
    [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Completed"

    await page.goto(f"{dashboard.url}/#/runs/{run['id']}")
    await expect(page.get_by_role("heading", name="Steps (3)")).to_be_visible()
    expected = [
        ("charge-card", '"ch_o-1"', "1 attempt "),
        ("create-fulfillment", '"ful_o-1"', "2 attempts"),
        ("send-confirmation", '"confirmation sent for ful_o-1"', "1 attempt "),
    ]
    for name, output, attempts in expected:
        step = page.locator(f'details[data-step="{name}"]')
        await expect(step.locator(".badge")).to_have_text("Completed")
        await expect(step.locator("summary")).to_contain_text(attempts)
        await expect(step.locator("pre.output")).to_have_text(output)
    fulfillment = page.locator('details[data-step="create-fulfillment"]')
    await expect(fulfillment).to_contain_text("Succeeded on attempt 2, after 1 failed attempt.")
    # The failed attempt itself, with its error and the stack of where it was raised.
    await expect(fulfillment.locator(".attempts .error-block h3")).to_have_text(
        re.compile(r"^Attempt 1 failed")
    )
    await expect(fulfillment.locator(".attempts .err")).to_contain_text("the warehouse API timed out")
    await expect(fulfillment.locator(".attempts pre.stack")).to_contain_text("create_fulfillment")
    await expect(page.locator(".wf-row")).to_have_count(4)
    await expect(page.locator(".wf-row .wf-label")).to_have_text(
        ["process-new-orderrun", "charge-cardstep", "create-fulfillmentstep", "send-confirmationstep"]
    )
    await expect(page.locator("#run-output")).to_contain_text(
        '"confirmation": "confirmation sent for ful_o-1"'
    )
    await expect(page.locator("#event-payload")).to_contain_text('"order_id": "o-1"')


async def test_parallel_steps_are_all_shown(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    [event_id] = await gw.send({"name": "lead/created", "data": {"domain": "acme.test"}})
    [run] = await gw.finished_runs(event_id)
    await page.goto(f"{dashboard.url}/#/runs/{run['id']}")
    await expect(page.locator('details[data-step="lookup-company"] pre.output')).to_have_text("40")
    await expect(page.locator('details[data-step="lookup-social"] pre.output')).to_have_text("2")


async def test_replay_and_cancel_work_from_the_keyboard(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    [event_id] = await gw.send({"name": "lead/created", "data": {}})
    [run] = await gw.finished_runs(event_id)
    await page.goto(f"{dashboard.url}/#/runs/{run['id']}")
    await expect(page.locator(".page-head .badge")).to_have_text("Completed")

    for _ in range(30):
        if await page.evaluate("document.activeElement.id") == "replay":
            break
        await page.keyboard.press("Tab")
    else:
        raise AssertionError("Tab never reached the Replay button")
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("dialog")).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(page.get_by_role("dialog")).to_be_hidden()
    assert len(await gw.runs_of(event_id)) == 1

    await page.keyboard.press("Enter")
    await expect(page.get_by_role("dialog")).to_be_visible()
    await page.keyboard.press("Enter")
    await expect(page.get_by_text("Replay of")).to_be_visible()
    await eventually(lambda: _count_runs(gw, event_id, 2))


async def test_a_dialog_opened_again_before_its_close_event_still_answers(dashboard: Dashboard) -> None:
    # The browser delivers a dialog's "close" event as a task of its own and may handle the next key press
    # first: here the dialog is closed and opened again in one task, so its close event comes after.
    gw, page = dashboard.gw, dashboard.page
    [event_id] = await gw.send({"name": "lead/created", "data": {}})
    [run] = await gw.finished_runs(event_id)
    await page.goto(f"{dashboard.url}/#/runs/{run['id']}")
    await expect(page.locator(".page-head .badge")).to_have_text("Completed")
    await page.locator("#replay").click()
    await expect(page.get_by_role("dialog")).to_be_visible()
    await page.evaluate("""() => {
        document.querySelector("#confirm").close("no");
        document.querySelector("#replay").click();
    }""")
    await expect(page.get_by_role("dialog")).to_be_visible()
    assert len(await gw.runs_of(event_id)) == 1
    await page.get_by_role("dialog").get_by_role("button", name="Replay", exact=True).click()
    await expect(page.get_by_text("Replay of")).to_be_visible()
    await eventually(lambda: _count_runs(gw, event_id, 2))


async def _count_runs(gw: RunningGateway, event_id: str, count: int) -> bool:
    return len(await gw.runs_of(event_id)) == count


async def test_the_events_page_sends_an_event_and_shows_its_runs(dashboard: Dashboard) -> None:
    page = dashboard.page
    await page.goto(f"{dashboard.url}/#/events")
    await page.locator("#send-name").fill("user/signed-up")
    await page.locator("#send-data").fill("not json")
    await page.get_by_role("button", name="Send event").click()
    await expect(page.locator(".form-message")).to_contain_text("not valid JSON")

    await page.locator("#send-data").fill('{"email": "ada@example.com"}')
    await page.get_by_role("button", name="Send event").click()
    await expect(page.locator(".form-message")).to_contain_text("Sent event")
    event_id = await page.locator(".form-message a").inner_text()
    card = page.locator(f'li[data-event="{event_id}"]')
    await expect(card.locator(".event-name")).to_have_text("user/signed-up")
    await expect(card.locator("pre.payload")).to_contain_text('"email": "ada@example.com"')
    chips = card.locator(".run-chip")
    await expect(chips).to_have_count(3)
    await expect(card.locator(".run-chip .badge")).to_have_text(["Completed"] * 3)

    await card.get_by_role("link", name="user/signed-up").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("user/signed-up")
    await expect(page.locator("#event-payload")).to_contain_text("ada@example.com")
    await expect(page.locator(".run-chip")).to_have_count(3)
    await page.locator(".run-chip", has_text="shop-start-trial").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("start-trial")


async def test_the_functions_page_shows_routes_and_recent_runs(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    [event_id] = await gw.send({"name": "order/created", "data": {"order_id": "o-3"}})
    await gw.finished_runs(event_id)
    await page.goto(f"{dashboard.url}/#/functions")
    await expect(page.locator("tr[data-function]")).to_have_count(6)
    row = page.locator('tr[data-function="shop-process-new-order"]')
    await expect(row).to_contain_text("order/created")
    await expect(row.locator("code.url")).to_contain_text("/api/inngest")
    await expect(row.locator(".counts")).to_have_text("1 Completed")
    await expect(page.locator('tr[data-function="shop-score-lead"]')).to_contain_text("none")

    await row.get_by_role("link", name="1 Completed").click()
    await expect(page.get_by_label("Status", exact=True)).to_have_value("Completed")
    await expect(page.get_by_label("Function", exact=True)).to_have_value("shop-process-new-order")
    await expect(page.locator("tr[data-run]")).to_have_count(1)
    await expect(nav(page, "Runs")).to_have_attribute("aria-current", "page")


async def test_the_console_watch_catches_what_a_page_logs_or_throws(browser: Browser) -> None:
    """The check every dashboard test ends with can fail: errors logged or thrown are collected."""
    console = Console()
    async with new_page(browser, console) as (_, page):
        await page.set_content("<p>a page</p>")
        await page.evaluate("console.error('logged')")
        await page.evaluate("setTimeout(() => { throw new TypeError('thrown') })")
        await eventually(lambda: asyncio.sleep(0, result=len(console.errors) == 2))
    assert "logged" in console.errors[0]
    assert "TypeError: thrown" in console.errors[1]


def waiting_app(gateway_url: str) -> Any:
    client = stepline.Client("ops", gateway_url=gateway_url, dev=True)

    @client.function(id="publish-report", trigger="ops/report")
    async def publish_report(ctx: stepline.Context) -> str:
        draft = await ctx.step.run("draft", lambda: "report-1")
        await ctx.step.sleep("cool-down", HOUR)
        approval = await ctx.step.wait_for_event("approval", event="ops/approved", timeout=HOUR)
        return f"{draft} approved by {approval.data['by'] if approval else 'nobody'}"

    return stepline.asgi.serve_app(client, [publish_report])


async def test_sleeps_and_waits_are_shown_as_such_and_update_live(
    database_url: str, browser: Browser
) -> None:
    clock = ManualClock()
    console = Console()
    async with (
        running_gateway(database_url, clock=clock) as gw,
        serve(waiting_app(gw.url)) as app_url,
        new_page(browser, console) as (_, page),
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        [event_id] = await gw.send({"name": "ops/report", "data": {"week": 12}})
        [run] = await eventually(lambda: gw.runs_of(event_id))
        await page.goto(f"{gw.url}/#/runs/{run['id']}")
        sleep = page.locator('details[data-step="cool-down"]')
        await expect(sleep.locator(".badge")).to_have_text("Sleeping")
        await expect(sleep.locator(".tag")).to_have_text("sleep")
        await expect(sleep).to_contain_text("Sleeping…")
        await expect(page.get_by_role("button", name="Replay", exact=True)).to_be_disabled()

        # The SDK computed the wake-up time from its own clock, a moment after this one started: a minute
        # more covers that moment however slow the machine.
        clock.advance(HOUR.total_seconds() + 60)
        wait = page.locator('details[data-step="approval"]')
        await expect(wait.locator(".badge")).to_have_text("Waiting", timeout=15_000)
        await expect(wait.locator(".tag")).to_have_text("wait for event")
        await expect(sleep).to_contain_text("Slept 1 h ")

        await gw.send({"name": "ops/approved", "data": {"by": "ada"}})
        await expect(page.locator(".page-head .badge")).to_have_text("Completed")
        await expect(wait.locator("pre.output")).to_contain_text('"by": "ada"')
        await expect(wait).to_contain_text("Event received")
        await expect(page.locator("#run-output")).to_have_text('"report-1 approved by ada"')
        await expect(page.locator(".wf-row")).to_have_count(4)
    assert console.errors == []
