"""The dispatcher: claims due calls from Postgres and runs them, up to a concurrency limit.

Woken by ``NOTIFY stepline_work`` (new runs anywhere), by the executor (work it scheduled itself) and by
the time the next call falls due, which the database computes from its own clock; it never polls in a
loop. Claims use ``FOR UPDATE SKIP LOCKED``, so any number of replicas share the queue. Leases of calls in
flight are extended by a heartbeat, on the database's clock; a replica that dies stops extending them and
its calls fall due again for the others. The claim loop and the heartbeat are supervised tasks
(supervision.py): a database error ends them and they come back; calls in flight are not affected.

Calls to one endpoint (an app's URL) hold at most ``endpoint_share`` of the call slots, so that a slow or
hung service cannot starve the others: the URLs at their share are passed to ``claim_work``, which leaves
their work in the queue, and a claim takes no more calls than any endpoint has room for.

A slot that frees wakes the dispatcher when a claim may find work for it: when the last claim was full or
left endpoints at their share out, when the loop skipped a claim for want of slots, or when the call's task
ended any other way than by completing its run (a retry, a sleep, planned steps, a lapsing lease may be due
then). A run completed by its answer, after a claim that found all there was, queues nothing: at a steady
rate below capacity each run then costs no claim at all (it started where it was ingested).

Flow control (concurrency, throttle, priority) is the claim's: ``claim_work`` leaves a call whose key has no
free slot waiting until a lease of that key ends (a trigger then makes it due and NOTIFYs), and a throttled
start until the time the throttle allows, a due time like any other. The timers of timeouts are claimed like
calls; the executor expires them (timeouts.py).
"""

from __future__ import annotations

import asyncio
import collections
import datetime
import logging
import math
import uuid
from typing import Any

from stepline.protocol import DISCOVERY_STEP_ID
from stepline_store import queries
from stepline_store.pool import Store
from stepline_store.queries import ClaimWorkRow

from stepline_gateway import storable
from stepline_gateway.calls import Call, queue_item_ref
from stepline_gateway.clock import Clock, wait
from stepline_gateway.executor import Executor
from stepline_gateway.flow_claims import TIMERS
from stepline_gateway.ingest import LeasedRun
from stepline_gateway.metrics import Metrics
from stepline_gateway.outcomes import Claim
from stepline_gateway.supervision import Health

log = logging.getLogger(__name__)

# Safety net only: a replica also looks for due work this often when nothing woke it.
_IDLE_RECHECK_S = 30.0


def claim_from_row(row: ClaimWorkRow, events: list[dict[str, Any]] | None = None) -> Claim:
    event: dict[str, Any] = {
        "id": row["event_id"],
        "name": row["event_name"],
        "data": row["event_data"],
        "ts": row["event_ts"],
    }
    if row["event_user"] is not None:
        event["user"] = row["event_user"]
    if row["event_v"] is not None:
        event["v"] = row["event_v"]
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
        events=events,
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


