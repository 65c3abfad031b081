"""A Function manifest's flow control and retry policy reach the routed function, as the models read them.

The routing table hands the enforcement code ``route.flow`` (None without flow control) and
``route.retry_policy``; a bad CEL key is refused at load naming the field; ``to_json`` (``GET
/v1/functions``) shows the settings as the CRD spells them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from stepline.flow import FlowControl, RetryPolicy
from stepline_gateway.errors import BadRequest
from stepline_gateway.registry import load_manifests
from stepline_gateway.routing import RoutingTable

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: sync-accounts, namespace: shop}
spec:
  app: shop
  endpoint: {url: "http://127.0.0.1:8000/api/inngest"}
  triggers: [{event: account/changed}]
  concurrency:
    - {limit: 2, key: event.data.account}
    - {limit: 10, key: '"crm"', scope: account}
  throttle: {limit: 5, period: 1m, burst: 2}
  rateLimit: {limit: 100, period: 1h, key: event.data.account}
  debounce: {period: 10s, timeout: 1m}
  priority: {run: "event.data.vip ? 120 : 0"}
  idempotency: event.data.change_id
  singleton: {mode: skip, key: event.data.account}
  timeouts: {start: 5m, finish: 1h}
  retryPolicy: {backoff: Constant, initialDelay: 5s, jitterPercent: 0, timeout: 30s}
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: plain, namespace: shop}
spec:
  app: shop
  endpoint: {url: "http://127.0.0.1:8000/api/inngest"}
  triggers: [{event: account/changed}]
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: batched, namespace: shop}
spec:
  app: shop
  endpoint: {url: "http://127.0.0.1:8000/api/inngest"}
  triggers: [{event: account/changed}]
  batchEvents: {maxSize: 10, timeout: 5s, key: event.data.account, if: "event.data.small"}
"""


def load(tmp_path: Path, text: str) -> RoutingTable:
    path = tmp_path / "functions.yaml"
    path.write_text(text)
    return RoutingTable(load_manifests([path]))


def test_the_routed_function_carries_its_flow_control_and_retry_policy(tmp_path: Path) -> None:
    table = load(tmp_path, MANIFEST)
    routed = {f.id: f for f in table.match({"name": "account/changed", "data": {}})}
    assert set(routed) == {"shop-sync-accounts", "shop-plain", "shop-batched"}
    limited = routed["shop-sync-accounts"]
    assert isinstance(limited.flow, FlowControl)
    assert [(c.limit, c.key, c.scope) for c in limited.flow.concurrency] == [
        (2, "event.data.account", "fn"),
        (10, '"crm"', "account"),
    ]
    assert limited.flow.throttle is not None
    assert limited.flow.throttle.burst == 2
    assert limited.flow.singleton is not None
    assert limited.flow.singleton.mode == "skip"
    assert limited.flow.batch_events is None
    assert limited.retry_policy == RetryPolicy(
        backoff="Constant", initial_delay="5s", jitter_percent=0, timeout="30s"
    )
    assert routed["shop-plain"].flow is None
    assert routed["shop-plain"].retry_policy is None
    batched = routed["shop-batched"].flow
    assert batched is not None
    assert batched.batch_events is not None
    assert (batched.batch_events.max_size, batched.batch_events.if_) == (10, "event.data.small")

    shown = limited.to_json()
    assert shown["flow"] == {
        "concurrency": [
            {"limit": 2, "key": "event.data.account"},
            {"limit": 10, "key": '"crm"', "scope": "account"},
        ],
        "throttle": {"limit": 5, "period": "1m", "burst": 2},
        "rateLimit": {"limit": 100, "period": "1h", "key": "event.data.account"},
        "debounce": {"period": "10s", "timeout": "1m"},
        "priority": {"run": "event.data.vip ? 120 : 0"},
        "idempotency": "event.data.change_id",
        "singleton": {"key": "event.data.account", "mode": "skip"},
        "timeouts": {"start": "5m", "finish": "1h"},
    }
    assert shown["retry_policy"] == {
        "backoff": "Constant",
        "initialDelay": "5s",
        "maxDelay": "1h",
        "jitterPercent": 0,
        "timeout": "30s",
    }
    assert routed["shop-plain"].to_json()["flow"] is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("key: event.data.account}", "key: 'event.data.'}"), "spec.concurrency[0].key"),
        (('run: "event.data.vip ? 120 : 0"', 'run: "(("'), "spec.priority.run"),
        (("limit: 5, period: 1m", "limit: 5, period: 10d"), "throttle.period must be at most 7d"),
        (("mode: skip", "mode: replace"), "spec.singleton.mode"),
        (("backoff: Constant", "backoff: Fibonacci"), "spec.retryPolicy.backoff"),
        (("timeout: 30s}", "timeout: 30 seconds}"), "spec.retryPolicy.timeout"),
    ],
)
def test_invalid_flow_settings_are_refused_naming_the_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in MANIFEST
    with pytest.raises(BadRequest) as caught:
        load(tmp_path, MANIFEST.replace(*change, 1))
    assert expected in str(caught.value)
