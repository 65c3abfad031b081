"""Poison answers spend the retry budget and fail the run with a clear error; nothing retries without end.

A raw HTTP service speaking the protocol answers what no SDK would: a step output with a NUL character or a
NaN, an output over its limit, a run's state over its limit, an answer body over its limit, an absurd
``retry-after``. Each is a failed attempt of its step with the reason as the error, so that after
``retries + 1`` calls the run is ``Failed`` with that message, shown in ``GET /v1/runs/{id}``. So is an error
of the gateway's own while it records an answer (here a database trigger that refuses the row), and a call
whose lease lapses again and again.
"""

from __future__ import annotations

import datetime
import json
from typing import Any

import asyncpg
import pytest
from stepline_gateway.calls import parse_retry_after
from stepline_gateway.clock import ManualClock

from tests.services import HungService, RawService, raw, step_hash, step_run
from tests.support import RunningGateway, eventually, route, running_gateway

RETRIES = 2  # three attempts


async def failed_run(gw: RunningGateway, url: str, function_id: str) -> dict[str, Any]:
    await gw.publish(route(function_id, url, {"event": f"{function_id}/go"}, retries=RETRIES))
    [event_id] = await gw.send({"name": f"{function_id}/go", "data": {}})
    [run] = await gw.finished_runs(event_id, timeout=30)
    assert run["status"] == "Failed", run
    return run


def the_step(run: dict[str, Any], name: str) -> dict[str, Any]:
    [step] = [s for s in run["steps"] if s["name"] == name]
    return step


@pytest.mark.parametrize(
    ("data_json", "message"),
    [
        ('{"note": "gi\\u0000ft"}', "output contains a NUL character at data.note: Postgres cannot store it"),
        (
            '{"x": [1, NaN]}',
            "output contains a number JSON cannot hold (nan) at data.x[1]: Postgres cannot store it",
        ),
        ('{"x": -Infinity}', "output contains a number JSON cannot hold (-inf) at data.x"),
        ('{"x": 1e400}', "output contains a number JSON cannot hold (inf) at data.x"),
        ('"\\ud800"', "output contains a lone UTF-16 surrogate (invalid Unicode) at data"),
        ('"' + "x" * 2000 + '"', "output is 2002 bytes, over the limit of 1000 bytes"),
    ],
    ids=["nul", "nan", "-infinity", "1e400", "surrogate", "oversized"],
)
async def test_a_step_output_that_cannot_be_stored_fails_the_run_within_its_budget(
    database_url: str, data_json: str, message: str
) -> None:
    service = RawService({"raw-poison": lambda body: raw(206, step_run("note", data_json))})
    async with service.serving() as url, running_gateway(database_url, max_step_output_bytes=1000) as gw:
        run = await failed_run(gw, url, "raw-poison")
    assert service.calls["raw-poison"] == RETRIES + 1
    assert message in run["error"]["message"]
    step = the_step(run, "note")
    assert step["status"] == "Failed"
    assert step["attempts"] == RETRIES + 1
    assert message in step["error"]["message"]
    assert [a["attempt"] for a in step["failed_attempts"]] == [1, 2]
    assert all(message in a["error"]["message"] for a in step["failed_attempts"])
    # The first call discovers the step; the retries target it.
    assert [body["ctx"]["step_id"] for body in service.bodies] == [
        "step",
        step_hash("note"),
        step_hash("note"),
    ]


async def test_an_output_of_the_run_that_cannot_be_stored_fails_it(database_url: str) -> None:
    service = RawService({"raw-done": lambda body: raw(200, b'{"total": NaN}')})
    async with service.serving() as url, running_gateway(database_url) as gw:
        run = await failed_run(gw, url, "raw-done")
    assert service.calls["raw-done"] == RETRIES + 1
    assert run["error"]["message"] == (
        "output contains a number JSON cannot hold (nan) at total: Postgres cannot store it"
    )
    assert run["output"] is None


@pytest.mark.parametrize("status", [200, 206])
async def test_an_answer_over_its_limit_is_not_read_and_fails_the_run(database_url: str, status: int) -> None:
    big = json.dumps([{"op": "StepRun", "id": step_hash("a"), "name": "a", "data": "x" * 50_000}]).encode()
    service = RawService({"raw-big": lambda body: raw(status, big)})
    async with service.serving() as url, running_gateway(database_url, max_answer_bytes=10_000) as gw:
        run = await failed_run(gw, url, "raw-big")
    assert service.calls["raw-big"] == RETRIES + 1
    assert "answered with more than 10000 bytes (the limit of an answer)" in run["error"]["message"]


async def test_an_answer_nested_too_deep_to_parse_fails_the_run(database_url: str) -> None:
    service = RawService({"raw-deep": lambda body: raw(200, b"[" * 5000 + b"]" * 5000)})
    async with service.serving() as url, running_gateway(database_url) as gw:
        run = await failed_run(gw, url, "raw-deep")
    assert service.calls["raw-deep"] == RETRIES + 1
    assert (
        "answered 200 with JSON that cannot be stored: it is nested more than 100 levels deep"
        in (run["error"]["message"])
    )


async def test_a_run_state_over_its_limit_fails_the_step_that_grows_it(database_url: str) -> None:
    first = step_run("first", json.dumps("a" * 600))
    second = step_run("second", json.dumps("b" * 600))

    def answer(body: dict[str, Any]) -> Any:
        return raw(206, second if step_hash("first") in body["steps"] else first)

    service = RawService({"raw-state": answer})
    async with service.serving() as url, running_gateway(database_url, max_run_state_bytes=1000) as gw:
        run = await failed_run(gw, url, "raw-state")
    assert the_step(run, "first")["status"] == "Completed"
    step = the_step(run, "second")
    assert step["status"] == "Failed"
    assert step["attempts"] == RETRIES + 1
    assert "the run's state (the outputs of its steps) would be" in step["error"]["message"]
    assert "over the limit of 1000 bytes" in run["error"]["message"]
    assert service.calls["raw-state"] == 1 + RETRIES + 1


