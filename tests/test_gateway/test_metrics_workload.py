"""A known workload, read back from ``GET /metrics``: the exact values and labels of docs/metrics.md.

Runs that succeed, a step retried after its backoff, a run that fails, and runs that wait (sleeping, waiting
for an event, queued behind a hung service, retrying), on a gateway with the test clock: the queue gauges
are right while the runs wait, and the counters add up once they end.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import stepline
import stepline.asgi
from prometheus_client.parser import text_string_to_metric_families
from stepline_gateway.clock import ManualClock
from stepline_gateway.queue import QueueGauges

from tests.services import HungService
from tests.support import RunningGateway, eventually, route, running_gateway, serve


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


class Scrape:
    def __init__(self, text: str) -> None:
        self.values = samples(text)

    def value(self, name: str, **labels: str) -> float | None:
        return self.values.get((name, frozenset(labels.items())))

    def of(self, name: str, function: str) -> dict[frozenset[tuple[str, str]], float]:
        """The samples of ``name`` for one function, by their labels."""
        return {
            labels: value
            for (sample, labels), value in self.values.items()
            if sample == name and ("function", function) in labels
        }


async def scrape(gw: RunningGateway) -> Scrape:
    response = await gw.http.get("/metrics")
    assert response.status_code == 200
    return Scrape(response.text)


def app() -> tuple[stepline.Client, list[stepline.Function]]:
    client = stepline.Client("obs", dev=True, checkpoint=False)
    flaky_attempts: list[int] = []

    @client.function(id="ok", trigger="obs/ok")
    async def ok(ctx: stepline.Context) -> str:
        first = await ctx.step.run("first", lambda: 1)
        second = await ctx.step.run("second", lambda: 2)
        return f"{first}+{second}"

    @client.function(id="flaky", trigger="obs/flaky", retries=2)
    async def flaky(ctx: stepline.Context) -> str:
        def once() -> str:
            flaky_attempts.append(ctx.attempt)
            if len(flaky_attempts) == 1:
                raise RuntimeError("the first attempt fails")
            return "fine"

        return await ctx.step.run("shaky", once)

    @client.function(id="broken", trigger="obs/broken", retries=0)
    async def broken(ctx: stepline.Context) -> None:
        raise stepline.NonRetriableError("broken on purpose")

    @client.function(id="sleepy", trigger="obs/sleepy")
    async def sleepy(ctx: stepline.Context) -> str:
        await ctx.step.sleep("nap", datetime.timedelta(hours=1))
        return "rested"

    @client.function(id="waiter", trigger="obs/waiter")
    async def waiter(ctx: stepline.Context) -> str:
        got = await ctx.step.wait_for_event("go", event="obs/go", timeout=datetime.timedelta(hours=1))
        return "went" if got else "timed out"

    return client, [ok, flaky, broken, sleepy, waiter]


async def test_a_known_workload_reads_back_exactly(database_url: str) -> None:
    clock = ManualClock()
    client, functions = app()
    hung = HungService()
    async with (
        serve(stepline.asgi.serve_app(client, functions)) as app_url,
        hung.serving() as hung_url,
        # Two call slots, one per endpoint: the hung service holds its one, its other runs wait queued.
        running_gateway(
            database_url, clock=clock, concurrency=2, endpoint_share=0.5, retry_base_s=3600, retry_max_s=7200
        ) as gw,
    ):
        # Every scrape reads the queue afresh (the gateway shares one read for 2 s).
        gw.gateway.queue = QueueGauges(gw.gateway.store, clock, max_age_s=0)
        url = f"{app_url}/api/inngest"
        await gw.publish(
            # Published by a Function resource of namespace "shop" (its id says so): its series carry that
            # namespace.
            dataclasses.replace(
                route("obs-ok", url, {"event": "obs/ok"}), id="shop/obs-ok", source="kubernetes:shop/ok"
            ),
            route("obs-flaky", url, {"event": "obs/flaky"}, retries=2),
            route("obs-broken", url, {"event": "obs/broken"}, retries=0),
            route("obs-sleepy", url, {"event": "obs/sleepy"}),
            route("obs-waiter", url, {"event": "obs/waiter"}),
            route("obs-stuck", hung_url, {"event": "obs/stuck"}),
        )
        ok_events = await gw.send(*({"name": "obs/ok", "data": {"n": n}} for n in range(3)))
        [broken_event] = await gw.send({"name": "obs/broken", "data": {}})
        [flaky_event] = await gw.send({"name": "obs/flaky", "data": {}})
        [sleepy_event, waiter_event] = await gw.send(
            {"name": "obs/sleepy", "data": {}}, {"name": "obs/waiter", "data": {}}
        )
        await gw.send(*({"name": "obs/stuck", "data": {"n": n}} for n in range(3)))

        for event_id in ok_events:
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed"
        [run] = await gw.finished_runs(broken_event)
        assert run["status"] == "Failed"

        async def settled() -> bool:
            steps = {}
            for event_id in (flaky_event, sleepy_event, waiter_event):
                [run] = await gw.runs_of(event_id)
                steps[event_id] = [s["status"] for s in (await gw.run(run["id"]))["steps"]]
            return (
                steps == {flaky_event: ["Retrying"], sleepy_event: ["Sleeping"], waiter_event: ["Waiting"]}
                and hung.received == 1
            )

        await eventually(settled)

        # A minute passes on the test clock: the stuck runs' calls have been due that long.
        clock.advance(60)
        metrics = await scrape(gw)

        def default(function: str, **labels: str) -> dict[str, str]:
            return {"namespace": "default", "function": function, **labels}

        shop = {"namespace": "shop", "function": "shop/obs-ok"}
        # The queue, for the whole system.
        assert metrics.value("stepline_calls_due", **default("obs-stuck")) == 2
        age = metrics.value("stepline_oldest_due_call_age_seconds", **default("obs-stuck"))
        assert age is not None
        assert 60 <= age < 120, age
        waiting = {
            function: metrics.of("stepline_runs_waiting", function)
            for function in ("obs-stuck", "obs-sleepy", "obs-waiter", "obs-flaky")
        }
        assert waiting == {
            "obs-stuck": {frozenset(default("obs-stuck", reason="queued").items()): 2},
            "obs-sleepy": {frozenset(default("obs-sleepy", reason="sleeping").items()): 1},
            "obs-waiter": {frozenset(default("obs-waiter", reason="waiting").items()): 1},
            "obs-flaky": {frozenset(default("obs-flaky", reason="retrying").items()): 1},
        }
        for function in ("obs-sleepy", "obs-waiter", "obs-flaky"):
            assert metrics.value("stepline_calls_due", **default(function)) == 0
        assert metrics.of("stepline_runs_waiting", "shop/obs-ok") == {}
        # The same snapshot as JSON, for autoscalers.
        stuck = (await gw.http.get("/v1/queue", params={"function": "obs-stuck"})).json()
        assert (stuck["calls_due"], stuck["runs_waiting"], stuck["waiting"]) == (2, 2, {"queued": 2})
        assert 60 <= stuck["oldest_due_s"] < 120
        assert [entry["function"] for entry in stuck["functions"]] == ["obs-stuck"]
        everything = (await gw.http.get("/v1/queue")).json()
        assert everything["waiting"] == {"queued": 2, "sleeping": 1, "waiting": 1, "retrying": 1}
        assert everything["calls_due"] == 2
        assert (await gw.http.get("/v1/queue", params={"namespace": "shop"})).json()["runs_waiting"] == 0
        assert (await gw.http.get("/v1/queue", params={"function": "nobody"})).json()["calls_due"] == 0

        # What happened so far: three runs of two steps each (a call per step, then the one that returns).
        assert metrics.value("stepline_runs_started_total", **shop) == 3
        assert metrics.value("stepline_runs_finished_total", **shop, status="Completed") == 3
        assert metrics.value("stepline_calls_total", **shop, outcome="steps") == 6
        assert metrics.value("stepline_calls_total", **shop, outcome="completed") == 3
        assert metrics.value("stepline_steps_total", **shop, outcome="completed") == 6
        assert metrics.value("stepline_call_duration_seconds_count", **shop, status_class="2xx") == 9
        assert metrics.value("stepline_run_duration_seconds_count", **shop, status="Completed") == 3
        assert metrics.value("stepline_schedule_to_start_seconds_count", **shop) == 3
        # The failing run: one call, answered 500 without retry.
        broken = default("obs-broken")
        assert metrics.value("stepline_calls_total", **broken, outcome="error") == 1
        assert metrics.value("stepline_call_duration_seconds_count", **broken, status_class="5xx") == 1
        assert metrics.value("stepline_runs_finished_total", **broken, status="Failed") == 1
        assert metrics.value("stepline_retries_total", **broken) is None
        # The flaky step failed once and waits for its retry.
        flaky = default("obs-flaky")
        assert metrics.value("stepline_retries_total", **flaky) == 1
        assert metrics.value("stepline_calls_total", **flaky, outcome="steps") == 1
        assert metrics.value("stepline_steps_total", **flaky, outcome="completed") is None
        # Every run claimed once so far had its first call: the stuck ones still queued have not.
        for function in ("obs-broken", "obs-flaky", "obs-sleepy", "obs-waiter", "obs-stuck"):
            assert metrics.value("stepline_schedule_to_start_seconds_count", **default(function)) == 1, (
                function
            )
        stuck_started = metrics.value("stepline_runs_started_total", **default("obs-stuck"))
        assert stuck_started == 3
        assert metrics.value("stepline_calls_in_flight") == 1
        assert metrics.value("stepline_events_ingested_total") == 10

        # Two hours later the retry, the sleep and the wait's timeout are due: every run but the stuck
        # ones ends.
        clock.advance(7200)
        for event_id in (flaky_event, sleepy_event, waiter_event):
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed", run
        metrics = await scrape(gw)
        assert metrics.value("stepline_retries_total", **flaky) == 1
        assert metrics.value("stepline_calls_total", **flaky, outcome="steps") == 2
        assert metrics.value("stepline_calls_total", **flaky, outcome="completed") == 1
        assert metrics.value("stepline_steps_total", **flaky, outcome="completed") == 1
        assert metrics.value("stepline_runs_finished_total", **flaky, status="Completed") == 1
        for function in ("obs-sleepy", "obs-waiter"):
            assert metrics.value("stepline_steps_total", **default(function), outcome="completed") == 1
            assert metrics.value("stepline_runs_finished_total", **default(function), status="Completed") == 1
            assert metrics.of("stepline_runs_waiting", function) == {}
            # Runs are measured from creation to end: the two hours of the clock are in it.
            [duration] = [
                v
                for labels, v in metrics.of("stepline_run_duration_seconds_sum", function).items()
                if ("status", "Completed") in labels
            ]
            assert duration >= 3600
        await _no_more_calls_to(gw, hung)


async def _no_more_calls_to(gw: RunningGateway, hung: HungService) -> Any:
    """The stuck runs are still queued behind the hung call: cancel them so that the gateway stops at once."""
    response = await gw.http.get("/v1/runs", params={"function": "obs-stuck"})
    for run in response.json()["data"]:
        await gw.http.post(f"/v1/runs/{run['id']}/cancel")
    metrics = await scrape(gw)
    assert (
        metrics.value(
            "stepline_runs_finished_total", namespace="default", function="obs-stuck", status="Cancelled"
        )
        == 3
    )
    assert metrics.value("stepline_calls_due", namespace="default", function="obs-stuck") is None
    assert hung.received == 1
