"""Sealed secrets: the first key seals, every key opens, other keys open nothing, errors quote no secret;
published webhooks are written only when they changed, and never taken over by another source."""

from __future__ import annotations

import asyncpg
import pytest
from stepline.webhook import WebhookResource, parse_webhook
from stepline_store.pool import connect
from stepline_store.sealing import SealBroken, Sealer, SealingKeyInvalid, new_key, parse_keys
from stepline_store.webhooks import (
    MANIFEST_SOURCE,
    WebhookTaken,
    kubernetes_source,
    load_webhooks,
    publish_webhooks,
    seal_webhook,
    unpublish_webhooks,
)

from tests.support import eventually

SECRET = b"a-provider-secret-1234"


def test_the_first_key_seals_and_every_key_opens() -> None:
    old, new = new_key(), new_key()
    sealed_before = Sealer([old]).seal(SECRET)
    rotating = Sealer.from_setting(f"{new}, {old}")
    assert rotating.open(sealed_before) == SECRET
    sealed_now = rotating.seal(SECRET)
    assert sealed_now != rotating.seal(SECRET), "a fresh token every time"
    assert Sealer([new]).open(sealed_now) == SECRET
    with pytest.raises(SealBroken) as broken:
        Sealer([old]).open(sealed_now)
    assert "sealed under another key" in str(broken.value)
    with pytest.raises(SealBroken):
        Sealer([new]).open(sealed_now[:-4] + "AAAA")
    assert SECRET.decode() not in sealed_now


def test_the_fingerprint_follows_the_data_and_the_sealing_key() -> None:
    key = new_key()
    assert Sealer([key]).fingerprint(b"x") == Sealer.from_setting(f"{key},{new_key()}").fingerprint(b"x")
    assert Sealer([key]).fingerprint(b"x") != Sealer([key]).fingerprint(b"y")
    assert Sealer([key]).fingerprint(b"x") != Sealer([new_key()]).fingerprint(b"x")


@pytest.mark.parametrize(
    "value",
    ["", " , ", "not-a-key", new_key() + ",short"],
    ids=["empty", "commas", "not-a-key", "key-and-short"],
)
def test_a_setting_that_is_not_keys_is_refused_saying_what_to_give(value: str) -> None:
    with pytest.raises(SealingKeyInvalid) as refused:
        parse_keys(value)
    assert "STEPLINE_SECRETS_KEY" in str(refused.value)
    for part in value.split(","):
        if part.strip():
            assert part.strip() not in str(refused.value)


def github(name: str = "github") -> WebhookResource:
    return parse_webhook(
        {
            "apiVersion": "stepline.dev/v1alpha1",
            "kind": "Webhook",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"verify": {"github": {"secretRef": {"name": "gh", "key": "secret"}}}},
        }
    )


async def test_publishing_writes_only_changes_notifies_and_keeps_sources_apart(database_url: str) -> None:
    sealer = Sealer([new_key()])
    source = kubernetes_source("shop", "github")
    conn = await connect(database_url)
    listener = await asyncpg.connect(database_url)
    notified: list[str] = []
    await listener.add_listener("stepline_webhooks", lambda *args: notified.append(args[2]))
    try:
        row = seal_webhook(github(), [SECRET], sealer=sealer, source=source)
        async with conn.transaction():
            assert await publish_webhooks(conn, [row], source=source, replace=True) == 1
        again = seal_webhook(github(), [SECRET + b"\n"], sealer=sealer, source=source)
        assert again.secrets != row.secrets  # sealed afresh, yet the same content
        async with conn.transaction():
            assert await publish_webhooks(conn, [again], source=source, replace=True) == 0
        [loaded] = await load_webhooks(conn)
        assert loaded.secrets == row.secrets
        assert sealer.open(loaded.secrets[0]) == SECRET
        taken = seal_webhook(github(), [SECRET], sealer=sealer, source=MANIFEST_SOURCE)
        with pytest.raises(WebhookTaken, match="already published by kubernetes:shop/github"):
            async with conn.transaction():
                await publish_webhooks(conn, [taken], source=MANIFEST_SOURCE, replace=True)
        async with conn.transaction():
            assert await unpublish_webhooks(conn, source=source) == 1
        assert await load_webhooks(conn) == []

        async def both() -> bool:
            return len(notified) >= 2

        await eventually(both)
        assert len(notified) == 2, "one NOTIFY per change: the publish and the removal"
    finally:
        await listener.close()
        await conn.close()
