"""Routing per namespace: a function's identity is namespace + app + function id, the wire id unchanged.

Two namespaces publish the same app and function ids and both route; the service is called by the id it
knows; what a run emits (``inngest/function.failed``) reaches only its own namespace's handlers; an id with
a ``/`` (which would read as another namespace's) is refused from a sync.
"""

from __future__ import annotations

import base64
from typing import Any

import stepline
import stepline.asgi
from stepline.errors import NonRetriableError
from stepline.webhook import parse_webhook
from stepline_gateway.routing import Function
from stepline_operator import event_keys
from stepline_operator.event_keys import hashes_of
from stepline_operator.routes import RouteTable
from stepline_store.sealing import new_key
from stepline_store.webhooks import MANIFEST_SOURCE, kubernetes_source, seal_webhook

from tests.support import RunningGateway, eventually, route, running_gateway, serve
from tests.test_security.test_holes import EVENT_KEY, KEY, sync, sync_payload
from tests.webhook_senders import webhook


def service(gateway_url: str, seen: list[str]) -> Any:
    client = stepline.Client("shop", gateway_url=gateway_url, signing_key=KEY, event_key=EVENT_KEY)

    async def failed(ctx: stepline.Context) -> None:
        seen.append(ctx.event.data["function_id"])

    @client.function(id="pay", trigger="shop/pay", retries=0, on_failure=failed)
    async def pay(ctx: stepline.Context) -> str:
        async def charge() -> str:
            raise NonRetriableError("card declined")

        return await ctx.step.run("charge", charge)

    return stepline.asgi.serve_app(client, [pay])


def published(namespace: str, name: str, url: str, trigger: dict[str, Any]) -> Function:
    return Function(
        id=f"{namespace}/shop-{name}",
        app_id="shop",
        name=name,
        url=url,
        triggers=[trigger],
        retries=0,
        paused=False,
        source=f"kubernetes:{namespace}/{name}",
    )


async def runs_by_function(gw: RunningGateway) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for run in (await gw.http.get("/v1/runs")).json()["data"]:
        found.setdefault(run["function"]["id"], []).append(run["status"])
    return found


async def test_two_namespaces_with_the_same_ids_route_and_a_run_emits_only_to_its_own(
    database_url: str,
) -> None:
    seen: list[str] = []
    async with (
        running_gateway(database_url, dev=False, signing_key=KEY, event_keys=[EVENT_KEY]) as gw,
        serve(service(gw.url, seen)) as app_url,
    ):
        url = f"{app_url}/api/inngest"
        failure = {"event": "inngest/function.failed", "if": "event.data.function_id == 'shop-pay'"}
        for namespace, trigger in (("team-a", "shop/pay"), ("team-b", "shop/pay.other")):
            functions = [
                published(namespace, "pay", url, {"event": trigger}),
                published(namespace, "pay-failure", url, failure),
            ]
            await gw.gateway.registry.publish(functions, replace_source=f"kubernetes:{namespace}/pay")
        await gw.gateway.reload_routes()
        listed = {f["id"]: f for f in (await gw.http.get("/v1/functions")).json()["data"]}
        assert listed["team-a/shop-pay"]["fn_id"] == listed["team-b/shop-pay"]["fn_id"] == "shop-pay"
        assert listed["team-b/shop-pay"]["namespace"] == "team-b"

        await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)

        async def settled() -> dict[str, list[str]] | None:
            found = await runs_by_function(gw)
            done = found.get("team-a/shop-pay-failure") == ["Completed"]
            return found if done and found.get("team-a/shop-pay") == ["Failed"] else None

        found = await eventually(settled)
        # team-b's failure handler matches the same fnId, yet team-a's failure never reaches it.
        assert found == {"team-a/shop-pay": ["Failed"], "team-a/shop-pay-failure": ["Completed"]}
        # The failure event names the function as its app knows it.
        assert seen == ["shop-pay"]
        failed = (await gw.http.get("/v1/events", params={"name": "inngest/function.failed"})).json()
        assert [e["data"]["function_id"] for e in failed["data"]] == ["shop-pay"]

        # team-b's own function runs the same service, and its failure reaches only team-b's handler.
        await gw.send({"name": "shop/pay.other", "data": {}}, key=EVENT_KEY)

        async def both() -> dict[str, list[str]] | None:
            found = await runs_by_function(gw)
            return found if found.get("team-b/shop-pay-failure") == ["Completed"] else None

        found = await eventually(both)
        assert found["team-a/shop-pay-failure"] == ["Completed"]
        assert found["team-b/shop-pay"] == ["Failed"]


