"""A slot that frees wakes the claim loop only when a claim may find work for it (dispatcher.py).

At a steady rate below capacity each run starts where it was ingested and its answer completes it: a claim
then finds nothing, so none is made. Whatever else a call's end may have queued still wakes the loop at
once: a retry after its backoff, the next call of a sleeping run, and the runs that waited in the queue
while every slot was taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import stepline
import stepline.asgi

from tests.services import HungService
from tests.support import RunningGateway, eventually, route, running_gateway, serve

RUNS = 12


def app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("quiet", dev=True)
    attempts: list[int] = []

    @client.function(id="steps", trigger="quiet/steps")
    async def steps(ctx: stepline.Context) -> dict[str, Any]:
        a = await ctx.step.run("a", lambda: 1)
        b = await ctx.step.run("b", lambda: 2)
        return {"sum": a + b}

    @client.function(id="flaky", trigger="quiet/flaky", retries=2)
    async def flaky(ctx: stepline.Context) -> str:
        def once() -> str:
            attempts.append(ctx.attempt)
            if len(attempts) == 1:
                raise RuntimeError("the first attempt fails")
            return "fine"

        return await ctx.step.run("shaky", once)

    @client.function(id="napper", trigger="quiet/nap")
    async def napper(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", 1)
        return await ctx.step.run("after", lambda: "awake")

    return client, [steps, flaky, napper]


async def completed(gw: RunningGateway, event_id: str, timeout: float = 15.0) -> dict[str, Any]:
    [run] = await gw.finished_runs(event_id, timeout=timeout)
    assert run["status"] == "Completed", run
    return run


@contextlib.asynccontextmanager
async def settled_gateway(database_url: str, **settings: Any) -> AsyncIterator[RunningGateway]:
    """A gateway routing ``quiet-steps`` to the app, past the first claims of its start (a run completed)."""
    client, functions = app()
    async with (
        serve(stepline.asgi.serve_app(client, functions)) as app_url,
        running_gateway(database_url, **settings) as gw,
    ):
        await gw.publish(route("quiet-steps", f"{app_url}/api/inngest", {"event": "quiet/steps"}))
        [first] = await gw.send({"name": "quiet/steps", "data": {}})
        await completed(gw, first)
        await asyncio.sleep(0.5)
        yield gw


async def test_runs_completed_by_their_answers_cost_no_claim(database_url: str) -> None:
    async with settled_gateway(database_url, concurrency=8) as gw:
        dispatcher = gw.gateway.dispatcher
        before = dispatcher.claims
        for n in range(RUNS):
            [event_id] = await gw.send({"name": "quiet/steps", "data": {"n": n}})
            run = await completed(gw, event_id)
            assert run["output"] == {"sum": 3}
        # Each run was started by its ingest and ended by its answer: the claim loop stayed asleep (before,
        # it claimed once or twice for every run, and found nothing).
        assert dispatcher.claims - before <= 1


async def test_a_call_that_queued_work_still_wakes_the_claim_loop(database_url: str) -> None:
    client, functions = app()
    async with (
        serve(stepline.asgi.serve_app(client, functions)) as app_url,
        running_gateway(database_url, concurrency=8, retry_base_s=0.2) as gw,
    ):
        url = f"{app_url}/api/inngest"
        await gw.publish(
            route("quiet-steps", url, {"event": "quiet/steps"}),
            route("quiet-flaky", url, {"event": "quiet/flaky"}),
            route("quiet-napper", url, {"event": "quiet/nap"}),
        )
        [steps] = await gw.send({"name": "quiet/steps", "data": {}})
        await completed(gw, steps)
        await asyncio.sleep(0.5)
        # The loop is asleep until its idle recheck (30 s): the retry and the sleep are due in about a
        # second, and each must be claimed then, which only the wake at the end of their calls can ask for.
        [flaky, nap] = await gw.send({"name": "quiet/flaky", "data": {}}, {"name": "quiet/nap", "data": {}})
        assert (await completed(gw, flaky, timeout=10))["output"] == "fine"
        assert (await completed(gw, nap, timeout=10))["output"] == "awake"


async def test_runs_queued_while_every_slot_was_taken_are_claimed_when_one_frees(database_url: str) -> None:
    client, functions = app()
    hung = HungService()
    async with (
        serve(stepline.asgi.serve_app(client, functions)) as app_url,
        hung.serving() as hung_url,
        running_gateway(database_url, concurrency=2) as gw,
    ):
        url = f"{app_url}/api/inngest"
        await gw.publish(
            route("quiet-steps", url, {"event": "quiet/steps"}),
            route("quiet-stuck", hung_url, {"event": "quiet/stuck"}),
        )
        # One slot held by a call that does not answer; the other by each run in turn.
        await gw.send({"name": "quiet/stuck", "data": {}})

        async def held() -> bool:
            return hung.received >= 1

        await eventually(held, timeout=10)
        ids = await gw.send(*({"name": "quiet/steps", "data": {"n": n}} for n in range(RUNS)))
        for event_id in ids:
            await completed(gw, event_id)


async def test_a_backlog_of_one_endpoint_at_its_share_is_claimed_a_slot_at_a_time(database_url: str) -> None:
    async with settled_gateway(database_url, concurrency=4, endpoint_share=0.5) as gw:
        dispatcher = gw.gateway.dispatcher
        before = dispatcher.claims_leaving_out
        ids = await gw.send(*({"name": "quiet/steps", "data": {"n": n}} for n in range(4 * RUNS)))
        for event_id in ids:
            await completed(gw, event_id)
        # The endpoint may hold two of the four slots: each run that ends makes room for the next. A claim
        # that leaves the endpoint out, to look for other endpoints' work, reads the whole queue row by row;
        # once one has found none, another is pointless until new work is queued (there were 23 in 48 runs
        # before, one after nearly every claim of the endpoint's own calls).
        assert dispatcher.claims_leaving_out - before <= 3
