"""Valid bodies of the input routes, and what the database holds: for the hostile-input and fuzz tests."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

# Never called: the gateways of these tests make no calls (concurrency 0).
SERVE_URL = "http://127.0.0.1:9/api/inngest"
RUN_ID = "00000000-0000-4000-8000-000000000001"
QI_ID = "1:00000000-0000-4000-8000-000000000002"


def event(**fields: Any) -> dict[str, Any]:
    return {"name": "shop/order.created", "data": {"order": 42, "note": "gift"}, **fields}


def sync_function(**fields: Any) -> dict[str, Any]:
    return {
        "id": "shop-notify",
        "name": "notify",
        "triggers": [{"event": "shop/order.created", "expression": "event.data.order > 1"}],
        "steps": {
            "step": {
                "id": "step",
                "name": "step",
                "retries": {"attempts": 2},
                "runtime": {"type": "http", "url": f"{SERVE_URL}?fnId=shop-notify&stepId=step"},
            }
        },
        **fields,
    }


def sync(**fields: Any) -> dict[str, Any]:
    return {
        "appname": "shop",
        "url": SERVE_URL,
        "framework": "starlette",
        "sdk": "py:v0.5.19",
        "v": "0.1",
        "deployType": "ping",
        "functions": [sync_function()],
        **fields,
    }


def checkpoint(**fields: Any) -> dict[str, Any]:
    step = {"op": "StepRun", "id": "a" * 40, "name": "charge", "displayName": "charge", "data": {"ok": True}}
    return {"run_id": RUN_ID, "fn_id": "shop-notify", "qi_id": QI_ID, "steps": [step], **fields}


def nested(depth: int, leaf: Any = 1) -> str:
    """JSON text of ``depth`` objects nested in one another around ``leaf``."""
    return '{"a":' * depth + json.dumps(leaf) + "}" * depth


async def stored(database_url: str) -> dict[str, Any]:
    """How many rows each table holds: a refused request must change none of them."""
    conn = await asyncpg.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM events) AS events, (SELECT count(*) FROM runs) AS runs,"
            " (SELECT count(*) FROM work) AS work, (SELECT count(*) FROM steps) AS steps,"
            " (SELECT count(*) FROM functions) AS functions,"
            " (SELECT coalesce(max(updated_at)::text, '') FROM functions) AS functions_changed"
        )
        assert row is not None
        return dict(row)
    finally:
        await conn.close()
