"""Signing keys per namespace, with rotation: calls to a namespace's services are signed with its key, its
apps' answers and syncs are checked against its current or previous key, and an SDK app belongs to the
namespace whose key it syncs with.

The keys are published as the operator publishes them (``stepline_operator.signing_keys``, sealed with
``STEPLINE_SECRETS_KEY``), and reach the gateway through Postgres and ``NOTIFY stepline_routes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import fastapi
import httpx
import inngest
import inngest.fast_api
import pytest
import stepline
import stepline.asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from stepline import signing
from stepline_gateway.errors import Unauthorized
from stepline_gateway.routing import Function
from stepline_gateway.signing_keys import KeyPair, SigningKeys
from stepline_operator import signing_keys
from stepline_store.sealing import Sealer, new_key

from tests.support import RunningGateway, eventually, running_gateway, serve
from tests.test_security.test_holes import EVENT_KEY, KEY, sync_payload

KEY_A = "signkey-prod-" + "a0" * 32
KEY_A2 = "signkey-prod-" + "a2" * 32
KEY_B = "signkey-prod-" + "b0" * 32
SEALING_KEY = new_key()


@contextlib.asynccontextmanager
async def production(database_url: str, **overrides: Any) -> AsyncIterator[RunningGateway]:
    async with running_gateway(
        database_url,
        dev=False,
        signing_key=KEY,
        event_keys=[EVENT_KEY],
        secrets_key=SEALING_KEY,
        **overrides,
    ) as gw:
        yield gw


async def publish_keys(gw: RunningGateway, namespace: str, current: str, previous: str | None = None) -> None:
    """Publish a namespace's keys as the operator does, and wait until the gateway uses them."""
    sealed = signing_keys.sealed(
        Sealer([SEALING_KEY]), current.encode(), None if previous is None else previous.encode()
    )
    source = f"kubernetes:{namespace}/signing"
    assert await signing_keys.publish(gw.gateway.store.pool, namespace, source, sealed) in ("changed", "same")

    async def loaded() -> bool:
        keys = gw.gateway.signing_keys.of(namespace)
        return keys is not None and (keys.current, keys.previous) == (current, previous)

    await eventually(loaded, timeout=10)


def published(namespace: str, url: str) -> Function:
    return Function(
        id=f"{namespace}/shop-pay",
        app_id="shop",
        name="pay",
        url=url,
        triggers=[{"event": "shop/pay"}],
        retries=0,
        paused=False,
        source=f"kubernetes:{namespace}/pay",
    )


def sdk_service(gateway_url: str, key: str) -> Starlette:
    """Stepline's SDK serving ``shop-pay``: it refuses a call not signed by ``key`` and signs its answers."""
    client = stepline.Client("shop", gateway_url=gateway_url, signing_key=key, event_key=EVENT_KEY)

    @client.function(id="pay", trigger="shop/pay", retries=0)
    async def pay(ctx: stepline.Context) -> str:
        return await ctx.step.run("charge", lambda: "paid")

    return stepline.asgi.serve_app(client, [pay])


def recording(sign_with: str, seen: list[tuple[bytes, str]]) -> Starlette:
    """A service that records each call's body and signature and answers 200, signed by ``sign_with``."""

    async def call(request: Request) -> Response:
        seen.append((await request.body(), request.headers.get("x-inngest-signature", "")))
        body = json.dumps({"paid": True}).encode()
        headers = {"content-type": "application/json", "x-inngest-signature": signing.sign(body, sign_with)}
        return Response(body, headers=headers)

    return Starlette(routes=[Route("/api/inngest", call, methods=["POST"])])


def signed_by(call: tuple[bytes, str], key: str) -> bool:
    try:
        signing.verify_request(call[0], call[1], [key])
    except signing.SignatureError:
        return False
    return True


async def statuses(gw: RunningGateway) -> dict[str, str]:
    return {r["function"]["id"]: r["status"] for r in (await gw.http.get("/v1/runs")).json()["data"]}


