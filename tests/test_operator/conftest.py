"""Fixtures for the operator tests: an API server (kmock), the real kubectl, the operator in-process.

The operator runs with ``--cluster-domain localhost``: a Service ``demo`` in namespace ``shop`` becomes
``http://demo.shop.svc.localhost:<port>/api/inngest``. Names under ``localhost`` mean the loopback interface
(RFC 6761), which systemd's resolver answers but this machine's glibc does not, so ``local_dns`` adds that
one rule to aiohttp's resolution in this process (kmock's ``AiohttpInterceptor``), as cluster DNS would
answer for a Service: the gateway then reaches the demo service that the test serves on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import pytest
from stepline.crd import function_crd, webhook_crd
from stepline_operator import OperatorSettings, run

from tests.support import eventually
from tests.test_operator.kubeapi import KubeAPI

KUBECTL = str(Path(sys.executable).with_name("kubectl"))
FUNCTIONS = kmock.resource("stepline.dev", "v1alpha1", "functions")


@dataclass
class Cluster:
    """The API server, its objects, and kubectl pointed at it."""

    api: KubeAPI
    kubeconfig: Path

    async def kubectl(self, *args: str, stdin: str | None = None, check: bool = True) -> str:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "KUBE_FEATURE_WatchListClient": "false",
            "KUBECTL_KUBERC": "false",
        }
        process = await asyncio.create_subprocess_exec(
            KUBECTL,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, err = await process.communicate(stdin.encode() if stdin is not None else None)
        if check and process.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {err.decode()}")
        return out.decode() if process.returncode == 0 else err.decode()

    async def apply(self, manifest: str) -> str:
        return await self.kubectl("apply", "--validate=false", "-f", "-", stdin=manifest)

    async def function(self, name: str, namespace: str = "shop") -> dict[str, Any] | None:
        """The Function as ``kubectl get -o json`` shows it."""
        out = await self.kubectl("get", "fn", name, "-n", namespace, "-o", "json", check=False)
        return json.loads(out) if out.startswith("{") else None

    def stored(self, name: str, namespace: str = "shop") -> dict[str, Any] | None:
        """The Function as the API server holds it now (cheap enough to poll, unlike a kubectl process)."""
        try:
            stored = self.api.objects[FUNCTIONS, namespace, name]
        except KeyError:
            return None
        return None if stored.deleted else copy.deepcopy(stored.raw)

    async def condition(self, name: str, type_: str = "Ready", namespace: str = "shop") -> dict[str, Any]:
        body = self.stored(name, namespace) or {}
        conditions = (body.get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == type_), {})

    async def wait_ready(
        self,
        name: str,
        status: str = "True",
        timeout: float = 10.0,
        namespace: str = "shop",
        reason: str | None = None,
    ) -> dict[str, Any]:
        """The Ready condition once it has ``status`` (and ``reason``, when given)."""

        async def check() -> dict[str, Any] | None:
            condition = await self.condition(name, namespace=namespace)
            if condition.get("status") != status or reason not in (None, condition.get("reason")):
                return None
            return condition

        found: dict[str, Any] = await eventually(check, timeout=timeout, interval=0.05)
        return found

    async def wait_gone(self, name: str, namespace: str = "shop", timeout: float = 10.0) -> None:
        async def gone() -> bool:
            return self.stored(name, namespace) is None

        await eventually(gone, timeout=timeout, interval=0.05)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The Events posted about the object ``name`` (kopf posts them in the background)."""
        found = []
        for key in list(self.api.objects):
            resource, _, _ = key
            if resource.plural == "events" and not self.api.objects[key].deleted:
                event = self.api.objects[key].raw
                if event.get("involvedObject", {}).get("name") == name:
                    found.append(event)
        return found


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with KubeAPI() as api, kmock.Server(api) as server:
        api.resources.load_bundled()
        api.install_crd(function_crd())
        api.install_crd(webhook_crd())
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f'clusters: [{{name: kmock, cluster: {{server: "{server.url}"}}}}]\n'
            "users: [{name: test, user: {token: test-token}}]\n"
            "contexts: [{name: kmock, context: {cluster: kmock, user: test, namespace: default}}]\n"
            "current-context: kmock\n"
        )
        yield Cluster(api=api, kubeconfig=kubeconfig)


@pytest.fixture
def kubeconfig_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """kopf's kubeconfig login reads KUBECONFIG when it logs in."""
    monkeypatch.setenv("KUBECONFIG", str(cluster.kubeconfig))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    return


@pytest.fixture
async def local_dns() -> AsyncIterator[None]:
    """Names under .localhost resolve to loopback (RFC 6761) for aiohttp in this process."""
    async with kmock.AiohttpInterceptor("127.0.0.1", None, re.compile(r".+\.localhost", re.IGNORECASE)):
        yield


@dataclass
class RunningOperator:
    thread: threading.Thread
    settings: OperatorSettings
    errors: list[BaseException]


@contextlib.asynccontextmanager
async def running_operator(database_url: str, **overrides: Any) -> AsyncIterator[RunningOperator]:
    """The operator as ``stepline operator --cluster-domain localhost`` runs it, in a thread of its own.

    Its own event loop keeps kopf's shutdown (which waits for, then cancels, every task started after it)
    away from the gateway and the demo service that this test runs in its loop.
    """
    settings = OperatorSettings(database_url=database_url, cluster_domain="localhost", **overrides)
    stop, ready = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def main() -> None:
        try:
            asyncio.run(run(settings, stop_flag=stop, ready_flag=ready))
        except BaseException as err:
            errors.append(err)

    thread = threading.Thread(target=main, name="operator", daemon=True)
    thread.start()

    async def started() -> bool:
        return ready.is_set() or not thread.is_alive()

    await eventually(started, timeout=15)
    if errors:
        raise errors[0]
    try:
        yield RunningOperator(thread=thread, settings=settings, errors=errors)
    finally:
        stop.set()
        await asyncio.to_thread(thread.join, 15)
        assert not thread.is_alive(), "the operator did not stop within 15 s"
    if errors:
        raise errors[0]
