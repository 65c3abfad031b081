"""API tokens from labelled Secrets, with kmock and real kubectl: applied, the token signs in with the role
and the namespace its annotations give; a cluster scope outside the operator's namespace is refused; the
Secret deleted, the token is refused within seconds."""

from __future__ import annotations

import httpx
import pytest

from tests.support import RunningGateway, eventually, running_gateway
from tests.test_operator.conftest import Cluster, running_operator

pytestmark = pytest.mark.usefixtures("kubeconfig_env")


def secret(name: str, namespace: str, token: str, *, role: str = "", scope: str = "") -> str:
    annotations = {k: v for k, v in (("api-token-role", role), ("api-token-scope", scope)) if v}
    written = ", ".join(f"stepline.dev/{k}: {v}" for k, v in annotations.items())
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n"
        f'  labels: {{stepline.dev/api-token: "true"}}\n  annotations: {{{written}}}\n'
        f"stringData:\n  token: {token}\n"
    )


async def whoami(gw: RunningGateway, token: str) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        answer = await http.get("/v1/whoami", headers={"authorization": f"Bearer {token}"})
        return answer.status_code, answer.json()


async def test_a_token_secret_grants_its_role_in_its_namespace_until_deleted(
    database_url: str, cluster: Cluster
) -> None:
    async with (
        running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw,
        running_operator(database_url),
    ):
        await cluster.apply(secret("ops", "shop", "token-of-shop-ops", role="operator"))
        await cluster.apply(secret("look", "shop", "token-of-shop-viewer"))
        await cluster.apply(secret("wide", "shop", "token-wanting-the-cluster", scope="cluster"))

        async def granted() -> bool:
            return (await whoami(gw, "token-of-shop-ops"))[0] == 200 and (
                await whoami(gw, "token-of-shop-viewer")
            )[0] == 200

        await eventually(granted, timeout=10)
        assert (await whoami(gw, "token-of-shop-ops"))[1]["role"] == "operator"
        assert (await whoami(gw, "token-of-shop-ops"))[1]["namespace"] == "shop"
        assert (await whoami(gw, "token-of-shop-viewer"))[1]["role"] == "viewer"
        # A team's Secret cannot mint itself a cluster token: nothing is published for it.
        assert (await whoami(gw, "token-wanting-the-cluster"))[0] == 401
        rows = await gw.gateway.store.pool.fetch("SELECT sha256, namespace, role FROM api_tokens")
        assert len(rows) == 2
        assert all("token" not in row["sha256"] for row in rows)

        await cluster.kubectl("delete", "secret", "ops", "-n", "shop", "--wait=false")

        async def revoked() -> bool:
            return (await whoami(gw, "token-of-shop-ops"))[0] == 401

        await eventually(revoked, timeout=10)
        assert (await whoami(gw, "token-of-shop-viewer"))[0] == 200