async def test_calls_to_each_namespace_carry_its_own_signature(database_url: str) -> None:
    seen_a: list[tuple[bytes, str]] = []
    seen_b: list[tuple[bytes, str]] = []
    async with (
        production(database_url) as gw,
        serve(recording(KEY_A, seen_a)) as url_a,
        serve(recording(KEY_B, seen_b)) as url_b,
        serve(sdk_service("http://unused", KEY)) as url_default,
    ):
        await publish_keys(gw, "a", KEY_A)
        await publish_keys(gw, "b", KEY_B)
        await gw.gateway.registry.publish([published("a", f"{url_a}/api/inngest")], replace_source="a")
        await gw.gateway.registry.publish([published("b", f"{url_b}/api/inngest")], replace_source="b")
        await gw.publish(
            Function(
                id="shop-pay",
                app_id="shop",
                name="pay",
                url=f"{url_default}/api/inngest",
                triggers=[{"event": "shop/pay"}],
                retries=0,
                paused=False,
                source="manifest",
            )
        )
        [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
        runs = await gw.finished_runs(event_id, count=3)
        assert {r["function"]["id"]: r["status"] for r in runs} == {
            "a/shop-pay": "Completed",
            "b/shop-pay": "Completed",
            "shop-pay": "Completed",  # default: the cluster's key, which the SDK service checks
        }
        [call_a], [call_b] = seen_a, seen_b
        assert signed_by(call_a, KEY_A)
        assert not signed_by(call_a, KEY_B)
        assert not signed_by(call_a, KEY)
        assert signed_by(call_b, KEY_B)
        assert not signed_by(call_b, KEY_A)
        assert not signed_by(call_b, KEY)


async def test_our_sdk_service_of_a_namespace_runs_with_its_key_and_refuses_the_cluster_key(
    database_url: str,
) -> None:
    async with production(database_url) as gw, serve(sdk_service(gw.url, KEY_A)) as url:
        await gw.gateway.registry.publish([published("a", f"{url}/api/inngest")], replace_source="a")
        await gw.gateway.reload_routes()
        # Before namespace a has its own key, its calls are signed with the cluster's: the service refuses.
        [first] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(first)
        assert run["status"] == "Failed"
        await publish_keys(gw, "a", KEY_A)
        [second] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
        [run] = await gw.finished_runs(second)
        assert (run["status"], run["output"]) == ("Completed", "paid")


async def sync_with(gw: RunningGateway, key: str, payload: dict[str, Any]) -> httpx.Response:
    token = signing.bearer_token(key)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        return await http.post("/fn/register", json=payload, headers={"authorization": f"Bearer {token}"})


async def checkpoint_status(gw: RunningGateway, key: str) -> int:
    """A checkpoint post's answer: 401 when the bearer token is refused, else what its body gets (400: the
    work item it names is not one the gateway gave out)."""
    token = signing.bearer_token(key)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        answer = await http.post(
            "/v1/checkpoint/018f0000-0000-7000-8000-000000000000/async",
            json={"qi_id": "nothing", "steps": []},
            headers={"authorization": f"Bearer {token}"},
        )
    return answer.status_code


async def test_a_rotated_key_is_taken_beside_the_previous_one_until_that_is_removed(
    database_url: str,
) -> None:
    seen_old: list[tuple[bytes, str]] = []
    seen_new: list[tuple[bytes, str]] = []
    async with (
        production(database_url) as gw,
        serve(recording(KEY_A, seen_old)) as old_url,
        serve(recording(KEY_A2, seen_new)) as new_url,
    ):
        old = Function(**{**published("a", f"{old_url}/api/inngest").__dict__, "id": "a/shop-old"})
        new = Function(**{**published("a", f"{new_url}/api/inngest").__dict__, "id": "a/shop-new"})
        await gw.gateway.registry.publish([old, new], replace_source="kubernetes:a/pay")
        await publish_keys(gw, "a", KEY_A)

        async def run_both() -> dict[str, str]:
            [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
            return {r["function"]["id"]: r["status"] for r in await gw.finished_runs(event_id, count=2)}

        assert await run_both() == {"a/shop-old": "Completed", "a/shop-new": "Failed"}
        payload = sync_payload("app", "http://127.0.0.1:9/api/inngest", "x")
        assert (await sync_with(gw, KEY_A, payload)).status_code == 200
        assert await checkpoint_status(gw, KEY_A) == 400
        assert await checkpoint_status(gw, KEY_A2) == 401
        # Rotation: the new key signs; answers (and syncs) by either key are taken.
        await publish_keys(gw, "a", KEY_A2, previous=KEY_A)
        assert await run_both() == {"a/shop-old": "Completed", "a/shop-new": "Completed"}
        assert signed_by(seen_old[-1], KEY_A2)
        assert not signed_by(seen_old[-1], KEY_A)
        assert (await sync_with(gw, KEY_A, payload)).status_code == 200
        assert (await sync_with(gw, KEY_A2, payload)).status_code == 200
        assert await checkpoint_status(gw, KEY_A) == 400
        assert await checkpoint_status(gw, KEY_A2) == 400
        # The previous key removed: what it signs is refused.
        await publish_keys(gw, "a", KEY_A2)
        assert await run_both() == {"a/shop-old": "Failed", "a/shop-new": "Completed"}
        refused = await sync_with(gw, KEY_A, payload)
        assert refused.status_code == 401
        assert "does not match a signing key" in refused.json()["error"]
        assert await checkpoint_status(gw, KEY_A) == 401
        assert await checkpoint_status(gw, KEY_A2) == 400
        failed = [r for r in (await gw.http.get("/v1/runs")).json()["data"] if r["status"] == "Failed"]
        assert any("namespace a" in (r["error"] or {}).get("message", "") for r in failed)


def inngest_app(gateway_url: str, key: str) -> fastapi.FastAPI:
    """The official Inngest Python SDK, in production mode with ``key`` (it checks every call's signature)."""
    client = inngest.Inngest(
        app_id="shop",
        is_production=True,
        signing_key=key,
        event_key=EVENT_KEY,
        api_base_url=gateway_url,
        event_api_base_url=gateway_url,
    )

    @client.create_function(fn_id="pay", trigger=inngest.TriggerEvent(event="shop/pay"), retries=0)
    async def pay(ctx: inngest.Context) -> str:
        async def charge() -> str:
            return "paid"

        return await ctx.step.run("charge", charge)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, [pay])
    return app


async def put_sync(url: str, key: str) -> httpx.Response:
    """What a deploy does to make an SDK app sync: ``PUT`` its serve URL, signed with its key."""
    async with httpx.AsyncClient() as http:
        return await http.put(url, headers={"x-inngest-signature": signing.sign(b"", key)})


async def functions_of(gw: RunningGateway) -> dict[str, str]:
    return {f["id"]: f["url"] for f in (await gw.http.get("/v1/functions")).json()["data"]}


async def test_an_inngest_app_syncing_with_a_namespaces_key_lands_there_and_cannot_reach_another(
    database_url: str,
) -> None:
    async with (
        production(database_url) as gw,
        serve(inngest_app(gw.url, KEY_A)) as url_a,
        serve(inngest_app(gw.url, KEY_B)) as url_b,
    ):
        await publish_keys(gw, "a", KEY_A)
        await publish_keys(gw, "b", KEY_B)
        synced = await put_sync(f"{url_b}/api/inngest", KEY_B)
        assert synced.status_code == 200, synced.text
        synced = await put_sync(f"{url_a}/api/inngest", KEY_A)
        assert synced.status_code == 200, synced.text
        # The same app and function ids, each in the namespace of its key; nothing in default.
        functions = await functions_of(gw)
        assert functions == {"a/shop-pay": f"{url_a}/api/inngest", "b/shop-pay": f"{url_b}/api/inngest"}
        [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)
        runs = await gw.finished_runs(event_id, count=2)
        assert {r["function"]["id"]: (r["status"], r["output"]) for r in runs} == {
            "a/shop-pay": ("Completed", "paid"),
            "b/shop-pay": ("Completed", "paid"),
        }
        # A's key cannot move B's functions: a sync with it of another URL lands in A, where the take-over
        # rule refuses it (409), and B's function stays where it was.
        intruder = sync_payload("shop", "http://127.0.0.1:9/api/inngest", "pay")
        taken = await sync_with(gw, KEY_A, intruder)
        assert taken.status_code == 409
        assert f"already synced from {url_a}/api/inngest" in taken.json()["error"]
        assert await functions_of(gw) == functions
        # A key no namespace holds syncs nowhere.
        stranger = await sync_with(gw, "signkey-prod-" + "ee" * 32, intruder)
        assert stranger.status_code == 401
        assert await functions_of(gw) == functions


async def test_a_namespace_key_deleted_falls_back_to_the_cluster_key(database_url: str) -> None:
    async with production(database_url) as gw:
        await publish_keys(gw, "a", KEY_A)
        payload = sync_payload("app", "http://127.0.0.1:9/api/inngest", "x")
        assert (await sync_with(gw, KEY_A, payload)).status_code == 200
        assert "a/app-x" in await functions_of(gw)
        removed = await signing_keys.publish(gw.gateway.store.pool, "a", "kubernetes:a/signing", None)
        assert removed == "changed"

        async def gone() -> bool:
            return (await sync_with(gw, KEY_A, payload)).status_code == 401

        await eventually(gone, timeout=10)
        keys = gw.gateway.signing_keys.of("a")
        assert keys is not None
        assert keys.current == KEY
        # The cluster's key syncs into default.
        assert (await sync_with(gw, KEY, payload)).status_code == 200
        assert "app-x" in await functions_of(gw)


async def test_one_secret_per_namespace_and_nothing_in_clear(database_url: str) -> None:
    async with production(database_url, concurrency=0) as gw:
        pool = gw.gateway.store.pool
        sealer = Sealer([SEALING_KEY])
        first = signing_keys.sealed(sealer, KEY_A.encode(), KEY_A2.encode())
        second = signing_keys.sealed(sealer, KEY_B.encode(), None)
        assert await signing_keys.publish(pool, "a", "kubernetes:a/one", first) == "changed"
        assert await signing_keys.publish(pool, "a", "kubernetes:a/one", first) == "same"
        assert await signing_keys.publish(pool, "a", "kubernetes:a/two", second) == "kubernetes:a/one"
        conn = await asyncpg.connect(database_url)
        try:
            stored = "\n".join(str(r[0]) for r in await conn.fetch("SELECT t::text FROM signing_keys t"))
        finally:
            await conn.close()
        assert "kubernetes:a/one" in stored
        for key in (KEY_A, KEY_A2, KEY_B):
            assert signing.strip_prefix(key) not in stored
            assert signing.bearer_token(key) not in stored


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "has no INNGEST_SIGNING_KEY"),
        ({"INNGEST_SIGNING_KEY_FALLBACK": "YQ=="}, "has no INNGEST_SIGNING_KEY"),
        ({"INNGEST_SIGNING_KEY": "not base64!"}, "not base64"),
    ],
)
def test_a_secret_without_a_usable_key_is_refused(data: dict[str, str], reason: str) -> None:
    with pytest.raises(signing_keys.SigningSecretInvalid, match=reason):
        signing_keys.keys_of(data)


