"""Event keys of namespaces from labelled Secrets, with kmock and real kubectl: applied, the key is accepted
and reaches only its namespace; deleted (or unlabelled), it is refused within seconds."""

from __future__ import annotations

import pytest
from stepline_gateway.routing import Function

from tests.support import RunningGateway, eventually, running_gateway
from tests.test_operator.conftest import Cluster, running_operator

pytestmark = pytest.mark.usefixtures("kubeconfig_env")

CLUSTER_KEY = "cluster-key"


def secret(name: str, namespace: str, key: str, *, labelled: bool = True) -> str:
    labels = '  labels: {stepline.dev/event-key: "true"}\n' if labelled else ""
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n{labels}"
        f"stringData:\n  checkout: {key}\n"
    )


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


async def status_of(gw: RunningGateway, key: str) -> int:
    answer = await gw.http.post(f"/e/{key}", json={"name": "shop/none", "data": {}})
    return answer.status_code


async def test_a_labelled_secret_gives_its_namespace_a_key_until_it_is_deleted(
    database_url: str, cluster: Cluster
) -> None:
    async with (
        running_gateway(database_url, dev=False, event_keys=[CLUSTER_KEY], concurrency=0) as gw,
        running_operator(database_url),
    ):
        for namespace in ("shop", "other"):
            await gw.gateway.registry.publish(
                [parked(namespace)], replace_source=f"kubernetes:{namespace}/pay"
            )
        await gw.gateway.reload_routes()
        await cluster.apply(secret("shop-keys", "shop", "key-of-shop"))
        await cluster.apply(secret("plain", "other", "not-an-event-key", labelled=False))

        async def accepted() -> bool:
            return await status_of(gw, "key-of-shop") == 200

        await eventually(accepted, timeout=10)
        [event_id] = await gw.send({"name": "shop/pay", "data": {}}, key="key-of-shop")
        assert [run["function_id"] for run in await gw.runs_of(event_id)] == ["shop/shop-pay"]
        assert await status_of(gw, "not-an-event-key") == 401

        # The label removed: the key goes; put back, it comes back; the Secret deleted: it goes for good.
        await cluster.apply(secret("shop-keys", "shop", "key-of-shop", labelled=False))

        async def refused() -> bool:
            return await status_of(gw, "key-of-shop") == 401

        await eventually(refused, timeout=10)
        await cluster.apply(secret("shop-keys", "shop", "key-of-shop"))
        await eventually(accepted, timeout=10)
        await cluster.kubectl("delete", "secret", "shop-keys", "-n", "shop", "--wait=false")
        await eventually(refused, timeout=10)
        assert await status_of(gw, CLUSTER_KEY) == 200