async def test_steps_before_the_poison_in_one_answer_are_recorded(database_url: str) -> None:
    good = {"op": "StepRun", "id": step_hash("good"), "name": "good", "data": 1}
    answer = ("[" + json.dumps(good) + "," + step_run("bad", '{"v": NaN}').decode()[1:]).encode()
    service = RawService({"raw-mixed": lambda body: raw(206, answer)})
    async with service.serving() as url, running_gateway(database_url) as gw:
        run = await failed_run(gw, url, "raw-mixed")
    assert the_step(run, "good")["output"] == 1
    assert the_step(run, "good")["status"] == "Completed"
    assert the_step(run, "bad")["status"] == "Failed"
    # The retries of the bad step carry the good one's memo.
    assert all(step_hash("good") in body["steps"] for body in service.bodies[1:])


def test_retry_after_is_clamped_or_ignored() -> None:
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    day = now + datetime.timedelta(days=1)
    cases = {
        "30": now + datetime.timedelta(seconds=30),
        "1e30": day,
        "inf": day,
        "99999999999999999999": day,
        "9999-12-31T23:59:59Z": day,
        "Fri, 31 Dec 9999 23:59:59 GMT": day,
        "2026-01-01T00:10:00Z": now + datetime.timedelta(minutes=10),
        "-5": None,
        "NaN": None,
        "2025-12-31T00:00:00Z": None,
        "soon": None,
        "": None,
        "\x00": None,
    }
    for value, expected in cases.items():
        assert parse_retry_after(value, now, at_most_s=86400) == expected, value


async def test_a_huge_retry_after_waits_the_longest_honoured_time_and_the_budget_still_ends(
    database_url: str,
) -> None:
    clock = ManualClock()
    error = b'{"name": "RateLimited", "message": "come back in a few million years"}'
    service = RawService({"raw-later": lambda body: raw(500, error, **{"retry-after": "1e30"})})
    async with (
        service.serving() as url,
        running_gateway(database_url, clock=clock, retry_after_max_s=3600) as gw,
    ):
        await gw.publish(route("raw-later", url, {"event": "raw-later/go"}, retries=RETRIES))
        [event_id] = await gw.send({"name": "raw-later/go", "data": {}})
        for attempt in range(1, RETRIES + 1):
            wait = await eventually(lambda a=attempt: due_in(database_url, clock, calls=service.calls, n=a))
            assert wait == pytest.approx(3600, abs=1), "retry-after is cut to retry_after_max_s"
            clock.advance(wait + 1)
        [run] = await gw.finished_runs(event_id)
    assert run["status"] == "Failed"
    assert service.calls["raw-later"] == RETRIES + 1
    assert run["error"]["message"] == "come back in a few million years"


async def due_in(database_url: str, clock: ManualClock, *, calls: Any, n: int) -> float | None:
    if calls["raw-later"] < n:
        return None
    conn = await asyncpg.connect(database_url)
    try:
        due = await conn.fetchval(
            "SELECT available_at FROM work WHERE lease_token IS NULL AND attempt = $1", n
        )
    finally:
        await conn.close()
    return None if due is None else (due - clock.now()).total_seconds()


async def test_an_error_while_recording_an_answer_counts_an_attempt(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        # A fault injected below the gateway: the database refuses this step's output.
        await conn.execute(
            """
            CREATE FUNCTION refuse_explosions() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.memo::text LIKE '%explode%' THEN RAISE EXCEPTION 'this output blows up'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_explosions BEFORE INSERT ON steps
                FOR EACH ROW EXECUTE FUNCTION refuse_explosions();
            """
        )
    finally:
        await conn.close()
    service = RawService({"raw-boom": lambda body: raw(206, step_run("boom", '{"explode": true}'))})
    async with service.serving() as url, running_gateway(database_url) as gw:
        run = await failed_run(gw, url, "raw-boom")
    assert service.calls["raw-boom"] == RETRIES + 1
    assert "the gateway could not record the answer" in run["error"]["message"]
    assert "this output blows up" in run["error"]["message"]


async def test_a_call_whose_lease_lapses_again_and_again_fails_its_run(database_url: str) -> None:
    hung = HungService()
    # The heartbeat would keep the leases; its period (a third of lease_s) is longer than this test.
    async with (
        hung.serving() as url,
        running_gateway(database_url, lease_s=900, max_lost_leases=3, call_timeout_s=900) as gw,
    ):
        await gw.publish(route("hung-lapse", url, {"event": "hung/go"}, retries=RETRIES))
        [event_id] = await gw.send({"name": "hung/go", "data": {}})
        for made in range(1, 4):
            await eventually(lambda m=made: _received(hung, m))
            # The lease lapses, as if the gateway making the call had died (leases are judged by the
            # database's clock alone, which a test clock does not move).
            await _lapse_leases(database_url)
            gw.gateway.dispatcher.wake()
        [run] = await gw.finished_runs(event_id)
    assert hung.received == 3, "the call is not made a fourth time"
    assert run["status"] == "Failed"
    assert "was cut off 3 times in a row before its answer was recorded" in run["error"]["message"]


async def _lapse_leases(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE work SET lease_expires_at = statement_timestamp() WHERE lease_token IS NOT NULL"
        )
    finally:
        await conn.close()


async def _received(hung: HungService, count: int) -> bool:
    return hung.received >= count
