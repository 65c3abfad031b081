"""Outside dev mode the dashboard and the /v1 API need the API token; ingest, health and metrics do not.

A browser signs in once with the token and then uses the dashboard; a program sends it as a bearer token.
A gateway without a token refuses the API with a message saying how to set one, unless told to serve it
openly (``no_api_token``).
"""

from __future__ import annotations

import uuid

import httpx
from playwright.async_api import Browser, expect
from stepline_gateway.dashboard.auth import DASHBOARD_HEADER, SESSION_COOKIE
from stepline_gateway.routing import Function

from tests.support import API_TOKEN, RunningGateway, running_gateway
from tests.test_dashboard.browser import Console, new_page


def unreachable_function() -> Function:
    return Function(
        id="ops-nightly",
        app_id="ops",
        name="nightly",
        url="http://127.0.0.1:9/api/inngest",
        triggers=[{"event": "ops/nightly"}],
        retries=0,
        paused=False,
        source="manifest",
    )


async def failed_run(gw: RunningGateway) -> str:
    await gw.gateway.registry.publish([unreachable_function()], replace_source="manifest")
    await gw.gateway.reload_routes()
    [event_id] = await gw.send({"name": "ops/nightly", "data": {"night": 1}}, key="k")
    [run] = await gw.finished_runs(event_id)
    return str(run["id"])


async def test_the_api_needs_the_token_and_ingest_does_not(database_url: str) -> None:
    async with running_gateway(database_url, dev=False, event_keys=["k"]) as gw:
        run_id = await failed_run(gw)
        async with httpx.AsyncClient(base_url=gw.url) as anonymous:
            for path in ("/v1/runs", f"/v1/runs/{run_id}", "/v1/events", "/v1/functions"):
                refused = await anonymous.get(path)
                assert refused.status_code == 401, path
                assert "Authorization: Bearer" in refused.json()["error"]
                assert refused.headers["www-authenticate"].startswith("Bearer")
            wrong = await anonymous.get("/v1/runs", headers={"authorization": "Bearer not-the-token"})
            assert wrong.status_code == 401
            assert (await anonymous.post(f"/v1/runs/{run_id}/replay")).status_code == 401
            assert (
                await anonymous.get("/v1/runs", headers={"authorization": f"Bearer {API_TOKEN}"})
            ).is_success

            assert (await anonymous.get("/healthz")).status_code == 200
            assert (await anonymous.get("/metrics")).status_code == 200
            sent = await anonymous.post("/e/k", json={"name": "ops/other", "data": {}})
            assert sent.status_code == 200
            page = await anonymous.get("/")
            assert (page.status_code, page.headers["location"]) == (303, "/login")


async def test_a_browser_signs_in_with_the_token_and_uses_the_dashboard(
    database_url: str, browser: Browser
) -> None:
    console = Console()
    async with running_gateway(database_url, dev=False, event_keys=["k"]) as gw:
        run_id = await failed_run(gw)
        async with new_page(browser, console) as (context, page):
            await page.goto(f"{gw.url}/")
            assert page.url == f"{gw.url}/login"
            await page.get_by_label("API token").fill(API_TOKEN)
            await page.get_by_role("button", name="Sign in").click()
            row = page.locator(f'tr[data-run="{run_id}"]')
            await expect(row.locator(".badge")).to_have_text("Failed")
            await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
            cookies = {c["name"]: c for c in await context.cookies()}
            session = cookies[SESSION_COOKIE]
            assert session["httpOnly"]
            assert session["sameSite"] == "Lax"
            assert API_TOKEN not in session["value"]

            await row.get_by_role("link").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("nightly")
            await page.get_by_role("button", name="Replay", exact=True).click()
            await page.get_by_role("dialog").get_by_role("button", name="Replay", exact=True).click()
            await expect(page.get_by_text("Replay of")).to_be_visible()
            for section, ready in [("Events", "li[data-event]"), ("Functions", "tr[data-function]")]:
                await (
                    page.get_by_role("navigation", name="Sections").get_by_role("link", name=section).click()
                )
                await expect(page.locator(ready).first).to_be_visible()

            async with httpx.AsyncClient(
                base_url=gw.url, cookies={SESSION_COOKIE: session["value"]}
            ) as browserish:
                assert (await browserish.get("/v1/runs")).status_code == 200
                forged = await browserish.post(f"/v1/runs/{run_id}/replay")
                assert forged.status_code == 403
                assert DASHBOARD_HEADER in forged.json()["error"]

            await page.get_by_role("button", name="Sign out").click()
            await expect(page.get_by_label("API token")).to_be_visible()
            await page.goto(f"{gw.url}/#/runs")
            assert page.url.startswith(f"{gw.url}/login")
    assert console.errors == []


async def test_a_wrong_token_does_not_sign_in(database_url: str) -> None:
    async with (
        running_gateway(database_url, dev=False, event_keys=["k"]) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        answer = await http.post("/login", data={"token": "guess"})
        assert answer.status_code == 401
        assert "That is not this gateway" in answer.text
        assert SESSION_COOKIE not in answer.cookies


async def test_without_a_token_the_api_is_locked_and_says_how_to_set_one(database_url: str) -> None:
    async with (
        running_gateway(database_url, dev=False, event_keys=["k"], api_token=None) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        refused = await http.get("/v1/runs")
        assert refused.status_code == 401
        message = refused.json()["error"]
        assert "STEPLINE_API_TOKEN" in message
        assert "STEPLINE_NO_API_TOKEN" in message
        login = await http.get("/login")
        assert "STEPLINE_API_TOKEN" in login.text
        assert 'name="token"' in login.text
        assert '<form method="post" action="/login" hidden>' in login.text
        assert (await http.post("/e/k", json={"name": "x/y", "data": {}})).status_code == 200


async def test_no_api_token_serves_the_api_openly(database_url: str) -> None:
    async with (
        running_gateway(database_url, dev=False, event_keys=["k"], api_token=None, no_api_token=True) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        assert (await http.get("/v1/runs")).status_code == 200
        page = await http.get("/")
        assert page.status_code == 200
        assert 'data-mode="open"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_dev_mode_is_open(database_url: str) -> None:
    async with (
        running_gateway(database_url, api_token=None) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        assert (await http.get("/v1/runs")).status_code == 200
        assert 'data-mode="dev"' in (await http.get("/")).text
        assert (await http.get("/login", follow_redirects=False)).headers["location"] == "/"


async def test_sdk_calls_under_v1_keep_the_signing_key_instead(database_url: str) -> None:
    async with (
        running_gateway(database_url, dev=False, event_keys=["k"]) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        answer = await http.post(f"/v1/checkpoint/{uuid.uuid4()}/async", json={})
        assert answer.status_code == 401
        assert "signing key" in answer.json()["error"]
