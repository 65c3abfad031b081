"""Old history is pruned after the retention period; runs still going are kept, whatever their age."""

from __future__ import annotations

import datetime

import pytest
from stepline_gateway.clock import ManualClock
from stepline_gateway.settings import Settings

from tests.support import route, running_gateway


def test_retention_below_the_duplicate_window_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 24"):
        Settings(retention_h=1)


async def test_prune_deletes_old_ended_history_only(database_url: str) -> None:
    clock = ManualClock()
    async with running_gateway(database_url, clock=clock, concurrency=0, retention_h=48) as gw:
        await gw.publish(route("keep-f", "http://127.0.0.1:9/api/inngest", {"event": "keep/go"}, retries=0))
        [old_ended, old_running] = await gw.send({"name": "keep/go"}, {"name": "keep/go"})
        [ended_run] = await gw.runs_of(old_ended)
        assert (await gw.http.post(f"/v1/runs/{ended_run['id']}/cancel")).status_code == 200
        clock.advance(datetime.timedelta(hours=47).total_seconds())
        [recent] = await gw.send({"name": "keep/go"})
        assert await gw.gateway.prune() == 0
        clock.advance(datetime.timedelta(hours=2).total_seconds())
        assert await gw.gateway.prune() == 2  # the event, and the inngest/function.cancelled it led to
        assert (await gw.http.get(f"/v1/events/{old_ended}")).status_code == 404
        assert (await gw.http.get(f"/v1/runs/{ended_run['id']}")).status_code == 404
        assert len(await gw.runs_of(old_running)) == 1
        assert len(await gw.runs_of(recent)) == 1
