"""Group commit across runs for checkpoint posts: the step records of many runs in one statement, one commit.

Each checkpoint post (checkpoint.py) records its steps outside any transaction of its own, so the posts of
many runs that arrive together can share one: ``StepCombiner.record`` queues the call's ``StepWrite`` and
waits. The first write to arrive while nothing is in flight waits ``wait_s`` for company (by default none:
one turn of the event loop, since asyncio's timers round a fraction of a millisecond up to a whole one);
then everything queued goes to Postgres as one ``record_steps_many`` statement, and whatever
arrives while that batch is in flight forms the next one. Each caller gets its own ``RecordedSteps``: the
statement fences every call by its own lease token, so a stale lease refuses that call alone. A database
error fails the callers of that batch only (their posts answer as a failed statement always did, and the
SDK posts again); the next batch is tried afresh. A batch holds at most one call per run (two would make
the statement touch a step row twice): a second call of a run waits for the next batch.

Nothing is acknowledged before its batch commits, so a crash between batches loses only writes that no
caller was told of. Answers of a call (executor.py) record their steps inside the transaction that also
records what ends the answer, and keep their own statement (``outcomes.write_steps``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from stepline.protocol import Opcode
from stepline_store.pool import Store

from stepline_gateway.outcomes import RecordedSteps, StepWrite, write_steps

log = logging.getLogger(__name__)

_Pending = tuple[StepWrite, "asyncio.Future[RecordedSteps]"]


class StepCombiner:
    """Records the steps of checkpoint posts, many calls to a statement (``enabled``), or each on its own."""

    def __init__(self, store: Store, *, enabled: bool = True, wait_s: float = 0.0, max_calls: int = 500):
        self._store = store
        self.enabled = enabled
        self._wait_s = wait_s
        self._max_calls = max_calls
        self._pending: list[_Pending] = []
        self._in_flight: list[_Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        # Statements sent and calls they carried, for the benchmarks and the tests.
        self.batches = 0
        self.calls = 0

    async def record(self, write: StepWrite) -> RecordedSteps:
        if not self.enabled:
            return await write_steps(self._store, write)
        future: asyncio.Future[RecordedSteps] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="step combiner")
            self._flusher.add_done_callback(self._stopped)
        return await future

    async def _flush(self) -> None:
        """Send batches until nothing is queued; the task ends then and the next write starts another."""
        await asyncio.sleep(self._wait_s)
        while self._pending:
            self._in_flight = self._take()
            await self._write(self._in_flight)
            self._in_flight = []

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """The flusher ended: if it was stopped (the gateway stopping) or failed, callers are told."""
        if not task.cancelled() and task.exception() is None:
            return
        # An OSError: the checkpoint route answers 503 and the SDK posts again (to a replica still up).
        stopped = ConnectionAbortedError("the gateway stopped before these steps were recorded")
        for _, future in [*self._in_flight, *self._pending]:
            if not future.done():
                future.set_exception(stopped)
        self._in_flight = []
        self._pending = []

    def _take(self) -> list[_Pending]:
        """The next batch: queued calls taken in order of arrival, at most ``max_calls``, one per run."""
        batch: list[_Pending] = []
        left: list[_Pending] = []
        runs: set[uuid.UUID] = set()
        for item in self._pending:
            write, future = item
            if future.done():  # its caller gave up waiting
                continue
            if len(batch) >= self._max_calls or write.run_id in runs:
                left.append(item)
                continue
            runs.add(write.run_id)
            batch.append(item)
        self._pending = left
        # In run id order: the batches of two replicas lock the rows of the runs they share in one order.
        batch.sort(key=lambda item: item[0].run_id)
        return batch

    async def _write(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        writes = [write for write, _ in batch]
        step_calls: list[int] = []
        places: list[int] = []
        for call, write in enumerate(writes):
            step_calls.extend(call for _ in write.hashes)
            places.extend(range(1, len(write.hashes) + 1))
        try:
            rows = await self._store.fetch(
                "record_steps_many",
                list(range(len(writes))),
                [w.work_id for w in writes],
                [w.lease_token for w in writes],
                [w.run_id for w in writes],
                [w.offset for w in writes],
                [w.checkpointed for w in writes],
                step_calls,
                places,
                [h for w in writes for h in w.hashes],
                [n for w in writes for n in w.names],
                [Opcode.STEP_RUN.value for w in writes for _ in w.hashes],
                [m for w in writes for m in w.memos],
                [d for w in writes for d in w.durations_ms],
                [w.signer for w in writes],
            )
        except Exception as err:  # every caller of the batch gets the error; the next batch goes on
            log.info("a batch of %d checkpoint posts failed: %s", len(batch), type(err).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        self.batches += 1
        self.calls += len(batch)
        for row in rows:
            future = batch[row["call"]][1]
            if future.done():
                continue
            if row["held"]:
                future.set_result(
                    RecordedSteps(held=True, recorded=row["recorded"], function_id=row["function_id"])
                )
            else:
                future.set_result(RecordedSteps(held=False, recorded=0))
