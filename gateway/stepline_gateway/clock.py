"""Time as the gateway sees it: the database's clock, shifted by an offset that only tests move.

Leases, due times and cron ticks are judged in SQL against Postgres' ``now()`` (queries.sql), never against a
replica's own clock, so replicas with skewed clocks agree. A Clock only contributes ``offset()``: a shift
added to ``now()`` wherever a *due time* is written or compared (backoff, sleeps, waits' timeouts, delayed
events, cron), zero in production. Tests use ``ManualClock`` to jump that offset forward, so that an hour of
sleep passes at once; leases stay on the database's own clock, so no jump makes a call in flight look
abandoned. Waiting for due work is local and monotonic: the dispatcher and the scheduler ask the database
how long until the next due moment and wait that long (``wait``), woken early by events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Protocol


class Clock(Protocol):
    def offset(self) -> datetime.timedelta:
        """What to add to the database's ``now()`` for due times: zero, except in tests."""

    def now(self) -> datetime.datetime:
        """This machine's estimate of the gateway's time (wall clock plus the offset): for what decides
        nothing (log lines, defaults of display filters), never for leases or due times."""

    async def wait(self, wake: asyncio.Event, delay: float | None) -> None:
        """Return when ``wake`` is set or ``delay`` seconds have passed (never, when None); a manual clock
        also returns when it is moved, so that the caller asks the database again."""


class SystemClock:
    def __init__(self, offset: datetime.timedelta | None = None) -> None:
        self._offset = offset or datetime.timedelta(0)

    def offset(self) -> datetime.timedelta:
        return self._offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self._offset

    async def wait(self, wake: asyncio.Event, delay: float | None) -> None:
        timeout = None if delay is None else max(0.0, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


class ManualClock:
    """The database's clock plus an offset that ``advance`` moves forward; waiters wake up when it moves.

    Real time still passes (the database's clock runs); the offset is what a test controls. ``start`` sets
    the initial offset so that the gateway's time begins there.
    """

    def __init__(self, start: datetime.datetime | None = None) -> None:
        wall = datetime.datetime.now(datetime.UTC)
        self._offset = (start - wall) if start is not None else datetime.timedelta(0)
        self._moved = asyncio.Event()

    def offset(self) -> datetime.timedelta:
        return self._offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += datetime.timedelta(seconds=seconds)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait(self, wake: asyncio.Event, delay: float | None) -> None:
        if wake.is_set() or (delay is not None and delay <= 0):
            return
        waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._moved.wait())}
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)