async def test_a_checkpoint_records_steps_only_for_runs_of_its_keys_namespace(database_url: str) -> None:
    held: list[dict[str, Any]] = []
    release = asyncio.Event()

    async def call(request: Request) -> Response:
        held.append(json.loads(await request.body()))
        await release.wait()  # the call (and its lease) stays open while the test posts checkpoints
        body = json.dumps("done").encode()
        headers = {"content-type": "application/json", "x-inngest-signature": signing.sign(body, KEY_A)}
        return Response(body, headers=headers)

    service = Starlette(routes=[Route("/api/inngest", call, methods=["POST"])])
    async with production(database_url) as gw, serve(service) as url:
        await publish_keys(gw, "a", KEY_A)
        await publish_keys(gw, "b", KEY_B)
        await gw.gateway.registry.publish([published("a", f"{url}/api/inngest")], replace_source="a")
        await gw.gateway.reload_routes()
        [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key=EVENT_KEY)

        async def called() -> bool:
            return bool(held)

        await eventually(called, timeout=10)
        ctx = held[0]["ctx"]
        step = {"op": "StepRun", "id": "h1", "name": "charge", "data": "paid"}

        async def post(key: str) -> httpx.Response:
            async with httpx.AsyncClient(base_url=gw.url) as http:
                return await http.post(
                    f"/v1/checkpoint/{ctx['run_id']}/async",
                    json={"run_id": ctx["run_id"], "qi_id": ctx["qi_id"], "steps": [step]},
                    headers={"authorization": f"Bearer {signing.bearer_token(key)}"},
                )

        # B's key and the cluster's (a has its own) record nothing for a's run, though they name its call.
        for key in (KEY_B, KEY):
            refused = await post(key)
            assert refused.status_code == 409, refused.text
            assert "another namespace" in refused.json()["error"]
        recorded = await post(KEY_A)
        assert recorded.status_code == 200, recorded.text
        assert recorded.json()["recorded"] == 1
        release.set()
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed"
        assert [(s["name"], s["output"]) for s in run["steps"]] == [("charge", "paid")]


