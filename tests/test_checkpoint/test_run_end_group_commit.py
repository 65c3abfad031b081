"""Group commit of run ends (stepline_gateway/run_ends.py): answers that complete many runs recorded in one
statement, each caller answered on its own, with real leases held by a real gateway and real Postgres."""

from __future__ import annotations

import asyncio
import datetime
import uuid
from typing import Any

import asyncpg
from stepline_gateway.calls import parse_queue_item_ref
from stepline_gateway.outcomes import step_write
from stepline_gateway.run_ends import EndedRun, RunEnd, RunEndCombiner

from tests.support import eventually
from tests.test_checkpoint.test_checkpoint_api import Call, manual_service, ran
from tests.test_checkpoint.test_group_commit import open_calls, steps_of

RUNS = 6


def end_for(call: Call, output: Any, *, token: uuid.UUID | None = None) -> RunEnd:
    work_id, lease_token = parse_queue_item_ref(call.ctx["qi_id"])
    steps = step_write(
        work_id=work_id,
        lease_token=token or lease_token,
        run_id=uuid.UUID(call.ctx["run_id"]),
        ops=steps_of(call),
        offset=datetime.timedelta(0),
        checkpointed=False,
    )
    return RunEnd.of(steps, output)


async def runs(database_url: str) -> dict[str, tuple[str, str | None, int, int]]:
    """Each run's status, output, steps with a memo, and calls left in the queue."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT r.id::text AS id, r.status, r.output::text AS output,
                      (SELECT count(*) FROM steps s WHERE s.run_id = r.id AND s.memo IS NOT NULL) AS steps,
                      (SELECT count(*) FROM work w WHERE w.run_id = r.id) AS work
               FROM runs r"""
        )
    finally:
        await conn.close()
    return {row["id"]: (row["status"], row["output"], row["steps"], row["work"]) for row in rows}


def completing(call: Call) -> list[dict[str, Any]]:
    """An answer as the SDK's default sends a function of quick steps: the steps, then RunComplete."""
    return [*steps_of(call), {"op": "RunComplete", "id": "complete", "data": {"run": call.ctx["run_id"]}}]


async def test_answers_that_complete_many_runs_share_statements_and_each_run_gets_its_own_end(
    database_url: str,
) -> None:
    async with manual_service(database_url, group_commit_wait_ms=20) as manual:
        calls = await open_calls(manual, RUNS)
        combiner = manual.gw.gateway.run_ends
        for index, call in enumerate(calls):
            # Half answer with their steps and RunComplete, half with a plain 200 and the return value.
            if index % 2:
                call.answer(206, completing(call))
            else:
                call.answer(200, {"run": call.ctx["run_id"]})

        async def all_ended() -> bool:
            return all(status == "Completed" for status, *_ in (await runs(database_url)).values())

        await eventually(all_ended, timeout=15)
        assert combiner.calls == RUNS
        assert combiner.batches < RUNS
        stored = await runs(database_url)
        for index, call in enumerate(calls):
            run = call.ctx["run_id"]
            assert stored[run] == ("Completed", f'{{"run": "{run}"}}', 2 if index % 2 else 0, 0)


