"""Requests signed the way each provider signs its webhooks, and Webhooks published on a test gateway.

Stripe's, Slack's and Standard Webhooks' own libraries sign (``stripe``, ``slack_sdk``, ``standardwebhooks``);
GitHub has no Python library for it, so its header is computed as GitHub's documentation says, and a test
checks that computation against the example in that documentation.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
from typing import Any

import httpx
import standardwebhooks
from slack_sdk.signature import SignatureVerifier
from stepline.webhook import parse_webhook
from stepline_store.webhooks import MANIFEST_SOURCE, seal_webhook
from stripe import WebhookSignature

from tests.support import RunningGateway

# Stripe's and Standard Webhooks' secrets have their providers' shapes.
STRIPE_SECRET = "whsec_test_3d9aVt0qXk2cVw7rT1mQ8p"
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GITHUB_SECRET = "gh-webhook-s3cr3t-9f8e7d"
SLACK_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


def github_headers(
    secret: str, body: bytes, *, delivery: str = "72d3162e-cc78-11e3-81ab-4c9367dc0958"
) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": delivery,
        "Content-Type": "application/json",
    }


def stripe_headers(secret: str, body: bytes, *, at: datetime.datetime) -> dict[str, str]:
    header = WebhookSignature.generate_signature_header(body.decode(), secret, timestamp=int(at.timestamp()))
    return {"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"}


def slack_headers(secret: str, body: bytes, *, at: datetime.datetime, content_type: str) -> dict[str, str]:
    timestamp = str(int(at.timestamp()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {
        "X-Slack-Signature": signature,
        "X-Slack-Request-Timestamp": timestamp,
        "Content-Type": content_type,
    }


def standard_headers(secret: str, body: bytes, *, at: datetime.datetime, message_id: str) -> dict[str, str]:
    signature = standardwebhooks.Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body.decode())
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def webhook(
    name: str, verify: dict[str, Any], *, transform: str | None = None, namespace: str = "shop"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"verify": verify}
    if transform is not None:
        spec["transform"] = transform
    return {
        "apiVersion": "stepline.dev/v1alpha1",
        "kind": "Webhook",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def ref(name: str, key: str = "secret") -> dict[str, str]:
    return {"name": name, "key": key}


async def publish(gw: RunningGateway, *documents: tuple[dict[str, Any], list[str]]) -> None:
    """Publish Webhook documents with their secrets (current first) as manifest files would."""
    rows = [
        seal_webhook(
            parse_webhook(document),
            [secret.encode() for secret in secrets],
            sealer=gw.gateway.webhooks.sealer,
            source=MANIFEST_SOURCE,
        )
        for document, secrets in documents
    ]
    await gw.gateway.webhooks.publish(rows, source=MANIFEST_SOURCE)


async def post(
    gw: RunningGateway, path: str, body: bytes | dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    content = json.dumps(body).encode() if isinstance(body, dict) else body
    return await gw.http.post(path, content=content, headers=headers)
