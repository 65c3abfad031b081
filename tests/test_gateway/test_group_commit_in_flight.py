"""The combiner's batches in flight (group_commit.py): up to ``in_flight`` batches are written at once, a run
never has two writes in flight, and a batch that fails fails its own callers only.

The combiner here is the real one with a ``write_many`` that records each batch and waits until the test
lets it go, so that which writes are in flight together is seen, not inferred from timing.
"""

from __future__ import annotations

import asyncio
import uuid

from stepline_gateway.group_commit import Combiner

from tests.support import eventually


async def batches_written(combiner: Gated, n: int) -> None:
    """Until ``n`` batches have reached ``write_many``."""

    async def reached() -> bool:
        return len(combiner.written) >= n

    await eventually(reached, timeout=5, interval=0.005)


class Gated(Combiner[tuple[uuid.UUID, str], str]):
    """Writes are (run, label); each batch waits on a gate of its own, opened by the test."""

    def __init__(self, *, in_flight: int = 2) -> None:
        super().__init__(in_flight=in_flight)
        self.written: list[list[str]] = []
        self.gates: list[asyncio.Event] = []
        self.failing: set[str] = set()

    def run_of(self, write: tuple[uuid.UUID, str]) -> uuid.UUID:
        return write[0]

    def fails_together(self, err: BaseException) -> bool:
        return True

    async def write_many(self, writes: list[tuple[uuid.UUID, str]]) -> list[str]:
        labels = [label for _, label in writes]
        self.written.append(labels)
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        if self.failing & set(labels):
            raise ConnectionResetError("the database went away")
        return [f"{label} recorded" for label in labels]


RUN_A, RUN_B, RUN_C = (uuid.UUID(int=n) for n in (1, 2, 3))


async def test_two_batches_are_written_at_once_and_a_third_waits_for_one_of_them() -> None:
    combiner = Gated()
    first = asyncio.create_task(combiner.record((RUN_A, "a1")))
    await batches_written(combiner, 1)
    second = asyncio.create_task(combiner.record((RUN_B, "b1")))
    await batches_written(combiner, 2)
    # Both batches are in flight: what arrives now waits for one of them to commit.
    third = [asyncio.create_task(combiner.record((RUN_C, f"c{n}"))) for n in (1,)]
    third.append(asyncio.create_task(combiner.record((uuid.UUID(int=4), "d1"))))
    await asyncio.sleep(0.05)
    assert combiner.written == [["a1"], ["b1"]]
    combiner.gates[1].set()
    assert await second == "b1 recorded"
    await batches_written(combiner, 3)
    assert combiner.written[2] == ["c1", "d1"]
    assert not first.done()
    combiner.gates[0].set()
    combiner.gates[2].set()
    assert await first == "a1 recorded"
    assert [await task for task in third] == ["c1 recorded", "d1 recorded"]
    assert (combiner.batches, combiner.calls) == (3, 4)


async def test_a_second_write_of_a_run_waits_until_its_first_has_committed() -> None:
    combiner = Gated()
    first = asyncio.create_task(combiner.record((RUN_A, "a1")))
    await batches_written(combiner, 1)
    again = asyncio.create_task(combiner.record((RUN_A, "a2")))
    other = asyncio.create_task(combiner.record((RUN_B, "b1")))
    # A batch may go alongside the first one, but without the run the first one is writing.
    await batches_written(combiner, 2)
    await asyncio.sleep(0.05)
    assert combiner.written == [["a1"], ["b1"]]
    combiner.gates[1].set()
    assert await other == "b1 recorded"
    await asyncio.sleep(0.05)
    assert len(combiner.written) == 2  # a2 still waits for a1
    combiner.gates[0].set()
    assert await first == "a1 recorded"
    await batches_written(combiner, 3)
    assert combiner.written[2] == ["a2"]
    combiner.gates[2].set()
    assert await again == "a2 recorded"


async def test_a_failed_batch_fails_its_callers_and_not_the_batch_beside_it() -> None:
    combiner = Gated()
    combiner.failing.add("a1")
    first = asyncio.create_task(combiner.record((RUN_A, "a1")))
    await batches_written(combiner, 1)
    second = asyncio.create_task(combiner.record((RUN_B, "b1")))
    await batches_written(combiner, 2)
    combiner.gates[0].set()
    combiner.gates[1].set()
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    assert isinstance(outcomes[0], ConnectionResetError)
    assert outcomes[1] == "b1 recorded"
    # The caller tries again; the next batch is tried afresh.
    combiner.failing.clear()
    again = asyncio.create_task(combiner.record((RUN_A, "a1")))
    await batches_written(combiner, 3)
    combiner.gates[2].set()
    assert await again == "a1 recorded"


async def test_with_one_in_flight_writes_queue_behind_the_batch_being_written() -> None:
    combiner = Gated(in_flight=1)
    first = asyncio.create_task(combiner.record((RUN_A, "a1")))
    await batches_written(combiner, 1)
    rest = [asyncio.create_task(combiner.record(write)) for write in ((RUN_B, "b1"), (RUN_C, "c1"))]
    await asyncio.sleep(0.05)
    assert combiner.written == [["a1"]]
    combiner.gates[0].set()
    await batches_written(combiner, 2)
    assert combiner.written[1] == ["b1", "c1"]
    combiner.gates[1].set()
    assert [await first, *[await task for task in rest]] == ["a1 recorded", "b1 recorded", "c1 recorded"]


async def test_stopping_the_flushers_fails_every_caller_not_yet_answered() -> None:
    combiner = Gated()
    tasks = [asyncio.create_task(combiner.record((RUN_A, "a1")))]
    await batches_written(combiner, 1)
    tasks.append(asyncio.create_task(combiner.record((RUN_B, "b1"))))
    await batches_written(combiner, 2)
    # Two in flight, three queued behind them.
    tasks += [asyncio.create_task(combiner.record((uuid.UUID(int=n), f"w{n}"))) for n in range(4, 7)]
    await asyncio.sleep(0.01)
    for flusher in list(combiner._flushers):
        flusher.cancel()
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(outcome, ConnectionAbortedError) for outcome in outcomes), outcomes
    assert not combiner._flushers
