"""POST /webhooks/{namespace}/{name}: each provider's signature, transforms, rotation, and refusals.

Requests are signed by the providers' own libraries where they have one (``tests.webhook_senders``); a
good one starts the matching function's run with the transformed event, a wrong secret, a tampered body, a
stale timestamp or a missing header are refused and store no event, and a redelivery starts nothing new.
"""

from __future__ import annotations

import base64
import datetime
import hmac
import json
import urllib.parse
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import standardwebhooks
import stepline
import stepline.asgi
import stripe
import yaml
from slack_sdk.signature import SignatureVerifier
from stepline.webhook import secret_problem
from stepline_gateway.clock import ManualClock
from stepline_gateway.errors import Unauthorized
from stepline_gateway.verification import GitHub, SignedRequest, StandardWebhooks, Stripe
from stepline_store.sealing import new_key

from tests.support import RunningGateway, eventually, route, running_gateway, serve
from tests.webhook_senders import (
    GITHUB_SECRET,
    SLACK_SECRET,
    STANDARD_SECRET,
    STRIPE_SECRET,
    github_headers,
    post,
    publish,
    ref,
    slack_headers,
    standard_headers,
    stripe_headers,
    webhook,
)

PARKED = "http://127.0.0.1:9/api/inngest"  # never called: these gateways run no call (concurrency 0)


async def counts(database_url: str) -> tuple[int, int]:
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT (SELECT count(*) FROM events) e, (SELECT count(*) FROM runs) r")
        assert row is not None
        return row["e"], row["r"]
    finally:
        await conn.close()


async def deliveries(gw: RunningGateway, webhook_name: str = "") -> list[dict[str, Any]]:
    query = f"?webhook=shop/{webhook_name}" if webhook_name else ""
    response = await gw.http.get(f"/v1/webhooks/deliveries{query}")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["data"]
    return found


def test_the_github_computation_gives_the_example_of_githubs_documentation() -> None:
    # docs.github.com, "Validating webhook deliveries", "Testing the webhook payload validation".
    header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    secret = "It's a Secret to Everybody"
    assert github_headers(secret, b"Hello, World!")["X-Hub-Signature-256"] == header
    request = SignedRequest(body=b"Hello, World!", headers={"x-hub-signature-256": header}, now=0)
    assert GitHub([secret.encode()]).verify(request) == 0


def test_the_providers_libraries_accept_what_the_test_senders_sign() -> None:
    now = datetime.datetime.now(datetime.UTC)
    body = b'{"id": "evt_1", "type": "charge.succeeded"}'
    stripe.WebhookSignature.verify_header(
        body, stripe_headers(STRIPE_SECRET, body, at=now)["Stripe-Signature"], STRIPE_SECRET, tolerance=300
    )
    slack = slack_headers(SLACK_SECRET, body, at=now, content_type="application/json")
    assert SignatureVerifier(SLACK_SECRET).is_valid_request(body, slack)
    standard = standard_headers(STANDARD_SECRET, body, at=now, message_id="msg_1")
    assert standardwebhooks.Webhook(STANDARD_SECRET).verify(body, standard) == json.loads(body)


GITHUB = webhook(
    "github",
    {"github": {"secretRef": ref("github-webhook")}},
    transform='{"name": "github/" + headers["x-github-event"], "data": body, '
    '"id": headers["x-github-delivery"]}',
)


