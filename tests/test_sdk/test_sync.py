"""Inspection (GET) and sync (PUT): the app reports its functions to the gateway as the official SDK does."""

from __future__ import annotations

from typing import Any

import stepline
from stepline import signing

from .conftest import FALLBACK_KEY, SIGNING_KEY, FakeGateway


def functions(client: stepline.Client) -> list[stepline.Function]:
    @client.function(id="welcome", trigger="user/signed-up", retries=2, name="Welcome mail")
    async def welcome(ctx: stepline.Context) -> None:
        return None

    @client.function(
        id="nightly",
        trigger=[
            stepline.TriggerCron(cron="0 3 * * *"),
            stepline.TriggerEvent(event="a/b", expression="event.data.x > 1"),
        ],
    )
    async def nightly(ctx: stepline.Context) -> None:
        return None

    return [welcome, nightly]


def expected_payload(serve_url: str, framework: str) -> dict[str, Any]:
    def step(fn_id: str, attempts: int) -> dict[str, Any]:
        return {
            "step": {
                "id": "step",
                "name": "step",
                "retries": {"attempts": attempts},
                "runtime": {"type": "http", "url": f"{serve_url}?fnId={fn_id}&stepId=step"},
            }
        }

    # Checkpoint mode is on by default, with the safe settings: report after every step.
    checkpoint = {"batch_steps": 0, "batch_interval": "0s", "max_runtime": "10s", "max_at_risk": "100ms"}
    return {
        "appname": "shop",
        "deployType": "ping",
        "framework": framework,
        "functions": [
            {
                "id": "shop-welcome",
                "name": "Welcome mail",
                "triggers": [{"event": "user/signed-up"}],
                "steps": step("shop-welcome", 2),
                "checkpoint": checkpoint,
            },
            {
                "id": "shop-nightly",
                "name": "nightly",
                "triggers": [{"cron": "0 3 * * *"}, {"event": "a/b", "expression": "event.data.x > 1"}],
                "steps": step("shop-nightly", 4),
                "checkpoint": checkpoint,
            },
        ],
        "sdk": f"stepline-py:v{stepline.__version__}",
        "url": serve_url,
        "v": "0.1",
    }


def put_headers(key: str | None = SIGNING_KEY) -> dict[str, str]:
    return {"x-inngest-signature": signing.sign_request(b"", key)} if key else {}


async def test_inspection_reports_the_app(serve: Any) -> None:
    client = stepline.Client("shop", event_key="ek", dev=True)
    served = await serve(functions(client), client)
    res = await served.http.get("/api/inngest")
    assert res.status_code == 200
    assert res.json() == {
        "function_count": 2,
        "has_event_key": True,
        "has_signing_key": False,
        "has_signing_key_fallback": False,
        "mode": "dev",
        "schema_version": "2024-05-24",
    }


async def test_a_sync_registers_the_functions_with_the_bearer_token(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url, signing_key=SIGNING_KEY, dev=False)
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest?deployId=d-1", headers=put_headers())
    assert (res.status_code, res.json()) == (200, {"ok": True, "modified": True})
    [register] = gateway.requests
    assert register["path"] == "/fn/register"
    assert register["query"] == {"deployId": "d-1"}
    assert register["headers"]["authorization"] == f"Bearer {signing.bearer_token(SIGNING_KEY)}"
    assert register["body"] == expected_payload("http://testserver/api/inngest", served.framework)
    await client.aclose()


async def test_a_sync_retries_with_the_fallback_key(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client(
        "shop", gateway_url=gateway.url, signing_key=SIGNING_KEY, signing_key_fallback=FALLBACK_KEY, dev=False
    )
    gateway.accepted_tokens = {signing.bearer_token(FALLBACK_KEY)}
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest", headers=put_headers(FALLBACK_KEY))
    assert res.status_code == 200
    tokens = [r["headers"]["authorization"] for r in gateway.requests]
    assert tokens == [f"Bearer {signing.bearer_token(k)}" for k in (SIGNING_KEY, FALLBACK_KEY)]
    await client.aclose()


async def test_an_unsigned_sync_is_refused_in_cloud_mode(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url, signing_key=SIGNING_KEY, dev=False)
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest")
    assert res.status_code == 401
    assert gateway.requests == []


async def test_the_serve_origin_replaces_scheme_and_host(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client(
        "shop", gateway_url=gateway.url, serve_origin="https://shop.example.com", dev=True
    )
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest?other=1")
    assert res.status_code == 200
    [register] = gateway.requests
    assert "authorization" not in register["headers"]
    assert register["body"] == expected_payload("https://shop.example.com/api/inngest", served.framework)
    await client.aclose()


async def test_the_gateways_refusal_is_passed_on(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url, dev=True)
    gateway.register_answer = (422, {"error": "function shop-nightly: bad cron"})
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest")
    assert res.status_code == 422
    assert "bad cron" in res.json()["error"]
    await client.aclose()


async def test_a_sync_from_the_other_kind_of_server_is_refused(serve: Any, gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url, dev=True)
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest", headers={"x-inngest-server-kind": "cloud"})
    assert res.status_code == 400
    assert gateway.requests == []


async def test_an_unreachable_gateway_is_reported(serve: Any) -> None:
    client = stepline.Client("shop", gateway_url="http://127.0.0.1:9", dev=True)
    served = await serve(functions(client), client)
    res = await served.http.put("/api/inngest")
    assert res.status_code == 500
    assert "could not reach the gateway" in res.json()["error"]
    await client.aclose()
