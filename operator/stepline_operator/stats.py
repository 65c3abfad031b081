"""Live counts on the Function resources: ``status.stats`` from Postgres, on a slow timer.

Each Function has a kopf timer (every ``stats_interval_s``, 30 s by default) that writes its counts: runs
running and queued now, completed and failed among those created in the last hour and day (at most
``COUNTED_AT_MOST`` per function in the day, so that a tick stays cheap however busy a function is), and when
its newest run was created. The counts of every Function the operator watches come from one query
(``function_stats``), taken at most once per interval and shared by all the timers: the database sees one
query per interval, not one per Function. A status is patched only when its counts changed. While the
database is away a tick writes nothing (and says so once); the next one tries again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg
from stepline_store import queries
from stepline_store.errors import is_transient
from stepline_store.queries import FunctionStatsRow

# Runs of one function counted per window and tick, at most.
COUNTED_AT_MOST = 100_000

log = logging.getLogger(__name__)


def stats_json(row: FunctionStatsRow) -> dict[str, Any]:
    """``status.stats`` as the CRD's schema has it."""
    last: datetime.datetime | None = row["last_run_at"]
    return {
        "running": row["running"],
        "queued": row["queued"],
        "completedLastHour": row["completed_hour"],
        "failedLastHour": row["failed_hour"],
        "completedLastDay": row["completed_day"],
        "failedLastDay": row["failed_day"],
        "lastRunTime": None if last is None else last.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


class StatsBoard:
    """The counts of every watched Function, read in one query at most once every ``max_age_s``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        namespaces: tuple[str, ...],
        max_age_s: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        # The sources of the Functions watched: all of them, or those of the namespaces given.
        self._patterns = [f"kubernetes:{namespace}/%" for namespace in namespaces] or ["kubernetes:%"]
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._taken: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._lock = asyncio.Lock()
        self._failing = False

    async def of(self, source: str) -> dict[str, Any] | None:
        """The stats of the Function published as ``source`` (None: not routed, or the database is away)."""
        async with self._lock:
            if self._taken is None or self._monotonic() - self._taken[0] >= self._max_age_s:
                try:
                    rows = await queries.function_stats(
                        self._pool, source_patterns=self._patterns, counted_at_most=COUNTED_AT_MOST
                    )
                except Exception as err:
                    if not is_transient(err):
                        raise
                    if not self._failing:
                        log.warning("cannot count the Functions' runs while the database is away: %s", err)
                    self._failing = True
                    return None
                self._failing = False
                self._taken = (self._monotonic(), {row["source"]: stats_json(row) for row in rows})
            return self._taken[1].get(source)
