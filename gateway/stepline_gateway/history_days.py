"""The days of history: made ahead of time and dropped whole after the retention period (supervised).

History (events, runs, steps, step attempts) is partitioned by UTC day (stepline_store/history.py). At
start, at each UTC midnight of the gateway's clock and when a test's clock jumps, every replica makes the
days to come and drops the days past retention; both are idempotent and serialised in the database, so
replicas need no leader. One timer per day, no polling.
"""

from __future__ import annotations

import asyncio
import datetime
import logging

from stepline_store import history, queries
from stepline_store.pool import Store

from stepline_gateway.clock import Clock, wait
from stepline_gateway.supervision import Health

log = logging.getLogger(__name__)

# A little after midnight: the day just begun exists already (made DAYS_AHEAD days before); the one to drop
# ended at midnight.
_AFTER_MIDNIGHT = datetime.timedelta(seconds=30)


class HistoryDays:
    def __init__(self, *, store: Store, clock: Clock, retention: datetime.timedelta) -> None:
        self._store = store
        self._clock = clock
        self._retention = retention
        self._wake = asyncio.Event()
        clock.watch(self._wake)

    async def make(self) -> int:
        """Make the days around the clock's now that are missing; answer how many were made. Raises
        asyncpg's LockNotAvailableError when the tables stay busy (the loop tries again)."""
        first, last = history.days_around(self._clock.now())
        return await queries.create_history_partitions(
            self._store, first_day=first, last_day=last, lock_ms=history.LOCK_MS
        )

    async def drop_expired(self) -> list[datetime.date]:
        """Drop the days past retention (but those with runs not ended); answer the days dropped."""
        days = await queries.drop_history_before(
            self._store, clock_offset=self._clock.offset(), retention=self._retention, lock_ms=history.LOCK_MS
        )
        if days:
            log.info(
                "dropped the history of %s (older than %s h)",
                ", ".join(day.isoformat() for day in days),
                self._retention.total_seconds() / 3600,
            )
        return days

    async def run(self, health: Health) -> None:
        while True:
            self._wake.clear()
            made = await self.make()
            if made:
                log.info("made %d day(s) of history ahead", made)
            await self.drop_expired()
            health.ok()
            now = self._clock.now()
            midnight = datetime.datetime.combine(
                history.utc_day(now) + datetime.timedelta(days=1), datetime.time(), datetime.UTC
            )
            await wait(self._wake, (midnight + _AFTER_MIDNIGHT - now).total_seconds())
