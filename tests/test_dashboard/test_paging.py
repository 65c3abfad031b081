"""Paging runs stays fast at 100,000 runs: each page is a short range scan of an index, never a table scan.

The runs are written straight into Postgres (generate_series), with ties on created_at, twenty functions and
rare statuses, then read through the API and explained: custom plans (with the values) and generic plans
(what a prepared statement may switch to after a few executions) alike.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
from playwright.async_api import expect
from stepline_store.pool import QUERIES

from tests.conftest import TEMPLATE, with_database
from tests.support import running_gateway, tables_with_rows
from tests.test_dashboard.conftest import Dashboard

RUNS = 100_000
LIMIT = 50
# Each query, its filters, and how many rows it may read past the page: none where its index holds every
# filter; where the planner may read the newest runs and keep the function's (one in 20 here) or the
# function's runs and keep the failed ones, a small multiple of the page, far from 100,000.
# A bitmap heap scan reads the rows an index range gave it (a short time window, then sorted).
INDEXED_SCANS = ("Index Scan", "Index Only Scan", "Bitmap Heap Scan")
RUNS_PAGE_QUERIES = {
    "runs_page": ((), 0),
    "runs_page_of_function": (("shop-fn-3",), 25 * 50),
    "runs_page_with_status": (("Failed",), 0),
    "runs_page_of_function_with_status": (("shop-fn-3", "Failed"), 40 * 50),
}

# Two runs per second of history (ties on created_at are broken by id), one in 31 Failed, one in 37
# Cancelled, the rest Completed; twenty functions; a thousand events.
FILL = f"""
INSERT INTO functions (id, app_id, name, url, triggers, retries, source)
SELECT 'shop-fn-' || n, 'shop', 'fn-' || n, 'http://127.0.0.1:9/api/inngest', '[{{"event": "x"}}]', 0, 'test'
FROM generate_series(0, 19) AS n;
INSERT INTO events (id, name, data, ts, received_at)
SELECT 'ev-' || n, 'order/created', jsonb_build_object('n', n), 0, now() - n * interval '1 minute'
FROM generate_series(1, 1000) AS n;
INSERT INTO runs (id, function_id, function_name, url, max_attempts, event_id, status, output,
                  created_at, started_at, ended_at)
SELECT stepline_uuid7(t), 'shop-fn-' || (n % 20), 'fn-' || (n % 20), 'http://127.0.0.1:9/api/inngest', 5,
       'ev-' || (1 + n % 1000),
       CASE WHEN n % 31 = 0 THEN 'Failed' WHEN n % 37 = 1 THEN 'Cancelled' ELSE 'Completed' END,
       to_jsonb(n), t, t, t + interval '20 ms'
