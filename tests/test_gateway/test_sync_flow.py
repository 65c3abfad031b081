"""Flow control and retry policy in a sync: our SDK's options arrive as declared, bad values get a 400.

A Stepline SDK app with every flow-control option and a retry policy syncs (``PUT`` on its serve URL, the
app's ``POST /fn/register``) and ``GET /v1/functions`` shows each setting as the CRD spells it. A sync whose
flow settings are out of bounds, of the wrong type or whose CEL does not compile is refused whole with a
400 naming the function and the field, and changes nothing stored. (The official SDKs' forms are in
test_sync.py.)
"""

from __future__ import annotations

from typing import Any

import pytest
import stepline
import stepline.asgi

from tests.support import running_gateway, serve
from tests.test_gateway.inputs import stored, sync, sync_function


def app(gateway_url: str) -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("flows", dev=True, gateway_url=gateway_url)

    @client.function(
        id="limited",
        trigger="flows/go",
        concurrency=[
            stepline.Concurrency(limit=2, key="event.data.account", scope="env"),
            stepline.Concurrency(limit=1),
        ],
        throttle=stepline.Throttle(limit=4, period="1m", key="event.data.account", burst=2),
        rate_limit=stepline.RateLimit(limit=10, period="1h"),
        debounce=stepline.Debounce(period="30s", key="event.data.account", timeout="5m"),
        priority=stepline.Priority(run="event.data.vip ? 300 : 0"),
        idempotency="event.data.request_id",
        singleton=stepline.Singleton(mode="cancel"),
        timeouts=stepline.Timeouts(start="1m", finish="10m"),
        retry_policy=stepline.RetryPolicy(
            backoff="Exponential", initial_delay="500ms", max_delay="1m", jitter_percent=10, timeout="15s"
        ),
    )
    async def limited(ctx: stepline.Context) -> None:
        return None

    @client.function(
        id="batched",
        trigger="flows/item",
        concurrency=3,
        batch_events=stepline.BatchEvents(max_size=50, timeout="20s", key="event.data.list"),
    )
    async def batched(ctx: stepline.Context) -> None:
        return None

    @client.function(id="plain", trigger="flows/plain")
    async def plain(ctx: stepline.Context) -> None:
        return None

    return client, [limited, batched, plain]


