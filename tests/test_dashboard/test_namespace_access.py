"""The dashboard signed in with a viewer's token of one namespace, in real Chromium: the namespace selector
offers only that namespace, the runs and events listed are only its own, a run has no Replay or Cancel
button, and a run of another namespace opened by its address shows the API's 403."""

from __future__ import annotations

from playwright.async_api import Browser, expect
from stepline_operator import event_keys
from stepline_operator.event_keys import hashes_of

from tests.support import running_gateway
from tests.test_dashboard.browser import Console, new_page
from tests.test_security.test_namespaces import encode
from tests.test_security.test_tokens import VIEWER_A, publish_token, two_namespaces_with_a_run_each


async def test_a_viewer_of_a_namespace_sees_only_it_and_no_replay(
    database_url: str, browser: Browser
) -> None:
    console = Console()
    async with running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        run_of = await two_namespaces_with_a_run_each(gw)
        await event_keys.publish(gw.gateway.store.pool, "team-a", "keys", hashes_of({"k": encode(b"key-a")}))
        await publish_token(gw, "viewer", VIEWER_A, "viewer", "team-a")
        [of_a] = await gw.send({"name": "shop/other", "data": {}}, key="key-a")
        async with new_page(browser, console) as (_, page):
            await page.goto(f"{gw.url}/login")
            await page.get_by_label("API token").fill(VIEWER_A)
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator(f'tr[data-run="{run_of["team-a"]}"]')).to_be_visible()
            await expect(page.locator("tr[data-run]")).to_have_count(1)
            await expect(page.locator(f'tr[data-run="{run_of["team-b"]}"]')).to_have_count(0)
            selector = page.get_by_label("Namespace")
            await expect(selector.locator("option")).to_have_text(["team-a"])
            # The event log holds the events sent into team-a, not the one sent to every namespace.
            await page.get_by_role("link", name="Events").click()
            await expect(page.locator(f'li[data-event="{of_a}"]')).to_be_visible()
            await expect(page.locator("li[data-event]")).to_have_count(1)
            await expect(page.locator('p[data-scope="team-a"]')).to_contain_text("sent to every namespace")
            await page.get_by_role("link", name="Runs").click()

            await page.locator(f'tr[data-run="{run_of["team-a"]}"]').get_by_role("link").click()
            await expect(page.get_by_role("heading", level=1)).to_have_text("pay")
            await expect(page.get_by_role("button", name="Replay", exact=True)).to_have_count(0)
            await expect(page.get_by_role("button", name="Cancel", exact=True)).to_have_count(0)

            await page.goto(f"{gw.url}/#/runs/{run_of['team-b']}")
            await expect(page.get_by_text("namespace team-b")).to_be_visible()
    # The browser reports the one refusal asked for above, and nothing else.
    [refused] = console.errors
    assert f"/v1/runs/{run_of['team-b']}" in refused
    assert "403" in refused


async def test_the_admin_sees_every_namespace_and_may_replay(database_url: str, browser: Browser) -> None:
    console = Console()
    async with running_gateway(database_url, dev=False, event_keys=["k"], concurrency=0) as gw:
        run_of = await two_namespaces_with_a_run_each(gw)
        async with new_page(browser, console) as (_, page):
            await page.goto(f"{gw.url}/login")
            await page.get_by_label("API token").fill(gw.gateway.settings.api_token or "")
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.locator("tr[data-run]")).to_have_count(2)
            selector = page.get_by_label("Namespace")
            await expect(selector.locator("option")).to_have_text(["All namespaces", "team-a", "team-b"])
            await selector.select_option("team-b")
            await expect(page.locator("tr[data-run]")).to_have_count(1)
            await expect(page.locator(f'tr[data-run="{run_of["team-b"]}"]')).to_be_visible()
            await page.locator(f'tr[data-run="{run_of["team-b"]}"]').get_by_role("link").click()
            await expect(page.get_by_role("button", name="Replay", exact=True)).to_be_visible()
    assert console.errors == []
