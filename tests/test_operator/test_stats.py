"""Live counts on the resources: the operator writes ``status.stats`` from Postgres on its timer, and
``kubectl get fn`` shows Running / Queued / Failed beside Ready; they move as runs start, wait and fail."""

from __future__ import annotations

import datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
import stepline
import stepline.asgi

from tests.support import eventually, running_gateway, serve
from tests.test_operator.conftest import Cluster, running_operator
from tests.test_operator.test_operator import SERVICE, function, table

pytestmark = pytest.mark.usefixtures("kubeconfig_env", "local_dns")


def shop_app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("shop", dev=True, checkpoint=False)

    @client.function(id="ok", trigger="shop/ok")
    async def ok(ctx: stepline.Context) -> str:
        return await ctx.step.run("work", lambda: "done")

    @client.function(id="broken", trigger="shop/broken", retries=0)
    async def broken(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("broken on purpose")

    @client.function(id="sleepy", trigger="shop/sleepy")
    async def sleepy(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", datetime.timedelta(hours=1))
        return "rested"

    return client, [ok, broken, sleepy]


async def test_kubectl_get_fn_shows_live_counts_that_move_after_runs(
    database_url: str, cluster: Cluster
) -> None:
    client, functions = shop_app()
    async with (
        serve(stepline.asgi.serve_app(client, functions)) as app_url,
        running_gateway(database_url) as gw,
        running_operator(database_url, stats_interval_s=0.3),
    ):
        await cluster.apply(SERVICE.replace("PORT", str(urlsplit(app_url).port)))
        for name in ("ok", "broken", "sleepy"):
            await cluster.apply(function(name, f"event: shop/{name}"))
        for name in ("ok", "broken", "sleepy"):
            await cluster.wait_ready(name)

        def stats(name: str) -> dict[str, Any]:
            return ((cluster.stored(name) or {}).get("status") or {}).get("stats") or {}

        async def counted(expected: dict[str, dict[str, Any]]) -> bool:
            return all(
                {key: stats(name).get(key) for key in values} == values for name, values in expected.items()
            )

        idle = {"running": 0, "queued": 0, "failedLastHour": 0, "completedLastHour": 0, "lastRunTime": None}
        await eventually(lambda: counted({"ok": idle, "broken": idle, "sleepy": idle}))
        rows = {row["NAME"]: row for row in table(await cluster.kubectl("get", "fn", "-n", "shop"))}
        assert list(rows["ok"]) == [
            "NAME",
            "APP",
            "ENDPOINT",
            "TRIGGERS",
            "READY",
            "RUNNING",
            "QUEUED",
            "FAILED",
            "AGE",
        ]
        assert {(row["RUNNING"], row["QUEUED"], row["FAILED"]) for row in rows.values()} == {("0", "0", "0")}

        await eventually(lambda: _routed(gw, 3))
        await gw.send({"name": "shop/ok", "data": {}}, {"name": "shop/ok", "data": {}})
        [broken_event] = await gw.send({"name": "shop/broken", "data": {}})
        [sleepy_event] = await gw.send({"name": "shop/sleepy", "data": {}})
        [run] = await gw.finished_runs(broken_event)
        assert run["status"] == "Failed"

        async def sleeping() -> bool:
            [run] = await gw.runs_of(sleepy_event)
            return run["status"] == "Running"

        await eventually(sleeping)
        await eventually(
            lambda: counted(
                {
                    "ok": {"running": 0, "completedLastHour": 2, "completedLastDay": 2, "failedLastHour": 0},
                    "broken": {"running": 0, "failedLastHour": 1, "failedLastDay": 1, "completedLastHour": 0},
                    "sleepy": {"running": 1, "queued": 0, "completedLastHour": 0},
                }
            )
        )
        assert stats("ok")["lastRunTime"].endswith("Z")
        rows = {row["NAME"]: row for row in table(await cluster.kubectl("get", "fn", "-n", "shop"))}
        assert (rows["ok"]["RUNNING"], rows["ok"]["QUEUED"], rows["ok"]["FAILED"]) == ("0", "0", "0")
        assert (rows["broken"]["RUNNING"], rows["broken"]["FAILED"]) == ("0", "1")
        assert (rows["sleepy"]["RUNNING"], rows["sleepy"]["FAILED"]) == ("1", "0")


async def _routed(gw: Any, count: int) -> bool:
    return len(gw.gateway.routes.functions) >= count
