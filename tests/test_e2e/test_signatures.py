"""Production mode end to end: the gateway signs every call, our SDK verifies it and signs its answers."""

from __future__ import annotations

import httpx
import stepline
import stepline.asgi

from tests.support import route, running_gateway, serve

KEY = "signkey-prod-" + "5e" * 32
OTHER_KEY = "signkey-prod-" + "a1" * 32


def service(signing_key: str, gateway_url: str) -> tuple[stepline.Client, stepline.Function]:
    client = stepline.Client("signed", gateway_url=gateway_url, signing_key=signing_key, event_key="k")

    @client.function(id="hello", trigger="signed/hello", retries=0)
    async def hello(ctx: stepline.Context) -> str:
        return await ctx.step.run("greet", lambda: f"hello {ctx.event.data['who']}")

    return client, hello


async def test_signed_calls_run_and_the_app_syncs_with_its_token(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, signing_key=KEY, event_keys=["k"]) as gw:
        client, hello = service(KEY, gw.url)
        async with serve(stepline.asgi.serve_app(client, [hello])) as app_url:
            await gw.gateway.caller.request_sync(f"{app_url}/api/inngest")
            [event_id] = await client.send({"name": "signed/hello", "data": {"who": "ada"}})
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed"
            assert run["output"] == "hello ada"


async def test_calls_signed_with_another_key_are_refused_by_the_sdk(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, signing_key=KEY, event_keys=["k"]) as gw:
        client, hello = service(OTHER_KEY, gw.url)
        async with serve(stepline.asgi.serve_app(client, [hello])) as app_url:
            async with httpx.AsyncClient() as http:
                unsigned = await http.post(f"{app_url}/api/inngest?fnId=signed-hello&stepId=step", json={})
                assert unsigned.status_code == 401
            # The app cannot sync to a gateway whose key it does not share...
            sync = await http_put(f"{app_url}/api/inngest")
            assert sync.status_code == 401
            # ...and a call the gateway signs with its own key is refused: the run fails with the 401.
            await gw.publish(
                route("signed-hello", f"{app_url}/api/inngest", {"event": "signed/hello"}, retries=0)
            )
            [event_id] = await gw.send({"name": "signed/hello", "data": {"who": "bob"}}, key="k")
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Failed"
            assert "answered 401" in run["error"]["message"]


async def http_put(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.put(url)
