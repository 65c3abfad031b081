"""The functions page shows what each function declares: its flow control, one line per setting, and its
retry policy under its retries; a function without them says none."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect
from stepline_gateway.registry import load_manifests

from tests.support import running_gateway
from tests.test_dashboard.browser import Console, new_page

MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: sync-accounts}
spec:
  app: crm
  endpoint: {url: "http://127.0.0.1:9/api/inngest"}
  triggers: [{event: account/changed}]
  retries: 6
  concurrency: [{limit: 2, key: event.data.account}, {limit: 10, key: '"crm"', scope: account}]
  throttle: {limit: 5, period: 1m, burst: 3}
  rateLimit: {limit: 100, period: 1h}
  debounce: {period: 10s, timeout: 1m}
  priority: {run: "event.data.vip ? 60 : 0"}
  idempotency: event.data.change_id
  singleton: {mode: skip, key: event.data.account}
  timeouts: {start: 5m, finish: 1h}
  retryPolicy: {backoff: Linear, initialDelay: 3s, maxDelay: 1m, jitterPercent: 0, timeout: 20s}
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: collect}
spec:
  app: crm
  endpoint: {url: "http://127.0.0.1:9/api/inngest"}
  triggers: [{event: account/item}]
  batchEvents: {maxSize: 20, timeout: 10s, if: event.data.small}
---
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: plain}
spec:
  app: crm
  endpoint: {url: "http://127.0.0.1:9/api/inngest"}
  triggers: [{event: account/plain}]
"""


async def test_the_functions_page_shows_flow_control_and_retry_policy(
    database_url: str, browser: Browser, tmp_path: Path
) -> None:
    path = tmp_path / "functions.yaml"
    path.write_text(MANIFEST)
    console = Console()
    async with running_gateway(database_url) as gw, new_page(browser, console) as (_, page):
        await gw.publish(*load_manifests([path]))
        await page.goto(f"{gw.url}/#/functions")
        row = page.locator('tr[data-function="crm-sync-accounts"]')
        settings = row.locator("td.flow-control li")
        await expect(settings).to_have_text(
            [
                "concurrency2 per event.data.account",
                'concurrency10 per "crm" (account)',
                "throttle5 per 1m, burst 3",
                "rate limit100 per 1h",
                "debounce10s, at most 1m",
                "priorityevent.data.vip ? 60 : 0",
                "idempotencyevent.data.change_id",
                "singletonskip per event.data.account",
                "timeoutsstart 5m, finish 1h",
            ]
        )
        await expect(row.locator(".retry-policy")).to_have_text(
            "Linear from 3s to 1m, jitter 0%, calls cut off at 20s"
        )
        await expect(row.locator("td.num")).to_contain_text("6")
        collect = page.locator('tr[data-function="crm-collect"]')
        await expect(collect.locator("td.flow-control li")).to_have_text(
            ["batch20 events, 10s if event.data.small"]
        )
        await expect(collect.locator(".retry-policy")).to_have_count(0)
        plain = page.locator('tr[data-function="crm-plain"]')
        await expect(plain.locator("td.flow-control")).to_have_text("none")
    assert console.errors == []
