"""What a function declares about its runs' lives: cron time zones, cancellation, and a failure handler."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
import stepline
from pydantic import ValidationError
from stepline.protocol import duration_string

from .conftest import FakeGateway, call_body

SERVE_URL = "http://testserver/api/inngest"
seen: list[stepline.Context] = []


def make_functions(client: stepline.Client) -> list[stepline.Function]:
    async def alert(ctx: stepline.Context) -> str:
        seen.append(ctx)
        return f"alerted for {ctx.event.data['run_id']}"

    @client.function(
        id="ship",
        name="Ship order",
        trigger="order/created",
        cancel_on=[
            {"event": "order/cancelled", "match": "data.order_id"},
            {"event": "order/refunded", "if": "async.data.full == true", "timeout": 3600},
            stepline.Cancel(event="shop/closed", timeout=datetime.timedelta(minutes=90)),
            {"event": "order/lost", "timeout": "2d"},
        ],
        on_failure=alert,
    )
    async def ship(ctx: stepline.Context) -> None:
        return None

    @client.function(
        id="report",
        trigger=[
            stepline.TriggerCron(cron="0 8 * * *", timezone="Europe/Paris"),
            stepline.TriggerCron(cron="0 9 * * 1"),
        ],
    )
    async def report(ctx: stepline.Context) -> None:
        return None

    return [ship, report]


def step(fn_id: str, attempts: int) -> dict[str, Any]:
    url = f"{SERVE_URL}?fnId={fn_id}&stepId=step"
    return {
        "step": {
            "id": "step",
            "name": "step",
            "retries": {"attempts": attempts},
            "runtime": {"type": "http", "url": url},
        }
    }


async def test_the_sync_carries_cancel_the_failure_function_and_cron_time_zones(
    serve: Any, gateway: FakeGateway
) -> None:
    # Checkpoint settings in a sync are test_sync's subject: off here, the payload shows only the above.
    client = stepline.Client("shop", gateway_url=gateway.url, dev=True, checkpoint=False)
    served = await serve(make_functions(client), client)
    assert (await served.http.put("/api/inngest")).status_code == 200
    [register] = gateway.requests
    assert register["body"]["functions"] == [
        {
            "id": "shop-ship",
            "name": "Ship order",
            "triggers": [{"event": "order/created"}],
            "steps": step("shop-ship", 4),
            "cancel": [
                {"event": "order/cancelled", "if": "event.data.order_id == async.data.order_id"},
                {"event": "order/refunded", "if": "async.data.full == true", "timeout": "1h"},
                {"event": "shop/closed", "timeout": "1h30m"},
                {"event": "order/lost", "timeout": "2d"},
            ],
        },
        {
            "id": "shop-ship-failure",
            "name": "Ship order (failure)",
            "triggers": [
                {"event": "inngest/function.failed", "expression": "event.data.function_id == 'shop-ship'"}
            ],
            "steps": step("shop-ship-failure", 0),
        },
        {
            "id": "shop-report",
            "name": "report",
            "triggers": [{"cron": "TZ=Europe/Paris 0 8 * * *"}, {"cron": "0 9 * * 1"}],
            "steps": step("shop-report", 4),
        },
    ]
    inspection = (await served.http.get("/api/inngest")).json()
    assert inspection["function_count"] == 2
    await client.aclose()


async def test_the_failure_handler_receives_the_failed_run(serve: Any) -> None:
    client = stepline.Client("shop", dev=True)
    served = await serve(make_functions(client), client)
    original = {"name": "order/created", "data": {"order_id": 7}, "id": "evt-1", "ts": 1_700_000_000_000}
    failed = {
        "name": "inngest/function.failed",
        "data": {
            "function_id": "shop-ship",
            "run_id": "run-9",
            "error": {"name": "Error", "message": "no stock", "stack": "..."},
            "event": original,
        },
        "id": "evt-2",
        "ts": 1_700_000_001_000,
    }
    seen.clear()
    res = await served.call("shop-ship-failure", call_body(event=failed, max_attempts=1))
    assert (res.status_code, res.json()) == (200, "alerted for run-9")
    [ctx] = seen
    assert ctx.event.name == "inngest/function.failed"
    assert ctx.event.data["error"]["message"] == "no stock"
    assert ctx.event.data["event"] == original
    assert (await served.call("ship-failure", call_body(event=failed))).status_code == 200


def test_a_failure_function_may_not_shadow_another_function() -> None:
    client = stepline.Client("shop", dev=True)

    @client.function(id="ship-failure", trigger="a/b")
    async def clash(ctx: stepline.Context) -> None:
        return None

    with pytest.raises(stepline.ConfigError, match="ship-failure"):
        stepline.Handler(client, [*make_functions(client), clash])


def test_cancel_refuses_both_if_and_match_and_unknown_keys() -> None:
    client = stepline.Client("shop", dev=True)
    with pytest.raises(ValidationError, match="not both"):
        client.function(id="x", trigger="a/b", cancel_on=[{"event": "c/d", "if": "x", "match": "data.y"}])
    with pytest.raises(ValidationError, match="iff"):
        client.function(id="x", trigger="a/b", cancel_on=[{"event": "c/d", "iff": "x"}])


def test_cron_time_zones_are_checked() -> None:
    with pytest.raises(ValidationError, match="unknown time zone"):
        stepline.TriggerCron(cron="0 8 * * *", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="not both"):
        stepline.TriggerCron(cron="TZ=UTC 0 8 * * *", timezone="Europe/Paris")
    assert stepline.TriggerCron(cron="TZ=UTC 0 8 * * *").config() == {"cron": "TZ=UTC 0 8 * * *"}


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (10, "10s"),
        (1.25, "1s250ms"),
        (5400, "1h30m"),
        (5405, "1h30m5s"),
        (datetime.timedelta(days=2, seconds=1), "48h1s"),
    ],
)
def test_duration_strings(duration: float | datetime.timedelta, text: str) -> None:
    assert duration_string(duration) == text


def test_a_negative_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        duration_string(-1)
