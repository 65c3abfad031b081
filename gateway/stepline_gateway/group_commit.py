"""Group commit across runs: the writes of many runs that settle together go as one statement, one commit.

``Combiner`` is the shared design; its subclasses say what one batch statement is: the checkpoint posts'
step records (step_combiner.py) and the ends of runs that a call's answer completes, with the steps that
came in it (run_ends.py). ``record`` queues a write and waits. The first write to arrive while nothing is in
flight waits ``wait_s`` for company (by default none: one turn of the event loop, since asyncio's timers
round a fraction of a millisecond up to a whole one); then everything queued goes to Postgres as one
statement, and whatever arrives while that batch is in flight forms the next one. Up to ``in_flight``
batches (2 by default) are written at once, each on a connection of its own, so that one batch's commit
(its WAL flush) overlaps the next one's statement instead of the next batch waiting for it. A run has at
most one write in flight (two would make statements touch its rows twice, or race): a second write of a
run waits until the first's batch has committed. Batches are sorted by run id, so the batches of two
replicas, or two of one, lock shared rows in one order.

Each caller gets its own result: the statement fences every write by its own lease token, so a stale lease
refuses that write alone. A statement that fails for a reason of its data (not the database being away) is
tried again write by write, each with a statement of its own, so a write Postgres refuses fails its caller
alone and the others are recorded. A transient error (the database away) fails the callers of that batch,
who try again as they would after any failed statement; the next batch is tried afresh.

Nothing is acknowledged before its batch commits, so a crash between batches loses only writes that no
caller was told of.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Generic, TypeVar

from stepline_store.errors import is_transient

log = logging.getLogger(__name__)

W = TypeVar("W")
R = TypeVar("R")


class Combiner(Generic[W, R]):
    """Writes of many runs in one statement (``enabled``), or each with its own (``write_one``)."""

    # What a batch carries, for the log.
    what = "writes"

    def __init__(
        self, *, enabled: bool = True, wait_s: float = 0.0, max_calls: int = 500, in_flight: int = 2
    ) -> None:
        self.enabled = enabled
        self._wait_s = wait_s
        self._max_calls = max_calls
        self._max_in_flight = in_flight
        self._pending: list[tuple[W, asyncio.Future[R]]] = []
        # Each flusher and the batch it is writing (empty while it waits for company or between batches).
        self._flushers: dict[asyncio.Task[None], list[tuple[W, asyncio.Future[R]]]] = {}
        # Statements sent and calls they carried, for the benchmarks and the tests.
        self.batches = 0
        self.calls = 0

    def run_of(self, write: W) -> uuid.UUID:
        """The run a write belongs to (at most one write per run in a batch)."""
        raise NotImplementedError

    async def write_many(self, writes: list[W]) -> list[R]:
        """One statement for ``writes`` (in run id order, one per run): their results, in the same order."""
        raise NotImplementedError

    def fails_together(self, err: BaseException) -> bool:
        """Whether a batch's failure fails all of its callers (the database away) rather than being tried
        again write by write."""
        return is_transient(err)

    async def write_one(self, write: W) -> R:
        """A write with a statement of its own: when combining is off, and each write of a failed batch."""
        [result] = await self.write_many([write])
        return result

    def waited_too_long(self, within_s: float) -> Exception:
        """What a write that stayed queued for ``within_s`` fails with (``record``)."""
        return TimeoutError(f"no batch took these {self.what} within {within_s:g} s")

    async def record(self, write: W, *, within_s: float | None = None) -> R:
        """Queue ``write`` and wait for its batch. With ``within_s``, a write still queued after that long
        (not yet in a batch: nothing of it was written) fails with ``waited_too_long``."""
        if not self.enabled:
            return await self.write_one(write)
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((write, future))
        self._start_flusher()
        if within_s is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), within_s)
        except TimeoutError:
            if any(taken is future for batch in self._flushers.values() for _, taken in batch):
                return await future  # its batch is being written: the batch decides
            future.cancel()  # the next batch leaves it out
            raise self.waited_too_long(within_s) from None

    def _start_flusher(self) -> None:
        """A flusher for the queued writes, unless one is free to take them or ``in_flight`` are writing."""
        if len(self._flushers) >= self._max_in_flight or any(not b for b in self._flushers.values()):
            return
        flusher = asyncio.create_task(self._flush(), name=f"group commit of {self.what}")
        self._flushers[flusher] = []
        flusher.add_done_callback(self._stopped)

    async def _flush(self) -> None:
        """Send batches until nothing is queued that it may take; the task ends then, and the next write
        starts another."""
        me = asyncio.current_task()
        assert me is not None
        await asyncio.sleep(self._wait_s)
        while batch := self._take():
            self._flushers[me] = batch
            # What arrives meanwhile may go in a batch alongside this one.
            if self._pending:
                self._start_flusher()
            await self._write(batch)
            self._flushers[me] = []
        # What is left queued (if anything) is of runs another batch is writing: its flusher takes it next.
        del self._flushers[me]

    def _stopped(self, task: asyncio.Task[None]) -> None:
        """A flusher ended: if it was stopped (the gateway stopping) or failed, its callers are told, and
        the queued writes' callers too when no other flusher is left to take them."""
        batch = self._flushers.pop(task, [])
        if not task.cancelled() and task.exception() is None:
            return
        # An OSError: callers answer as when the database is away (a 503 to a checkpoint post, an answer
        # kept and recorded again by the executor).
        stopped = ConnectionAbortedError(f"the gateway stopped before these {self.what} were recorded")
        left = [] if self._flushers else self._pending
        for _, future in [*batch, *left]:
            if not future.done():
                future.set_exception(stopped)
        if not self._flushers:
            self._pending = []

    def _take(self) -> list[tuple[W, asyncio.Future[R]]]:
        """The next batch: queued writes taken in order of arrival, at most ``max_calls``, one per run and
        none of a run whose write another batch is writing."""
        batch: list[tuple[W, asyncio.Future[R]]] = []
        left: list[tuple[W, asyncio.Future[R]]] = []
        runs: set[uuid.UUID] = {self.run_of(write) for b in self._flushers.values() for write, _ in b}
        for item in self._pending:
            write, future = item
            if future.done():  # its caller gave up waiting
                continue
            run = self.run_of(write)
            if len(batch) >= self._max_calls or run in runs:
                left.append(item)
                continue
            runs.add(run)
            batch.append(item)
        self._pending = left
        batch.sort(key=lambda item: self.run_of(item[0]))
        return batch

    async def _write(self, batch: list[tuple[W, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        try:
            results = await self.write_many([write for write, _ in batch])
        except Exception as err:
            log.info("a batch of %d %s failed: %s", len(batch), self.what, type(err).__name__)
            if self.fails_together(err) or len(batch) == 1:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                return
            await self._write_each(batch)
            return
        self.batches += 1
        self.calls += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _write_each(self, batch: list[tuple[W, asyncio.Future[R]]]) -> None:
        """A batch refused by Postgres, write by write: only the writes at fault fail."""
        for write, future in batch:
            if future.done():
                continue
            try:
                result = await self.write_one(write)
            except Exception as err:
                future.set_exception(err)
            else:
                future.set_result(result)