async def test_a_sync_cannot_name_a_function_of_another_namespace(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, signing_key=KEY, event_keys=[EVENT_KEY]) as gw:
        payload = sync_payload("shop", "http://127.0.0.1:9001/api/inngest", "pay")
        payload["functions"][0]["id"] = "team-a/shop-pay"
        refused = await sync(gw, payload)
        assert refused.status_code == 400
        assert "holds a '/'" in refused.json()["error"]
        assert (await gw.http.get("/v1/functions")).json()["data"] == []


async def test_a_namespaces_event_key_reaches_only_its_namespace_and_is_revoked_with_its_secret(
    database_url: str,
) -> None:
    parked = "http://127.0.0.1:9/api/inngest"
    async with running_gateway(
        database_url, dev=False, signing_key=KEY, event_keys=[EVENT_KEY], concurrency=0
    ) as gw:
        for namespace in ("team-a", "team-b"):
            function = published(namespace, "pay", parked, {"event": "shop/pay"})
            await gw.gateway.registry.publish([function], replace_source=f"kubernetes:{namespace}/pay")
        routes = await RouteTable.open(database_url, size=1)
        try:
            # As the operator publishes the Secrets labelled stepline.dev/event-key=true of each namespace.
            await event_keys.publish(routes.pool, "team-a", "keys", hashes_of({"k": encode(b"key-of-a")}))
            await event_keys.publish(routes.pool, "team-b", "keys", hashes_of({"k": encode(b"key-of-b\n")}))

            async def accepted(key: str) -> bool:
                answer = await gw.http.post(f"/e/{key}", json={"name": "shop/nothing", "data": {}})
                return answer.status_code == 200

            await eventually(lambda: accepted("key-of-b"))
            for key, expected in (
                ("key-of-a", ["team-a/shop-pay"]),
                ("key-of-b", ["team-b/shop-pay"]),
                (EVENT_KEY, ["team-a/shop-pay", "team-b/shop-pay"]),
            ):
                [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=key)
                started = sorted(run["function_id"] for run in await gw.runs_of(event_id))
                assert started == expected, key

            # The Secret deleted: its key is refused within seconds, the other namespace's still works.
            await event_keys.publish(routes.pool, "team-a", "keys", [])

            async def refused() -> bool:
                answer = await gw.http.post("/e/key-of-a", json={"name": "shop/pay", "data": {}})
                return answer.status_code == 401

            await eventually(refused, timeout=5)
            assert await accepted("key-of-b")
        finally:
            await routes.close()


def encode(key: bytes) -> str:
    return base64.b64encode(key).decode()


async def test_a_webhooks_events_reach_only_the_functions_of_its_namespace(database_url: str) -> None:
    parked = "http://127.0.0.1:9/api/inngest"
    async with running_gateway(
        database_url, dev=False, signing_key=KEY, event_keys=[EVENT_KEY], concurrency=0, secrets_key=new_key()
    ) as gw:
        for namespace in ("team-a", "team-b"):
            function = published(namespace, "on-push", parked, {"event": "github/push"})
            await gw.gateway.registry.publish([function], replace_source=f"kubernetes:{namespace}/on-push")
            # As the operator publishes a Webhook resource of the namespace, the same name in each.
            document = webhook("github", {"none": {}}, transform=PUSH, namespace=namespace)
            row = seal_webhook(
                parse_webhook(document),
                [],
                sealer=gw.gateway.webhooks.sealer,
                source=kubernetes_source(namespace, "github"),
            )
            await gw.gateway.webhooks.publish([row], source=kubernetes_source(namespace, "github"))
        # A function of default matches the same event name, and a manifest's webhook reaches it.
        await gw.publish(route("shop-on-push", parked, {"event": "github/push"}))
        await gw.gateway.webhooks.publish(
            [
                seal_webhook(
                    parse_webhook(webhook("github", {"none": {}}, transform=PUSH, namespace="tools")),
                    [],
                    sealer=gw.gateway.webhooks.sealer,
                    source=MANIFEST_SOURCE,
                )
            ],
            source=MANIFEST_SOURCE,
        )
        await gw.gateway.reload_routes()

        for path, expected in (
            ("/webhooks/team-a/github", ["team-a/shop-on-push"]),
            ("/webhooks/team-b/github", ["team-b/shop-on-push"]),
            ("/webhooks/tools/github", ["shop-on-push"]),
        ):
            answer = await gw.http.post(
                path, json={"ref": path}, headers={"content-type": "application/json"}
            )
            assert answer.status_code == 200, answer.text
            [event_id] = answer.json()["ids"]
            started = sorted(run["function_id"] for run in await gw.runs_of(event_id))
            assert started == expected, path
        # The same event sent with a cluster key still reaches every namespace.
        [event_id] = await gw.send({"name": "github/push", "data": {}}, key=EVENT_KEY)
        started = sorted(run["function_id"] for run in await gw.runs_of(event_id))
        assert started == ["shop-on-push", "team-a/shop-on-push", "team-b/shop-on-push"]


PUSH = '{"name": "github/push", "data": body}'
