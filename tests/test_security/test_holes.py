"""Each way in that a holder of one key (or a captured request) had, tried as an attacker would, refused.

Production-mode gateways on loopback with the official and Stepline SDKs as services: forged reserved
events, taking over another app's function ids, forged answers, keys in log lines, dashboard sessions, and
a captured call sent again.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import stepline
import stepline.asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from stepline import signing
from stepline.protocol import (
    CRON_EVENT,
    FUNCTION_CANCELLED_EVENT,
    FUNCTION_FAILED_EVENT,
    FUNCTION_FINISHED_EVENT,
    FUNCTION_INVOKED_EVENT,
)
from stepline_gateway.dashboard.auth import SESSION_COOKIE
from stepline_gateway.errors import FunctionIdTaken
from stepline_gateway.registry import load_manifests
from stepline_gateway.routing import Function
from stepline_store.sealing import new_key

from tests.support import API_TOKEN, RunningGateway, route, running_gateway, serve
from tests.webhook_senders import publish as publish_webhooks
from tests.webhook_senders import webhook

KEY = "signkey-prod-" + "5e" * 32
PREVIOUS_KEY = "signkey-prod-" + "a1" * 32
OTHER_KEY = "signkey-prod-" + "77" * 32
EVENT_KEY = "team-a-event-key"


def production(database_url: str, **overrides: Any) -> Any:
    return running_gateway(database_url, dev=False, signing_key=KEY, event_keys=[EVENT_KEY], **overrides)


async def runs(gw: RunningGateway) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = (await gw.http.get("/v1/runs")).json()["data"]
    return data


@pytest.mark.parametrize(
    "name",
    [
        FUNCTION_FAILED_EVENT,
        FUNCTION_FINISHED_EVENT,
        FUNCTION_INVOKED_EVENT,
        CRON_EVENT,
        FUNCTION_CANCELLED_EVENT,
    ],
)
async def test_a_client_cannot_send_the_gateways_own_events(database_url: str, name: str) -> None:
    async with production(database_url, concurrency=0) as gw:
        handler = route("shop-on-failure", "http://127.0.0.1:9/api/inngest", {"event": name})
        await gw.publish(handler)
        forged = {"name": name, "data": {"function_id": "shop-charge", "error": {"message": "forged"}}}
        refused = await gw.http.post(f"/e/{EVENT_KEY}", json=[{"name": "shop/fine", "data": {}}, forged])
        assert refused.status_code == 403
        assert f"event 1 ({name})" in refused.json()["error"]
        assert "emitted by Stepline itself" in refused.json()["error"]
        # Through the API token's test-event route too; and nothing of either batch was stored.
        assert (await gw.http.post("/v1/events", json=forged)).status_code == 403
        assert (await gw.http.get("/v1/events")).json()["data"] == []
        assert await runs(gw) == []


async def test_a_webhook_transform_cannot_make_the_gateways_own_events(database_url: str) -> None:
    async with production(database_url, concurrency=0, secrets_key=new_key()) as gw:
        await gw.publish(
            route("shop-on-failure", "http://127.0.0.1:9/api/inngest", {"event": FUNCTION_FAILED_EVENT})
        )
        document = webhook("relay", {"none": {}}, transform='{"name": body.name, "data": body.data}')
        await publish_webhooks(gw, (document, []))
        forged = {"name": FUNCTION_FAILED_EVENT, "data": {"function_id": "shop-charge"}}
        refused = await gw.http.post("/webhooks/shop/relay", json=forged)
        assert refused.status_code == 403, refused.text
        assert "emitted by Stepline itself" in refused.json()["error"]
        fine = await gw.http.post("/webhooks/shop/relay", json={"name": "shop/ok", "data": {}})
        assert fine.status_code == 200, fine.text
        assert [e["name"] for e in (await gw.http.get("/v1/events")).json()["data"]] == ["shop/ok"]
        assert await runs(gw) == []


def sync_payload(app_id: str, url: str, *function_ids: str) -> dict[str, Any]:
    return {
        "appname": app_id,
        "url": url,
        "framework": "starlette",
        "functions": [
            {
                "id": f"{app_id}-{fid}",
                "name": fid,
                "triggers": [{"event": f"{app_id}/{fid}"}],
                "steps": {"step": {"id": "step", "name": "step", "runtime": {"type": "http", "url": url}}},
            }
            for fid in function_ids
        ],
    }


async def sync(gw: RunningGateway, payload: dict[str, Any]) -> httpx.Response:
    token = signing.bearer_token(KEY)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        return await http.post("/fn/register", json=payload, headers={"authorization": f"Bearer {token}"})


async def function_urls(gw: RunningGateway) -> dict[str, str]:
    return {f["id"]: f["url"] for f in (await gw.http.get("/v1/functions")).json()["data"]}


async def test_a_sync_from_another_url_cannot_take_over_an_apps_functions(database_url: str) -> None:
    demo = "http://127.0.0.1:9001/api/inngest"
    intruder = "http://127.0.0.1:9002/api/inngest"
    async with production(database_url, concurrency=0) as gw:
        assert (await sync(gw, sync_payload("demo", demo, "a", "b", "c"))).status_code == 200
        # The same app id from another URL, with one function or the same ones: refused, naming the owner.
        for ids in (("readme",), ("a", "b", "c")):
            taken = await sync(gw, sync_payload("demo", intruder, *ids))
            assert taken.status_code == 409
            assert f"already synced from {demo}" in taken.json()["error"]
            assert await function_urls(gw) == {"demo-a": demo, "demo-b": demo, "demo-c": demo}
        # The owner syncs again as before; another app may not take a function id either.
        assert (await sync(gw, sync_payload("demo", demo, "a", "b"))).status_code == 200
        clash = sync_payload("other", intruder, "x")
        clash["functions"][0]["id"] = "demo-a"
        taken = await sync(gw, clash)
        assert taken.status_code == 409
        assert "already synced by the app demo" in taken.json()["error"]
        # Moving the app on purpose: remove it with the API token, then sync from the new URL.
        removed = await gw.http.delete("/v1/apps/demo")
        assert removed.json() == {"app_id": "demo", "namespace": "default", "removed": 2}
        assert (await gw.http.delete("/v1/apps/demo")).status_code == 404
        assert (await sync(gw, sync_payload("demo", intruder, "a"))).status_code == 200
        assert await function_urls(gw) == {"demo-a": intruder}


@pytest.mark.parametrize("source", ["manifest", "kubernetes:shop/process-order"])
async def test_a_sync_cannot_take_over_a_function_resource(database_url: str, source: str) -> None:
    owned = "http://shop-api.shop.svc:8000/api/inngest"
    async with production(database_url, concurrency=0) as gw:
        function = Function(
            id="shop-process",
            app_id="shop",
            name="process",
            url=owned,
            triggers=[{"event": "shop/order"}],
            retries=0,
            paused=False,
            source=source,
        )
        await gw.gateway.registry.publish([function], replace_source=source)
        await gw.gateway.reload_routes()  # not left to the NOTIFY, which a loaded machine may deliver late
        taken = await sync(gw, sync_payload("shop", "http://127.0.0.1:9002/api/inngest", "process"))
        assert taken.status_code == 409
        assert f"already published by {source}" in taken.json()["error"]
        assert await function_urls(gw) == {"shop-process": owned}
        # An app that is not removable through the API: DELETE /v1/apps touches only what SDKs synced.
        assert (await gw.http.delete("/v1/apps/shop")).status_code == 404
        assert await function_urls(gw) == {"shop-process": owned}


def answering(sign_with: str | None, output: Any = "forged") -> Starlette:
    """A service that answers every call with 200 and ``output``, signed by ``sign_with`` (or unsigned)."""

    async def call(request: Request) -> Response:
        body = json.dumps(output).encode()
        headers = {"content-type": "application/json"}
        if sign_with is not None:
            headers["x-inngest-signature"] = signing.sign(body, sign_with)
        return Response(body, headers=headers)

    return Starlette(routes=[Route("/api/inngest", call, methods=["POST"])])


@pytest.mark.parametrize(
    ("sign_with", "reason"),
    [(None, "header is missing"), (OTHER_KEY, "does not match")],
    ids=["unsigned", "wrong-key"],
)
async def test_an_answer_not_signed_by_the_key_is_a_failed_attempt(
    database_url: str, sign_with: str | None, reason: str
) -> None:
    async with production(database_url) as gw, serve(answering(sign_with)) as app_url:
        await gw.publish(route("shop-pay", f"{app_url}/api/inngest", {"event": "shop/pay"}, retries=1))
        [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Failed"
        assert run["output"] is None
        assert "without a valid signature" in run["error"]["message"]
        assert reason in run["error"]["message"]
        assert run["error"]["name"] == "SignatureError"


@pytest.mark.parametrize("sign_with", [KEY, PREVIOUS_KEY], ids=["current", "previous"])
async def test_an_answer_signed_by_the_key_or_the_previous_one_is_taken(
    database_url: str, sign_with: str
) -> None:
    async with (
        production(database_url, signing_key_fallback=PREVIOUS_KEY) as gw,
        serve(answering(sign_with, {"paid": True})) as app_url,
    ):
        await gw.publish(route("shop-pay", f"{app_url}/api/inngest", {"event": "shop/pay"}, retries=0))
        [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(event_id)
        assert (run["status"], run["output"]) == ("Completed", {"paid": True})


async def test_no_event_key_reaches_the_log_of_a_failed_ingest(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with production(database_url) as gw:
        # Both pools away: the one ingest takes events in with, and the one the rest of the gateway uses.
        await gw.gateway.ingest_store.close()
        await gw.gateway.store.close()
        with caplog.at_level(logging.INFO):
            failed = await gw.http.post(f"/e/{EVENT_KEY}", json={"name": "shop/x", "data": {}})
            also = await gw.http.post("/e/a-wrong-key-guessed", json={"name": "shop/x", "data": {}})
        assert failed.status_code >= 500
        assert also.status_code == 401
        assert EVENT_KEY not in failed.text
        # What the gateway and its server logged (the test's own HTTP client logs the URLs it called).
        logged = "\n".join(
            r.getMessage() + (r.exc_text or "") for r in caplog.records if not r.name.startswith("httpx")
        )
        assert "/e/[redacted]" in logged
        assert EVENT_KEY not in logged
        assert "a-wrong-key-guessed" not in logged


async def sign_in(gw: RunningGateway) -> str:
    async with httpx.AsyncClient(base_url=gw.url) as http:
        answer = await http.post("/login", data={"token": API_TOKEN})
        assert answer.status_code == 303
        cookie: str = answer.cookies[SESSION_COOKIE]
        return cookie


async def test_each_sign_in_has_its_own_session_that_ends_at_sign_out_and_expires(database_url: str) -> None:
    async with production(database_url) as gw:
        first, second = await sign_in(gw), await sign_in(gw)
        assert first != second
        assert API_TOKEN not in first
        assert API_TOKEN not in second

        async def status(cookie: str) -> int:
            async with httpx.AsyncClient(base_url=gw.url, cookies={SESSION_COOKIE: cookie}) as http:
                return (await http.get("/v1/runs")).status_code

        assert (await status(first), await status(second)) == (200, 200)
        assert await status("a-made-up-session") == 401
        async with httpx.AsyncClient(base_url=gw.url, cookies={SESSION_COOKIE: first}) as http:
            assert (await http.post("/logout")).status_code == 303
        # The cookie kept after signing out (a copy stolen before) opens nothing; the other sign-in lives on.
        assert (await status(first), await status(second)) == (401, 200)
        # A session past its expiry (by the database's clock) opens nothing either.
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE dashboard_sessions SET expires_at = now() - interval '1 second'")
            stored = await conn.fetch("SELECT id_sha256 FROM dashboard_sessions")
        finally:
            await conn.close()
        assert await status(second) == 401
        assert all(second not in row["id_sha256"] for row in stored)


def counting_service(gateway_url: str, calls: list[str]) -> Starlette:
    client = stepline.Client("shop", gateway_url=gateway_url, signing_key=KEY, event_key=EVENT_KEY)

    @client.function(id="charge", trigger="shop/charge", retries=0)
    async def charge(ctx: stepline.Context) -> str:
        async def once() -> str:
            calls.append(ctx.run_id)
            return "charged"

        return await ctx.step.run("charge-card", once)

    return stepline.asgi.serve_app(client, [charge])


async def test_a_captured_call_sent_again_runs_nothing(database_url: str) -> None:
    calls: list[str] = []
    captured: list[tuple[bytes, dict[str, str], str]] = []
    async with production(database_url) as gw:
        app = counting_service(gw.url, calls)

        async def recording(scope: Any, receive: Any, send: Any) -> None:
            """Passes requests through, keeping a copy of each call as a wiretap would."""
            if scope["type"] != "http" or scope["method"] != "POST":
                await app(scope, receive, send)
                return
            chunks = []
            while True:
                message = await receive()
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body = b"".join(chunks)
            headers = {k.decode(): v.decode() for k, v in scope["headers"]}
            captured.append((body, headers, scope["query_string"].decode()))

            given = False

            async def replayed() -> Any:
                nonlocal given
                if given:
                    return await receive()
                given = True
                return {"type": "http.request", "body": body, "more_body": False}

            await app(scope, replayed, send)

        async with serve(recording) as app_url:
            await gw.publish(
                route("shop-charge", f"{app_url}/api/inngest", {"event": "shop/charge"}, retries=0)
            )
            [event_id] = await gw.send({"name": "shop/charge", "data": {}}, key=EVENT_KEY)
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed"
            assert len(calls) == 1
            nonces = {json.loads(body)["ctx"]["nonce"] for body, _, _ in captured}
            assert len(nonces) == len(captured) >= 1
            # The captured bytes, sent to the service again (in memory: the same app, as a wiretap would).
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as http:
                for body, headers, query in captured:
                    kept = ("content-type", "x-inngest-signature")
                    again = await http.post(
                        f"/api/inngest?{query}",
                        content=body,
                        headers={k: v for k, v in headers.items() if k in kept},
                    )
                    assert again.status_code == 401
                    assert "received before" in again.json()["error"]
            assert len(calls) == 1


MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: {name}}}
spec:
  app: demo
  endpoint: {{url: "http://127.0.0.1:9003/api/inngest"}}
  triggers: [{{event: demo/{name}}}]
"""


