"""The Webhooks page in Chromium: each endpoint, a refused and an accepted delivery (why, and the events it
gave), live updates, the filter by webhook; never a secret. The page must log no error."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, expect
from stepline_gateway.clock import ManualClock
from stepline_store.sealing import new_key

from tests.support import RunningGateway, running_gateway
from tests.test_dashboard.browser import Console, new_page
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


@pytest.fixture
async def hooks(
    database_url: str, browser: Browser
) -> AsyncIterator[tuple[RunningGateway, Page, ManualClock]]:
    console = Console()
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, secrets_key=new_key()) as gw:
        await publish(
            gw,
            (
                webhook(
                    "github",
                    {"github": {"secretRef": ref("gh")}},
                    transform='{"name": "github/" + headers["x-github-event"], "data": body, '
                    '"id": headers["x-github-delivery"]}',
                ),
                [GITHUB_SECRET],
            ),
            (
                webhook("stripe", {"stripe": {"secretRef": ref("st"), "previousSecretRef": ref("old")}}),
                [STRIPE_SECRET, "whsec_old"],
            ),
        )
        async with new_page(browser, console) as (_, page):
            yield gw, page, clock
    assert console.errors == [], "the dashboard logged errors"


async def test_the_page_shows_endpoints_and_a_refused_and_an_accepted_delivery(
    hooks: tuple[RunningGateway, Page, ManualClock],
) -> None:
    gw, page, clock = hooks
    await page.goto(f"{gw.url}/#/webhooks")
    await page.get_by_role("navigation", name="Sections").get_by_role("link", name="Webhooks").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Webhooks")
    github = page.locator('tr[data-webhook="shop/github"]')
    await expect(github).to_contain_text("/webhooks/shop/github")
    await expect(github).to_contain_text("github")
    await expect(github).to_contain_text('headers["x-github-event"]')
    await expect(github.locator(".badge")).to_have_text("Ready")
    stripe = page.locator('tr[data-webhook="shop/stripe"]')
    await expect(stripe).to_contain_text("timestamps within 300 s")
    await expect(stripe).to_contain_text("current + previous (rotating)")
    await expect(stripe).to_contain_text("default: webhook/shop.stripe")
    await expect(page.locator("tr[data-delivery]")).to_have_count(0)

    # A refused delivery, then an accepted one: the page updates by itself.
    body = b'{"ref": "refs/heads/main"}'
    refused = await post(gw, "/webhooks/shop/github", body, github_headers("an-old-secret", body))
    assert refused.status_code == 401
    accepted = await post(
        gw, "/webhooks/shop/github", body, github_headers(GITHUB_SECRET, body, delivery="d-42")
    )
    assert accepted.status_code == 200
    rows = page.locator("tr[data-delivery]")
    await expect(rows).to_have_count(2)
    newest, oldest = rows.nth(0), rows.nth(1)
    await expect(newest.locator(".badge")).to_have_text("Accepted")
    await expect(newest).to_contain_text("d-42")
    await expect(oldest.locator(".badge")).to_have_text("Refused")
    await expect(oldest).to_contain_text("401")
    await expect(oldest).to_contain_text("the X-Hub-Signature-256 signature does not match")

    # A Stripe delivery signed with the previous secret says so; the filter keeps one webhook's deliveries.
    stripe_body = b'{"id": "evt_9", "type": "charge.succeeded"}'
    headers = stripe_headers("whsec_old", stripe_body, at=clock.now())
    assert (await post(gw, "/webhooks/shop/stripe", stripe_body, headers)).status_code == 200
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_contain_text("signed with the previous secret")
    await page.get_by_label("Webhook", exact=True).select_option("shop/github")
    await expect(rows).to_have_count(2)
    assert "webhook=shop%2Fgithub" in page.url

    # The accepted delivery links to the event it gave.
    await newest.get_by_role("link", name="d-42").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("github/push")
    await expect(page.locator("#event-payload")).to_contain_text('"ref": "refs/heads/main"')

    await page.goto(f"{gw.url}/#/webhooks")
    await expect(page.locator("tr[data-delivery]")).to_have_count(3)
    content = await page.content()
    for secret in (GITHUB_SECRET, STRIPE_SECRET, "whsec_old"):
        assert secret not in content
    assert re.search(r"Webhooks · Stepline", await page.title())
