"""The operator end to end: the real kubectl against the API server, kopf in-process, real Postgres, a real
gateway and the demo service, whose Service resolves (``--cluster-domain localhost``) to its loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import pytest

from examples.demo_service import create_app
from tests.support import RunningGateway, eventually, free_port, running_gateway, serve
from tests.test_operator.conftest import Cluster, running_operator

pytestmark = pytest.mark.usefixtures("kubeconfig_env", "local_dns")

EXAMPLES = Path(__file__).parents[2] / "examples" / "k8s"

SERVICE = """
apiVersion: v1
kind: Service
metadata: {name: shop-api, namespace: shop}
spec:
  ports: [{name: http, port: PORT, targetPort: 8000}]
"""


def function(name: str, *triggers: str, namespace: str = "shop", extra: str = "") -> str:
    lines = "".join(f"    - {trigger}\n" for trigger in triggers)
    return (
        "apiVersion: stepline.dev/v1alpha1\nkind: Function\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        "spec:\n  app: shop\n  endpoint: {serviceRef: {name: shop-api, port: http}}\n"
        f"  triggers:\n{lines}{extra}"
    )


@dataclass
class Shop:
    gateway: RunningGateway
    app: httpx.AsyncClient
    port: int

    @property
    def service(self) -> str:
        return SERVICE.replace("PORT", str(self.port))

    async def routes(self) -> dict[str, dict[str, Any]]:
        response = await self.gateway.http.get("/v1/functions")
        return {f["id"]: f for f in response.json()["data"]}

    async def wait_routes(self, check: Any) -> dict[str, dict[str, Any]]:
        async def probe() -> tuple[dict[str, dict[str, Any]]] | None:
            routes = await self.routes()
            return (routes,) if check(routes) else None

        [found] = await eventually(probe, timeout=10)
        return found  # type: ignore[no-any-return]

    async def ledger(self) -> list[str]:
        return [entry["action"] for entry in (await self.app.get("/ledger")).json()]


@contextlib.asynccontextmanager
async def shop(database_url: str) -> AsyncIterator[Shop]:
    """A gateway and the demo service on loopback; nothing is registered: the operator routes."""
    async with (
        running_gateway(database_url) as gw,
        serve(create_app(gateway_url=gw.url)) as app_url,
        httpx.AsyncClient(base_url=app_url) as app,
    ):
        yield Shop(gateway=gw, app=app, port=urlsplit(app_url).port or 0)


def table(output: str) -> list[dict[str, str]]:
    """``kubectl get`` output as rows keyed by column title."""
    header, *lines = output.strip().splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    titles = header.split()

    def cells(line: str) -> dict[str, str]:
        bounds = [*starts[1:], None]
        return {t: line[s:e].strip() for t, s, e in zip(titles, starts, bounds, strict=True)}

    return [cells(line) for line in lines]


async def test_applied_function_is_ready_routed_and_runs_on_the_service(
    database_url: str, cluster: Cluster
) -> None:
    liveness = free_port()
    async with shop(database_url) as env, running_operator(database_url, liveness=f"127.0.0.1:{liveness}"):
        await cluster.apply(env.service)
        await cluster.kubectl("apply", "--validate=false", "-f", str(EXAMPLES / "functions.yaml"))
        for name in ("send-welcome-email", "add-to-crm", "process-new-order", "sync-inventory"):
            ready = await cluster.wait_ready(name)
            assert ready["reason"] == "Routed"
            assert ready["observedGeneration"] == 1

        url = f"http://shop-api.shop.svc.localhost:{env.port}/api/inngest"
        body = await cluster.function("process-new-order")
        assert body is not None
        assert body["status"]["endpointURL"] == url
        assert body["status"]["observedGeneration"] == 1
        conditions = {c["type"]: c for c in body["status"]["conditions"]}
        assert {t: c["status"] for t, c in conditions.items()} == {
            "Ready": "True",
            "EndpointResolved": "True",
            "Routed": "True",
        }
        assert conditions["EndpointResolved"]["reason"] == "ServiceResolved"
        assert conditions["Routed"]["reason"] == "Published"
        assert body["metadata"]["finalizers"] == ["stepline.dev/finalizer"]
        assert any(key.startswith("stepline.dev/") for key in body["metadata"]["annotations"])
        assert not any(key.startswith("kopf.zalando.org/") for key in body["metadata"]["annotations"])

        rows = {row["NAME"]: row for row in table(await cluster.kubectl("get", "fn", "-n", "shop"))}
        assert list(table(await cluster.kubectl("get", "fn", "-n", "shop"))[0]) == [
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
        assert rows["process-new-order"]["APP"] == "shop"
        assert rows["process-new-order"]["ENDPOINT"] == url
        assert rows["process-new-order"]["TRIGGERS"] == "order/created (if)"
        assert rows["process-new-order"]["READY"] == "True"
        assert rows["sync-inventory"]["TRIGGERS"] == "inventory/sync, cron 0 6 * * * Europe/Paris"
        assert re.fullmatch(r"\d+s", rows["sync-inventory"]["AGE"])
        wide = table(await cluster.kubectl("get", "fn", "-n", "shop", "-o", "wide"))
        assert {row["REASON"] for row in wide} == {"Routed"}
        assert {row["PAUSED"] for row in wide} == {"false"}

        routes = await env.wait_routes(lambda r: len(r) == 4)
        order = routes["shop/shop-process-new-order"]
        assert order["url"] == url
        assert order["source"] == "kubernetes:shop/process-new-order"
        assert order["triggers"] == [{"event": "order/created", "if": "event.data.amount > 0"}]
        assert order["cancel_on"] == [
            {"event": "order/cancelled", "if": "event.data.order_id == async.data.order_id"}
        ]
        assert routes["shop/shop-add-to-crm"]["retries"] == 3

        [event_id] = await env.gateway.send(
            {"name": "order/created", "data": {"order_id": "o-1", "amount": 5}}
        )
        [run] = await env.gateway.finished_runs(event_id)
        assert run["status"] == "Completed", run
        assert run["output"]["charge"] == "ch_o-1"
        assert "charge" in await env.ledger()

        routed = [e for e in cluster.events("process-new-order") if e["reason"] == "Routed"]
        assert routed
        assert routed[0]["type"] == "Normal"
        assert url in routed[0]["message"]
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://127.0.0.1:{liveness}/healthz")).status_code == 200


async def test_update_delete_and_pause_take_effect_without_restarting_the_gateway(
    database_url: str, cluster: Cluster
) -> None:
    async with shop(database_url) as env, running_operator(database_url):
        await cluster.apply(env.service)
        await cluster.apply(function("send-welcome-email", "event: user/signed-up"))
        await cluster.wait_ready("send-welcome-email")
        await env.wait_routes(lambda r: "shop/shop-send-welcome-email" in r)

        # Update: a second trigger; the same gateway routes it as soon as the operator has published it.
        await cluster.apply(function("send-welcome-email", "event: user/signed-up", "event: user/invited"))
        routes = await env.wait_routes(lambda r: len(r["shop/shop-send-welcome-email"]["triggers"]) == 2)
        assert routes["shop/shop-send-welcome-email"]["triggers"][1] == {"event": "user/invited"}
        [event_id] = await env.gateway.send({"name": "user/invited", "data": {"email": "ada@example.com"}})
        [run] = await env.gateway.finished_runs(event_id)
        assert run["output"] == {"message": "welcome email sent to ada@example.com"}
        body = await cluster.function("send-welcome-email")
        assert body is not None
        assert body["metadata"]["generation"] == 2
        assert body["status"]["observedGeneration"] == 2
        assert body["status"]["triggers"] == "user/signed-up, user/invited"

        # Pause: still routed, but an event starts nothing.
        await cluster.apply(function("send-welcome-email", "event: user/signed-up", extra="  paused: true\n"))
        await env.wait_routes(lambda r: r["shop/shop-send-welcome-email"]["paused"])
        # The gateway may see the route paused before the operator has written the condition.
        ready = await cluster.wait_ready("send-welcome-email", reason="Paused")
        assert "paused" in ready["message"].lower()
        [event_id] = await env.gateway.send({"name": "user/signed-up", "data": {"email": "bob@example.com"}})
        await asyncio.sleep(0.3)
        assert await env.gateway.runs_of(event_id) == []

        # Delete: the route goes, the finalizer is released, the object is gone.
        await cluster.kubectl("delete", "fn", "send-welcome-email", "-n", "shop", "--wait=false")
        await env.wait_routes(lambda r: "shop/shop-send-welcome-email" not in r)

        await cluster.wait_gone("send-welcome-email")
        assert await cluster.function("send-welcome-email") is None  # kubectl agrees
        [event_id] = await env.gateway.send({"name": "user/invited", "data": {"email": "eve@example.com"}})
        await asyncio.sleep(0.3)
        assert await env.gateway.runs_of(event_id) == []
        assert any(e["reason"] == "Unrouted" for e in cluster.events("send-welcome-email"))


async def test_a_function_created_before_its_service_turns_ready_when_the_service_appears(
    database_url: str, cluster: Cluster
) -> None:
    # The retry period is long: turning Ready within seconds shows the Service watch, not the retry.
    async with shop(database_url) as env, running_operator(database_url, service_retry_s=60):
        await cluster.apply(function("send-welcome-email", "event: user/signed-up"))
        waiting = await cluster.wait_ready("send-welcome-email", status="False")
        assert waiting["reason"] == "ServiceNotFound"
        assert "Service shop-api not found in namespace shop" in waiting["message"]
        resolved = await cluster.condition("send-welcome-email", "EndpointResolved")
        assert (resolved["status"], resolved["reason"]) == ("False", "ServiceNotFound")
        routed = await cluster.condition("send-welcome-email", "Routed")
        assert routed["status"] == "False"
        assert await env.routes() == {}
        warnings = [e for e in cluster.events("send-welcome-email") if e["reason"] == "EndpointUnresolved"]
        assert warnings
        assert warnings[0]["type"] == "Warning"

        await cluster.apply(env.service)
        ready = await cluster.wait_ready("send-welcome-email", timeout=5)
        assert ready["reason"] == "Routed"
        await env.wait_routes(lambda r: "shop/shop-send-welcome-email" in r)
        [event_id] = await env.gateway.send({"name": "user/signed-up", "data": {"email": "ada@example.com"}})
        [run] = await env.gateway.finished_runs(event_id)
        assert run["status"] == "Completed"


@pytest.mark.parametrize(
    ("change", "reason", "message"),
    [
        (
            '"event: user/signed-up"',
            "InvalidExpression",
            "spec.triggers[0].if: 'event.data.x >' is not valid CEL",
        ),
        (
            "\"cron: '0 8 * * *'\n      timezone: Mars/Olympus\"",
            "UnknownTimeZone",
            "unknown time zone 'Mars/Olympus'",
        ),
        ("\"cron: '61 * * * *'\"", "InvalidSchedule", "'61 * * * *' is not a valid schedule"),
    ],
    ids=["if", "timezone", "cron"],
)
async def test_what_only_the_operator_can_check_ends_as_ready_false(
    database_url: str, cluster: Cluster, change: str, reason: str, message: str
) -> None:
    trigger = change.strip('"')
    if reason == "InvalidExpression":
        trigger += "\n      if: 'event.data.x >'"
    async with shop(database_url) as env, running_operator(database_url) as operator:
        await cluster.apply(env.service)
        await cluster.apply(function("send-welcome-email", "event: user/signed-up"))
        await cluster.wait_ready("send-welcome-email")
        await cluster.apply(function("broken", trigger))
        failed = await cluster.wait_ready("broken", status="False")
        assert failed["reason"] == reason
        assert message in failed["message"]
        assert (await cluster.condition("broken", "Routed"))["status"] == "False"
        assert "shop/shop-broken" not in await env.routes()
        assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in cluster.events("broken"))

        # A good Function routed before keeps its route when an update breaks it (bad input changes nothing).
        await cluster.apply(function("send-welcome-email", trigger))
        failed = await cluster.wait_ready("send-welcome-email", status="False")
        assert failed["reason"] == reason
        assert failed["observedGeneration"] == 2
        routed = await cluster.condition("send-welcome-email", "Routed")
        assert (routed["status"], routed["observedGeneration"]) == ("True", 1)
        routes = await env.routes()
        assert routes["shop/shop-send-welcome-email"]["triggers"] == [{"event": "user/signed-up"}]

        # Not a crash loop: the operator runs on, does not retry the broken spec, and fixing it routes it.
        assert operator.thread.is_alive()
        assert not operator.errors
        before = cluster.stored("broken")
        await asyncio.sleep(0.5)
        assert cluster.stored("broken") == before
        await cluster.apply(function("broken", "event: user/signed-up"))
        await cluster.wait_ready("broken")


async def test_a_restarted_operator_resumes_without_republishing_and_loses_nothing(
    database_url: str, cluster: Cluster
) -> None:
    async with shop(database_url) as env:
        await cluster.apply(env.service)
        async with running_operator(database_url):
            for name in ("kept", "changed", "removed"):
                await cluster.apply(function(name, "event: user/signed-up"))
                await cluster.wait_ready(name)
        routes = await env.wait_routes(lambda r: len(r) == 3)
        conn = await asyncpg.connect(database_url)
        try:
            before = dict(await conn.fetch("SELECT id, updated_at FROM functions"))
            notified: list[str] = []
            await conn.add_listener("stepline_routes", lambda *args: notified.append(args[-1]))

            # While the operator is down: one updated, one created, one deleted (held by our finalizer).
            await cluster.apply(function("changed", "event: user/signed-up", "event: user/invited"))
            await cluster.apply(function("added", "event: lead/created"))
            await cluster.kubectl("delete", "fn", "removed", "-n", "shop", "--wait=false")
            assert await cluster.function("removed") is not None

            async with running_operator(database_url):
                routes = await env.wait_routes(
                    lambda r: (
                        set(r) == {"shop/shop-kept", "shop/shop-changed", "shop/shop-added"}
                        and len(r["shop/shop-changed"]["triggers"]) == 2
                    )
                )
                await cluster.wait_ready("added")

                await cluster.wait_gone("removed")
                await asyncio.sleep(0.3)
            after = dict(await conn.fetch("SELECT id, updated_at FROM functions"))
        finally:
            await conn.close()
        assert after["shop/shop-kept"] == before["shop/shop-kept"]  # resumed, not re-published
        assert after["shop/shop-changed"] > before["shop/shop-changed"]
        assert len(notified) == 3  # one NOTIFY per real change: changed, added, removed
        assert routes["shop/shop-changed"]["triggers"] == [
            {"event": "user/signed-up"},
            {"event": "user/invited"},
        ]
        kept = await cluster.function("kept")
        assert kept is not None
        assert kept["status"]["observedGeneration"] == 1


async def test_namespaced_mode_serves_only_its_namespaces(database_url: str, cluster: Cluster) -> None:
    async with shop(database_url) as env, running_operator(database_url, namespaces=("shop",)):
        await cluster.apply(env.service)
        await cluster.apply(env.service.replace("namespace: shop", "namespace: other"))
        await cluster.apply(function("send-welcome-email", "event: user/signed-up"))
        await cluster.apply(function("elsewhere", "event: user/signed-up", namespace="other"))
        await cluster.wait_ready("send-welcome-email")
        await asyncio.sleep(0.5)
        assert set(await env.routes()) == {"shop/shop-send-welcome-email"}
        other = await cluster.function("elsewhere", namespace="other")
        assert other is not None
        assert "status" not in other
        assert "finalizers" not in other["metadata"]


async def test_two_namespaces_route_the_same_ids_and_one_namespace_refuses_a_second_owner(
    database_url: str, cluster: Cluster
) -> None:
    async with shop(database_url) as env, running_operator(database_url):
        await cluster.apply(env.service)
        await cluster.apply(env.service.replace("namespace: shop", "namespace: other"))
        await cluster.apply(function("send-welcome-email", "event: user/signed-up"))
        await cluster.apply(function("send-welcome-email", "event: user/signed-up", namespace="other"))
        await cluster.wait_ready("send-welcome-email")
        await cluster.wait_ready("send-welcome-email", namespace="other")
        routes = await env.wait_routes(lambda r: len(r) == 2)
        assert routes["shop/shop-send-welcome-email"]["source"] == "kubernetes:shop/send-welcome-email"
        assert routes["other/shop-send-welcome-email"]["source"] == "kubernetes:other/send-welcome-email"
        assert {r["fn_id"] for r in routes.values()} == {"shop-send-welcome-email"}
        assert {r["namespace"] for r in routes.values()} == {"shop", "other"}
        # An event sent with a cluster key reaches both; each runs in its own namespace's function, and the
        # service is called by the id it knows (fnId shop-send-welcome-email) both times.
        [event_id] = await env.gateway.send({"name": "user/signed-up", "data": {"email": "a@example.com"}})
        runs = await env.gateway.finished_runs(event_id, count=2)
        assert sorted(run["function"]["id"] for run in runs) == [
            "other/shop-send-welcome-email",
            "shop/shop-send-welcome-email",
        ]
        assert {run["status"] for run in runs} == {"Completed"}

        # Within one namespace, a second resource with the same app and function id is refused.
        await cluster.apply(
            function("welcome-again", "event: user/invited", extra="  functionId: send-welcome-email\n")
        )

        async def refused() -> dict[str, Any] | None:
            condition = await cluster.condition("welcome-again")
            return condition if condition.get("reason") == "FunctionIdConflict" else None

        condition = await eventually(refused, timeout=10)
        assert "already published by kubernetes:shop/send-welcome-email" in condition["message"]
        routes = await env.routes()
        assert routes["shop/shop-send-welcome-email"]["source"] == "kubernetes:shop/send-welcome-email"
