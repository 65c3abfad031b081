"""Signed requests and answers: with a signing key outside dev mode, nothing unsigned gets through."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import stepline
from stepline import signing

from .conftest import FALLBACK_KEY, SIGNING_KEY, call_body, sha1

signed_client = stepline.Client("app", signing_key=SIGNING_KEY, signing_key_fallback=FALLBACK_KEY, dev=False)


@signed_client.function(id="hello", trigger="test/go")
async def hello(ctx: stepline.Context) -> str:
    return await ctx.step.run("greet", lambda: "hi")


def signed(body: dict[str, Any], key: str, **kw: Any) -> dict[str, Any]:
    # Serialised differently from what the SDK will canonicalise, on purpose: the signature is over JCS.
    raw = json.dumps(body, indent=2).encode()
    return {"content": raw, "headers": {"x-inngest-signature": signing.sign_request(raw, key, **kw)}}


async def test_a_missing_signature_is_refused(serve: Any) -> None:
    served = await serve([hello], signed_client)
    res = await served.call("app-hello", call_body())
    assert res.status_code == 401
    assert "missing" in res.json()["error"]


@pytest.mark.parametrize(
    "kw",
    [
        {"key": "signkey-test-" + "ef" * 32},
        {"key": SIGNING_KEY, "timestamp": int(time.time()) - 3600},
    ],
    ids=["wrong-key", "expired"],
)
async def test_a_wrong_signature_is_refused(serve: Any, kw: dict[str, Any]) -> None:
    served = await serve([hello], signed_client)
    kw = dict(kw)
    key = kw.pop("key")
    res = await served.http.post("/api/inngest?fnId=app-hello&stepId=step", **signed(call_body(), key, **kw))
    assert res.status_code == 401
    assert "error" in res.json()


async def test_a_signature_over_another_body_is_refused(serve: Any) -> None:
    served = await serve([hello], signed_client)
    good = signed(call_body(), SIGNING_KEY)
    tampered = json.dumps(call_body(attempt=3)).encode()
    res = await served.http.post(
        "/api/inngest?fnId=app-hello&stepId=step", content=tampered, headers=good["headers"]
    )
    assert res.status_code == 401


@pytest.mark.parametrize("key", [SIGNING_KEY, FALLBACK_KEY])
async def test_a_signed_call_is_answered_with_a_signature_by_the_same_key(serve: Any, key: str) -> None:
    served = await serve([hello], signed_client)
    res = await served.http.post("/api/inngest?fnId=app-hello&stepId=step", **signed(call_body(), key))
    assert res.status_code == 206
    assert res.json() == [
        {"id": sha1("greet"), "op": "StepRun", "name": "greet", "displayName": "greet", "data": "hi"}
    ]
    signing.verify(res.content, res.headers["x-inngest-signature"], [key])


async def test_the_unauthenticated_inspection_is_signed(serve: Any) -> None:
    served = await serve([hello], signed_client)
    res = await served.http.get("/api/inngest")
    assert res.status_code == 200
    assert res.json()["mode"] == "cloud"
    signing.verify(res.content, res.headers["x-inngest-signature"], [SIGNING_KEY])


async def test_dev_mode_accepts_unsigned_calls_even_with_a_key(serve: Any) -> None:
    dev_client = stepline.Client("app", signing_key=SIGNING_KEY, dev=True)
    served = await serve([hello], dev_client)
    res = await served.call("app-hello", call_body(steps={sha1("greet"): {"data": "memo"}}))
    assert (res.status_code, res.json()) == (200, "memo")
    assert "x-inngest-signature" not in res.headers


def test_cloud_mode_without_a_signing_key_cannot_serve() -> None:
    client = stepline.Client("app", dev=False)
    with pytest.raises(stepline.ConfigError, match="signing key"):
        stepline.handler.Handler(client, [hello])
