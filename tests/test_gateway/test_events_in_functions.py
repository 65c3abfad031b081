"""What Stepline's SDK adds to the official one: ``match`` waits and durable ``send_event``; and the
``cancelOn`` of a Function manifest."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import stepline
import stepline.asgi
from stepline_gateway.clock import ManualClock

from tests.support import RunningGateway, eventually, running_gateway, serve

HOUR = datetime.timedelta(hours=1)


def shop_functions(gateway_url: str, sent: list[list[str]], notes: list[str]) -> Any:
    client = stepline.Client("extra", gateway_url=gateway_url, dev=True)

    @client.function(id="checkout", trigger="extra/checkout")
    async def checkout(ctx: stepline.Context) -> dict[str, Any]:
        paid = await ctx.step.wait_for_event("paid", event="extra/paid", match="data.cart", timeout=HOUR)
        shipped = {"name": "extra/shipped", "data": {"cart": ctx.event.data["cart"]}}
        ids = await ctx.step.send_event("announce", [shipped])
        sent.append(ids)
        return {"paid": paid.data["amount"] if paid else None, "announced": len(ids)}

    @client.function(id="on-shipped", trigger="extra/shipped")
    async def on_shipped(ctx: stepline.Context) -> str:
        return f"shipped {ctx.event.data['cart']}"

    @client.function(id="slow-export", trigger="extra/export")
    async def slow_export(ctx: stepline.Context) -> str:
        await ctx.step.run("prepare", notes.append, "prepare")
        await ctx.step.sleep("throttle", HOUR)
        await ctx.step.run("upload", notes.append, "upload")
        return "exported"

    return stepline.asgi.serve_app(client, [checkout, on_shipped, slow_export])


async def step_in(gw: RunningGateway, event_id: str, status: str) -> bool:
    runs = await gw.runs_of(event_id)
    return bool(runs) and any(s["status"] == status for s in (await gw.run(runs[0]["id"]))["steps"])


async def test_match_waits_and_send_event_fans_out_once(database_url: str) -> None:
    sent: list[list[str]] = []
    async with (
        running_gateway(database_url, clock=ManualClock()) as gw,
        serve(shop_functions(gw.url, sent, [])) as app_url,
    ):
        await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
        [event_id] = await gw.send({"name": "extra/checkout", "data": {"cart": "c-7"}})
        await eventually(lambda: step_in(gw, event_id, "Waiting"))
        await gw.send({"name": "extra/paid", "data": {"cart": "c-8", "amount": 1}})
        await gw.send({"name": "extra/paid", "data": {"cart": "c-7", "amount": 30}})
        [run] = await gw.finished_runs(event_id)
        assert run["output"] == {"paid": 30, "announced": 1}

        async def shipped() -> list[dict[str, Any]]:
            runs = (await gw.http.get("/v1/runs", params={"function": "extra-on-shipped"})).json()["data"]
            return [r for r in runs if r["status"] == "Completed"]

        [shipped_run] = await eventually(shipped)
        assert shipped_run["output"] == "shipped c-7"
        assert len(sent) == 1, "the send step ran once; the final call took its memo"


MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: slow-export}}
spec:
  app: extra
  endpoint: {{url: "{url}/api/inngest"}}
  triggers: [{{event: extra/export}}]
  cancelOn:
    - {{event: extra/export-cancelled, match: data.export_id, timeout: 2h}}
"""


async def test_a_manifests_cancel_on_stops_the_matching_run(database_url: str, tmp_path: Path) -> None:
    notes: list[str] = []
    async with (
        running_gateway(database_url, clock=ManualClock()) as gw,
        serve(shop_functions(gw.url, [], notes)) as app_url,
    ):
        manifest = tmp_path / "export.yaml"
        manifest.write_text(MANIFEST.format(url=app_url))
        gw.gateway._manifests = [manifest]
        await gw.gateway.load_manifests()
        await gw.gateway.reload_routes()
        [stay, go] = await gw.send(
            {"name": "extra/export", "data": {"export_id": 1}},
            {"name": "extra/export", "data": {"export_id": 2}},
        )
        for event_id in (stay, go):
            await eventually(lambda e=event_id: step_in(gw, e, "Sleeping"))
        await gw.send({"name": "extra/export-cancelled", "data": {"export_id": 2}})

        async def status(event_id: str) -> str:
            return str((await gw.runs_of(event_id))[0]["status"])

        assert await eventually(lambda: _is(status(go), "Cancelled"))
        assert await status(stay) == "Running"
        assert notes == ["prepare", "prepare"]


async def _is(value: Any, expected: str) -> bool:
    return await value == expected
