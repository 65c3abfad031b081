"""The queue as a whole, for the metrics and for autoscalers: runs waiting by reason, calls due, oldest due.

One statement (``queue_depth``) reads every work row once, so any replica answers for the whole system.
Its answer is kept for ``max_age_s`` (2 s) and shared: scrapes of ``/metrics`` and polls of ``GET /v1/queue``
that come together cost one query between them, however many there are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from stepline_store import queries
from stepline_store.pool import Store

from stepline_gateway.clock import Clock

# A snapshot younger than this is answered as it is.
MAX_AGE_S = 2.0


@dataclass
class FunctionQueue:
    """One function's share of the queue."""

    function_id: str
    # Runs waiting, by reason (queued, scheduled, sleeping, waiting, invoking, retrying, concurrency,
    # throttled).
    waiting: dict[str, int] = field(default_factory=dict)
    calls_due: int = 0
    # Seconds the oldest due call has been due; 0 when none is.
    oldest_due_s: float = 0.0

    @property
    def runs_waiting(self) -> int:
        return sum(self.waiting.values())

    def json(self, namespace: str) -> dict[str, object]:
        return {
            "namespace": namespace,
            "function": self.function_id,
            "runs_waiting": self.runs_waiting,
            "calls_due": self.calls_due,
            "oldest_due_s": round(self.oldest_due_s, 3),
            "waiting": dict(sorted(self.waiting.items())),
        }


@dataclass(frozen=True)
class QueueSnapshot:
    functions: list[FunctionQueue]

    def total(self, function_ids: Callable[[str], bool] = lambda _: True) -> FunctionQueue:
        """The functions that ``function_ids`` accepts, added up (the oldest due call of them all)."""
        total = FunctionQueue(function_id="")
        for entry in self.functions:
            if not function_ids(entry.function_id):
                continue
            for reason, runs in entry.waiting.items():
                total.waiting[reason] = total.waiting.get(reason, 0) + runs
            total.calls_due += entry.calls_due
            total.oldest_due_s = max(total.oldest_due_s, entry.oldest_due_s)
        return total


class QueueGauges:
    """Takes snapshots of the queue, at most one every ``max_age_s`` seconds, shared by whoever asks."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        *,
        max_age_s: float = MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._clock = clock
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._taken: tuple[float, QueueSnapshot] | None = None
        self._pending: asyncio.Task[QueueSnapshot] | None = None

    async def snapshot(self) -> QueueSnapshot:
        """The queue now, or as it was less than ``max_age_s`` ago; a database error is raised."""
        if self._taken is not None and self._monotonic() - self._taken[0] < self._max_age_s:
            return self._taken[1]
        if self._pending is None:
            self._pending = asyncio.create_task(self._take())
            self._pending.add_done_callback(self._taken_done)
        # Shielded: a scrape that gives up does not cancel the query the others wait for.
        return await asyncio.shield(self._pending)

    def _taken_done(self, task: asyncio.Task[QueueSnapshot]) -> None:
        self._pending = None
        if not task.cancelled() and task.exception() is None:
            self._taken = (self._monotonic(), task.result())

    async def _take(self) -> QueueSnapshot:
        rows = await queries.queue_depth(self._store, clock_offset=self._clock.offset())
        by_function: dict[str, FunctionQueue] = {}
        for row in rows:
            entry = by_function.setdefault(row["function_id"], FunctionQueue(function_id=row["function_id"]))
            if row["reason"] != "running":
                entry.waiting[row["reason"]] = row["runs"]
            entry.calls_due += row["calls_due"]
            if row["oldest_due_s"] is not None:
                entry.oldest_due_s = max(entry.oldest_due_s, max(0.0, row["oldest_due_s"]))
        return QueueSnapshot(functions=[by_function[key] for key in sorted(by_function)])
