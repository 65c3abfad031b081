"""Group commit of run ends (group_commit.py): the answers that complete many runs, in one statement.

The commonest end of a call's answer is the run's end: a ``200`` with the function's return value, or a
``206`` whose steps that ran come with ``RunComplete`` (the SDK's default flush policy sends a function of
quick steps this way). ``RunEndCombiner.record`` queues such a ``RunEnd`` (the call's lease, its steps, the
output) and each batch goes to Postgres as one ``finish_runs_many`` statement: the steps recorded once each
and the run Completed, its calls and waits dropped, a parent's invoke resolved, as ``record_steps`` and
``finish_run`` do for one call. Each caller gets its own ``EndedRun``. Runs that fail keep their own
transaction (outcomes.py), since it also emits the failure events.
"""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass
from typing import Any

from stepline.protocol import Opcode
from stepline_store import queries
from stepline_store.pool import Store

from stepline_gateway.group_commit import Combiner
from stepline_gateway.outcomes import StepWrite


@dataclass(frozen=True)
class RunEnd:
    """An answer that completes its run: the steps that ran before the end (maybe none), the output."""

    steps: StepWrite
    # The run's output as JSON text; None: SQL null (no output).
    output: str | None

    @classmethod
    def of(cls, steps: StepWrite, output: Any) -> RunEnd:
        return cls(steps=steps, output=None if output is None else json.dumps(output))


@dataclass(frozen=True)
class EndedRun:
    """What ``finish_runs_many`` did for one call: whether it held its lease, how many of its steps were new,
    and, when the run ended by this write, when it was created and ended."""

    held: bool
    recorded: int
    function_id: str | None = None
    created_at: datetime.datetime | None = None
    ended_at: datetime.datetime | None = None

    @property
    def ended(self) -> bool:
        return self.function_id is not None


class RunEndCombiner(Combiner[RunEnd, EndedRun]):
    """Completes runs, many to a statement (``enabled``); the executor keeps its own path when not."""

    what = "run ends"

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

    def run_of(self, write: RunEnd) -> uuid.UUID:
        return write.steps.run_id

    async def write_many(self, writes: list[RunEnd]) -> list[EndedRun]:
        steps = [w.steps for w in writes]
        step_calls: list[int] = []
        places: list[int] = []
        for call, write in enumerate(steps):
            step_calls.extend(call for _ in write.hashes)
            places.extend(range(1, len(write.hashes) + 1))
        rows = await queries.finish_runs_many(
            self._store,
            call_indexes=list(range(len(writes))),
            work_ids=[s.work_id for s in steps],
            lease_tokens=[s.lease_token for s in steps],
            run_ids=[s.run_id for s in steps],
            clock_offsets=[s.offset for s in steps],
            outputs=[w.output for w in writes],
            step_call_indexes=step_calls,
            step_places=places,
            hashes=[h for s in steps for h in s.hashes],
            names=[n for s in steps for n in s.names],
            ops=[Opcode.STEP_RUN.value for s in steps for _ in s.hashes],
            memos=[m for s in steps for m in s.memos],
            durations_ms=[d for s in steps for d in s.durations_ms],
        )
        return [
            EndedRun(
                held=row["held"],
                recorded=row["recorded"] if row["held"] else 0,
                function_id=row["function_id"] if row["ended"] else None,
                created_at=row["created_at"],
                ended_at=row["ended_at"],
            )
            for row in rows
        ]