async def test_a_stale_lease_is_refused_for_its_run_alone(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        calls = await open_calls(manual, 3)
        combiner = RunEndCombiner(manual.gw.gateway.store, wait_s=0.05)
        results = await asyncio.gather(
            combiner.record(end_for(calls[0], "zero")),
            combiner.record(end_for(calls[1], "one", token=uuid.uuid4())),
            combiner.record(end_for(calls[2], "two")),
        )
        assert combiner.batches == 1
        expected = [(True, 2, True), (False, 0, False), (True, 2, True)]
        assert [(r.held, r.recorded, r.ended) for r in results] == expected
        assert results[0].function_id == "manual-fn"
        stored = await runs(database_url)
        assert stored[calls[0].ctx["run_id"]] == ("Completed", '"zero"', 2, 0)
        assert stored[calls[1].ctx["run_id"]] == ("Running", None, 0, 1)
        assert stored[calls[2].ctx["run_id"]] == ("Completed", '"two"', 2, 0)
        calls[1].answer(200, "done")


async def test_a_write_postgres_refuses_fails_its_caller_alone(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        calls = await open_calls(manual, 3)
        combiner = RunEndCombiner(manual.gw.gateway.store, wait_s=0.05)
        # An output Postgres refuses (not JSON): the batch's statement fails, then each write goes alone.
        bad = RunEnd(steps=end_for(calls[1], None).steps, output="{not json")
        outcomes = await asyncio.gather(
            combiner.record(end_for(calls[0], "zero")),
            combiner.record(bad),
            combiner.record(end_for(calls[2], "two")),
            return_exceptions=True,
        )
        assert isinstance(outcomes[1], asyncpg.PostgresError), outcomes
        assert [(o.held, o.ended) for o in outcomes if isinstance(o, EndedRun)] == [(True, True)] * 2
        stored = await runs(database_url)
        assert stored[calls[0].ctx["run_id"]][0] == "Completed"
        assert stored[calls[1].ctx["run_id"]] == ("Running", None, 0, 1)
        assert stored[calls[2].ctx["run_id"]][0] == "Completed"
        # The caller tries again (the executor counts a failed attempt; here, with a storable output).
        again = await combiner.record(end_for(calls[1], "one"))
        assert (again.held, again.recorded, again.ended) == (True, 2, True)


async def test_two_ends_of_one_run_go_in_separate_batches_and_the_second_finds_it_ended(
    database_url: str,
) -> None:
    async with manual_service(database_url) as manual:
        [call] = await open_calls(manual, 1)
        combiner = RunEndCombiner(manual.gw.gateway.store, wait_s=0.05)
        first, second = await asyncio.gather(
            combiner.record(end_for(call, "first")), combiner.record(end_for(call, "second"))
        )
        assert combiner.batches == 2
        assert (first.held, first.ended) == (True, True)
        assert (second.held, second.ended) == (False, False)
        assert (await runs(database_url))[call.ctx["run_id"]][:2] == ("Completed", '"first"')


async def test_a_crash_between_batches_loses_nothing_recorded(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        calls = await open_calls(manual, 4)
        combiner = RunEndCombiner(manual.gw.gateway.store, wait_s=0.05)
        acknowledged = await asyncio.gather(*(combiner.record(end_for(c, "early")) for c in calls[:2]))
        assert [r.ended for r in acknowledged] == [True, True]
        # The process stops while the next batch waits to be sent: its callers are never told "ended".
        waiting = [asyncio.create_task(combiner.record(end_for(c, "late"))) for c in calls[2:]]
        await asyncio.sleep(0)
        assert combiner._flushers
        for flusher in list(combiner._flushers):
            flusher.cancel()
        outcomes = await asyncio.gather(*waiting, return_exceptions=True)
        assert all(isinstance(o, ConnectionAbortedError) for o in outcomes), outcomes
        stored = await runs(database_url)
        for call in calls[:2]:
            assert stored[call.ctx["run_id"]] == ("Completed", '"early"', 2, 0)
        for call in calls[2:]:
            assert stored[call.ctx["run_id"]] == ("Running", None, 0, 1)
        # Sent again after the restart (a new combiner): the rest end; the first ones are not ended again.
        after = RunEndCombiner(manual.gw.gateway.store)
        again = await asyncio.gather(*(after.record(end_for(c, "again")) for c in calls))
        assert [(r.held, r.ended) for r in again] == [(False, False)] * 2 + [(True, True)] * 2
        stored = await runs(database_url)
        assert [stored[c.ctx["run_id"]][1] for c in calls] == ['"early"'] * 2 + ['"again"'] * 2


async def test_with_group_commit_off_each_run_ends_with_its_own_statement(database_url: str) -> None:
    async with manual_service(database_url, no_group_commit=True) as manual:
        calls = await open_calls(manual, 3)
        for call in calls:
            call.answer(206, completing(call))

        async def all_ended() -> bool:
            return all(status == "Completed" for status, *_ in (await runs(database_url)).values())

        await eventually(all_ended, timeout=15)
        assert manual.gw.gateway.run_ends.batches == 0
        assert all(steps == 2 for _, _, steps, _ in (await runs(database_url)).values())


async def test_an_answer_that_repeats_recorded_steps_keeps_their_memos(database_url: str) -> None:
    async with manual_service(database_url) as manual:
        [call] = await open_calls(manual, 1)
        posted = await manual.checkpoint(call, [ran("a", "posted")])
        assert posted.json()["recorded"] == 1
        call.answer(206, [ran("a", "answered"), ran("b", 2), {"op": "RunComplete", "id": "c", "data": 3}])

        async def ended() -> bool:
            return (await runs(database_url))[call.ctx["run_id"]][0] == "Completed"

        await eventually(ended, timeout=15)
        conn = await asyncpg.connect(database_url)
        try:
            memos = dict(
                await conn.fetch(
                    "SELECT name, memo::text FROM steps WHERE run_id = $1::uuid", call.ctx["run_id"]
                )
            )
        finally:
            await conn.close()
        assert memos == {"a": '{"data": "posted"}', "b": '{"data": 2}'}