class _Wake(asyncio.Event):
    """The claim loop's wake-up. ``news`` says whether anything but a freed slot set it since the loop last
    looked: a NOTIFY, the executor's own scheduling, a timer, a jump of the clock (``set``) may all have
    made work due; a freed slot (``slot_freed``) makes room, no work."""

    def __init__(self) -> None:
        super().__init__()
        self.news = True

    def set(self) -> None:
        self.news = True
        super().set()

    def slot_freed(self) -> None:
        super().set()


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
        self._urls: dict[asyncio.Task[bool], str] = {}
        self._lease = datetime.timedelta(seconds=lease_s)
        # Names this replica in work.lease_owner (and nothing else: a restarted process is a new owner).
        self.owner = f"gateway-{uuid.uuid4().hex[:12]}"
        self._wake = _Wake()
        clock.watch(self._wake)
        self._inflight: dict[asyncio.Task[bool], tuple[int, uuid.UUID]] = {}
        self._orphans_possible = False
        self._stopping = False
        # Call slots held for runs an ingest in progress may start here (ingest.py's LocalStarts).
        self._reserved = 0
        # The slots a claim in flight may fill: its rows are not counted in _by_url until it answers, so a
        # run started where it was ingested meanwhile must leave room for them (any endpoint's).
        self._claiming = 0
        self._lapse_check: asyncio.TimerHandle | None = None
        # Whether a slot that frees should wake the claim loop: False only after a claim that was not full,
        # with no endpoint at its share, and the next due time asked for (module docstring).
        self._held_back = True
        # The endpoints the last claim that found fewer calls than it could take left out (at their share;
        # none: nothing at all was left due). Until news (_Wake), a claim that leaves out the same endpoints
        # would find nothing, and would read the whole queue, row by row, to find it: it is not made.
        self._nothing_else_due: frozenset[str] | None = None
        # When the last next_due said work falls due (the event loop's clock).
        self._due_at = 0.0
        # Claims made, and those of them that left endpoints out, for the benchmarks and the tests.
        self.claims = 0
        self.claims_leaving_out = 0

    def wake(self) -> None:
        self._wake.set()

    def leased_elsewhere(self) -> None:
        """Another replica (or this one) leased new runs as it ingested them: should it die before making
        their calls, their leases lapse within a lease, so look again then (one timer at a time: the claim
        it wakes asks the database for the next lapse)."""
        if self._lapse_check is None or self._lapse_check.cancelled():
            self._lapse_check = asyncio.get_running_loop().call_later(
                self._lease.total_seconds(), self._lapse_due
            )

    def _lapse_due(self) -> None:
        self._lapse_check = None
        self._wake.set()

    @property
    def lease(self) -> datetime.timedelta:
        return self._lease

    def reserve(self, urls: list[str]) -> list[bool]:
        """Which of the new runs calling ``urls`` may start here: a free call slot each, and no endpoint
        past its share, counting the slots held already and those a claim in flight may fill (with any
        endpoint's calls). Those slots are held until ``adopt`` or ``release``."""
        taken: list[bool] = []
        for url in urls:
            free = self._concurrency - len(self._inflight) - self._reserved - self._claiming
            room = not self._stopping and free > 0 and self._by_url[url] + self._claiming < self._endpoint_cap
            if room:
                self._reserved += 1
                self._by_url[url] += 1
            taken.append(room)
        return taken

    def release(self, urls: list[str]) -> None:
        """Slots held by ``reserve`` are free again."""
        self._unreserve(urls)
        self._slots_freed()

    def _unreserve(self, urls: list[str]) -> None:
        for url in urls:
            self._reserved -= 1
            self._by_url[url] -= 1
            if self._by_url[url] <= 0:
                del self._by_url[url]

    def _slots_freed(self) -> None:
        if self._held_back:
            self._wake.slot_freed()

    def adopt(self, leased: list[LeasedRun], reserved: list[str]) -> None:
        """Make the first calls of runs the ingest leased to this replica (it has committed): they take the
        slots held for them; any slot held for a run that was not leased is free again."""
        self._unreserve(reserved)
        if len(leased) < len(reserved):
            self._slots_freed()
        for run in leased:
            function = run.function
            call = Call(
                run_id=str(run.run_id),
                function_id=function.id,
                url=function.url,
                step_id=DISCOVERY_STEP_ID,
                attempt=0,
                max_attempts=function.max_attempts,
                event=run.event,
                memos={},
                stack=[],
                qi_id=queue_item_ref(run.work_id, run.lease_token),
                state_bytes=storable.size({}),
            )
            self._metrics.first_call(function.id, 0.0)
            self._start(Claim(work_id=run.work_id, lease_token=run.lease_token, call=call))
        self._metrics.inflight.set(len(self._inflight))

    async def run(self, health: Health) -> None:
        """The claim loop (supervised): claim due calls while slots are free, then wait for a wake-up or for
        the next due moment the database names. A database error ends it; the supervisor runs it again."""
        loop = asyncio.get_running_loop()
        self._nothing_else_due = None  # what a claim before a failure proved is not known to hold
        while not self._stopping:
            if self._wake.news:
                self._nothing_else_due = None
            self._wake.news = False
            self._wake.clear()
            self._held_back = True
            if self._orphans_possible:
                await self._release_orphans()
            free = self._concurrency - len(self._inflight) - self._reserved
            delay: float | None = None
            if free > 0 and self._only_capped_due():
                # Every endpoint with due work is at its share: a slot of theirs that frees wakes the loop.
                health.ok()
                delay = self._due_at - loop.time()
            elif free > 0:
                full = await self._claim(free)
                health.ok()
                if full:
                    continue  # there may be more due right now
                delay = await self._next_due()
                self._due_at = loop.time() + delay
                # All that was due is claimed, and the next due time known: a freed slot need not look, but
                # for endpoints left out at their share (a slot that frees meanwhile wakes the loop anyway).
                self._held_back = bool(self._at_cap())
            else:
                health.ok()
            await wait(self._wake, delay)
            if not self._wake.is_set():
                self._wake.news = True  # the due time came

    def _only_capped_due(self) -> bool:
        """Whether the last claim proved that no endpoint but those at their share now had due work."""
        if self._nothing_else_due is None:
            return False
        return self._nothing_else_due <= set(self._at_cap())

    def _at_cap(self) -> list[str]:
        """The endpoints whose calls hold their whole share of the slots."""
        return [url for url, calls in self._by_url.items() if calls >= self._endpoint_cap]

    async def _claim(self, free: int) -> bool:
        """Claim what may start now; answer whether the claim was full (more may be due at once)."""
        at_cap = self._at_cap()
        # No endpoint may pass its share through this claim, whichever endpoints its rows belong to.
        busiest = max((n for n in self._by_url.values() if n < self._endpoint_cap), default=0)
        limit = min(free, self._endpoint_cap - busiest)
        self._claiming = limit
        self.claims += 1
        self.claims_leaving_out += bool(at_cap)
        try:
            rows = await queries.claim_work(
                self._store,
                clock_offset=self._clock.offset(),
                limit=limit,
                lease_owner=self.owner,
                lease_duration=self._lease,
                urls_at_cap=at_cap,
            )
            batches = await self._batches(rows)
        except BaseException:
            # The claim may have committed and its answer been lost with the connection: rows leased to
            # this replica that it does not know of. They are released before the next claim.
            self._orphans_possible = True
            self._claiming = 0
            raise
        self._claiming = 0
        if len(rows) < limit:
            # All that was due is claimed but for the endpoints left out (a claim that was full proves
            # nothing, and leaves what an earlier one proved as it was).
            self._nothing_else_due = frozenset(at_cap)
        for row in rows:
            if row["step_id"] not in TIMERS:
                self._metrics.first_call(row["function_id"], row["queued_s"])
            self._start(claim_from_row(row, batches.get(row["run_id"])))
        self._metrics.inflight.set(len(self._inflight))
        return len(rows) == limit

    def _start(self, claim: Claim) -> None:
        task = asyncio.create_task(self._execute(claim))
        self._inflight[task] = (claim.work_id, claim.lease_token)
        self._urls[task] = claim.call.url
        self._by_url[claim.call.url] += 1
        task.add_done_callback(self._done)

    async def _batches(self, rows: list[ClaimWorkRow]) -> dict[uuid.UUID, list[dict[str, Any]]]:
        """The events of the batch runs among the claimed calls: read after the claim, in a statement of its
        own, so that the events the last appends committed are all there (batchEvents, admission.py)."""
        batched = [row["run_id"] for row in rows if row["batched"]]
        if not batched:
            return {}
        found = await queries.batch_events_of_runs(self._store, run_ids=batched)
        return {row["run_id"]: row["events"] for row in found}

    async def _release_orphans(self) -> None:
        held = [work_id for work_id, _ in self._inflight.values()]
        status = await queries.release_orphaned_leases(
            self._store, lease_owner=self.owner, held_work_ids=held
        )
        self._orphans_possible = False
        released = int(status.split()[-1])
        if released:
            log.warning("released %d call(s) claimed while the connection to the database broke", released)

    def _done(self, task: asyncio.Task[bool]) -> None:
        self._inflight.pop(task, None)
        url = self._urls.pop(task, None)
        if url is not None:
            self._by_url[url] -= 1
            if self._by_url[url] <= 0:
                del self._by_url[url]
        self._metrics.inflight.set(len(self._inflight))
        completed = not task.cancelled() and task.exception() is None and task.result()
        if completed:
            self._slots_freed()
        else:
            self._wake.set()  # news: the call may have left work due (a retry, a sleep, a lapsing lease)

    async def _execute(self, claim: Claim) -> bool:
        """The claimed call and those that follow it; True when its run was completed and queued nothing."""
        try:
            return await self._executor.run(claim)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The call's lease runs out and another attempt follows; nothing is lost.
            log.exception(
                "run %s: unexpected error while executing; the call will be retried", claim.call.run_id
            )
            return False

    async def _next_due(self) -> float:
        """Seconds until a claim would find work, from the database's clock (at most the idle recheck);
        the work of endpoints at their share is left out: a slot of theirs that frees wakes the loop."""
        at_cap = self._at_cap()
        delay: float | None
        if at_cap:
            delay = await queries.next_due_except(
                self._store, clock_offset=self._clock.offset(), capped_urls=at_cap
            )
        else:
            delay = await queries.next_due(self._store, clock_offset=self._clock.offset())
        return _IDLE_RECHECK_S if delay is None else min(delay, _IDLE_RECHECK_S)

    async def heartbeat(self, health: Health) -> None:
        """Extend the leases of the calls in flight every third of a lease (supervised): by work id and token,
        on the database's clock. After a failure it extends at once."""
        interval = self._lease.total_seconds() / 3
        while True:
            held = list(self._inflight.values())
            if held:
                await queries.extend_leases(
                    self._store,
                    work_ids=[work_id for work_id, _ in held],
                    lease_tokens=[token for _, token in held],
                    lease_duration=self._lease,
                )
            health.ok()
            await asyncio.sleep(interval)

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