FROM generate_series(1, {RUNS}) AS n, LATERAL (SELECT now() - (n / 2) * interval '1 second' AS t) AS at;
ANALYZE events;
ANALYZE runs;
"""


@pytest.fixture(scope="module")
async def history(postgres_uri: str) -> AsyncIterator[str]:
    """A database with the 100,000 runs, made once for this module's tests, which only read it."""
    name = f"paging_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_uri)
    try:
        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE}")
    finally:
        await admin.close()
    url = with_database(postgres_uri, name)
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(FILL)
    finally:
        await conn.close()
    yield url
    admin = await asyncpg.connect(postgres_uri)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def many_runs(history: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(history)
    try:
        yield conn
    finally:
        await conn.close()


def plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from plan_nodes(child)


def _nodes(raw: Any) -> list[dict[str, Any]]:
    [result] = json.loads(raw) if isinstance(raw, str) else raw
    return list(plan_nodes(result["Plan"]))


async def explain(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The plan for these values, run (ANALYZE) to count the rows each node read."""
    return _nodes(await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *args))


async def explain_generic(conn: asyncpg.Connection, sql: str, *args: Any) -> list[dict[str, Any]]:
    """The generic plan: the one a prepared statement may keep for any values after a few executions."""
    values = ", ".join("NULL" if value is None else f"'{value}'" for value in args)
    await conn.execute(f"PREPARE page AS {sql}")
    try:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        return _nodes(await conn.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE page({values})"))
    finally:
        await conn.execute("DEALLOCATE page")
        await conn.execute("RESET plan_cache_mode")


def scans_of_runs(nodes: list[dict[str, Any]], populated: set[str]) -> list[dict[str, Any]]:
    """The scans of the days of runs that hold rows (runs are partitioned by day; an empty day costs
    nothing however it is read)."""
    return [
        node
        for node in nodes
        if str(node.get("Relation Name")).startswith("runs_p") and node["Relation Name"] in populated
    ]


async def test_first_and_next_pages_come_from_the_api(many_runs: asyncpg.Connection, history: str) -> None:
    newest = await many_runs.fetch(
        "SELECT id::text FROM runs ORDER BY created_at DESC, id DESC LIMIT $1", 2 * LIMIT
    )
    async with running_gateway(history) as gw:
        first = (await gw.http.get("/v1/runs", params={"limit": LIMIT})).json()
        second = (
            await gw.http.get("/v1/runs", params={"limit": LIMIT, "cursor": first["next_cursor"]})
        ).json()
        assert [r["id"] for r in first["data"] + second["data"]] == [row["id"] for row in newest]

        params = {"limit": LIMIT, "function": "shop-fn-3", "status": "Failed"}
        filtered = (await gw.http.get("/v1/runs", params=params)).json()
        more = (await gw.http.get("/v1/runs", params={**params, "cursor": filtered["next_cursor"]})).json()
        rows = filtered["data"] + more["data"]
        assert len(rows) == 2 * LIMIT
        assert {(r["function"]["id"], r["status"]) for r in rows} == {("shop-fn-3", "Failed")}
        assert len({r["id"] for r in rows}) == 2 * LIMIT

        until = first["data"][9]["created_at"]
        since = first["data"][30]["created_at"]
        window = (await gw.http.get("/v1/runs", params={"since": since, "until": until})).json()["data"]
        assert window, "the time window holds runs"
        at = datetime.datetime.fromisoformat
        assert all(at(since) <= at(r["created_at"]) < at(until) for r in window)
        expected = [r["id"] for r in first["data"] if at(since) <= at(r["created_at"]) < at(until)]
        assert [r["id"] for r in window] == expected

        bad = await gw.http.get("/v1/runs", params={"since": "yesterday"})
        assert bad.status_code == 400
        assert "ISO 8601" in bad.json()["error"]


async def test_every_runs_page_query_is_an_index_range_scan(many_runs: asyncpg.Connection) -> None:
    rows = await many_runs.fetch(
        "SELECT created_at, id FROM runs WHERE function_id = 'shop-fn-3' AND status = 'Failed' "
        "ORDER BY created_at DESC, id DESC LIMIT $1",
        LIMIT,
    )
    cursor = (rows[-1]["created_at"], rows[-1]["id"])
    since = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=6)
    populated = await tables_with_rows(many_runs)
    for name, (filters, may_skip) in RUNS_PAGE_QUERIES.items():
        for bounds in [(None, None, None), (None, *cursor), (since, *cursor)]:
            for nodes in [
                await explain(many_runs, QUERIES[name], *bounds, LIMIT, *filters),
                await explain_generic(many_runs, QUERIES[name], *bounds, LIMIT, *filters),
            ]:
                scans = scans_of_runs(nodes, populated)
                assert scans, (name, nodes)
                whole = [
                    n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") in populated
                ]
                assert not whole, (name, nodes)
                indexes = [n.get("Index Name") for n in nodes if "Index Cond" in n]
                assert indexes, (name, nodes)
                assert all(str(index).startswith("runs_") for index in indexes), (name, nodes)
                for scan in scans:
                    assert scan["Node Type"] in INDEXED_SCANS, (name, scan)
                    if "Actual Rows" in scan:
                        # A merge of the days reads one row past the page from each day but the last.
                        assert scan["Actual Rows"] <= LIMIT + 1, (name, bounds, scan)
                        assert scan.get("Rows Removed by Filter", 0) <= may_skip, (name, bounds, scan)


async def test_recent_counts_read_only_recent_runs_and_at_most_a_thousand_each(
    many_runs: asyncpg.Connection, history: str
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    populated = await tables_with_rows(many_runs)
    for since in (now - datetime.timedelta(minutes=10), now - datetime.timedelta(days=1)):
        nodes = await explain(many_runs, QUERIES["count_recent_runs"], since, 1000)
        scans = scans_of_runs(nodes, populated)
        assert not [n for n in scans if n["Node Type"] not in INDEXED_SCANS], nodes
        # At most a thousand of each function, and one more from each other day the merge of days looked at.
        assert sum(n["Actual Rows"] * n["Actual Loops"] for n in scans) <= 20 * (1000 + len(populated))
    async with running_gateway(history) as gw:
        ten_minutes = (now - datetime.timedelta(minutes=10)).isoformat()
        recent = (await gw.http.get("/v1/functions/run-counts", params={"since": ten_minutes})).json()
        assert len(recent["data"]) == 20
        assert 1150 <= sum(sum(f["counts"].values()) for f in recent["data"]) <= 1250
        assert not any(f["capped"] for f in recent["data"])
        day = (await gw.http.get("/v1/functions/run-counts")).json()
        assert day["at_most"] == 1000
        assert all(f["capped"] and sum(f["counts"].values()) == 1000 for f in day["data"])
        [fn3] = [f for f in day["data"] if f["function_id"] == "shop-fn-3"]
        assert set(fn3["counts"]) == {"Completed", "Failed", "Cancelled"}


async def test_the_pager_walks_older_and_newer(dashboard: Dashboard, database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(FILL.replace(str(RUNS), "120"))
    finally:
        await conn.close()
    page = dashboard.page
    await page.goto(f"{dashboard.url}/#/runs")
    rows = page.locator("tr[data-run]")
    await expect(rows).to_have_count(LIMIT)
    first_page = await rows.first.get_attribute("data-run")
    await expect(page.get_by_role("button", name="← Newer")).to_be_disabled()

    await page.get_by_role("button", name="Older →").click()
    await expect(page.get_by_text("Page 2")).to_be_visible()
    await expect(rows).to_have_count(LIMIT)
    assert await rows.first.get_attribute("data-run") != first_page
    await page.get_by_role("button", name="Older →").click()
    await expect(page.get_by_text("Page 3")).to_be_visible()
    await expect(rows).to_have_count(20)
    await expect(page.get_by_role("button", name="Older →")).to_be_disabled()

    await page.get_by_role("button", name="← Newer").click()
    await page.get_by_role("button", name="← Newer").click()
    await expect(page.get_by_text("Newest first")).to_be_visible()
    await expect(rows.first).to_have_attribute("data-run", first_page or "")
