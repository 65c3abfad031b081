"""The NOTIFY listener after its connection is lost: it reconnects by itself, and then catches up on what it
may have missed meanwhile (routes published, calls due), instead of waiting for the slow timers."""

from __future__ import annotations

import asyncpg
import stepline
import stepline.asgi

from tests.support import route, running_gateway, serve

# What a publish and an ingest write, without their NOTIFY: the notifications a lost listener never saw.
UNNOTIFIED_ROUTE = """
INSERT INTO functions (id, app_id, name, url, triggers, retries, source)
VALUES ('listen-late', 'listen', 'late', $1, '[{"event": "listen/late"}]', 0, 'manifest')
"""
UNNOTIFIED_RUN = """
WITH e AS (
    INSERT INTO events (id, name, data, ts, received_at) VALUES ('unnotified', 'listen/go', '{}', 0, now())
    RETURNING id
), r AS (
    INSERT INTO runs (id, event_id, function_id, function_name, url, max_attempts, status, created_at)
    SELECT stepline_uuid7(now()), id, 'listen-one', 'one', $1, 1, 'Queued', now() FROM e RETURNING id
)
INSERT INTO work (run_id, step_id, available_at) SELECT id, 'step', now() FROM r
"""


async def test_a_lost_listener_reconnects_reloads_the_routes_and_wakes_the_dispatcher(
    database_url: str,
) -> None:
    client = stepline.Client("listen", dev=True, checkpoint=False)

    @client.function(id="one", trigger="listen/go")
    async def one(ctx: stepline.Context) -> str:
        return "done"

    # No route refresh and no idle recheck within the test: only the reconnect can catch up.
    async with (
        serve(stepline.asgi.serve_app(client, [one])) as app_url,
        running_gateway(database_url, routes_refresh_s=3600) as gw,
    ):
        url = f"{app_url}/api/inngest"
        await gw.publish(route("listen-one", url, {"event": "listen/go"}))
        [warm_up] = await gw.send({"name": "listen/go", "data": {}})
        await gw.finished_runs(warm_up)
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute(UNNOTIFIED_ROUTE, url)
            await admin.execute(UNNOTIFIED_RUN, url)
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'stepline-gateway listener'"
            )
        finally:
            await admin.close()
        assert terminated == 1
        [run] = await gw.finished_runs("unnotified", timeout=10)  # the idle recheck would take 30 s
        assert run["status"] == "Completed"
        assert "listen-late" in gw.gateway.routes.functions
        assert (await gw.http.get("/readyz")).status_code == 200
        health = gw.gateway.supervisor.health["listener"]
        assert health.state == "running"
