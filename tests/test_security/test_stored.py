"""Postgres holds no secret in clear: after a workload that used every credential, no column of any table
contains one of them (docs/security.md, "What Postgres holds")."""

from __future__ import annotations

import asyncpg
import httpx
import stepline
import stepline.asgi
from stepline import signing
from stepline_gateway.access import token_hash
from stepline_gateway.dashboard.auth import SESSION_COOKIE
from stepline_operator import api_tokens, signing_keys
from stepline_store.sealing import Sealer, new_key

from tests.support import API_TOKEN, route, running_gateway, serve
from tests.test_security.test_holes import EVENT_KEY, KEY, PREVIOUS_KEY, sync_payload
from tests.test_security.test_signing_keys import KEY_A, KEY_A2, sync_with
from tests.webhook_senders import GITHUB_SECRET, github_headers, post, publish, ref, webhook

TEAM_TOKEN = "api-token-of-the-vault-team"


async def every_value(database_url: str) -> str:
    """Every row of every table of the database, as text."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) AS name "
            "FROM information_schema.tables WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        assert len(tables) >= 8
        rows = []
        for table in tables:
            rows += [str(row[0]) for row in await conn.fetch(f"SELECT t::text FROM {table['name']} t")]
    finally:
        await conn.close()
    return "\n".join(rows)


async def test_no_table_holds_a_key_a_token_a_session_or_a_webhook_secret(database_url: str) -> None:
    sealing_key = new_key()
    async with running_gateway(
        database_url,
        dev=False,
        signing_key=KEY,
        signing_key_fallback=PREVIOUS_KEY,
        event_keys=[EVENT_KEY],
        secrets_key=sealing_key,
    ) as gw:
        client = stepline.Client("vault", gateway_url=gw.url, signing_key=KEY, event_key=EVENT_KEY)

        @client.function(id="open", trigger="vault/open", retries=0)
        async def open_vault(ctx: stepline.Context) -> str:
            return await ctx.step.run("open", lambda: "opened")

        async with serve(stepline.asgi.serve_app(client, [open_vault])) as app_url:
            # Sync with the signing key's token, run a function through signed calls and answers.
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            [event_id] = await client.send({"name": "vault/open", "data": {}})
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed"
        # A webhook verified by its secret; a dashboard sign-in.
        await gw.publish(route("vault-hook", "http://127.0.0.1:9/api/inngest", {"event": "webhook/x"}))
        await publish(gw, (webhook("github", {"github": {"secretRef": ref("gh")}}), [GITHUB_SECRET]))
        body = b'{"ref": "main"}'
        hooked = await post(gw, "/webhooks/shop/github", body, github_headers(GITHUB_SECRET, body))
        assert hooked.status_code == 200, hooked.text
        async with httpx.AsyncClient(base_url=gw.url) as http:
            signed_in = await http.post("/login", data={"token": API_TOKEN})
            session = signed_in.cookies[SESSION_COOKIE]
        # A namespace's API token published from its Secret, and a sign-in with it.
        await api_tokens.publish(
            gw.gateway.store.pool, "kubernetes:vault/ops", "vault", "operator", [token_hash(TEAM_TOKEN)]
        )
        await gw.gateway.reload_routes()
        async with httpx.AsyncClient(base_url=gw.url) as http:
            team_signed_in = await http.post("/login", data={"token": TEAM_TOKEN})
            team_session = team_signed_in.cookies[SESSION_COOKIE]
        # A namespace's signing keys (during a rotation) published from its Secret, and a sync with each.
        sealed = signing_keys.sealed(Sealer([sealing_key]), KEY_A2.encode(), KEY_A.encode())
        await signing_keys.publish(gw.gateway.store.pool, "vault", "kubernetes:vault/inngest", sealed)
        await gw.gateway.reload_routes()
        for key in (KEY_A, KEY_A2):
            synced = await sync_with(gw, key, sync_payload("vault", "http://127.0.0.1:9/api/inngest", "x"))
            assert synced.status_code == 200, synced.text

        stored = await every_value(database_url)
    assert "vault-open" in stored  # the workload is there...
    assert "vault/vault-x" in stored
    secrets = {
        "event key": EVENT_KEY,
        "signing key": KEY,
        "signing key without its prefix": signing.strip_prefix(KEY),
        "previous signing key": signing.strip_prefix(PREVIOUS_KEY),
        "sync token": signing.bearer_token(KEY),
        "API token": API_TOKEN,
        "session cookie": session,
        "namespace's API token": TEAM_TOKEN,
        "session cookie of the namespace's token": team_session,
        "webhook secret": GITHUB_SECRET,
        "namespace's signing key": signing.strip_prefix(KEY_A2),
        "namespace's previous signing key": signing.strip_prefix(KEY_A),
        "namespace's sync token": signing.bearer_token(KEY_A2),
        "namespace's previous sync token": signing.bearer_token(KEY_A),
    }
    for what, secret in secrets.items():  # ...and none of its secrets
        assert secret not in stored, f"the {what} is stored in clear"
