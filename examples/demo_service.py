"""The demo service: the product brief's examples written with Stepline's SDK, served with FastAPI.

Run it with ``python -m examples.demo_service`` (port 8000) next to a gateway, then send
``stepline send order/created --data '{"order_id": "o-1", "amount": 120}'``.

Side effects (cards charged, emails sent...) are appended to an in-memory ledger shown at ``GET /ledger``,
so that what ran, and how often, can be seen. ``POST /faults/{name}`` and ``DELETE /faults/{name}`` switch
a simulated outage on and off, to watch a run fail and then replay it from the dashboard or the API.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

import fastapi
import stepline
import stepline.fastapi
import uvicorn

APP_ID = "shop"


def create_app(*, gateway_url: str | None = None) -> fastapi.FastAPI:
    client = stepline.Client(APP_ID, gateway_url=gateway_url)
    ledger: list[dict[str, Any]] = []
    faults: set[str] = set()
    attempts: dict[str, int] = {}

    def record(action: str, key: str, **details: Any) -> None:
        ledger.append({"action": action, "key": key, **details})

    def attempt(key: str) -> int:
        attempts[key] = attempts.get(key, 0) + 1
        return attempts[key]

    @client.function(id="send-welcome-email", trigger="user/signed-up")
    async def send_welcome_email(ctx: stepline.Context) -> dict[str, Any]:
        email = ctx.event.data.get("email", "someone@example.com")

        async def send() -> str:
            record("welcome-email", email)
            return f"welcome email sent to {email}"

        return {"message": await ctx.step.run("send-email", send)}

    @client.function(id="add-to-crm", trigger="user/signed-up", retries=3)
    async def add_to_crm(ctx: stepline.Context) -> str:
        email = ctx.event.data.get("email", "someone@example.com")
        failures = int(ctx.event.data.get("crm_failures", 0))

        async def upsert_contact() -> str:
            if attempt(f"crm:{ctx.run_id}") <= failures:
                raise ConnectionError("the CRM is unavailable")
            record("crm-contact", email)
            return f"contact-{email}"

        return await ctx.step.run("upsert-contact", upsert_contact)

    @client.function(id="start-trial", trigger="user/signed-up")
    async def start_trial(ctx: stepline.Context) -> str:
        email = ctx.event.data.get("email", "someone@example.com")

        async def create_trial() -> str:
            record("trial", email)
            return "trial-14-days"

        return await ctx.step.run("create-trial", create_trial)

    @client.function(id="process-new-order", trigger="order/created")
    async def process_new_order(ctx: stepline.Context) -> dict[str, Any]:
        order_id = str(ctx.event.data["order_id"])
        amount = ctx.event.data.get("amount", 0)

        async def charge_card() -> str:
            record("charge", order_id, amount=amount)
            return f"ch_{order_id}"

        async def create_fulfillment(charge: str) -> str:
            # The warehouse API times out on the first try: the step is retried on its own.
            record("fulfillment-attempt", order_id)
            if attempt(f"fulfillment:{ctx.run_id}") == 1:
                raise TimeoutError("the warehouse API timed out")
            return f"ful_{order_id}"

        async def send_confirmation(fulfillment: str) -> str:
            record("confirmation", order_id)
            return f"confirmation sent for {fulfillment}"

        charge = await ctx.step.run("charge-card", charge_card)
        fulfillment = await ctx.step.run("create-fulfillment", create_fulfillment, charge)
        confirmation = await ctx.step.run("send-confirmation", send_confirmation, fulfillment)
        return {"charge": charge, "fulfillment": fulfillment, "confirmation": confirmation}

    @client.function(id="score-lead", trigger="lead/created")
    async def score_lead(ctx: stepline.Context) -> dict[str, Any]:
        domain = ctx.event.data.get("domain", "example.com")

        async def company() -> int:
            record("company-lookup", domain)
            return 40

        async def social() -> int:
            record("social-lookup", domain)
            return 2

        employees, mentions = await asyncio.gather(
            ctx.step.run("lookup-company", company), ctx.step.run("lookup-social", social)
        )
        return {"domain": domain, "score": employees + mentions * 10}

    @client.function(id="sync-inventory", trigger="inventory/sync", retries=1)
    async def sync_inventory(ctx: stepline.Context) -> str:
        sku = str(ctx.event.data.get("sku", "sku-1"))

        async def call_warehouse() -> int:
            if "warehouse" in faults:
                raise ConnectionError("the warehouse refused the connection")
            record("inventory", sku)
            return 7

        stock = await ctx.step.run("call-warehouse", call_warehouse)
        return f"{sku}: {stock} in stock"

    app = fastapi.FastAPI(title="Stepline demo service")
    stepline.fastapi.serve(
        app,
        client,
        [send_welcome_email, add_to_crm, start_trial, process_new_order, score_lead, sync_inventory],
    )

    @app.get("/ledger")
    async def show_ledger() -> list[dict[str, Any]]:
        return ledger

    @app.post("/faults/{name}")
    async def add_fault(name: str) -> dict[str, list[str]]:
        faults.add(name)
        return {"faults": sorted(faults)}

    @app.delete("/faults/{name}")
    async def remove_fault(name: str) -> dict[str, list[str]]:
        faults.discard(name)
        return {"faults": sorted(faults)}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("DEMO_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", "8000")))
    args = parser.parse_args()
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
