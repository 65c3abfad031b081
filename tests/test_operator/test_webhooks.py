"""The operator publishes Webhooks end to end: the real kubectl against the API server, kopf in-process, its
Secrets read with the ``kubernetes`` client, sealed into Postgres, and a real gateway checking signatures.

The operator re-reads each Webhook's Secret every ``secret_refresh_s``: these tests set it short, so that a
Secret created or changed later is picked up within the test (they wait for it, never sleep for it).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import kmock
import pytest
from stepline_store.queries import lock_webhooks
from stepline_store.sealing import new_key

from tests.support import RunningGateway, eventually, running_gateway
from tests.test_operator.conftest import Cluster, running_operator
from tests.test_operator.test_operator import table
from tests.webhook_senders import github_headers

pytestmark = pytest.mark.usefixtures("kubeconfig_env")

WEBHOOKS = kmock.resource("stepline.dev", "v1alpha1", "webhooks")
REFRESH_S = 0.3


def secret(value: str, *, name: str = "github-webhook", key: str = "secret") -> str:
    return (
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: shop}}\n"
        f"stringData: {{{key}: {json.dumps(value)}}}\n"
    )


def github_webhook(*, transform: str | None = None, previous: bool = False) -> str:
    lines = [
        "apiVersion: stepline.dev/v1alpha1",
        "kind: Webhook",
        "metadata: {name: github, namespace: shop}",
        "spec:",
        "  verify:",
        "    github:",
        "      secretRef: {name: github-webhook, key: secret}",
    ]
    if previous:
        lines.append("      previousSecretRef: {name: github-webhook, key: previous}")
    if transform is not None:
        lines.append(f"  transform: {json.dumps(transform)}")
    return "\n".join(lines) + "\n"


def stored(cluster: Cluster, name: str = "github") -> dict[str, Any] | None:
    try:
        found = cluster.api.objects[WEBHOOKS, "shop", name]
    except KeyError:
        return None
    return None if found.deleted else copy.deepcopy(found.raw)


def condition(cluster: Cluster, type_: str, name: str = "github") -> dict[str, Any]:
    body = stored(cluster, name) or {}
    found = [c for c in (body.get("status") or {}).get("conditions") or [] if c["type"] == type_]
    return found[0] if found else {}


async def wait_condition(
    cluster: Cluster, type_: str, status: str, reason: str | None = None
) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        found = condition(cluster, type_)
        if found.get("status") == status and (reason is None or found.get("reason") == reason):
            return found
        return None

    result: dict[str, Any] = await eventually(check, timeout=15)
    return result


async def answers(gw: RunningGateway, secret_value: str, status: int) -> None:
    """Wait until a request signed with ``secret_value`` gets ``status`` from the gateway."""

    async def check() -> bool:
        body = b'{"zen": "Design for failure."}'
        response = await gw.http.post(
            "/webhooks/shop/github", content=body, headers=github_headers(secret_value, body)
        )
        return response.status_code == status

    await eventually(check, timeout=15)


async def test_a_webhook_with_its_secret_is_ready_and_its_requests_verified(
    database_url: str, cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    key = new_key()
    async with (
        running_gateway(database_url, concurrency=0, secrets_key=key) as gw,
        running_operator(database_url, secrets_key=key, secret_refresh_s=REFRESH_S),
    ):
        await cluster.apply(secret("first-secret-value"))
        await cluster.apply(
            github_webhook(transform='{"name": "github/" + headers["x-github-event"], "data": body}')
        )
        ready = await wait_condition(cluster, "Ready", "True")
        assert ready["reason"] == "Published"
        body = stored(cluster)
        assert body is not None
        assert body["status"]["url"] == "/webhooks/shop/github"
        assert body["status"]["verify"] == "github"
        assert body["status"]["observedGeneration"] == 1
        resolved = condition(cluster, "SecretResolved")
        assert (resolved["status"], resolved["reason"]) == ("True", "SecretRead")
        assert body["metadata"]["finalizers"] == ["stepline.dev/finalizer"]

        rows = table(await cluster.kubectl("get", "wh", "-n", "shop"))
        assert list(rows[0]) == ["NAME", "URL", "VERIFY", "READY", "AGE"]
        assert (rows[0]["URL"], rows[0]["VERIFY"], rows[0]["READY"]) == (
            "/webhooks/shop/github",
            "github",
            "True",
        )

        await answers(gw, "first-secret-value", 200)
        await answers(gw, "not-the-secret", 401)
        [delivery, *_] = (await gw.http.get("/v1/webhooks/deliveries")).json()["data"]
        assert delivery["accepted"] is False

        async def published() -> list[dict[str, Any]]:
            return [e for e in cluster.events("github") if e["reason"] == "Published"]

        [event, *_] = await eventually(published)
        assert event["type"] == "Normal"

        # Nothing of the secret in the Webhook's status, its Events, the gateway's answers or any log.
        shown = json.dumps(
            [stored(cluster), cluster.events("github"), (await gw.http.get("/v1/webhooks")).json()]
        )
        shown += await cluster.kubectl("get", "wh", "github", "-n", "shop", "-o", "yaml")
        assert "first-secret-value" not in shown + caplog.text


async def test_a_missing_secret_is_not_ready_until_it_appears(database_url: str, cluster: Cluster) -> None:
    key = new_key()
    async with (
        running_gateway(database_url, concurrency=0, secrets_key=key) as gw,
        running_operator(database_url, secrets_key=key, secret_refresh_s=REFRESH_S),
    ):
        await cluster.apply(github_webhook())
        ready = await wait_condition(cluster, "Ready", "False")
        assert ready["reason"] == "SecretNotFound"
        assert "Secret github-webhook not found in namespace shop" in ready["message"]
        resolved = condition(cluster, "SecretResolved")
        assert (resolved["status"], resolved["reason"]) == ("False", "SecretNotFound")

        async def warned() -> bool:  # kopf posts Events in the background
            return any(
                e["reason"] == "SecretNotFound" and e["type"] == "Warning" for e in cluster.events("github")
            )

        await eventually(warned)
        body = stored(cluster)
        assert body is not None
        assert body["status"]["url"] == "/webhooks/shop/github"
        response = await gw.http.post(
            "/webhooks/shop/github", content=b"{}", headers=github_headers("x", b"{}")
        )
        assert response.status_code == 404

        # A Secret without the key is named for what it lacks; with the key, the timer publishes it.
        await cluster.apply(secret("value", key="other"))
        ready = await wait_condition(cluster, "Ready", "False", reason="SecretKeyNotFound")
        assert "has no key 'secret' (it has other)" in ready["message"]
        await cluster.apply(secret("now-it-exists"))
        await wait_condition(cluster, "Ready", "True")
        await answers(gw, "now-it-exists", 200)


async def test_a_changed_secret_verifies_and_the_old_one_stops(database_url: str, cluster: Cluster) -> None:
    key = new_key()
    async with (
        running_gateway(database_url, concurrency=0, secrets_key=key) as gw,
        running_operator(database_url, secrets_key=key, secret_refresh_s=REFRESH_S),
    ):
        await cluster.apply(secret("before-rotation"))
        await cluster.apply(github_webhook())
        await wait_condition(cluster, "Ready", "True")
        await answers(gw, "before-rotation", 200)
        await cluster.apply(secret("after-rotation"))
        await answers(gw, "after-rotation", 200)
        await answers(gw, "before-rotation", 401)


async def test_rotation_with_a_previous_secret_accepts_both_until_it_is_removed(
    database_url: str, cluster: Cluster
) -> None:
    key = new_key()
    async with (
        running_gateway(database_url, concurrency=0, secrets_key=key) as gw,
        running_operator(database_url, secrets_key=key, secret_refresh_s=REFRESH_S),
    ):
        await cluster.apply(
            "apiVersion: v1\nkind: Secret\nmetadata: {name: github-webhook, namespace: shop}\n"
            "stringData: {secret: new-one, previous: old-one}\n"
        )
        await cluster.apply(github_webhook(previous=True))
        ready = await wait_condition(cluster, "Ready", "True")
        assert "the previous secret is accepted too" in ready["message"]
        await answers(gw, "new-one", 200)
        await answers(gw, "old-one", 200)
        await cluster.apply(github_webhook())
        await answers(gw, "old-one", 401)
        await answers(gw, "new-one", 200)


async def test_a_transform_that_is_not_cel_is_not_ready(database_url: str, cluster: Cluster) -> None:
    key = new_key()
    async with running_operator(database_url, secrets_key=key, secret_refresh_s=REFRESH_S):
        await cluster.apply(secret("s"))
        await cluster.apply(github_webhook(transform='{"name": '))
        ready = await wait_condition(cluster, "Ready", "False")
        assert ready["reason"] == "InvalidTransform"
        assert "spec.transform" in ready["message"]
        assert "is not valid CEL" in ready["message"]


async def test_without_a_secrets_key_the_operator_says_so(database_url: str, cluster: Cluster) -> None:
    async with running_operator(database_url, secret_refresh_s=REFRESH_S):
        await cluster.apply(secret("s"))
        await cluster.apply(github_webhook())
        ready = await wait_condition(cluster, "Ready", "False")
        assert ready["reason"] == "SecretsKeyMissing"
        assert "STEPLINE_SECRETS_KEY" in ready["message"]


@contextlib.asynccontextmanager
async def published(database_url: str, cluster: Cluster, secret_value: str) -> AsyncIterator[RunningGateway]:
    """A gateway and the operator, with the Webhook ``github`` published and answering ``secret_value``."""
    key = new_key()
    async with (
        running_gateway(database_url, concurrency=0, secrets_key=key) as gw,
        running_operator(database_url, secrets_key=key, secret_refresh_s=REFRESH_S),
    ):
        await cluster.apply(secret(secret_value))
        await cluster.apply(github_webhook())
        await answers(gw, secret_value, 200)
        yield gw


async def deleted(cluster: Cluster, *, timeout: float) -> None:
    """The Webhook ``github`` is gone from the API server (its finalizer released)."""

    async def gone() -> bool:
        return stored(cluster) is None

    await eventually(gone, timeout=timeout)


async def test_deleting_the_webhook_makes_its_path_answer_404(database_url: str, cluster: Cluster) -> None:
    async with published(database_url, cluster, "to-be-deleted") as gw:
        await cluster.kubectl("delete", "wh", "github", "-n", "shop", "--wait=false")
        await deleted(cluster, timeout=15)
        await answers(gw, "to-be-deleted", 404)
        response = await gw.http.get("/v1/webhooks")
        assert response.json()["data"] == []

        async def unpublished() -> bool:
            return any(e["reason"] == "Unpublished" for e in cluster.events("github"))

        await eventually(unpublished)


async def test_a_deletion_during_a_slow_secret_refresh_waits_for_that_tick_alone(
    database_url: str, cluster: Cluster
) -> None:
    """A deletion stops the Webhook's timer first; a tick caught in a slow write is waited for, and checked
    every second once it ends (kopf's default re-checks every 60 s, holding the finalizer that long)."""
    async with published(database_url, cluster, "slow-db") as gw:
        conn = await asyncpg.connect(database_url)
        try:

            async def tick_waits() -> bool:
                # The timer's next publish waits for the publishers' lock that this test holds.
                waiting = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory' AND datname = current_database()"
                )
                return bool(waiting)

            async with conn.transaction():
                await lock_webhooks(conn)
                await eventually(tick_waits)
                await cluster.kubectl("delete", "wh", "github", "-n", "shop", "--wait=false")
                await asyncio.sleep(2.0)  # the database stays slow for two seconds more
        finally:
            await conn.close()
        await deleted(cluster, timeout=20)
        await answers(gw, "slow-db", 404)
