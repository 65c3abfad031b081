"""No request to a webhook makes the gateway answer 500: random bodies, headers and content types, seeded.

Every scheme is published, and each request mixes random bytes, broken JSON and forms, random and
half-right signature headers, and hostile header values (non-ASCII, huge, empty). The answer is a JSON
error below 500 or a 200; nothing refused is stored as an event.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import random
import string

import asyncpg
from stepline_gateway.clock import ManualClock
from stepline_store.sealing import new_key

from tests.support import running_gateway
from tests.webhook_senders import (
    GITHUB_SECRET,
    SLACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    github_headers,
    publish,
    ref,
    slack_headers,
    standard_headers,
    stripe_headers,
    webhook,
)

REQUESTS = 400
SIGNATURE_HEADERS = [
    "X-Hub-Signature-256",
    "Stripe-Signature",
    "X-Slack-Signature",
    "X-Slack-Request-Timestamp",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Signature",
    "Authorization",
    "X-GitHub-Event",
    "X-GitHub-Delivery",
]
CONTENT_TYPES = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain",
    "application/octet-stream",
    "application/vnd.api+json; charset=utf-8",
    "multipart/form-data; boundary=x",
    "",
    "ä/ö",
]


def random_body(rng: random.Random) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:
        return rng.randbytes(rng.randrange(0, 300))
    if kind == 1:
        return json.dumps({"type": rng.choice(["url_verification", "x"]), "challenge": rng.random()}).encode()
    if kind == 2:
        return json.dumps([rng.random() for _ in range(rng.randrange(5))]).encode()
    if kind == 3:
        return ("a=" + "".join(rng.choices(string.printable, k=40)) + "&a=%ZZ&=&&").encode()
    if kind == 4:
        return b'{"id": ' + str(rng.random()).encode() + b', "data": {"object": '
    if kind == 5:
        return json.dumps(
            {"items": [rng.choice([1, "x", None, {"y": []}]) for _ in range(3)], "n": "seven"}
        ).encode()
    return "".join(rng.choices('{}[]":,\\ \x00é漢', k=rng.randrange(60))).encode()


def random_value(rng: random.Random) -> str:
    choices = [
        "",
        "sha256=" + "".join(rng.choices("0123456789abcdef", k=64)),
        "t=" + str(rng.randrange(10**12)) + ",v1=" + "".join(rng.choices("0123456789abcdef", k=64)),
        "t=,v1=,v1",
        "v0=zz",
        "v1,!!!notbase64 v1a,AAAA v1,",
        "Bearer " + "".join(rng.choices(string.ascii_letters, k=rng.randrange(40))),
        str(rng.randrange(-(10**15), 10**15)),
        "é" * rng.randrange(1, 30),
        "x" * rng.randrange(1, 6000),
        "spaced \t inside",
    ]
    return rng.choice(choices).strip()  # HTTP drops the whitespace around a value; httpx refuses it


async def test_random_requests_never_get_a_500_and_refusals_store_nothing(database_url: str) -> None:
    rng = random.Random(20251202)
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, secrets_key=new_key()) as gw:
        await publish(
            gw,
            (webhook("github", {"github": {"secretRef": ref("a")}}), [GITHUB_SECRET]),
            (webhook("stripe", {"stripe": {"secretRef": ref("a")}}), [STRIPE_SECRET]),
            (webhook("slack", {"slack": {"secretRef": ref("a")}}), [SLACK_SECRET]),
            (webhook("standard", {"standardWebhooks": {"secretRef": ref("a")}}), [STANDARD_SECRET]),
            (
                webhook(
                    "hmac", {"hmac": {"secretRef": ref("a"), "header": "X-Signature", "encoding": "base64"}}
                ),
                ["k"],
            ),
            (webhook("token", {"token": {"secretRef": ref("a")}}), ["t"]),
            (
                webhook(
                    "open",
                    {"none": {}},
                    transform='{"name": "fuzz/" + string(size(body)), "data": {"b": body}}',
                ),
                [],
            ),
            (webhook("default", {"none": {}}), []),
        )
        names = ["github", "stripe", "slack", "standard", "hmac", "token", "open", "default", "missing"]
        signers = {
            "github": lambda b: github_headers(GITHUB_SECRET, b),
            "stripe": lambda b: stripe_headers(STRIPE_SECRET, b, at=clock.now()),
            "slack": lambda b: slack_headers(SLACK_SECRET, b, at=clock.now(), content_type="text/plain"),
            "standard": lambda b: standard_headers(STANDARD_SECRET, b, at=clock.now(), message_id="m"),
        }
        statuses: dict[int, int] = {}
        accepted = 0
        for _ in range(REQUESTS):
            name = rng.choice(names)
            body = random_body(rng)
            headers = {h: random_value(rng) for h in rng.sample(SIGNATURE_HEADERS, rng.randrange(4))}
            if name in signers and rng.random() < 0.4:
                # Signed right, so that the request reaches the body and the transform (the providers'
                # libraries sign text only).
                with contextlib.suppress(UnicodeDecodeError, ValueError):
                    headers = {**signers[name](body), **({} if rng.random() < 0.7 else headers)}
            headers["Content-Type"] = rng.choice(CONTENT_TYPES)
            query = rng.choice(["", "?a=1", "?a=%FF&b", "?" + "x" * 300])
            response = await gw.http.post(
                f"/webhooks/shop/{name}{query}",
                content=body,
                headers={k: v.encode("utf-8") for k, v in headers.items()},
            )
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            assert response.status_code < 500, (name, body, headers, response.text)
            payload = response.json()
            if response.status_code == 200:
                accepted += 1
                assert isinstance(payload.get("ids", payload.get("challenge")), list | str)
            else:
                assert isinstance(payload["error"], str)
                assert payload["error"]
        assert {200, 400, 401, 404} <= set(statuses), statuses
        clock.advance(datetime.timedelta(minutes=1).total_seconds())
        conn = await asyncpg.connect(database_url)
        try:
            refused_with_events = await conn.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE NOT accepted AND cardinality(event_ids) > 0"
            )
            accepted_rows = await conn.fetchval("SELECT count(*) FROM webhook_deliveries WHERE accepted")
        finally:
            await conn.close()
        assert refused_with_events == 0
        assert accepted_rows == accepted
