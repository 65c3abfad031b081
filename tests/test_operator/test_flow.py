"""Flow control and retry policy through the operator: a Function's settings reach the gateway's routing
table as declared; a retry policy or flow setting the models refuse ends ``Ready=False`` with the reason.

kmock keeps the objects without the CRD's schema, so what the API server would refuse reaches the operator
here, which must refuse it too (an API server without the CRD's rules, or with an older CRD, behaves so).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import eventually
from tests.test_operator.conftest import Cluster, running_operator
from tests.test_operator.test_operator import function, shop

pytestmark = pytest.mark.usefixtures("kubeconfig_env", "local_dns")


async def refused(cluster: Cluster, generation: int) -> dict[str, Any]:
    """The Ready condition once ``generation`` of the Function ``limited`` has been judged not ready."""

    async def check() -> dict[str, Any] | None:
        condition = await cluster.condition("limited")
        if condition.get("status") == "False" and condition.get("observedGeneration") == generation:
            return condition
        return None

    found: dict[str, Any] = await eventually(check, timeout=10, interval=0.05)
    return found


FLOW = """\
  concurrency: [{limit: 2, key: event.data.account}]
  throttle: {limit: 5, period: 1m}
  singleton: {mode: cancel, key: event.data.account}
  timeouts: {finish: 1h}
  retryPolicy: {backoff: Linear, initialDelay: 3s, maxDelay: 1m, jitterPercent: 0, timeout: 20s}
"""


async def test_the_settings_are_published_and_a_bad_policy_ends_ready_false(
    database_url: str, cluster: Cluster
) -> None:
    async with shop(database_url) as env, running_operator(database_url):
        await cluster.apply(env.service)
        await cluster.apply(function("limited", "event: account/changed", extra=FLOW))
        await cluster.wait_ready("limited")
        routes = await env.wait_routes(lambda r: "shop/shop-limited" in r)
        assert routes["shop/shop-limited"]["flow"] == {
            "concurrency": [{"limit": 2, "key": "event.data.account"}],
            "throttle": {"limit": 5, "period": "1m"},
            "singleton": {"key": "event.data.account", "mode": "cancel"},
            "timeouts": {"finish": "1h"},
        }
        assert routes["shop/shop-limited"]["retry_policy"] == {
            "backoff": "Linear",
            "initialDelay": "3s",
            "maxDelay": "1m",
            "jitterPercent": 0,
            "timeout": "20s",
        }

        # A maximum delay under the initial one: no schema can say it, the operator does.
        bad = FLOW.replace("maxDelay: 1m", "maxDelay: 1s")
        await cluster.apply(function("limited", "event: account/changed", extra=bad))
        failed = await refused(cluster, 2)
        assert failed["reason"] == "InvalidRetryPolicy"
        assert "spec.retryPolicy: retryPolicy.maxDelay must be at least 3s, not 1s" in failed["message"]
        # Bad input changes nothing: the route published before stays as it was.
        routes = await env.routes()
        assert routes["shop/shop-limited"]["retry_policy"]["maxDelay"] == "1m"

        await cluster.apply(
            function("limited", "event: account/changed", extra=FLOW.replace("Linear", "Fibonacci"))
        )
        failed = await refused(cluster, 3)
        assert failed["reason"] == "InvalidRetryPolicy"
        assert "spec.retryPolicy.backoff" in failed["message"]

        await cluster.apply(
            function("limited", "event: account/changed", extra=FLOW.replace("period: 1m", "period: 30d"))
        )
        failed = await refused(cluster, 4)
        assert failed["reason"] == "InvalidFlowControl"
        assert "throttle.period must be at most 7d, not 30d" in failed["message"]

        await cluster.apply(
            function(
                "limited",
                "event: account/changed",
                extra=FLOW.replace("key: event.data.account}", "key: '('}"),
            )
        )
        failed = await refused(cluster, 5)
        assert failed["reason"] == "InvalidExpression"
        assert "spec.concurrency[0].key" in failed["message"]

        # Without the settings the route has none.
        fields = ("concurrency", "throttle", "singleton", "timeouts", "retryPolicy")
        removals = ",".join(f'{{"op": "remove", "path": "/spec/{field}"}}' for field in fields)
        await cluster.kubectl("patch", "fn", "limited", "-n", "shop", "--type=json", "-p", f"[{removals}]")
        await cluster.wait_ready("limited")
        routes = await env.wait_routes(lambda r: r["shop/shop-limited"]["flow"] is None)
        assert routes["shop/shop-limited"]["retry_policy"] is None
