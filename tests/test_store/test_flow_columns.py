"""The flow-control settings and the retry policy of a function are stored as published and read back.

``functions.flow`` holds the FlowControl model dumped by alias (NULL without flow control) and
``functions.retry_policy`` the RetryPolicy model; every publish path writes both, the gateway's load reads
them into the routed function, and a row whose settings cannot be read is left out, not fatal.
"""

from __future__ import annotations

import json

import asyncpg
from stepline.flow import Concurrency, FlowControl, RetryPolicy, Singleton, Throttle
from stepline_gateway.registry import Registry
from stepline_gateway.routing import Function
from stepline_store.pool import Store, create_pool

FLOW = FlowControl(
    concurrency=[Concurrency(limit=2, key="event.data.account", scope="env")],
    throttle=Throttle(limit=3, period="1m", burst=2),
    idempotency="event.data.id",
    singleton=Singleton(mode="cancel", key="event.data.user"),
)
POLICY = RetryPolicy(backoff="Linear", initial_delay="2s", max_delay="1m", jitter_percent=0, timeout="30s")


def function(function_id: str, **fields: object) -> Function:
    values: dict[str, object] = {
        "id": function_id,
        "app_id": "shop",
        "name": function_id.removeprefix("shop-"),
        "url": "http://127.0.0.1:1/api/inngest",
        "triggers": [{"event": "shop/order"}],
        "retries": 1,
        "paused": False,
        "source": "manifest",
        **fields,
    }
    return Function(**values)  # type: ignore[arg-type]


async def test_flow_and_retry_policy_round_trip_and_absent_ones_stay_null(database_url: str) -> None:
    store = Store(await create_pool(database_url, min_size=1, max_size=2))
    try:
        registry = Registry(store)
        await registry.publish(
            [function("shop-limited", flow=FLOW, retry_policy=POLICY), function("shop-plain")],
            replace_source="manifest",
        )
        rows = {row["id"]: row for row in await store.fetch("load_functions")}
        assert rows["shop-limited"]["flow"] == {
            "concurrency": [{"limit": 2, "key": "event.data.account", "scope": "env"}],
            "throttle": {"limit": 3, "period": "1m", "burst": 2},
            "idempotency": "event.data.id",
            "singleton": {"key": "event.data.user", "mode": "cancel"},
        }
        assert rows["shop-limited"]["retry_policy"] == {
            "backoff": "Linear",
            "initialDelay": "2s",
            "maxDelay": "1m",
            "jitterPercent": 0,
            "timeout": "30s",
        }
        assert rows["shop-plain"]["flow"] is None
        assert rows["shop-plain"]["retry_policy"] is None

        loaded = {f.id: f for f in await registry.load()}
        assert loaded["shop-limited"].flow == FLOW
        assert loaded["shop-limited"].retry_policy == POLICY
        assert loaded["shop-plain"].flow is None
        assert loaded["shop-plain"].retry_policy is None

        # Publishing again without the settings clears them.
        await registry.publish([function("shop-limited")], replace_source="manifest")
        loaded = {f.id: f for f in await registry.load()}
        assert set(loaded) == {"shop-limited"}
        assert loaded["shop-limited"].flow is None
        assert loaded["shop-limited"].retry_policy is None
    finally:
        await store.close()


async def test_a_row_with_unreadable_flow_settings_is_left_out_and_the_others_load(database_url: str) -> None:
    store = Store(await create_pool(database_url, min_size=1, max_size=2))
    try:
        registry = Registry(store)
        await registry.publish(
            [function("shop-broken", flow=FLOW), function("shop-fine", retry_policy=POLICY)],
            replace_source="manifest",
        )
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE functions SET flow = $1::jsonb WHERE id = 'shop-broken'",
                json.dumps({"concurrency": [{"limit": "many"}]}),
            )
        finally:
            await conn.close()
        loaded = {f.id: f for f in await registry.load()}
        assert set(loaded) == {"shop-fine"}
        assert loaded["shop-fine"].retry_policy == POLICY
    finally:
        await store.close()


async def test_settings_a_later_version_added_are_ignored_and_the_rest_still_applies(
    database_url: str,
) -> None:
    """A gateway rolled back reads what a newer one stored as far as it understands it."""
    store = Store(await create_pool(database_url, min_size=1, max_size=2))
    try:
        registry = Registry(store)
        await registry.publish(
            [function("shop-newer", flow=FLOW, retry_policy=POLICY)], replace_source="manifest"
        )
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "UPDATE functions SET flow = $1::jsonb, retry_policy = $2::jsonb WHERE id = 'shop-newer'",
                json.dumps(
                    {
                        "concurrency": [
                            {"limit": 2, "key": "event.data.account", "scope": "env", "weight": 3}
                        ],
                        "throttle": {"limit": 3, "period": "1m", "burst": 2},
                        "idempotency": "event.data.id",
                        "singleton": {"mode": "cancel", "key": "event.data.user"},
                        "quota": {"limit": 5},
                    }
                ),
                json.dumps({**POLICY.to_json(), "maxAttemptsPerHour": 4}),
            )
        finally:
            await conn.close()
        [loaded] = await registry.load()
        assert loaded.flow == FLOW
        assert loaded.retry_policy == POLICY
    finally:
        await store.close()
