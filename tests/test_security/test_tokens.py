"""API tokens with a role and a namespace: a viewer of one namespace lists only its runs and functions,
reads another's run by id as a 403 (not a 404), and may replay, cancel or send events nowhere; an
operator's token of a namespace changes only its own runs; a revoked token ends its dashboard sessions."""

from __future__ import annotations

from typing import Any

import httpx
from stepline_gateway.access import token_hash
from stepline_gateway.routing import Function
from stepline_operator import api_tokens, event_keys
from stepline_operator.event_keys import hashes_of

from tests.support import RunningGateway, eventually, running_gateway
from tests.test_security.test_namespaces import encode

VIEWER_A = "viewer-token-of-team-a"
OPERATOR_A = "operator-token-of-team-a"


def parked(namespace: str) -> Function:
    return Function(
        id=f"{namespace}/shop-pay",
        app_id="shop",
        name="pay",
        url="http://127.0.0.1:9/api/inngest",
        triggers=[{"event": "shop/pay"}],
        retries=0,
        paused=False,
        source=f"kubernetes:{namespace}/pay",
    )


async def publish_token(gw: RunningGateway, name: str, token: str, role: str, namespace: str | None) -> None:
    await api_tokens.publish(
        gw.gateway.store.pool, f"kubernetes:team-a/{name}", namespace, role, [token_hash(token)]
    )
    await gw.gateway.reload_routes()


async def two_namespaces_with_a_run_each(gw: RunningGateway) -> dict[str, str]:
    for namespace in ("team-a", "team-b"):
        await gw.gateway.registry.publish([parked(namespace)], replace_source=f"kubernetes:{namespace}/pay")
    await gw.gateway.reload_routes()
    answer = await gw.http.post("/v1/events", json={"name": "shop/pay", "data": {}})
    assert answer.status_code == 200, answer.text

    async def both() -> bool:
        return len((await gw.http.get("/v1/runs")).json()["data"]) == 2

    await eventually(both, timeout=10)
    runs = (await gw.http.get("/v1/runs")).json()["data"]
    return {run["function"]["id"].split("/")[0]: run["id"] for run in runs}


def as_holder(gw: RunningGateway, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gw.url, timeout=10, headers={"authorization": f"Bearer {token}"})


