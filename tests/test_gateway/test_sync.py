"""A sync is validated as a whole before anything is written, and what is stored can always be loaded.

The official SDKs' syncs with every setting they send are accepted as they are (the Python SDK's and the
TypeScript SDK's); the poisoned sync that once broke every restart (a trigger event that is a number) is
refused with 400 and commits nothing; a row made unroutable in the database (as an older version, or a hand,
might leave it) is left out with one error log, and neither a restart nor a reload stops on it.
"""

from __future__ import annotations

import datetime
import logging
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import fastapi
import inngest
import inngest.fast_api
import pytest
from stepline import signing

from tests.processes import typescript_app
from tests.support import eventually, route, running_gateway, serve
from tests.test_gateway.inputs import SERVE_URL, stored, sync, sync_function

SIGNING_KEY = "signkey-prod-" + "c0" * 32
TS_APP = Path(__file__).parents[1] / "test_checkpoint" / "ts_app"


def by_id(functions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {function["id"]: function for function in functions}


async def test_the_python_sdk_syncs_every_setting(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        client = inngest.Inngest(
            app_id="pysettings", is_production=False, api_base_url=gw.url, event_api_base_url=gw.url
        )

        async def failed(ctx: inngest.Context) -> None:
            return None

        @client.create_function(
            fn_id="rich",
            trigger=[
                inngest.TriggerEvent(event="py/go", expression="event.data.n > 1"),
                inngest.TriggerCron(cron="TZ=Europe/Paris 0 8 * * *"),
            ],
            retries=3,
            cancel=[
                inngest.Cancel(
                    event="py/stop",
                    if_exp="event.data.id == async.data.id",
                    timeout=datetime.timedelta(hours=1),
                )
            ],
            concurrency=[
                inngest.Concurrency(limit=2, key="event.data.k", scope="fn"),
                inngest.Concurrency(limit=9, key="event.data.a", scope="env"),
            ],
            debounce=inngest.Debounce(
                period=datetime.timedelta(seconds=10),
                key="event.data.k",
                timeout=datetime.timedelta(minutes=1),
            ),
            throttle=inngest.Throttle(limit=3, period=datetime.timedelta(minutes=1), key="event.data.k"),
            rate_limit=inngest.RateLimit(limit=5, period=datetime.timedelta(hours=1), key="event.data.k"),
            priority=inngest.Priority(run="event.data.p"),
            idempotency="event.data.id",
            timeouts=inngest.Timeouts(
                start=datetime.timedelta(minutes=5), finish=datetime.timedelta(hours=1)
            ),
            on_failure=failed,
        )
        async def rich(ctx: inngest.Context) -> int:
            return 1

        @client.create_function(
            fn_id="batch",
            trigger=inngest.TriggerEvent(event="py/batch"),
            batch_events=inngest.Batch(
                max_size=10,
                timeout=datetime.timedelta(seconds=5),
                key="event.data.k",
                if_exp="event.data.small",
            ),
            singleton=inngest.Singleton(mode="skip", key="event.data.k"),
        )
        async def batch(ctx: inngest.Context) -> int:
            return 1

        app = fastapi.FastAPI()
        inngest.fast_api.serve(app, client, [rich, batch])
        async with serve(app) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            functions = by_id((await gw.http.get("/v1/functions")).json()["data"])
    assert set(functions) == {"pysettings-rich", "pysettings-rich-failure", "pysettings-batch"}
    rich_route = functions["pysettings-rich"]
    assert rich_route["triggers"] == [
        {"event": "py/go", "if": "event.data.n > 1"},
        {"cron": "TZ=Europe/Paris 0 8 * * *"},
    ]
    assert rich_route["retries"] == 3
    assert rich_route["cancel_on"] == [
        {"event": "py/stop", "if": "event.data.id == async.data.id", "timeout": "1h"}
    ]
    assert rich_route["url"] == f"{app_url}/api/inngest"
    assert rich_route["flow"] == {
        "concurrency": [
            {"limit": 2, "key": "event.data.k"},
            {"limit": 9, "key": "event.data.a", "scope": "env"},
        ],
        "throttle": {"limit": 3, "period": "1m", "key": "event.data.k"},
        "rateLimit": {"limit": 5, "period": "1h", "key": "event.data.k"},
        "debounce": {"period": "10s", "key": "event.data.k", "timeout": "1m"},
        "priority": {"run": "event.data.p"},
        "idempotency": "event.data.id",
        "timeouts": {"start": "5m", "finish": "1h"},
    }
    assert functions["pysettings-batch"]["flow"] == {
        "batchEvents": {"maxSize": 10, "timeout": "5s", "key": "event.data.k", "if": "event.data.small"},
        "singleton": {"key": "event.data.k", "mode": "skip"},
    }
    assert functions["pysettings-rich-failure"]["flow"] is None
    assert all(f["retry_policy"] is None for f in functions.values())


@pytest.mark.skipif(
    shutil.which("node") is None or not (TS_APP / "node_modules" / "inngest").is_dir(),
    reason="needs Node.js and `npm ci` in tests/test_checkpoint/ts_app (scripts/test runs it)",
)
async def test_the_typescript_sdk_syncs_every_setting(database_url: str, tmp_path: Path) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        log = tmp_path / "app.log"
        async with typescript_app("settings_app.js", log, GATEWAY_URL=gw.url) as url:
            await gw.gateway.caller.request_sync(f"{url}/api/inngest")
            functions = by_id((await gw.http.get("/v1/functions")).json()["data"])
    assert set(functions) == {
        "tsettings-rich",
        "tsettings-rich-failure",
        "tsettings-batch",
        "tsettings-keyed",
        "tsettings-invoked-only",
    }, log.read_text()
    rich = functions["tsettings-rich"]
    assert rich["name"] == "Every setting"
    assert rich["retries"] == 2
    assert rich["triggers"] == [
        {"event": "tsettings/go", "if": "event.data.n > 1"},
        {"cron": "TZ=Europe/Paris 0 8 * * *"},
    ]
    assert rich["cancel_on"] == [
        {"event": "tsettings/stop", "if": "event.data.id == async.data.id", "timeout": "1h"},
        {"event": "tsettings/halt", "if": "event.data.id == async.data.id"},
    ]
    assert functions["tsettings-invoked-only"]["triggers"] == []
    assert rich["flow"] == {
        "concurrency": [{"limit": 2, "key": "event.data.k"}],
        "throttle": {"limit": 3, "period": "1m", "burst": 2},
        "rateLimit": {"limit": 5, "period": "1h"},
        "debounce": {"period": "10s", "timeout": "1m"},
        "priority": {"run": "event.data.p"},
        "idempotency": "event.data.id",
        "timeouts": {"start": "5m", "finish": "1h"},
    }
    # A bare number, as the TypeScript SDK sends `concurrency: 5`.
    assert functions["tsettings-batch"]["flow"] == {
        "concurrency": [{"limit": 5}],
        "batchEvents": {"maxSize": 10, "timeout": "5s", "key": "event.data.k", "if": "event.data.small"},
        "singleton": {"mode": "skip"},
    }
    # A bare object, as the TypeScript SDK sends one concurrency entry, with every key.
    assert functions["tsettings-keyed"]["flow"] == {
        "concurrency": [{"limit": 3, "key": "event.data.acct", "scope": "account"}],
        "throttle": {"limit": 1, "period": "1s", "key": "event.data.acct"},
        "rateLimit": {"limit": 2, "period": "10s", "key": "event.data.acct"},
        "debounce": {"period": "5s", "key": "event.data.acct"},
        "singleton": {"key": "event.data.acct", "mode": "cancel"},
    }
    assert functions["tsettings-invoked-only"]["flow"] is None
    assert functions["tsettings-rich-failure"]["flow"] is None
    assert all(f["retry_policy"] is None for f in functions.values())


async def test_a_poisoned_sync_is_refused_and_a_restart_after_it_starts(database_url: str) -> None:
    authorization = {"authorization": f"Bearer {signing.bearer_token(SIGNING_KEY)}"}
    settings = {"dev": False, "signing_key": SIGNING_KEY, "event_keys": ["k"], "concurrency": 0}
    async with running_gateway(database_url, **settings) as gw:
        await gw.http.post("/fn/register", json=sync(), headers=authorization)
        before = await stored(database_url)
        poisoned = sync(functions=[sync_function(), sync_function(id="shop-poison", triggers=[{"event": 5}])])
        response = await gw.http.post("/fn/register", json=poisoned, headers=authorization)
        assert response.status_code == 400
        assert response.json()["error"] == (
            "the sync is refused: function shop-poison (functions[1]): triggers[0].event: "
            "Input should be a valid string"
        )
        assert await stored(database_url) == before, "a refused sync committed something"
    async with running_gateway(database_url, **settings) as restarted:
        assert (await restarted.http.get("/readyz")).json()["status"] == "ready"
        assert [f["id"] for f in (await restarted.http.get("/v1/functions")).json()["data"]] == [
            "shop-notify"
        ]


BAD_ROWS = {
    "shop-number-event": ("triggers", '[{"event": 5}]'),
    "shop-trigger-text": ("triggers", '"order/created"'),
    "shop-never": ("triggers", '[{"cron": "0 0 31 2 *"}]'),
    "shop-unknown-zone": ("triggers", '[{"cron": "0 8 * * *", "timezone": "Mars/Olympus"}]'),
    "shop-both": ("triggers", '[{"event": "a", "cron": "* * * * *"}]'),
    "shop-cancel-number": ("cancel_on", "[1]"),
    "shop-checkpoint-list": ("checkpoint", "[1, 2]"),
    "shop-flow-limit": ("flow", '{"concurrency": [{"limit": 0}]}'),
    "shop-flow-unknown": ("flow", '{"throttle": {"limit": 1, "period": "soon"}}'),
    "shop-policy-backoff": ("retry_policy", '{"backoff": "Random"}'),
}


async def test_rows_that_cannot_be_routed_are_left_out_with_one_error_each(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = route("shop-good", SERVE_URL, {"event": "shop/order.created"})
    bad = [route(function_id, SERVE_URL, {"event": "shop/order.created"}) for function_id in BAD_ROWS]
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(good, *bad)
    conn = await asyncpg.connect(database_url)
    try:
        for function_id, (column, value) in BAD_ROWS.items():
            await conn.execute(f"UPDATE functions SET {column} = $2::jsonb WHERE id = $1", function_id, value)
    finally:
        await conn.close()

    with caplog.at_level(logging.ERROR, logger="stepline_gateway"):
        async with running_gateway(database_url, concurrency=0) as restarted:
            ready = (await restarted.http.get("/readyz")).json()
            assert (ready["status"], ready["functions"]) == ("ready", 1)
            [event_id] = await restarted.send({"name": "shop/order.created", "data": {}})
            assert [r["function_id"] for r in await restarted.runs_of(event_id)] == ["shop-good"]
            # A reload (NOTIFY, the timer) finds the same rows and does not report them again.
            await restarted.gateway.reload_routes()
            await restarted.gateway.reload_routes()
            assert len(restarted.gateway.routes) == 1
    reported = [r.getMessage() for r in caplog.records if "is not routed" in r.getMessage()]
    assert sorted(message.split()[1] for message in reported) == sorted(BAD_ROWS), reported
    assert all("publish it again" in message for message in reported)


async def test_a_bad_row_published_while_running_does_not_stop_reloads(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(route("shop-good", SERVE_URL, {"event": "shop/order.created"}))
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(
                "INSERT INTO functions (id, app_id, name, url, triggers, retries, source)"
                " VALUES ('shop-bad', 'shop', 'bad', $1, '[{\"event\": [\"a\"]}]', 1, 'sdk')",
                SERVE_URL,
            )
            await conn.execute("SELECT pg_notify('stepline_routes', '')")
        finally:
            await conn.close()

        async def reloaded() -> bool:
            return any("shop-bad is not routed" in r.getMessage() for r in caplog.records)

        with caplog.at_level(logging.ERROR, logger="stepline_gateway"):
            await eventually(reloaded)
        assert list(gw.gateway.routes.functions) == ["shop-good"]
        assert (await gw.http.get("/readyz")).status_code == 200
