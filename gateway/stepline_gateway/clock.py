"""Time as the gateway sees it: the real clock, or a manual one that tests move forward.

Everything time-dependent (backoff, leases, due calls) asks a Clock, never the system directly, so that
tests can check a schedule without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime.datetime: ...

    async def wait(self, wake: asyncio.Event, until: datetime.datetime | None) -> None:
        """Return when ``wake`` is set or the clock reaches ``until`` (never, when None)."""


class SystemClock:
    def now(self) -> datetime.datetime:
        return datetime.datetime.now(datetime.UTC)

    async def wait(self, wake: asyncio.Event, until: datetime.datetime | None) -> None:
        timeout = None if until is None else max(0.0, (until - self.now()).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout)


class ManualClock:
    """A clock that only moves when ``advance`` is called; waiters due by then wake up."""

    def __init__(self, start: datetime.datetime | None = None) -> None:
        self._now = start or datetime.datetime.now(datetime.UTC)
        self._moved = asyncio.Event()

    def now(self) -> datetime.datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += datetime.timedelta(seconds=seconds)
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def wait(self, wake: asyncio.Event, until: datetime.datetime | None) -> None:
        while not wake.is_set() and (until is None or self._now < until):
            waiters = {asyncio.ensure_future(wake.wait()), asyncio.ensure_future(self._moved.wait())}
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in waiters:
                    task.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