class Provider:
    """One provider's webhook, its way of signing, and the event its transform gives."""

    def __init__(
        self,
        name: str,
        document: dict[str, Any],
        secret: str,
        wrong: str,
        event: str,
        timed: bool,
        signature_headers: tuple[str, ...],
    ) -> None:
        self.name, self.document, self.secret, self.wrong = name, document, secret, wrong
        self.event, self.timed, self.signature_headers = event, timed, signature_headers

    def body(self, serial: int) -> bytes:
        payloads = {
            "github": {"ref": "refs/heads/main", "after": f"c0ffee{serial}", "pusher": {"name": "ada"}},
            "stripe": {
                "id": f"evt_{serial}",
                "type": "charge.succeeded",
                "data": {"object": {"amount": 1200}},
            },
            "standard": {"type": "invoice.paid", "data": {"invoice": f"in_{serial}", "total": 40}},
        }
        if self.name == "slack":
            return urllib.parse.urlencode(
                {"command": "/deploy", "text": f"web v{serial}", "user_name": "ada"}
            ).encode()
        return json.dumps(payloads[self.name]).encode()

    def headers(self, secret: str, body: bytes, at: datetime.datetime, serial: int) -> dict[str, str]:
        if self.name == "github":
            return github_headers(secret, body, delivery=f"delivery-{serial}")
        if self.name == "stripe":
            return stripe_headers(secret, body, at=at)
        if self.name == "slack":
            return slack_headers(secret, body, at=at, content_type="application/x-www-form-urlencoded")
        return standard_headers(secret, body, at=at, message_id=f"msg_{serial}")


PROVIDERS = [
    Provider(
        "github", GITHUB, GITHUB_SECRET, "not-the-secret", "github/push", False, ("X-Hub-Signature-256",)
    ),
    Provider(
        "stripe",
        webhook(
            "stripe",
            {"stripe": {"secretRef": ref("stripe-webhook"), "tolerance": "5m"}},
            transform='{"name": "stripe/" + body.type, "data": body.data.object, "id": body.id}',
        ),
        STRIPE_SECRET,
        "whsec_someone_elses",
        "stripe/charge.succeeded",
        True,
        ("Stripe-Signature",),
    ),
    Provider(
        "slack",
        webhook(
            "slack",
            {"slack": {"secretRef": ref("slack-signing")}},
            transform='{"name": "slack/command", "data": {"command": body.command, "text": body.text}}',
        ),
        SLACK_SECRET,
        "00000000000000000000000000000000",
        "slack/command",
        True,
        ("X-Slack-Signature", "X-Slack-Request-Timestamp"),
    ),
    Provider(
        "standard",
        webhook(
            "standard",
            {"standardWebhooks": {"secretRef": ref("billing-webhook")}},
            transform='{"name": "billing/" + body.type, "data": body.data, "id": headers["webhook-id"]}',
        ),
        STANDARD_SECRET,
        "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB",
        "billing/invoice.paid",
        True,
        ("webhook-id", "webhook-timestamp", "webhook-signature"),
    ),
]


@pytest.mark.parametrize("provider", PROVIDERS, ids=lambda p: p.name)
async def test_a_signed_request_starts_the_run_and_what_is_refused_stores_nothing(
    database_url: str, provider: Provider
) -> None:
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, secrets_key=new_key()) as gw:
        await gw.publish(route("shop-on-hook", PARKED, {"event": provider.event}))
        await publish(gw, (provider.document, [provider.secret]))
        path = f"/webhooks/shop/{provider.document['metadata']['name']}"
        now = clock.now()

        # Refused: a wrong secret, a tampered body, each signature header missing, a stale timestamp.
        body = provider.body(1)
        refused = [
            (body, provider.headers(provider.wrong, body, now, 1), "does not match"),
            (provider.body(2), provider.headers(provider.secret, body, now, 1), "does not match"),
        ]
        for header in provider.signature_headers:
            headers = provider.headers(provider.secret, body, now, 1)
            refused.append((body, {k: v for k, v in headers.items() if k != header}, f"no {header} header"))
        if provider.timed:
            stale = now - datetime.timedelta(minutes=6)
            refused.append((body, provider.headers(provider.secret, body, stale, 1), "stale request"))
        for content, headers, reason in refused:
            response = await post(gw, path, content, headers)
            assert response.status_code == 401, (reason, response.text)
            assert reason in response.json()["error"]
        assert await counts(database_url) == (0, 0)

        # Accepted: the transformed event starts the function's run.
        response = await post(gw, path, body, provider.headers(provider.secret, body, now, 1))
        assert response.status_code == 200, response.text
        [event_id] = response.json()["ids"]
        event = (await gw.http.get(f"/v1/events/{event_id}")).json()
        assert event["name"] == provider.event
        [run] = event["runs"]
        assert run["function_id"] == "shop-on-hook"
        expected = {
            "github": {"ref": "refs/heads/main", "after": "c0ffee1", "pusher": {"name": "ada"}},
            "stripe": {"amount": 1200},
            "slack": {"command": "/deploy", "text": "web v1"},
            "standard": {"invoice": "in_1", "total": 40},
        }[provider.name]
        assert event["data"] == expected

        # A redelivery (same delivery id, signed again later) starts nothing new: providers retry.
        if provider.name != "slack":
            clock.advance(30)
            again = await post(gw, path, body, provider.headers(provider.secret, body, clock.now(), 1))
            assert again.status_code == 200, again.text
            assert again.json()["ids"] == [event_id]
            assert await counts(database_url) == (1, 1)

        log = await deliveries(gw, provider.document["metadata"]["name"])
        assert [d["accepted"] for d in reversed(log)] == [False] * len(refused) + [True] * (
            1 if provider.name == "slack" else 2
        )
        assert log[-1]["status"] == 401
        assert "does not match" in log[-1]["reason"]
        assert log[0]["event_ids"] == [event_id]
        if provider.name != "slack":
            assert log[0]["reason"].startswith("duplicate")


