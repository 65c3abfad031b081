"""Flow control at claim time declared in a ``Function`` manifest (the CRD's spelling): two concurrency
limits at once (one per account, one for the whole function) and a start timeout, enforced as declared."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from stepline_gateway.clock import ManualClock
from stepline_gateway.registry import MANIFEST_SOURCE, load_manifests

from tests.services import OverlapService
from tests.support import running_gateway
from tests.test_flow.support import all_ended

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: sync-accounts, namespace: crm}}
spec:
  app: crm
  endpoint: {{url: "{url}"}}
  triggers:
    - event: crm/sync
  concurrency:
    - limit: 1
      key: event.data.account
    - limit: 2
  timeouts:
    start: 1h
"""


async def test_two_limits_from_a_manifest_hold_together(database_url: str, tmp_path: Path) -> None:
    service = OverlapService(hold_s=0.3, key="account")
    async with service.serving() as url, running_gateway(database_url, clock=ManualClock()) as gw:
        path = tmp_path / "fn.yaml"
        path.write_text(MANIFEST.format(url=url))
        [function] = load_manifests([path])
        assert function.flow is not None
        assert len(function.flow.concurrency) == 2
        await gw.gateway.registry.publish(
            [dataclasses.replace(function, source=MANIFEST_SOURCE)], replace_source=MANIFEST_SOURCE
        )
        await gw.gateway.reload_routes()
        await gw.send(
            *({"name": "crm/sync", "data": {"n": n, "account": f"acct-{n % 4}"}} for n in range(16))
        )
        runs = await all_ended(gw, "crm-sync-accounts", 16, timeout=60)
        assert {run["status"] for run in runs} == {"Completed"}
        # One call per account at a time, and two in all.
        assert {service.most[f"acct-{k}"] for k in range(4)} == {1}
        assert service.most[""] == 2
        assert service.calls == 16
