"""History kept by day: the day partitions of events, runs, steps and step attempts (migration 0014).

Days are made ahead of time (``make_days``: at migrate, at a gateway's start and at each UTC midnight) and
dropped whole once the retention period is over (``drop_days_before``): retention costs nothing per row.
"""

from __future__ import annotations

import datetime

from stepline_store import queries
from stepline_store.pool import Db

# Days made ahead of the clock's, and behind it (a replica whose clock is a little late, a day just begun).
DAYS_AHEAD = 3
DAYS_BEHIND = 1
# How long making or dropping a day waits for the tables' locks (a long dashboard read) before giving up
# until later: below Postgres's deadlock_timeout (1 s), so that a deadlock with a live statement always ends
# with this one giving way.
LOCK_MS = 200


def utc_day(at: datetime.datetime) -> datetime.date:
    return at.astimezone(datetime.UTC).date()


def days_around(at: datetime.datetime) -> tuple[datetime.date, datetime.date]:
    """The first and last days to have at ``at``: from ``DAYS_BEHIND`` before its UTC day to
    ``DAYS_AHEAD`` after it."""
    day = utc_day(at)
    return day - datetime.timedelta(days=DAYS_BEHIND), day + datetime.timedelta(days=DAYS_AHEAD)


async def make_days(conn: Db, around: datetime.datetime) -> int:
    """Make the days around ``around`` (``days_around``) that do not exist; answer how many were made."""
    first, last = days_around(around)
    return await queries.create_history_partitions(conn, first_day=first, last_day=last, lock_ms=LOCK_MS)


async def drop_days_before(
    conn: Db, *, offset: datetime.timedelta, retention: datetime.timedelta
) -> list[datetime.date]:
    """Drop the days that ended more than ``retention`` ago by the database's clock (plus ``offset``), but
    those that still hold a run not ended; answer the days dropped."""
    return await queries.drop_history_before(conn, clock_offset=offset, retention=retention, lock_ms=LOCK_MS)


async def kept_days(conn: Db) -> list[datetime.date]:
    return [row["day"] for row in await queries.history_days(conn)]
