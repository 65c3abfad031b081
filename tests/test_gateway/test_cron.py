"""Cron triggers on a manual clock: ticks, the one catch-up tick on start, paused functions, time zones."""

from __future__ import annotations

import datetime

import asyncpg
import pytest
from stepline_gateway.clock import ManualClock
from stepline_gateway.routing import Function
from stepline_gateway.scheduler import CronError, parse_schedule

from tests.support import eventually, route, running_gateway

HOUR = 3600.0


def cron_function(fid: str, cron: str, *, paused: bool = False, timezone: str | None = None) -> Function:
    trigger = {"cron": cron, **({"timezone": timezone} if timezone else {})}
    # Nothing listens at this URL: the tests look at the runs created, not at their execution.
    return route(fid, "http://127.0.0.1:9/api/inngest", trigger, retries=0, paused=paused)


async def ticks(database_url: str, function_id: str) -> list[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT e.data->>'scheduled_at' AS at FROM runs r JOIN events e ON e.id = r.event_id"
            " WHERE r.function_id = $1 ORDER BY 1",
            function_id,
        )
    finally:
        await conn.close()
    return [row["at"] for row in rows]


def test_schedules_parse_time_zones_and_refuse_nonsense() -> None:
    function = cron_function("cron-x", "0 8 * * *")
    paris = parse_schedule(function, {"cron": "0 8 * * *", "timezone": "Europe/Paris"})
    winter = datetime.datetime(2026, 12, 1, 12, tzinfo=datetime.UTC)
    assert paris.next_after(winter) == datetime.datetime(2026, 12, 2, 7, tzinfo=datetime.UTC)
    prefixed = parse_schedule(function, {"cron": "TZ=America/New_York 0 8 * * *"})
    assert prefixed.next_after(winter) == datetime.datetime(2026, 12, 1, 13, tzinfo=datetime.UTC)
    with pytest.raises(CronError, match="not a valid cron"):
        parse_schedule(function, {"cron": "every day at eight"})
    with pytest.raises(CronError, match="unknown time zone"):
        parse_schedule(function, {"cron": "0 8 * * *", "timezone": "Mars/Olympus"})


async def test_the_latest_missed_tick_fires_once_on_start_and_paused_functions_fire_nothing(
    database_url: str,
) -> None:
    now = datetime.datetime.now(datetime.UTC)
    # The functions exist from now on; the gateways below start two and a half hours later.
    later = ManualClock(now + datetime.timedelta(hours=2, minutes=30))
    async with running_gateway(database_url, concurrency=0) as gw:
        await gw.publish(
            cron_function("cron-hourly", "0 * * * *"), cron_function("cron-off", "0 * * * *", paused=True)
        )
        assert await ticks(database_url, "cron-hourly") == []
    for _ in range(2):  # a second start at the same time fires nothing more
        async with running_gateway(database_url, clock=later, concurrency=0):
            await eventually(lambda: ticks(database_url, "cron-hourly"))
    latest = later.now().replace(minute=0, second=0, microsecond=0)
    assert await ticks(database_url, "cron-hourly") == [latest.isoformat()]
    assert await ticks(database_url, "cron-off") == []


async def test_each_tick_fires_once_as_the_clock_moves(database_url: str) -> None:
    # Kolkata is UTC+5:30, so its full hours fall at half past in UTC. The clock starts a minute before the
    # next such tick after now, so the tick before it predates the function and is not caught up.
    now = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=2)
    first = now.replace(minute=30, second=0, microsecond=0)
    if first <= now:
        first += datetime.timedelta(hours=1)
    start = first - datetime.timedelta(minutes=1)
    clock = ManualClock(start)
    async with running_gateway(database_url, clock=clock, concurrency=0) as gw:
        await gw.publish(cron_function("cron-kolkata", "0 * * * *", timezone="Asia/Kolkata"))
        clock.advance(2 * 60)
        await eventually(lambda: ticks(database_url, "cron-kolkata"))
        clock.advance(20 * 60)  # no tick in between
        clock.advance(HOUR)
        await eventually(lambda: _count(database_url, "cron-kolkata", 2))
    assert await ticks(database_url, "cron-kolkata") == [
        first.isoformat(),
        (first + datetime.timedelta(hours=1)).isoformat(),
    ]


async def _count(database_url: str, function_id: str, count: int) -> bool:
    return len(await ticks(database_url, function_id)) >= count
