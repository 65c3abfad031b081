"""The flow-control and retry-policy models: the forms the official SDKs sync, bounds, and backoff delays."""

from __future__ import annotations

import datetime

import pydantic
import pytest
from stepline.flow import FlowControl, RetryPolicy


@pytest.mark.parametrize(
    "concurrency",
    [5, {"limit": 5}, [{"limit": 5}]],
    ids=["number", "bare-object (TypeScript SDK)", "list (Python SDK)"],
)
def test_concurrency_in_every_form_the_sdks_send(concurrency: object) -> None:
    flow = FlowControl.model_validate({"concurrency": concurrency})
    assert [c.model_dump() for c in flow.concurrency] == [{"limit": 5, "key": None, "scope": "fn"}]


def test_camel_case_names_as_the_sync_sends_them_round_trip() -> None:
    sent = {
        "concurrency": [{"limit": 2, "key": "event.data.a", "scope": "account"}],
        "rateLimit": {"limit": 10, "period": "1h"},
        "batchEvents": {"maxSize": 10, "timeout": "5s", "if": "event.data.ok"},
        "idempotency": "event.data.id",
    }
    flow = FlowControl.model_validate(sent)
    assert flow.rate_limit is not None
    assert flow.batch_events is not None
    assert flow.batch_events.if_ == "event.data.ok"
    assert flow.to_json() == sent
    assert FlowControl().is_empty()
    assert not flow.is_empty()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"concurrency": True}, "concurrency"),
        ({"concurrency": [{"limit": 1, "scope": "env"}]}, "needs a key"),
        ({"throttle": {"limit": 1, "period": "10 seconds"}}, "should match pattern"),
        ({"unknown": 1}, "Extra inputs are not permitted"),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(settings: dict[str, object], message: str) -> None:
    with pytest.raises(pydantic.ValidationError, match=message):
        FlowControl.model_validate(settings)


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        ("Exponential", [2, 4, 8, 16, 20, 20]),
        ("Linear", [2, 4, 6, 8, 10, 12]),
        ("Constant", [2, 2, 2, 2, 2, 2]),
    ],
)
def test_backoff_delays_follow_the_policy_capped(backoff: str, delays: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, initial_delay="2s", max_delay="20s", jitter_percent=0)  # type: ignore[arg-type]
    assert [policy.delay(attempt, 0.5).total_seconds() for attempt in range(6)] == delays


def test_jitter_draws_within_its_share_of_the_delay() -> None:
    policy = RetryPolicy(initial_delay="10s", jitter_percent=50)
    assert policy.delay(0, 0.0) == datetime.timedelta(seconds=5)
    assert policy.delay(0, 0.999).total_seconds() == pytest.approx(9.995)
    assert RetryPolicy(timeout="30s").call_timeout() == datetime.timedelta(seconds=30)
    assert RetryPolicy().call_timeout() is None