async def test_in_dev_a_manifest_cannot_take_over_a_function_an_sdk_app_synced(
    database_url: str, tmp_path: Path
) -> None:
    synced_from = "http://127.0.0.1:9001/api/inngest"
    async with running_gateway(database_url, concurrency=0) as gw:
        assert gw.gateway.settings.dev
        assert (await sync(gw, sync_payload("demo", synced_from, "a", "b"))).status_code == 200
        await gw.gateway.reload_routes()
        (tmp_path / "fn.yaml").write_text(MANIFEST.format(name="b") + "---\n" + MANIFEST.format(name="c"))
        with pytest.raises(FunctionIdTaken) as taken:
            await gw.gateway.registry.publish_manifests(load_manifests([tmp_path]))
        assert taken.value.status == 409
        assert "already synced by the app demo from http://127.0.0.1:9001/api/inngest" in str(taken.value)
        await gw.gateway.reload_routes()
        # Nothing changed: the app keeps both its functions, the manifest's other function is not loaded.
        assert await function_urls(gw) == {"demo-a": synced_from, "demo-b": synced_from}

        # A manifest of its own ids loads beside the app, and loads again (it replaces only its own).
        (tmp_path / "fn.yaml").write_text(MANIFEST.format(name="c"))
        for _ in range(2):
            await gw.gateway.registry.publish_manifests(load_manifests([tmp_path]))
        await gw.gateway.reload_routes()
        assert sorted(await function_urls(gw)) == ["demo-a", "demo-b", "demo-c"]
