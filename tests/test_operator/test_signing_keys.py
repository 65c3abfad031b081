"""A namespace's signing keys from a labelled Secret, with kmock and real kubectl: applied, an SDK app syncs
with the key into its namespace; rotated, the previous key is taken until it is dropped; deleted, the
namespace falls back to the cluster's key within seconds. Postgres holds the keys sealed only."""

from __future__ import annotations

import asyncpg
import pytest
from stepline import signing

from tests.support import RunningGateway, eventually, running_gateway
from tests.test_operator.conftest import Cluster, running_operator
from tests.test_security.test_holes import KEY, sync_payload
from tests.test_security.test_signing_keys import KEY_A, KEY_A2, SEALING_KEY, sync_with

pytestmark = pytest.mark.usefixtures("kubeconfig_env")


def secret(current: str, previous: str | None = None, *, labelled: bool = True) -> str:
    labels = '  labels: {stepline.dev/signing-key: "true"}\n' if labelled else ""
    fallback = f"  INNGEST_SIGNING_KEY_FALLBACK: {previous}\n" if previous else ""
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: inngest\n  namespace: shop\n{labels}"
        f"stringData:\n  INNGEST_SIGNING_KEY: {current}\n{fallback}"
    )


async def sync_status(gw: RunningGateway, key: str) -> int:
    payload = sync_payload("app", "http://127.0.0.1:9/api/inngest", "x")
    return (await sync_with(gw, key, payload)).status_code


async def test_a_labelled_secret_gives_its_namespace_signing_keys_until_it_is_deleted(
    database_url: str, cluster: Cluster
) -> None:
    async with (
        running_gateway(
            database_url, dev=False, signing_key=KEY, secrets_key=SEALING_KEY, concurrency=0
        ) as gw,
        running_operator(database_url, secrets_key=SEALING_KEY),
    ):

        def until(key: str, status: int) -> object:
            async def check() -> bool:
                return await sync_status(gw, key) == status

            return check

        await cluster.apply(secret(KEY_A))
        await eventually(until(KEY_A, 200), timeout=10)
        functions = {f["id"] for f in (await gw.http.get("/v1/functions")).json()["data"]}
        assert functions == {"shop/app-x"}
        conn = await asyncpg.connect(database_url)
        try:
            [row] = await conn.fetch("SELECT t::text AS row FROM signing_keys t")
        finally:
            await conn.close()
        assert "kubernetes:shop/inngest" in row["row"]
        assert signing.strip_prefix(KEY_A) not in row["row"]

        # Rotation: the new key and the previous one both sync; the previous dropped, it is refused.
        await cluster.apply(secret(KEY_A2, KEY_A))
        await eventually(until(KEY_A2, 200), timeout=10)
        assert await sync_status(gw, KEY_A) == 200
        await cluster.apply(secret(KEY_A2))
        await eventually(until(KEY_A, 401), timeout=10)
        assert await sync_status(gw, KEY_A2) == 200

        # The label removed, then the Secret deleted: the namespace's keys go, the cluster's key stays.
        await cluster.apply(secret(KEY_A2, labelled=False))
        await eventually(until(KEY_A2, 401), timeout=10)
        await cluster.apply(secret(KEY_A2))
        await eventually(until(KEY_A2, 200), timeout=10)
        await cluster.kubectl("delete", "secret", "inngest", "-n", "shop", "--wait=false")
        await eventually(until(KEY_A2, 401), timeout=10)
        assert await sync_status(gw, KEY) == 200
