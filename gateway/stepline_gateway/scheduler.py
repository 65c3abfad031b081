"""Cron triggers: every gateway replica fires them, and each tick starts exactly one run.

A tick is an event whose id is derived from the function and the tick's time, so the replicas that fire the
same tick write the same event id and only the first insert starts a run: a unique key, not a leader that
could split-brain. On start, the latest tick that fell while no gateway ran is fired once (again a no-op
if it had been fired); earlier missed ticks are not replayed. Paused functions fire nothing. Ticks are
judged on the database's clock (plus the test clock's offset), never on a replica's own.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from stepline.protocol import CRON_EVENT
from stepline_store import queries
from stepline_store.pool import Store

from stepline_gateway.clock import Clock, wait
from stepline_gateway.events import Event
from stepline_gateway.ingest import Ingestor, PlannedRun
from stepline_gateway.routing import Function, RoutingTable
from stepline_gateway.supervision import Health

log = logging.getLogger(__name__)


class CronError(ValueError):
    """A cron expression or time zone that cannot be scheduled."""


@dataclass(frozen=True)
class Schedule:
    """One cron trigger of one function."""

    function: Function
    expression: str
    zone: ZoneInfo

    def next_after(self, moment: datetime.datetime) -> datetime.datetime:
        tick: datetime.datetime = croniter(self.expression, moment.astimezone(self.zone)).get_next(
            datetime.datetime
        )
        return tick.astimezone(datetime.UTC)

    def latest_until(self, moment: datetime.datetime) -> datetime.datetime:
        tick: datetime.datetime = croniter(self.expression, moment.astimezone(self.zone)).get_prev(
            datetime.datetime
        )
        return tick.astimezone(datetime.UTC)


def parse_schedule(function: Function, trigger: dict[str, Any]) -> Schedule:
    """Read ``{"cron": ..., "timezone"?: ...}``; the official SDKs' ``TZ=Zone expr`` prefix works too."""
    expression = trigger["cron"].strip()
    zone_name = trigger.get("timezone") or "UTC"
    if expression.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, expression = expression.partition(" ")
        zone_name = prefix.split("=", 1)[1]
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {zone_name!r}: use an IANA name such as Europe/Paris") from None
    if not croniter.is_valid(expression):
        raise CronError(f"{expression!r} is not a valid cron expression (minute hour day month weekday)")
    return Schedule(function, expression, zone)


def schedules(table: RoutingTable) -> list[Schedule]:
    found = []
    for function in table.functions.values():
        if function.paused:
            continue
        for trigger in function.triggers:
            if trigger.get("cron"):
                try:
                    found.append(parse_schedule(function, trigger))
                except CronError as err:
                    log.error("function %s: cron trigger ignored: %s", function.id, err)
    return found


def tick_event(schedule: Schedule, tick: datetime.datetime) -> Event:
    """The event of one tick; its id is the unique key of (function, tick time)."""
    stamp = int(tick.timestamp() * 1000)
    return Event(
        id=f"cron-{schedule.function.id}-{stamp}",
        name=CRON_EVENT,
        data={
            "cron": schedule.expression,
            "function_id": schedule.function.wire_id,
            "scheduled_at": tick.isoformat(),
        },
        ts=stamp,
    )


class Scheduler:
    def __init__(
        self,
        *,
        store: Store,
        ingestor: Ingestor,
        routes: Callable[[], RoutingTable],
        clock: Clock,
        catch_up_within: datetime.timedelta,
    ) -> None:
        self._store = store
        self._ingestor = ingestor
        self._routes = routes
        self._clock = clock
        self._catch_up_within = catch_up_within
        self._changed = asyncio.Event()
        clock.watch(self._changed)
        self._caught_up: set[str] = set()
        # The moment up to which ticks were handled; kept across restarts of the loop, so that a tick that
        # fell while the database was away is fired once it is back.
        self._last: datetime.datetime | None = None

    def routes_changed(self) -> None:
        self._changed.set()

    async def now(self) -> datetime.datetime:
        """The gateway's time: the database's clock (plus the clock's offset)."""
        return await queries.clock_now(self._store, clock_offset=self._clock.offset())

    async def fire(self, schedule: Schedule, tick: datetime.datetime) -> bool:
        """Fire one tick; answer whether this call started its run (False: another replica did)."""
        event = tick_event(schedule, tick)
        result = await self._ingestor.ingest(
            [event], runs=[PlannedRun(schedule.function, event)], namespace=schedule.function.namespace
        )
        if result.new_ids:
            log.info("cron %s fired %s for %s", schedule.expression, tick.isoformat(), schedule.function.id)
        return bool(result.new_ids)

    async def _catch_up(self, now: datetime.datetime) -> None:
        """Fire, once, the latest tick of each schedule that fell while no gateway was running."""
        for schedule in schedules(self._routes()):
            key = f"{schedule.function.id} {schedule.expression}"
            if key in self._caught_up:
                continue
            tick = schedule.latest_until(now)
            if _existed_at(schedule, tick) and tick >= now - self._catch_up_within:
                await self.fire(schedule, tick)
            self._caught_up.add(key)

    async def run(self, health: Health) -> None:
        """The cron loop (supervised): sleep until the nearest tick on the database's clock, fire what is due.
        A database error ends it; run again, it fires the ticks that fell meanwhile (the latest of each)."""
        if self._last is None:
            self._last = await self.now()
        while True:
            self._changed.clear()
            last = self._last
            await self._catch_up(last)
            health.ok()
            until = min((s.next_after(last) for s in schedules(self._routes())), default=None)
            delay = None if until is None else (until - await self.now()).total_seconds()
            await wait(self._changed, delay)
            now = await self.now()
            # The schedules of now: a function published meanwhile counts from ``last`` too.
            for schedule in schedules(self._routes()):
                if schedule.next_after(last) > now:
                    continue
                # Only the latest tick due is fired: a stall does not replay every tick it missed.
                latest = schedule.latest_until(now + datetime.timedelta(microseconds=1))
                if _existed_at(schedule, latest):
                    await self.fire(schedule, latest)
            self._last = now


def _existed_at(schedule: Schedule, tick: datetime.datetime) -> bool:
    created = schedule.function.created_at
    return created is None or created <= tick