async def test_a_viewer_of_a_namespace_sees_only_it_and_changes_nothing(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        run_of = await two_namespaces_with_a_run_each(gw)
        assert set(run_of) == {"team-a", "team-b"}
        await publish_token(gw, "viewer", VIEWER_A, "viewer", "team-a")
        async with as_holder(gw, VIEWER_A) as viewer:
            listed = (await viewer.get("/v1/runs")).json()["data"]
            assert [run["id"] for run in listed] == [run_of["team-a"]]
            functions = (await viewer.get("/v1/functions")).json()["data"]
            assert [f["id"] for f in functions] == ["team-a/shop-pay"]
            assert (await viewer.get(f"/v1/runs/{run_of['team-a']}")).status_code == 200
            me = (await viewer.get("/v1/whoami")).json()
            assert me == {
                "role": "viewer",
                "namespace": "team-a",
                "may_change": False,
                "namespaces": ["team-a"],
            }

            other = await viewer.get(f"/v1/runs/{run_of['team-b']}")
            assert other.status_code == 403
            assert "namespace team-b" in other.json()["error"]
            assert (await viewer.get("/v1/runs?function=team-b/shop-pay")).status_code == 403
            assert (await viewer.get("/v1/runs?namespace=team-b")).status_code == 403
            assert (await viewer.get("/v1/queue?namespace=team-b")).status_code == 403
            # The one event was sent to every namespace (by the cluster token): not in team-a's log.
            assert (await viewer.get("/v1/events")).json()["data"] == []
            assert (await viewer.get("/v1/events?namespace=team-b")).status_code == 403
            assert (await viewer.get("/v1/webhooks")).json()["data"] == []
            assert (await viewer.get("/v1/webhooks/deliveries")).status_code == 200
            assert (await viewer.get("/v1/webhooks/deliveries?webhook=team-b/hook")).status_code == 403

            for action in ("replay", "cancel"):
                refused = await viewer.post(f"/v1/runs/{run_of['team-a']}/{action}")
                assert refused.status_code == 403, refused.text
                assert "viewer" in refused.json()["error"]
            sent = await viewer.post("/v1/events", json={"name": "shop/pay", "data": {}})
            assert sent.status_code == 403
        # Nothing the viewer asked for changed anything: still one run in each namespace, still queued.
        runs = (await gw.http.get("/v1/runs")).json()["data"]
        assert sorted(run["status"] for run in runs) == ["Queued", "Queued"]


async def test_an_operator_of_a_namespace_changes_only_its_runs(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        run_of = await two_namespaces_with_a_run_each(gw)
        await publish_token(gw, "operator", OPERATOR_A, "operator", "team-a")
        async with as_holder(gw, OPERATOR_A) as operator:
            assert (await operator.post(f"/v1/runs/{run_of['team-b']}/cancel")).status_code == 403
            assert (await operator.post(f"/v1/runs/{run_of['team-a']}/cancel")).status_code == 200
            # Its test events reach only its namespace, as its event keys would.
            sent = await operator.post("/v1/events", json={"name": "shop/pay", "data": {}})
            assert sent.status_code == 200, sent.text
            assert sent.json()["runs_started"] == 1
        runs: list[dict[str, Any]] = (await gw.http.get("/v1/runs")).json()["data"]
        by_namespace = sorted((r["function"]["id"], r["status"]) for r in runs)
        assert by_namespace == [
            ("team-a/shop-pay", "Cancelled"),
            ("team-a/shop-pay", "Queued"),
            ("team-b/shop-pay", "Queued"),
        ]


def synced(namespace: str) -> Function:
    """The function an SDK app ``shop`` synced into ``namespace``."""
    prefix = "" if namespace == "default" else f"{namespace}/"
    return Function(
        id=f"{prefix}shop-pay",
        app_id="shop",
        name="pay",
        url="http://127.0.0.1:9/api/inngest",
        triggers=[{"event": "shop/pay"}],
        retries=0,
        paused=False,
        source="sdk",
    )


async def test_removing_an_app_removes_only_its_namespaces_functions(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        functions = [synced(namespace) for namespace in ("default", "team-a", "team-b")]
        await gw.gateway.registry.publish(functions, replace_app="shop", replace_source="sdk")
        await gw.gateway.reload_routes()

        async def listed() -> list[str]:
            return sorted(f["id"] for f in (await gw.http.get("/v1/functions")).json()["data"])

        await publish_token(gw, "viewer", VIEWER_A, "viewer", "team-a")
        await publish_token(gw, "operator", OPERATOR_A, "operator", "team-a")
        async with as_holder(gw, VIEWER_A) as viewer:
            assert (await viewer.delete("/v1/apps/shop")).status_code == 403
        async with as_holder(gw, OPERATOR_A) as operator:
            other = await operator.delete("/v1/apps/shop", params={"namespace": "team-b"})
            assert other.status_code == 403
            assert "namespace team-b" in other.json()["error"]
            assert await listed() == ["shop-pay", "team-a/shop-pay", "team-b/shop-pay"]
            # Without a namespace: the token's own; the same app id elsewhere is left alone.
            removed = await operator.delete("/v1/apps/shop")
            assert removed.status_code == 200, removed.text
            assert removed.json() == {"app_id": "shop", "namespace": "team-a", "removed": 1}
            assert await listed() == ["shop-pay", "team-b/shop-pay"]
            assert (await operator.delete("/v1/apps/shop")).status_code == 404
        # A cluster token names the namespace, or removes the app of default.
        removed = await gw.http.delete("/v1/apps/shop", params={"namespace": "team-b"})
        assert removed.json() == {"app_id": "shop", "namespace": "team-b", "removed": 1}
        assert await listed() == ["shop-pay"]
        removed = await gw.http.delete("/v1/apps/shop")
        assert removed.json() == {"app_id": "shop", "namespace": "default", "removed": 1}
        assert await listed() == []


async def test_the_event_log_of_a_namespace_holds_only_the_events_sent_into_it(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, event_keys=["cluster-key"], concurrency=0) as gw:
        for namespace in ("team-a", "team-b"):
            await gw.gateway.registry.publish(
                [parked(namespace)], replace_source=f"kubernetes:{namespace}/pay"
            )
            await event_keys.publish(
                gw.gateway.store.pool,
                namespace,
                "keys",
                hashes_of({"k": encode(f"key-of-{namespace}".encode())}),
            )
        await publish_token(gw, "viewer", VIEWER_A, "viewer", "team-a")
        await publish_token(gw, "operator", OPERATOR_A, "operator", "team-a")

        async def sent(key: str, name: str) -> str:
            answer = await gw.http.post(f"/e/{key}", json={"name": name, "data": {}})
            assert answer.status_code == 200, answer.text
            [event_id] = answer.json()["ids"]
            return str(event_id)

        of_a = await sent("key-of-team-a", "shop/pay")
        of_b = await sent("key-of-team-b", "shop/pay")
        of_all = await sent("cluster-key", "shop/pay")
        async with as_holder(gw, OPERATOR_A) as operator:
            test_event = await operator.post("/v1/events", json={"name": "shop/test", "data": {}})
            [of_a_token] = test_event.json()["ids"]
        async with as_holder(gw, VIEWER_A) as viewer:
            listed = (await viewer.get("/v1/events")).json()["data"]
            assert [e["id"] for e in listed] == [of_a_token, of_a]
            assert [e["namespaces"] for e in listed] == [["team-a"], ["team-a"]]
            [run] = listed[1]["runs"]
            assert run["function_id"] == "team-a/shop-pay"
            named = (await viewer.get("/v1/events", params={"name": "shop/pay"})).json()["data"]
            assert [e["id"] for e in named] == [of_a]
            assert (await viewer.get(f"/v1/events/{of_a}")).status_code == 200
            for other, said in ((of_b, "namespace team-b"), (of_all, "every namespace")):
                refused = await viewer.get(f"/v1/events/{other}")
                assert refused.status_code == 403, refused.text
                assert said in refused.json()["error"]
        # A cluster token reads every event, or one namespace's.
        every = (await gw.http.get("/v1/events")).json()["data"]
        assert {e["id"] for e in every} == {of_a, of_b, of_all, of_a_token}
        assert (await gw.http.get(f"/v1/events/{of_all}")).json()["namespaces"] is None
        of_b_only = (await gw.http.get("/v1/events", params={"namespace": "team-b"})).json()["data"]
        assert [e["id"] for e in of_b_only] == [of_b]


async def test_a_revoked_token_is_refused_and_its_sessions_end(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        await publish_token(gw, "viewer", VIEWER_A, "viewer", "team-a")
        async with httpx.AsyncClient(base_url=gw.url, timeout=10) as browser:
            signed_in = await browser.post("/login", data={"token": VIEWER_A})
            assert signed_in.status_code == 303
            assert (await browser.get("/v1/whoami")).json()["role"] == "viewer"
            # The Secret's grant changed (viewer to operator): the session made under the old one ends.
            await api_tokens.publish(
                gw.gateway.store.pool,
                "kubernetes:team-a/viewer",
                "team-a",
                "operator",
                [token_hash(VIEWER_A)],
            )
            await gw.gateway.reload_routes()
            assert (await browser.get("/v1/whoami")).status_code == 401
            signed_in = await browser.post("/login", data={"token": VIEWER_A})
            assert (await browser.get("/v1/whoami")).json()["role"] == "operator"
            await api_tokens.publish(
                gw.gateway.store.pool, "kubernetes:team-a/viewer", "team-a", "viewer", []
            )
            await gw.gateway.reload_routes()
            assert (await browser.get("/v1/whoami")).status_code == 401
            async with as_holder(gw, VIEWER_A) as viewer:
                assert (await viewer.get("/v1/runs")).status_code == 401
