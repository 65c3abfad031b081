"""Group commit across runs (stepline_gateway/step_combiner.py): checkpoint posts of many runs recorded in one
statement, each caller answered on its own, with real leases held by a real gateway and real Postgres."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import asyncpg
from stepline_gateway.calls import parse_queue_item_ref
from stepline_gateway.outcomes import RecordedSteps, StepWrite, step_write
from stepline_gateway.step_combiner import StepCombiner

from tests.test_checkpoint.test_checkpoint_api import Call, Manual, manual_service, ran

RUNS = 6


async def open_calls(manual: Manual, count: int) -> list[Call]:
    """``count`` runs, each with its call held open by the test (its lease held by the gateway)."""
    for _ in range(count):
        await manual.gw.send({"name": "manual/go", "data": {}}, key="manual-key")
    return [await manual.next_call() for _ in range(count)]


def write_for(call: Call, steps: list[dict[str, Any]], *, token: uuid.UUID | None = None) -> StepWrite:
    work_id, lease_token = parse_queue_item_ref(call.ctx["qi_id"])
    return step_write(
        work_id=work_id,
        lease_token=token or lease_token,
        run_id=uuid.UUID(call.ctx["run_id"]),
        ops=steps,
        offset=datetime.timedelta(0),
        checkpointed=True,
    )


def steps_of(call: Call) -> list[dict[str, Any]]:
    return [ran("a", {"run": call.ctx["run_id"], "n": 1}), ran("b", {"run": call.ctx["run_id"], "n": 2})]


async def memos(database_url: str) -> dict[tuple[str, str], Any]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT run_id::text AS run_id, name, memo::text AS memo FROM steps")
    finally:
        await conn.close()
    return {(row["run_id"], row["name"]): row["memo"] for row in rows}


async def test_checkpoint_posts_of_many_runs_share_statements_and_each_gets_its_own_answer(
    database_url: str,
) -> None:
    async with manual_service(database_url, group_commit_wait_ms=20) as manual:
        calls = await open_calls(manual, RUNS)
        combiner = manual.gw.gateway.step_combiner
        answers = await asyncio.gather(*(manual.checkpoint(call, steps_of(call)) for call in calls))
        assert [a.status_code for a in answers] == [200] * RUNS
        assert [a.json()["recorded"] for a in answers] == [2] * RUNS
        assert [a.json()["run_id"] for a in answers] == [c.ctx["run_id"] for c in calls]
        assert combiner.calls == RUNS
        assert combiner.batches < RUNS
        # A post again is answered on its own: nothing new.
        again = await manual.checkpoint(calls[0], steps_of(calls[0]))
        assert again.json()["recorded"] == 0
        stored = await memos(database_url)
        for call in calls:
            run = call.ctx["run_id"]
            assert stored[(run, "a")] == f'{{"data": {{"n": 1, "run": "{run}"}}}}'
            assert stored[(run, "b")] == f'{{"data": {{"n": 2, "run": "{run}"}}}}'
        for call in calls:
            call.answer(200, "done")


async def test_a_stale_lease_is_refused_for_its_run_alone(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        calls = await open_calls(manual, 3)
        combiner = StepCombiner(manual.gw.gateway.store, wait_s=0.05)
        stale = write_for(calls[1], steps_of(calls[1]), token=uuid.uuid4())
        results = await asyncio.gather(
            combiner.record(write_for(calls[0], steps_of(calls[0]))),
            combiner.record(stale),
            combiner.record(write_for(calls[2], steps_of(calls[2]))),
        )
        assert combiner.batches == 1
        assert [r.held for r in results] == [True, False, True]
        assert [r.recorded for r in results] == [2, 0, 2]
        assert results[0].function_id == "manual-fn"
        stored = await memos(database_url)
        assert (calls[0].ctx["run_id"], "a") in stored
        assert (calls[1].ctx["run_id"], "a") not in stored
        assert (calls[2].ctx["run_id"], "b") in stored
        # Over HTTP the same stale lease is a 409 while the others' posts go through.
        wrong = f"{parse_queue_item_ref(calls[1].ctx['qi_id'])[0]}:{uuid.uuid4()}"
        answers = await asyncio.gather(
            manual.checkpoint(calls[1], steps_of(calls[1]), qi_id=wrong),
            manual.checkpoint(calls[1], [ran("c", 3)]),
        )
        assert [a.status_code for a in answers] == [409, 200]
        for call in calls:
            call.answer(200, "done")


async def test_a_write_postgres_refuses_fails_its_caller_alone(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        calls = await open_calls(manual, 3)
        combiner = StepCombiner(manual.gw.gateway.store, wait_s=0.05)
        good = write_for(calls[0], steps_of(calls[0]))
        # A memo Postgres refuses (not JSON): the statement of its batch fails on the server, and the batch's
        # writes are tried again each with a statement of its own.
        bad = StepWrite(**{**write_for(calls[1], steps_of(calls[1])).__dict__, "memos": ["{not json", "1"]})
        outcomes = await asyncio.gather(
            combiner.record(good),
            combiner.record(bad),
            combiner.record(write_for(calls[2], steps_of(calls[2]))),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], asyncpg.PostgresError), outcomes
        assert outcomes[0] == outcomes[2] == RecordedSteps(held=True, recorded=2, function_id="manual-fn")
        assert combiner.batches == 0  # the batch statement failed; the writes went alone
        stored = await memos(database_url)
        assert (calls[0].ctx["run_id"], "a") in stored
        assert (calls[1].ctx["run_id"], "a") not in stored
        assert (calls[2].ctx["run_id"], "b") in stored
        # The caller tries again, as a failed checkpoint post does, and its steps are recorded.
        retried = await combiner.record(write_for(calls[1], steps_of(calls[1])))
        assert (retried.held, retried.recorded) == (True, 2)
        for call in calls:
            call.answer(200, "done")


async def test_two_posts_of_one_run_go_in_separate_batches(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        [call] = await open_calls(manual, 1)
        combiner = StepCombiner(manual.gw.gateway.store, wait_s=0.05)
        results = await asyncio.gather(
            combiner.record(write_for(call, [ran("a", 1)])),
            combiner.record(write_for(call, [ran("a", 1), ran("b", 2)])),
        )
        assert combiner.batches == 2
        assert [r.recorded for r in results] == [1, 1]
        call.answer(200, "done")


async def test_a_crash_between_batches_loses_nothing_recorded(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        calls = await open_calls(manual, 4)
        combiner = StepCombiner(manual.gw.gateway.store, wait_s=0.05)
        acknowledged = await asyncio.gather(
            *(combiner.record(write_for(call, steps_of(call))) for call in calls[:2])
        )
        assert [r.recorded for r in acknowledged] == [2, 2]
        # The process stops while the next batch waits to be sent: its callers are never told "recorded".
        waiting = [asyncio.create_task(combiner.record(write_for(c, steps_of(c)))) for c in calls[2:]]
        await asyncio.sleep(0)
        assert combiner._flushers
        for flusher in list(combiner._flushers):
            flusher.cancel()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(o, ConnectionAbortedError) for o in outcomes), outcomes
        # Seen afresh from another connection: every acknowledged step is there, the rest are not.
        stored = await memos(database_url)
        for call in calls[:2]:
            assert {(call.ctx["run_id"], "a"), (call.ctx["run_id"], "b")} <= stored.keys()
        for call in calls[2:]:
            assert (call.ctx["run_id"], "a") not in stored
        # Posted again after the restart (a new combiner), they are recorded; the first ones are not again.
        after = StepCombiner(manual.gw.gateway.store, wait_s=0)
        again = await asyncio.gather(*(after.record(write_for(c, steps_of(c))) for c in calls))
        assert [r.recorded for r in again] == [0, 0, 2, 2]
        for call in calls:
            call.answer(200, "done")


async def test_with_group_commit_off_each_post_has_its_own_statement(database_url: str) -> None:
    async with manual_service(database_url, no_group_commit=True) as manual:
        calls = await open_calls(manual, 3)
        answers = await asyncio.gather(*(manual.checkpoint(call, steps_of(call)) for call in calls))
        assert [a.json()["recorded"] for a in answers] == [2, 2, 2]
        assert manual.gw.gateway.step_combiner.batches == 0
        for call in calls:
            call.answer(200, "done")
