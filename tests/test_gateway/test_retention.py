"""History goes by whole days once the retention period is over; a day holding a run still going is kept,
whatever its age, and so is a day whose event a replayed run still going needs."""

from __future__ import annotations

import datetime

import pytest
from stepline_gateway.clock import ManualClock
from stepline_gateway.settings import Settings
from stepline_store import history

from tests.support import eventually, route, running_gateway

DAY = datetime.timedelta(days=1)


def test_retention_below_the_duplicate_window_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 24"):
        Settings(retention_h=1)


def midnight_after(at: datetime.datetime) -> datetime.datetime:
    return datetime.datetime.combine(history.utc_day(at) + DAY, datetime.time(), datetime.UTC)


async def test_days_past_retention_are_dropped_whole_and_days_with_runs_going_are_kept(
    database_url: str,
) -> None:
    wall = datetime.datetime.now(datetime.UTC)
    # Day 0 begins an hour after midnight; its history is past 48 h of retention from day 3's start.
    clock = ManualClock(midnight_after(wall) + datetime.timedelta(hours=1))
    day0 = history.utc_day(clock.now())
    async with running_gateway(database_url, clock=clock, concurrency=0, retention_h=48) as gw:

        async def cancel(run_id: str) -> None:
            assert (await gw.http.post(f"/v1/runs/{run_id}/cancel")).status_code == 200

        async def drop() -> list[datetime.date]:
            """The days of this test dropped (the empty days before it, made at migrate, go too)."""
            return [day for day in await gw.gateway.history.drop_expired() if day >= day0]

        async def only_run(event_id: str) -> str:
            [run] = await gw.runs_of(event_id)
            return str(run["id"])

        await gw.publish(route("keep-f", "http://127.0.0.1:9/api/inngest", {"event": "keep/go"}, retries=0))
        [ended, going, replayed] = await gw.send(
            {"name": "keep/go"}, {"name": "keep/go"}, {"name": "keep/go"}
        )
        ended_run, going_run, replayed_run = [await only_run(e) for e in (ended, going, replayed)]
        await cancel(ended_run)
        await cancel(replayed_run)
        clock.advance(DAY.total_seconds())
        replay = (await gw.http.post(f"/v1/runs/{replayed_run}/replay")).json()
        [newer] = await gw.send({"name": "keep/go"})
        await cancel(await only_run(newer))
        clock.advance(DAY.total_seconds())

        # Day 2, 01:00: day 0 ended 25 h ago, within 48 h.
        assert await drop() == []
        clock.advance(DAY.total_seconds())
        # Day 3, 01:00: day 0 ended 49 h ago, but holds a run going.
        assert await drop() == []
        await cancel(going_run)
        # ... and an event that a replay going (a run of day 1) needs.
        assert await drop() == []
        assert (await gw.http.get(f"/v1/events/{ended}")).status_code == 200
        await cancel(replay["id"])
        # Day 0 goes whole; day 1 (ended 25 h ago) stays.
        assert await drop() == [day0]
        for event_id in (ended, going, replayed):
            assert (await gw.http.get(f"/v1/events/{event_id}")).status_code == 404
        for run_id in (ended_run, going_run, replayed_run):
            assert (await gw.http.get(f"/v1/runs/{run_id}")).status_code == 404
        assert (await gw.http.get(f"/v1/events/{newer}")).status_code == 200
        assert (await gw.http.get(f"/v1/runs/{replay['id']}")).status_code == 200

        async with gw.gateway.store.pool.acquire() as conn:
            days = await history.kept_days(conn)
        assert days[0] == day0 + DAY

        # The days ahead are made as the clock moves on (the history task retries when a lock on the tables
        # is not to be had within its wait).
        async def made_ahead() -> bool:
            async with gw.gateway.store.pool.acquire() as conn:
                days = await history.kept_days(conn)
            return history.utc_day(clock.now()) + datetime.timedelta(days=history.DAYS_AHEAD) in days

        await eventually(made_ahead, timeout=20)
