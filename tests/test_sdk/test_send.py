"""Sending events to the gateway's /e/<event key> over a real socket."""

from __future__ import annotations

import pytest
import stepline

from .conftest import FakeGateway


async def test_send_posts_a_json_array_and_returns_the_ids(gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url, event_key="ek-1")
    ids = await client.send(
        [
            stepline.Event(name="user/signed-up", data={"id": 7}, id="dedup-1", user={"email": "a@b.c"}),
            {"name": "user/left", "ts": 123},
        ]
    )
    assert ids == ["id-0", "id-1"]
    [request] = gateway.requests
    assert request["path"] == "/e/ek-1"
    first, second = request["body"]
    assert "ts" not in first, "the gateway stamps the time of arrival"
    assert first == {"name": "user/signed-up", "data": {"id": 7}, "id": "dedup-1", "user": {"email": "a@b.c"}}
    assert second == {"name": "user/left", "data": {}, "ts": 123}
    await client.aclose()


async def test_one_event_and_the_dev_event_key(gateway: FakeGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STEPLINE_EVENT_KEY", "INNGEST_EVENT_KEY", "STEPLINE_SIGNING_KEY", "INNGEST_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("STEPLINE_GATEWAY_URL", gateway.url)
    client = stepline.Client("shop")
    assert await client.send(stepline.Event(name="a/b")) == ["id-0"]
    assert await client.send({"name": "a/c"}) == ["id-0"]
    assert [r["path"] for r in gateway.requests] == ["/e/dev", "/e/dev"]
    await client.aclose()


async def test_a_refusal_raises_with_the_gateways_message(gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url, event_key="unknown-key")
    with pytest.raises(stepline.SendEventError, match="event key not found"):
        await client.send({"name": "a/b"})
    await client.aclose()


async def test_an_unreachable_gateway_raises() -> None:
    client = stepline.Client("shop", gateway_url="http://127.0.0.1:9")
    with pytest.raises(stepline.SendEventError, match="could not reach"):
        await client.send({"name": "a/b"})
    await client.aclose()


async def test_an_invalid_event_is_refused_before_sending(gateway: FakeGateway) -> None:
    client = stepline.Client("shop", gateway_url=gateway.url)
    with pytest.raises(ValueError, match="name"):
        await client.send({"data": {}})
    assert gateway.requests == []
