"""What a new run carries to the claim, from its function's settings and its event: the concurrency keys of
each scope, a throttle's pace, a priority cut to bounds, the timeouts; nothing for a function without them."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from stepline.flow import FlowControl
from stepline_gateway.flow_claims import ClaimFlow, key_value, priority_of

from tests.support import route

EVENT = {"id": "e1", "name": "shop/order", "data": {"acct": "acct-7", "n": 3, "big": "x" * 300}, "ts": 0}


def flow_of(source: str = "manifest:fn.yaml", **settings: Any) -> ClaimFlow | None:
    # A Function resource's id carries its namespace (stepline_store/identity.py).
    namespace = (
        source.removeprefix("kubernetes:").partition("/")[0] if source.startswith("kubernetes:") else ""
    )
    function = dataclasses.replace(
        route("shop-orders", "http://127.0.0.1:9/api", {"event": "shop/order"}),
        id=f"{namespace}/shop-orders" if namespace else "shop-orders",
        flow=FlowControl.model_validate(settings),
        source=source,
    )
    return ClaimFlow.of(function, EVENT)


def test_a_function_without_claim_time_settings_carries_nothing() -> None:
    assert flow_of() is None
    assert flow_of(rateLimit={"limit": 1, "period": "1m"}) is None


def test_keys_name_their_scope() -> None:
    flow = flow_of(
        source="kubernetes:shop/orders",
        concurrency=[
            {"limit": 3, "key": "event.data.acct", "scope": "env"},
            {"limit": 5, "key": "event.data.acct", "scope": "account"},
        ],
    )
    assert flow is not None
    assert flow.keys == (("account/acct-7", "acct-7", 5), ("env/shop/acct-7", "acct-7", 3))
    unkeyed = flow_of(concurrency=2)
    assert unkeyed is not None
    assert unkeyed.keys == (("fn/shop-orders", None, 2),)


def test_two_entries_on_the_same_key_keep_the_lower_limit() -> None:
    same = "event.data.acct"
    flow = flow_of(concurrency=[{"limit": 4, "key": same}, {"limit": 2, "key": same}])
    assert flow is not None
    assert flow.keys == (("fn/shop-orders/acct-7", "acct-7", 2),)


def test_key_values_as_text_long_ones_hashed() -> None:
    assert key_value("event.data.n", EVENT) == "3"
    assert key_value("event.data.missing", EVENT) == ""
    assert key_value(None, EVENT) is None
    flow = flow_of(concurrency={"limit": 1, "key": "event.data.big"})
    assert flow is not None
    [(key, label, _)] = flow.keys
    assert key.startswith("fn/shop-orders/sha256:")
    assert label == "x" * 120


def test_a_throttle_paces_starts_by_period_over_limit() -> None:
    flow = flow_of(throttle={"limit": 4, "period": "1m", "burst": 2, "key": "event.data.acct"})
    assert flow is not None
    assert flow.throttle_key == "throttle/shop-orders/acct-7"
    assert flow.throttle_interval_s == 15
    # limit + burst - 1 = 5 at once: four intervals of tolerance.
    assert flow.throttle_tolerance_s == 60


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("event.data.n * 10", 30),
        ("900", 600),
        ("-900", -600),
        ("'high'", 0),
        ("event.data.none", 0),
        ("1.9", 1),
    ],
)
def test_priority_is_whole_seconds_within_bounds(expression: str, seconds: int) -> None:
    assert priority_of(expression, EVENT) == seconds


def test_timeouts_in_seconds() -> None:
    flow = flow_of(timeouts={"start": "10m", "finish": "1h30m"})
    assert flow is not None
    assert (flow.start_timeout_s, flow.finish_timeout_s) == (600, 5400)