async def test_rotation_accepts_both_secrets_until_the_previous_one_is_removed(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as gw:
        rotating = webhook(
            "github",
            {"github": {"secretRef": ref("github-new"), "previousSecretRef": ref("github-old")}},
        )
        await publish(gw, (rotating, ["new-secret", "old-secret"]))
        for serial, secret in enumerate(["new-secret", "old-secret"]):
            body = json.dumps({"n": serial}).encode()
            response = await post(
                gw, "/webhooks/shop/github", body, github_headers(secret, body, delivery=f"d{serial}")
            )
            assert response.status_code == 200, response.text
        [old, new] = await deliveries(gw)
        assert "previous secret" in old["reason"]
        assert "previous" not in new["reason"]

        await publish(gw, (webhook("github", {"github": {"secretRef": ref("github-new")}}), ["new-secret"]))
        body = b'{"n": 9}'
        response = await post(gw, "/webhooks/shop/github", body, github_headers("old-secret", body))
        assert response.status_code == 401
        response = await post(gw, "/webhooks/shop/github", body, github_headers("new-secret", body))
        assert response.status_code == 200


async def test_the_default_transform_names_the_event_after_the_webhook_and_dedupes_deliveries(
    database_url: str,
) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as gw:
        await gw.publish(route("shop-default", PARKED, {"event": "webhook/shop.github"}))
        await publish(gw, (webhook("github", {"github": {"secretRef": ref("gh")}}), [GITHUB_SECRET]))
        body = b'{"zen": "Keep it logically awesome."}'
        headers = github_headers(GITHUB_SECRET, body, delivery="d-1")
        [first] = (await post(gw, "/webhooks/shop/github", body, headers)).json()["ids"]
        [second] = (await post(gw, "/webhooks/shop/github", body, headers)).json()["ids"]
        assert first == second == "webhook:shop.github:d-1"
        event = (await gw.http.get(f"/v1/events/{first}")).json()
        assert (event["name"], event["data"]) == (
            "webhook/shop.github",
            {"zen": "Keep it logically awesome."},
        )
        assert len(event["runs"]) == 1


def _mac(body: bytes, algorithm: str) -> bytes:
    return hmac.new(b"hook-key", body, algorithm).digest()


def sha1_base64(body: bytes) -> dict[str, str]:
    return {"X-Signature": base64.b64encode(_mac(body, "sha1")).decode()}


def shopify(body: bytes) -> dict[str, str]:
    return {"X-Shopify-Hmac-Sha256": base64.b64encode(_mac(body, "sha256")).decode()}


def sha512_prefixed(body: bytes) -> dict[str, str]:
    return {"X-Sig": "sha512=" + _mac(body, "sha512").hex()}


def bearer(body: bytes) -> dict[str, str]:
    return {"Authorization": "Bearer hook-key"}


def gitlab(body: bytes) -> dict[str, str]:
    return {"X-Gitlab-Token": "hook-key"}


@pytest.mark.parametrize(
    ("verify", "headers"),
    [
        (
            {
                "hmac": {
                    "secretRef": ref("s"),
                    "header": "X-Signature",
                    "algorithm": "sha1",
                    "encoding": "base64",
                }
            },
            sha1_base64,
        ),
        ({"hmac": {"secretRef": ref("s"), "header": "X-Shopify-Hmac-Sha256", "encoding": "base64"}}, shopify),
        (
            {"hmac": {"secretRef": ref("s"), "header": "X-Sig", "algorithm": "sha512", "prefix": "sha512="}},
            sha512_prefixed,
        ),
        ({"token": {"secretRef": ref("s")}}, bearer),
        ({"token": {"secretRef": ref("s"), "header": "X-Gitlab-Token"}}, gitlab),
    ],
    ids=["hmac-sha1-base64", "hmac-shopify", "hmac-sha512-prefix", "bearer-token", "gitlab-token"],
)
async def test_generic_hmac_and_token_schemes(
    database_url: str, verify: dict[str, Any], headers: Any
) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as gw:
        await publish(
            gw, (webhook("generic", verify), ["hook-key\n"])
        )  # a file's trailing newline is dropped
        body = b'{"order": 7}'
        good = {**headers(body), "Content-Type": "application/json"}
        response = await post(gw, "/webhooks/shop/generic", body, good)
        assert response.status_code == 200, response.text
        event = (await gw.http.get(f"/v1/events/{response.json()['ids'][0]}")).json()
        assert (event["name"], event["data"]) == ("webhook/shop.generic", {"order": 7})
        [name] = headers(body)
        for wrong in ({}, {name: "x" + good[name][1:]}, {name: ""}):
            response = await post(
                gw, "/webhooks/shop/generic", body, {"Content-Type": "application/json", **wrong}
            )
            assert response.status_code == 401, wrong
        tampered = await post(gw, "/webhooks/shop/generic", b'{"order": 8}', good)
        assert tampered.status_code == (200 if "token" in verify else 401)


async def test_none_must_be_said_and_then_takes_any_request(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as gw:
        await publish(gw, (webhook("open", {"none": {}}), []))
        response = await post(
            gw, "/webhooks/shop/open", b'{"ping": true}', {"Content-Type": "application/json"}
        )
        assert response.status_code == 200, response.text


async def test_transforms_bodies_and_their_errors(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as gw:
        await publish(
            gw,
            (
                webhook(
                    "many",
                    {"none": {}},
                    transform='body.items.map(i, {"name": "item/added", "data": {"sku": i, "via": method, '
                    '"tenant": query.tenant, "agent": headers["user-agent"]}})',
                ),
                [],
            ),
            (webhook("text", {"none": {}}, transform='{"name": "note", "data": {"text": body}}'), []),
            (webhook("plain", {"none": {}}), []),
            (webhook("broken", {"none": {}}, transform='{"name": "x", "data": {"n": body.n + 1}}'), []),
        )
        response = await gw.http.post(
            "/webhooks/shop/many?tenant=acme",
            json={"items": ["a", "b", "c"]},
            headers={"user-agent": "hook-sender/1.0"},
        )
        assert response.status_code == 200, response.text
        ids = response.json()["ids"]
        assert len(ids) == 3
        event = (await gw.http.get(f"/v1/events/{ids[1]}")).json()
        assert event["data"] == {"sku": "b", "via": "POST", "tenant": "acme", "agent": "hook-sender/1.0"}
        response = await gw.http.post("/webhooks/shop/many?tenant=acme", json={"items": []})
        assert (response.status_code, response.json()["ids"]) == (200, [])

        response = await post(gw, "/webhooks/shop/text", b"deploy done", {"Content-Type": "text/plain"})
        event = (await gw.http.get(f"/v1/events/{response.json()['ids'][0]}")).json()
        assert event["data"] == {"text": "deploy done"}

        cases = [
            ("plain", b"just text", "text/plain", 400, "default transform takes a JSON object body"),
            ("plain", b"{not json", "application/json", 400, "not valid JSON"),
            ("plain", b"\xff\xfe", "application/octet-stream", 400, "not UTF-8 text"),
            ("broken", b'{"n": "seven"}', "application/json", 400, "the transform failed on this request"),
            ("broken", b'{"m": 1}', "application/json", 400, "no such key"),
            ("many", b'{"items": [1]}', "application/json", 400, "no such key: 'tenant'"),
            ("nope", b"{}", "application/json", 404, "no webhook shop/nope"),
            ("plain", b'{"a": "nul \\u0000 inside"}', "application/json", 400, "NUL character"),
        ]
        events_before = await counts(database_url)
        for name, body, content_type, status, message in cases:
            response = await post(gw, f"/webhooks/shop/{name}", body, {"Content-Type": content_type})
            assert response.status_code == status, (name, body, response.text)
            assert message in response.json()["error"], response.text
        assert await counts(database_url) == events_before
        # POST /e refuses the same event as clearly (Postgres's JSON cannot hold U+0000).
        response = await post(gw, "/e/key", b'{"name": "a", "data": {"a": "\\u0000"}}', {})
        assert response.status_code == 400
        assert "NUL character" in response.json()["error"]


async def test_an_oversized_body_is_413_and_an_oversized_event_too(database_url: str) -> None:
    async with running_gateway(
        database_url, concurrency=0, secrets_key=new_key(), max_body_bytes=4096, max_event_bytes=1024
    ) as gw:
        await publish(gw, (webhook("open", {"none": {}}), []))
        big = json.dumps({"blob": "x" * 5000}).encode()
        response = await post(gw, "/webhooks/shop/open", big, {"Content-Type": "application/json"})
        assert response.status_code == 413
        assert "over the limit of 4096 bytes" in response.json()["error"]
        event = json.dumps({"blob": "x" * 2000}).encode()
        response = await post(gw, "/webhooks/shop/open", event, {"Content-Type": "application/json"})
        assert response.status_code == 413
        assert "over the limit of 1024 bytes" in response.json()["error"]
        assert await counts(database_url) == (0, 0)


async def test_slacks_url_verification_is_answered_with_its_challenge(database_url: str) -> None:
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, secrets_key=new_key()) as gw:
        await publish(gw, (webhook("slack", {"slack": {"secretRef": ref("slack")}}), [SLACK_SECRET]))
        body = json.dumps(
            {
                "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
                "challenge": "3eZbrw1aBm2rZgRNFdx",
                "type": "url_verification",
            }
        ).encode()
        headers = slack_headers(SLACK_SECRET, body, at=clock.now(), content_type="application/json")
        response = await post(gw, "/webhooks/shop/slack", body, headers)
        assert response.status_code == 200
        assert response.json() == {"challenge": "3eZbrw1aBm2rZgRNFdx"}
        unsigned = await post(gw, "/webhooks/shop/slack", body, {"Content-Type": "application/json"})
        assert unsigned.status_code == 401
        assert await counts(database_url) == (0, 0)


def echo_app(gateway_url: str) -> Any:
    client = stepline.Client("hooks", gateway_url=gateway_url, dev=True)

    @client.function(id="on-charge", trigger="stripe/charge.succeeded")
    async def on_charge(ctx: stepline.Context) -> dict[str, Any]:
        return await ctx.step.run("record", lambda: {"charged": ctx.event.data["amount"], "id": ctx.event.id})

    return stepline.asgi.serve_app(client, [on_charge])


async def test_a_stripe_event_runs_a_function_to_completion(database_url: str) -> None:
    clock = ManualClock()
    async with (
        running_gateway(database_url, clock=clock, secrets_key=new_key()) as gw,
        serve(echo_app(gw.url)) as app_url,
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        await publish(gw, (PROVIDERS[1].document, [STRIPE_SECRET]))
        body = json.dumps(
            {"id": "evt_77", "type": "charge.succeeded", "data": {"object": {"amount": 990}}}
        ).encode()
        response = await post(
            gw, "/webhooks/shop/stripe", body, stripe_headers(STRIPE_SECRET, body, at=clock.now())
        )
        assert response.status_code == 200, response.text
        [run] = await gw.finished_runs("evt_77")
        assert run["status"] == "Completed", run
        assert run["output"] == {"charged": 990, "id": "evt_77"}


async def test_secrets_never_reach_logs_answers_or_the_database_in_clear(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, secrets_key=new_key()) as gw:
        await publish(
            gw,
            *((p.document, [p.secret]) for p in PROVIDERS),
            (webhook("tok", {"token": {"secretRef": ref("t")}}), ["tok-" + GITHUB_SECRET]),
        )
        answers = []
        for provider in PROVIDERS:
            path = f"/webhooks/shop/{provider.document['metadata']['name']}"
            body = provider.body(3)
            for secret in (provider.secret, provider.wrong):
                answers.append(
                    (await post(gw, path, body, provider.headers(secret, body, clock.now(), 3))).text
                )
        answers.append(
            (
                await post(
                    gw, "/webhooks/shop/tok", b"{}", {"Authorization": "Bearer tok-" + GITHUB_SECRET[:-1]}
                )
            ).text
        )
        for path in ("/v1/webhooks", "/v1/webhooks/deliveries", "/metrics"):
            answers.append((await gw.http.get(path)).text)
        listing = (await gw.http.get("/v1/webhooks")).json()["data"]
        assert {w["name"]: w["secrets"] for w in listing}["github"] == 1
        conn = await asyncpg.connect(database_url)
        try:
            stored = " ".join(str(tuple(row)) for row in await conn.fetch("SELECT * FROM webhooks"))
            stored += " ".join(
                str(tuple(row)) for row in await conn.fetch("SELECT * FROM webhook_deliveries")
            )
        finally:
            await conn.close()
    assert "webhook shop/github refused (401)" in caplog.text  # the logs were captured
    assert "webhook shop/github: accepted" in caplog.text
    everything = "\n".join([*answers, caplog.text, stored])
    for provider in PROVIDERS:
        assert provider.secret not in everything
        assert provider.secret.removeprefix("whsec_") not in everything
    assert GITHUB_SECRET not in everything


async def test_another_replica_serves_a_webhook_published_meanwhile(database_url: str) -> None:
    key = new_key()
    async with (
        running_gateway(database_url, concurrency=0, secrets_key=key) as first,
        running_gateway(database_url, concurrency=0, secrets_key=key) as second,
    ):
        assert (
            await post(second, "/webhooks/shop/github", b"{}", github_headers(GITHUB_SECRET, b"{}"))
        ).status_code == 404
        await publish(first, (GITHUB, [GITHUB_SECRET]))

        async def served() -> bool:
            response = await post(
                second, "/webhooks/shop/github", b"{}", github_headers(GITHUB_SECRET, b"{}")
            )
            return response.status_code == 200

        await eventually(served)


async def test_a_gateway_that_cannot_open_the_secret_answers_503_and_says_why(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as publisher:
        await publish(publisher, (GITHUB, [GITHUB_SECRET]))
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as other:
        response = await post(other, "/webhooks/shop/github", b"{}", github_headers(GITHUB_SECRET, b"{}"))
        assert response.status_code == 503
        assert "STEPLINE_SECRETS_KEY" in response.json()["error"]
        [listed] = (await other.http.get("/v1/webhooks")).json()["data"]
        assert listed["ready"] is False
    async with running_gateway(database_url, concurrency=0) as keyless:
        response = await post(keyless, "/webhooks/shop/github", b"{}", github_headers(GITHUB_SECRET, b"{}"))
        assert response.status_code == 503


async def test_deliveries_are_pruned_with_the_history(database_url: str) -> None:
    clock = ManualClock()
    async with running_gateway(
        database_url, clock=clock, concurrency=0, secrets_key=new_key(), retention_h=24
    ) as gw:
        await publish(gw, (webhook("open", {"none": {}}), []))
        await post(gw, "/webhooks/shop/open", b"{}", {"Content-Type": "application/json"})
        clock.advance(datetime.timedelta(hours=25).total_seconds())
        await post(gw, "/webhooks/shop/open", b"{bad", {"Content-Type": "application/json"})
        await gw.gateway.prune()
        [kept] = await deliveries(gw)
        assert (kept["accepted"], kept["status"]) == (False, 400)


async def test_metrics_count_deliveries_by_webhook_and_outcome(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=0, secrets_key=new_key()) as gw:
        await publish(gw, (GITHUB, [GITHUB_SECRET]))
        body = b'{"a": 1}'
        await post(gw, "/webhooks/shop/github", body, github_headers(GITHUB_SECRET, body))
        await post(gw, "/webhooks/shop/github", body, github_headers(GITHUB_SECRET, body))
        await post(gw, "/webhooks/shop/github", body, github_headers("wrong", body))
        await post(gw, "/webhooks/shop/elsewhere", body, {})
        text = (await gw.http.get("/metrics")).text
        for outcome, count in (("accepted", 1), ("duplicate", 1), ("unauthorized", 1)):
            labels = f'namespace="shop",outcome="{outcome}",webhook="github"'
            line = f"stepline_webhook_deliveries_total{{{labels}}} {count}.0"
            assert line in text, text
        assert (
            'stepline_webhook_deliveries_total{namespace="",outcome="unknown_webhook",webhook=""} 1.0' in text
        )


async def test_the_example_webhooks_give_the_events_they_promise(database_url: str) -> None:
    examples = Path(__file__).parents[2] / "examples" / "k8s" / "webhooks.yaml"
    documents = {d["metadata"]["name"]: d for d in yaml.safe_load_all(examples.read_text()) if d}
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, secrets_key=new_key()) as gw:
        await publish(gw, (documents["stripe"], [STRIPE_SECRET]), (documents["github"], [GITHUB_SECRET]))
        session = {"client_reference_id": "o-77", "amount_total": 4200}
        paid = json.dumps({"id": "evt_9", "type": "checkout.session.completed", "data": {"object": session}})
        response = await post(
            gw,
            "/webhooks/shop/stripe",
            paid.encode(),
            stripe_headers(STRIPE_SECRET, paid.encode(), at=clock.now()),
        )
        assert response.json()["ids"] == ["evt_9"], response.text
        event = (await gw.http.get("/v1/events/evt_9")).json()
        assert (event["name"], event["data"]) == ("order/created", {"order_id": "o-77", "amount": 4200})
        other = b'{"id": "evt_10", "type": "customer.created", "data": {"object": {}}}'
        response = await post(
            gw, "/webhooks/shop/stripe", other, stripe_headers(STRIPE_SECRET, other, at=clock.now())
        )
        assert (response.status_code, response.json()["ids"]) == (200, [])
        push = b'{"ref": "refs/heads/main"}'
        response = await post(
            gw, "/webhooks/shop/github", push, github_headers(GITHUB_SECRET, push, delivery="g-1")
        )
        assert response.json()["ids"] == ["g-1"]
        assert (await gw.http.get("/v1/events/g-1")).json()["name"] == "github/push"


def test_a_timestamp_too_far_in_the_future_is_stale_too() -> None:
    now = datetime.datetime.now(datetime.UTC)
    body = b'{"id": "evt_1"}'
    ahead = stripe_headers(STRIPE_SECRET, body, at=now + datetime.timedelta(minutes=10))
    request = SignedRequest(
        body=body, headers={"stripe-signature": ahead["Stripe-Signature"]}, now=now.timestamp()
    )
    with pytest.raises(Unauthorized, match="s in the future, beyond the tolerance of 300 s"):
        Stripe([STRIPE_SECRET.encode()], tolerance_s=300).verify(request)


def test_standard_webhooks_secrets_with_or_without_their_prefix_and_unusable_ones() -> None:
    now = datetime.datetime.now(datetime.UTC)
    body = b'{"type": "ping"}'
    headers = {
        k.lower(): v for k, v in standard_headers(STANDARD_SECRET, body, at=now, message_id="m1").items()
    }
    request = SignedRequest(body=body, headers=headers, now=now.timestamp())
    bare = STANDARD_SECRET.removeprefix("whsec_").encode()
    assert (
        StandardWebhooks([b"whsec_" + base64.b64encode(b"other"), bare], tolerance_s=300).verify(request) == 1
    )
    assert secret_problem("standardWebhooks", b"whsec_not base64!") is not None
    assert secret_problem("standardWebhooks", STANDARD_SECRET.encode()) is None
    assert secret_problem("github", b" \n") == "is empty"
