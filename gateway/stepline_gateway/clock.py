"""Time as the gateway sees it: the database's clock, shifted by an offset that only tests move.

Leases, due times and cron ticks are judged in SQL against Postgres' ``now()`` (queries.sql), never against a
replica's own clock, so replicas with skewed clocks agree. A Clock only contributes ``offset()``: a shift
added to ``now()`` wherever a *due time* is written or compared (backoff, sleeps, waits' timeouts, delayed
events, cron), zero in production. Tests use ``ManualClock`` to jump that offset forward, so that an hour of
sleep passes at once; leases stay on the database's own clock, so no jump makes a call in flight look
abandoned. Waiting for due work is local and monotonic: the dispatcher and the scheduler ask the database
how long until the next due moment and wait that long (``wait``), woken early by their events, which the
clock sets too when it jumps (``watch``).
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

    def watch(self, wake: asyncio.Event) -> None:
        """Have ``wake`` set whenever the clock jumps, so that a loop that computed a delay from the database
        asks again (a manual clock jumps; the real one never does)."""


async def wait(wake: asyncio.Event, delay: float | None) -> None:
    """Return when ``wake`` is set or ``delay`` seconds have passed (never, when None): a monotonic timer."""
    timeout = None if delay is None else max(0.0, delay)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout)


class SystemClock:
    def __init__(self, offset: datetime.timedelta | None = None) -> None:
        self._offset = offset or datetime.timedelta(0)

    def offset(self) -> datetime.timedelta:
        return self._offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self._offset

    def watch(self, wake: asyncio.Event) -> None:
        """Nothing to do: this clock never jumps."""


class ManualClock:
    """The database's clock plus an offset that ``advance`` moves forward.

    Real time still passes (the database's clock runs); the offset is what a test controls. ``start`` sets
    the initial offset so that the gateway's time begins there. Every watched event is set when the clock
    moves, even while its loop is busy asking the database, so no jump is missed.
    """

    def __init__(self, start: datetime.datetime | None = None) -> None:
        wall = datetime.datetime.now(datetime.UTC)
        self._offset = (start - wall) if start is not None else datetime.timedelta(0)
        self._watched: list[asyncio.Event] = []

    def offset(self) -> datetime.timedelta:
        return self._offset

    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC) + self._offset

    def watch(self, wake: asyncio.Event) -> None:
        self._watched.append(wake)

    def advance(self, seconds: float) -> None:
        self._offset += datetime.timedelta(seconds=seconds)
        for wake in self._watched:
            wake.set()
