"""Group commit of checkpoint posts (group_commit.py): the step records of many runs in one statement.

Each checkpoint post (checkpoint.py) records its steps outside any transaction of its own, so the posts of
many runs that arrive together can share one: ``StepCombiner.record`` queues the call's ``StepWrite``, and
each batch goes to Postgres as one ``record_steps_many`` statement. Each caller gets its own
``RecordedSteps``. Answers of a call that end their run record their steps with the run's end
(run_ends.py); the other answers keep their own statement (``outcomes.write_steps``).
"""

from __future__ import annotations

import uuid

from stepline.protocol import Opcode
from stepline_store import queries
from stepline_store.pool import Store

from stepline_gateway.group_commit import Combiner
from stepline_gateway.outcomes import RecordedSteps, StepWrite, write_steps


class StepCombiner(Combiner[StepWrite, RecordedSteps]):
    """Records the steps of checkpoint posts, many calls to a statement (``enabled``), or each on its own."""

    what = "checkpoint posts"

    def __init__(
        self,
        store: Store,
        *,
        enabled: bool = True,
        wait_s: float = 0.0,
        max_calls: int = 500,
        in_flight: int = 2,
    ) -> None:
        super().__init__(enabled=enabled, wait_s=wait_s, max_calls=max_calls, in_flight=in_flight)
        self._store = store

    def run_of(self, write: StepWrite) -> uuid.UUID:
        return write.run_id

    async def write_one(self, write: StepWrite) -> RecordedSteps:
        return await write_steps(self._store, write)

    async def write_many(self, writes: list[StepWrite]) -> list[RecordedSteps]:
        step_calls: list[int] = []
        places: list[int] = []
        for call, write in enumerate(writes):
            step_calls.extend(call for _ in write.hashes)
            places.extend(range(1, len(write.hashes) + 1))
        rows = await queries.record_steps_many(
            self._store,
            call_indexes=list(range(len(writes))),
            work_ids=[w.work_id for w in writes],
            lease_tokens=[w.lease_token for w in writes],
            run_ids=[w.run_id for w in writes],
            clock_offsets=[w.offset for w in writes],
            checkpointed=[w.checkpointed for w in writes],
            step_call_indexes=step_calls,
            step_places=places,
            hashes=[h for w in writes for h in w.hashes],
            names=[n for w in writes for n in w.names],
            ops=[Opcode.STEP_RUN.value for w in writes for _ in w.hashes],
            memos=[m for w in writes for m in w.memos],
            durations_ms=[d for w in writes for d in w.durations_ms],
            signers=[w.signer for w in writes],
        )
        return [
            RecordedSteps(held=True, recorded=row["recorded"], function_id=row["function_id"])
            if row["held"]
            else RecordedSteps(held=False, recorded=0)
            for row in rows
        ]