def rows(sealer: Sealer, keys: dict[str, str]) -> list[dict[str, Any]]:
    return [
        {"namespace": ns, "current": sealer.seal(key.encode()), "previous": None} for ns, key in keys.items()
    ]


def bearer(key: str) -> str:
    return f"Bearer {signing.bearer_token(key)}"


def test_a_key_shared_by_two_namespaces_syncs_into_neither() -> None:
    sealer = Sealer([SEALING_KEY])
    keys = SigningKeys(KeyPair(KEY), sealer=sealer)
    keys.load(rows(sealer, {"a": KEY_A, "b": KEY_A, "c": KEY_B}))
    with pytest.raises(Unauthorized, match=r"several namespaces \(a, b\)"):
        keys.namespace_of_bearer(bearer(KEY_A))
    assert keys.namespace_of_bearer(bearer(KEY_B)) == "c"
    assert keys.namespace_of_bearer(bearer(KEY)) == "default"
    # The TypeScript SDK's form (the key's prefix before the digest) is the same token.
    assert keys.namespace_of_bearer(f"Bearer signkey-prod-{signing.bearer_token(KEY_B)}") == "c"
    for wrong in (None, "", "Basic x", "Bearer ", bearer("signkey-prod-" + "ff" * 32)):
        with pytest.raises(Unauthorized):
            keys.namespace_of_bearer(wrong)


def test_keys_that_cannot_be_opened_keep_what_was_opened_before() -> None:
    sealer = Sealer([SEALING_KEY])
    keys = SigningKeys(KeyPair(KEY), sealer=sealer)
    keys.load(rows(sealer, {"a": KEY_A}))
    other = Sealer([new_key()])
    keys.load(rows(other, {"a": KEY_A2, "b": KEY_B}))
    a, b = keys.of("a"), keys.of("b")
    assert a is not None
    assert a.current == KEY_A  # kept, not replaced by what could not be opened
    assert b is not None
    assert b.current == KEY  # never opened: the cluster's key


def test_dev_mode_signs_nothing_and_checks_nothing() -> None:
    keys = SigningKeys(KeyPair(KEY), sealer=None, enabled=False)
    keys.load([])
    assert keys.of("a") is None
    assert keys.namespace_of_bearer(None) == "default"
    assert keys.signer_of(None) is None
