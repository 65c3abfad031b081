"""The run page over what trips newcomers: a step failed for good, parallel steps, a retried step's time,
a failed run's stack, and an Events list crowded by the system's own events."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import fastapi
import inngest
import inngest.fast_api
import stepline
import stepline.asgi
from playwright.async_api import Browser, expect
from stepline_gateway.clock import ManualClock

from tests.support import eventually, route, running_gateway, serve
from tests.test_dashboard.browser import Console, new_page
from tests.test_dashboard.conftest import Dashboard


def stepline_app() -> Any:
    client = stepline.Client("rough", dev=True)
    names = [f"lookup-{n}" for n in range(5)]
    tries: list[int] = []

    @client.function(id="refuse", trigger="rough/refuse", retries=3)
    async def refuse(ctx: stepline.Context) -> None:
        def check() -> None:
            raise stepline.NonRetriableError("this order cannot be processed")

        await ctx.step.run("check-order", check)

    @client.function(id="fan", trigger="rough/fan")
    async def fan(ctx: stepline.Context) -> list[int]:
        async def lookup(n: int) -> int:
            await asyncio.sleep(0.03 * (len(names) - n))  # the first called ends last
            return n

        return list(await asyncio.gather(*(ctx.step.run(name, lookup, n) for n, name in enumerate(names))))

    @client.function(id="flaky", trigger="rough/flaky", retries=2)
    async def flaky(ctx: stepline.Context) -> str:
        def call() -> str:
            tries.append(ctx.attempt)
            if len(tries) == 1:
                raise ConnectionError("the API is away")
            return "ok"

        return await ctx.step.run("call-api", call)

    return stepline.asgi.serve_app(client, [refuse, fan, flaky])


def inngest_app() -> Any:
    client = inngest.Inngest(app_id="official", is_production=False)

    @client.create_function(fn_id="refuse", trigger=inngest.TriggerEvent(event="official/refuse"), retries=3)
    async def refuse(ctx: inngest.Context) -> None:
        def check() -> None:
            raise inngest.NonRetriableError("this order cannot be processed")

        await ctx.step.run("check-order", check)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [refuse])
    return app


async def test_a_step_failed_for_good_is_listed_with_its_error(database_url: str, browser: Browser) -> None:
    console = Console()
    async with (
        running_gateway(database_url) as gw,
        serve(stepline_app()) as ours,
        serve(inngest_app()) as official,
        new_page(browser, console) as (_, page),
    ):
        await gw.publish(
            route("rough-refuse", f"{ours}/api/inngest", {"event": "rough/refuse"}, retries=3),
            route("official-refuse", f"{official}/api/inngest", {"event": "official/refuse"}, retries=3),
        )
        [ours_event, official_event] = await gw.send(
            {"name": "rough/refuse", "data": {}}, {"name": "official/refuse", "data": {}}
        )
        [ours_run] = await gw.finished_runs(ours_event)
        [official_run] = await gw.finished_runs(official_event)

        await page.goto(f"{gw.url}/#/runs/{ours_run['id']}")
        await expect(page.get_by_role("heading", name="Steps (1)")).to_be_visible()
        step = page.locator('details[data-step="check-order"]')
        await expect(step.locator(".badge")).to_have_text("Failed")
        await expect(step).to_contain_text("NonRetriableError: this order cannot be processed")

        # The official Python SDK reports it as the function's error: still listed, with the error.
        await page.goto(f"{gw.url}/#/runs/{official_run['id']}")
        await expect(page.get_by_role("heading", name="Steps (1)")).to_be_visible()
        entry = page.locator('details[data-step="refuse"]')
        await expect(entry.locator(".badge")).to_have_text("Failed")
        await expect(entry).to_contain_text("The function failed outside its steps")
        await expect(entry).to_contain_text("NonRetriableError: this order cannot be processed")
    assert console.errors == []


async def test_parallel_steps_are_listed_in_call_order(database_url: str, browser: Browser) -> None:
    console = Console()
    async with (
        running_gateway(database_url) as gw,
        serve(stepline_app()) as app_url,
        new_page(browser, console) as (_, page),
    ):
        await gw.publish(route("rough-fan", f"{app_url}/api/inngest", {"event": "rough/fan"}))
        [event_id] = await gw.send({"name": "rough/fan", "data": {}})
        [run] = await gw.finished_runs(event_id)
        await page.goto(f"{gw.url}/#/runs/{run['id']}")
        names = [f"lookup-{n}" for n in range(5)]
        await expect(page.locator("details[data-step] .step-name")).to_have_text(names)
        labels = page.locator(".wf-row .wf-label")
        await expect(labels).to_have_text([f"{run['function']['name']}run", *(f"{n}step" for n in names)])
    assert console.errors == []


async def test_a_retried_steps_bar_leaves_out_the_backoff(database_url: str, browser: Browser) -> None:
    clock = ManualClock()
    console = Console()
    async with (
        running_gateway(database_url, clock=clock, retry_base_s=1200, retry_max_s=1200) as gw,
        serve(stepline_app()) as app_url,
        new_page(browser, console) as (_, page),
    ):
        await gw.publish(route("rough-flaky", f"{app_url}/api/inngest", {"event": "rough/flaky"}, retries=2))
        [event_id] = await gw.send({"name": "rough/flaky", "data": {}})
        [queued] = await gw.runs_of(event_id)

        async def retrying() -> bool:
            steps = (await gw.run(queued["id"]))["steps"]
            return bool(steps) and steps[0]["status"] == "Retrying"

        await eventually(retrying)
        clock.advance(1201)
        [run] = await gw.finished_runs(event_id)
        total = datetime.datetime.fromisoformat(run["ended_at"]) - datetime.datetime.fromisoformat(
            run["started_at"]
        )
        assert total >= datetime.timedelta(minutes=10)

        await page.goto(f"{gw.url}/#/runs/{run['id']}")
        step = page.locator('details[data-step="call-api"]')
        await expect(step.locator("summary")).to_contain_text("2 attempts · last attempt ")
        await expect(step.locator("summary")).not_to_contain_text(" min")
        row = page.locator(".wf-row", has_text="call-api")
        await expect(row.locator(".wf-bar")).to_have_count(2)
        await expect(row.locator(".wf-bar.s-failed")).to_have_count(1)
        last = row.locator('.wf-bar[data-bar="last"]')
        width = await last.evaluate("bar => bar.getBoundingClientRect().width")
        track = await row.locator(".wf-track").evaluate("t => t.getBoundingClientRect().width")
        assert width < track / 10, (width, track)
        await expect(row.locator(".wf-dur")).not_to_contain_text("min")
    assert console.errors == []


async def test_a_failed_run_shows_its_stack_once_with_the_sdk_frames_folded(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    await dashboard.app.post("/faults/warehouse")
    [event_id] = await gw.send({"name": "inventory/sync", "data": {"sku": "sku-3"}})
    [failed] = await gw.finished_runs(event_id)
    assert failed["status"] == "Failed"
    await page.goto(f"{dashboard.url}/#/runs/{failed['id']}")
    await expect(page.locator("pre.stack")).to_have_count(1)
    stack = page.locator('details[data-step="call-warehouse"] pre.stack')
    await expect(stack).to_contain_text("raise ConnectionError")
    text = await stack.inner_text()
    first_frame = next(line for line in text.splitlines() if line.strip().startswith("File "))
    assert "demo_service.py" in first_frame, text
    # The run's error and the first attempt point to it instead of repeating it.
    await expect(page.locator(".same-stack")).to_have_count(2)
    await page.locator(".same-stack a").first.click()
    await expect(stack).to_be_in_viewport()


async def test_sdk_frames_of_an_official_sdk_are_folded(dashboard: Dashboard) -> None:
    page = dashboard.page
    await page.goto(f"{dashboard.url}/#/events")
    stack = (
        "Traceback (most recent call last):\n"
        '  File "/app/.venv/lib/python3.11/site-packages/inngest/_internal/step_lib/step_async.py", '
        "line 200, in run\n"
        "    output = await handler()\n"
        '  File "/app/shop/orders.py", line 12, in check\n'
        '    raise ValueError("bad order")\n'
        "ValueError: bad order\n"
    )
    folded = await page.evaluate(
        "stack => { const el = stackView(stack); document.body.append(el);"
        " return [el.querySelectorAll('details.sdk-frames').length,"
        " el.querySelector('details.sdk-frames summary').textContent, el.textContent]; }",
        stack,
    )
    assert folded[0] == 1
    assert folded[1] == "1 frame in the SDK"
    assert "orders.py" in folded[2]
    assert "ValueError: bad order" in folded[2]


async def test_the_events_list_hides_the_systems_events_until_asked(dashboard: Dashboard) -> None:
    gw, page = dashboard.gw, dashboard.page
    await dashboard.app.post("/faults/warehouse")
    [event_id] = await gw.send({"name": "inventory/sync", "data": {"sku": "sku-4"}})
    await gw.finished_runs(event_id)
    await eventually(lambda: _failed_emitted(gw))
    await page.goto(f"{dashboard.url}/#/events")
    await expect(page.locator("li[data-event] .event-name")).to_have_text(["inventory/sync"])
    toggle = page.get_by_label("Show Stepline's own events (inngest/*)")
    await expect(toggle).not_to_be_checked()
    await toggle.check()
    names = page.locator("li[data-event] .event-name")
    await expect(names).to_have_count(3)
    assert sorted(await names.all_inner_texts()) == [
        "inngest/function.failed",
        "inngest/function.finished",
        "inventory/sync",
    ]
    assert "internal=true" in page.url
    await page.reload()
    await expect(page.get_by_label("Show Stepline's own events (inngest/*)")).to_be_checked()
    await expect(page.locator("li[data-event]")).to_have_count(3)


async def _failed_emitted(gw: Any) -> bool:
    events = (await gw.http.get("/v1/events", params={"name": "inngest/function.failed"})).json()["data"]
    return bool(events)
