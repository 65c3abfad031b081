"""The dispatcher: claims due calls from Postgres and runs them, up to a concurrency limit.

Woken by ``NOTIFY stepline_work`` (new runs anywhere), by the executor (work it scheduled itself) and by
the time the next call falls due; it never polls in a loop. Claims use ``FOR UPDATE SKIP LOCKED``, so any
number of replicas share the queue. Leases of calls in flight are extended by a heartbeat; a replica that
dies stops extending them and its calls fall due again for the others.

Calls to one endpoint (an app's URL) hold at most ``endpoint_share`` of the call slots, so that a slow or
hung service cannot starve the others: the URLs at their share are passed to ``claim_work``, which leaves
their work in the queue, and a claim takes no more calls than any endpoint has room for. A slot that frees
wakes the dispatcher.
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import math
import uuid
from typing import Any

from stepline_store.pool import Record, Store

from stepline_gateway import storable
from stepline_gateway.calls import Call, queue_item_ref
from stepline_gateway.clock import Clock
from stepline_gateway.executor import Executor
from stepline_gateway.metrics import Metrics
from stepline_gateway.outcomes import Claim

log = logging.getLogger(__name__)

# Safety net only: a replica also looks for due work this often when nothing woke it.
_IDLE_RECHECK = datetime.timedelta(seconds=30)


def claim_from_row(row: Record) -> Claim:
    event: dict[str, Any] = {
        "id": row["event_id"],
        "name": row["event_name"],
        "data": row["event_data"],
        "ts": row["event_ts"],
    }
    if row["event_user"] is not None:
        event["user"] = row["event_user"]
    call = Call(
        run_id=str(row["run_id"]),
        function_id=row["function_id"],
        url=row["url"],
        step_id=row["step_id"],
        attempt=row["attempt"],
        max_attempts=row["max_attempts"],
        event=event,
        memos=row["memos"],
        stack=list(row["stack"]),
        qi_id=queue_item_ref(row["id"], row["lease_token"]),
        state_bytes=storable.size(row["memos"]),
    )
    return Claim(
        work_id=row["id"],
        lease_token=row["lease_token"],
        call=call,
        resolves=row["resolves"],
        resolves_op=row["resolves_op"],
        resolves_name=row["resolves_name"],
        resolution=row["resolution"],
        lost_leases=row["lost_leases"],
    )


def endpoint_cap(concurrency: int, share: float) -> int:
    """Calls one endpoint may have in flight: its share of the slots, at least one."""
    return max(1, math.floor(concurrency * share))


class Dispatcher:
    def __init__(
        self,
        *,
        store: Store,
        executor: Executor,
        clock: Clock,
        metrics: Metrics,
        concurrency: int,
        lease_s: float,
        endpoint_share: float = 1.0,
    ) -> None:
        self._store = store
        self._executor = executor
        self._clock = clock
        self._metrics = metrics
        self._concurrency = concurrency
        self._endpoint_cap = endpoint_cap(concurrency, endpoint_share)
        # Calls in flight per endpoint URL, and the URL of each task.
        self._by_url: collections.Counter[str] = collections.Counter()
        self._urls: dict[asyncio.Task[None], str] = {}
        self._lease = datetime.timedelta(seconds=lease_s)
        self._owner = f"gateway-{uuid.uuid4().hex[:12]}"
        self._wake = asyncio.Event()
        self._inflight: dict[asyncio.Task[None], uuid.UUID] = {}
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            while not self._stopping:
                self._wake.clear()
                free = self._concurrency - len(self._inflight)
                if free > 0 and await self._claim(free):
                    continue  # there may be more due right now
                until = await self._next_due() if len(self._inflight) < self._concurrency else None
                await self._clock.wait(self._wake, until)
        finally:
            heartbeat.cancel()

    def _at_cap(self) -> list[str]:
        """The endpoints whose calls hold their whole share of the slots."""
        return [url for url, calls in self._by_url.items() if calls >= self._endpoint_cap]

    async def _claim(self, free: int) -> bool:
        """Claim what may start now; answer whether the claim was full (more may be due at once)."""
        at_cap = self._at_cap()
        # No endpoint may pass its share through this claim, whichever endpoints its rows belong to.
        busiest = max((n for n in self._by_url.values() if n < self._endpoint_cap), default=0)
        limit = min(free, self._endpoint_cap - busiest)
        now = self._clock.now()
        try:
            rows = await self._store.fetch("claim_work", now, limit, self._owner, now + self._lease, at_cap)
        except (OSError, ConnectionError) as err:
            log.error("cannot claim work: %s", err)
            return False
        for row in rows:
            claim = claim_from_row(row)
            task = asyncio.create_task(self._execute(claim))
            self._inflight[task] = claim.lease_token
            self._urls[task] = claim.call.url
            self._by_url[claim.call.url] += 1
            task.add_done_callback(self._done)
        self._metrics.inflight.set(len(self._inflight))
        return len(rows) == limit

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        url = self._urls.pop(task, None)
        if url is not None:
            self._by_url[url] -= 1
            if self._by_url[url] <= 0:
                del self._by_url[url]
        self._metrics.inflight.set(len(self._inflight))
        self._wake.set()

    async def _execute(self, claim: Claim) -> None:
        try:
            await self._executor.run(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The call's lease runs out and another attempt follows; nothing is lost.
            log.exception(
                "run %s: unexpected error while executing; the call will be retried", claim.call.run_id
            )

    async def _next_due(self) -> datetime.datetime:
        fallback = self._clock.now() + _IDLE_RECHECK
        at_cap = self._at_cap()
        try:
            if at_cap:
                due: datetime.datetime | None = await self._store.fetchval("next_due_except", at_cap)
            else:
                due = await self._store.fetchval("next_due")
        except (OSError, ConnectionError):
            return fallback
        return fallback if due is None else min(due, fallback)

    async def _heartbeat(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await asyncio.sleep(interval)
            tokens = list(self._inflight.values())
            if tokens:
                try:
                    await self._store.execute("extend_leases", tokens, self._clock.now() + self._lease)
                except (OSError, ConnectionError) as err:
                    log.error("cannot extend leases: %s", err)

    async def stop(self, grace_s: float) -> None:
        """Stop claiming; let calls in flight finish for up to ``grace_s`` seconds, then cancel them."""
        self._stopping = True
        self._wake.set()
        tasks = list(self._inflight)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