async def test_our_sdk_syncs_every_flow_setting_and_the_retry_policy(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        client, functions = app(gw.url)
        async with serve(stepline.asgi.serve_app(client, functions)) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            shown = {f["id"]: f for f in (await gw.http.get("/v1/functions")).json()["data"]}
            routed = gw.gateway.routes.functions
    assert shown["flows-limited"]["flow"] == {
        "concurrency": [{"limit": 2, "key": "event.data.account", "scope": "env"}, {"limit": 1}],
        "throttle": {"limit": 4, "period": "1m", "key": "event.data.account", "burst": 2},
        "rateLimit": {"limit": 10, "period": "1h"},
        "debounce": {"period": "30s", "key": "event.data.account", "timeout": "5m"},
        "priority": {"run": "event.data.vip ? 300 : 0"},
        "idempotency": "event.data.request_id",
        "singleton": {"mode": "cancel"},
        "timeouts": {"start": "1m", "finish": "10m"},
    }
    assert shown["flows-limited"]["retry_policy"] == {
        "backoff": "Exponential",
        "initialDelay": "500ms",
        "maxDelay": "1m",
        "jitterPercent": 10,
        "timeout": "15s",
    }
    assert shown["flows-batched"]["flow"] == {
        "concurrency": [{"limit": 3}],
        "batchEvents": {"maxSize": 50, "timeout": "20s", "key": "event.data.list"},
    }
    assert shown["flows-batched"]["retry_policy"] is None
    assert (shown["flows-plain"]["flow"], shown["flows-plain"]["retry_policy"]) == (None, None)
    # The routed function holds the same settings as models.
    assert routed["flows-limited"].flow == functions[0].flow
    assert routed["flows-limited"].retry_policy == functions[0].retry_policy


BAD_FLOW: list[tuple[dict[str, Any], str]] = [
    ({"concurrency": [{"limit": -1}]}, "concurrency[0].limit: Input should be greater than or equal to 1"),
    (
        {"concurrency": [{"limit": 1}, {"limit": 2}, {"limit": 3}]},
        "concurrency: Value should have at most 2 items",
    ),
    (
        {"concurrency": {"limit": 2, "scope": "env"}},
        "a concurrency limit of scope env or account needs a key",
    ),
    ({"concurrency": [{"limit": 2, "scope": "planet", "key": "event.data.a"}]}, "concurrency[0].scope"),
    ({"concurrency": "two"}, "concurrency"),
    ({"throttle": {"limit": 1, "period": "soon"}}, "throttle.period: String should match pattern"),
    ({"throttle": {"limit": 1, "period": "8d"}}, "throttle.period must be at most 7d, not 8d"),
    ({"throttle": {"period": "1m"}}, "throttle.limit: Field required"),
    ({"rateLimit": {"limit": 1, "period": "2d"}}, "rateLimit.period must be at most 24h, not 2d"),
    ({"debounce": {"period": "1m", "timeout": "30s"}}, "debounce.timeout must be at least 1m, not 30s"),
    ({"batchEvents": {"maxSize": 500, "timeout": "5s"}}, "batchEvents.maxSize: Input should be less than"),
    ({"batchEvents": {"maxSize": 5, "timeout": "2m"}}, "batchEvents.timeout must be at most 60s, not 2m"),
    ({"batchEvents": {"maxSize": 5}}, "batchEvents.timeout: Field required"),
    ({"singleton": {"mode": "replace"}}, "singleton.mode: Input should be 'skip' or 'cancel'"),
    ({"timeouts": {"start": "0s"}}, "timeouts.start must be at least 1s, not 0s"),
    ({"idempotency": ""}, "idempotency: String should have at least 1 character"),
    ({"concurrency": [{"limit": 1, "key": "event.data."}]}, "concurrency[0].key: the expression"),
    ({"priority": {"run": "(("}}, "priority.run: the expression '((' is not valid CEL"),
    ({"batchEvents": {"maxSize": 2, "timeout": "5s", "if": "event.data.ok &&"}}, "batchEvents.if"),
    ({"retryPolicy": {"backoff": "Fibonacci"}}, "retryPolicy.backoff: Input should be"),
    ({"retryPolicy": {"initialDelay": "1m", "maxDelay": "10s"}}, "retryPolicy.maxDelay must be at least 1m"),
    ({"retryPolicy": {"timeout": "2d"}}, "retryPolicy.timeout must be at most 24h, not 2d"),
    ({"retryPolicy": {"jitterPercent": "50"}}, "retryPolicy.jitterPercent: Input should be a valid integer"),
    (
        {"batchEvents": {"maxSize": True, "timeout": "5s"}},
        "batchEvents.maxSize: Input should be a valid integer",
    ),
    ({"timeouts": {"finish": "99999999999999999999w"}}, "is too long a duration"),
    (
        {"concurrency": [{"limit": 10**30}]},
        "concurrency[0].limit: Input should be less than or equal to 100000",
    ),
]


@pytest.mark.parametrize(("settings", "message"), BAD_FLOW, ids=[m for _, m in BAD_FLOW])
async def test_a_bad_flow_setting_is_refused_naming_the_field_and_changes_nothing(
    module_database_url: str, settings: dict[str, Any], message: str
) -> None:
    async with running_gateway(module_database_url, concurrency=0) as gw:
        assert (await gw.http.post("/fn/register", json=sync())).status_code == 200
        before = await stored(module_database_url)
        payload = sync(functions=[sync_function(), sync_function(id="shop-flow", **settings)])
        response = await gw.http.post("/fn/register", json=payload)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error.startswith("the sync is refused: function shop-flow (functions[1]): "), error
        assert message in error
        assert await stored(module_database_url) == before, "a refused sync committed something"


@pytest.mark.parametrize(
    ("concurrency", "kept"),
    [
        (0, None),
        ({"limit": 0}, None),
        ([{"limit": 0, "key": "event.data.a"}, {"limit": 3}], {"concurrency": [{"limit": 3}]}),
    ],
    ids=["number", "object", "one of two"],
)
async def test_a_concurrency_limit_of_zero_is_no_limit_as_on_inngest(
    module_database_url: str, concurrency: Any, kept: dict[str, Any] | None
) -> None:
    async with running_gateway(module_database_url, concurrency=0) as gw:
        # ``priority: {}`` too: the TypeScript SDK's ``run`` is optional, and without it there is none.
        payload = sync(functions=[sync_function(concurrency=concurrency, priority={})])
        assert (await gw.http.post("/fn/register", json=payload)).status_code == 200
        [shown] = (await gw.http.get("/v1/functions")).json()["data"]
    assert shown["flow"] == kept
