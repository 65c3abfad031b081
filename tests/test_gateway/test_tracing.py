"""Traces, turned on by the standard OTEL_* variables and sent over OTLP/HTTP to a receiver on loopback: one
trace per run whose id is the run's, a span per call under the run's, a span per step under its call's; the
service gets a ``traceparent`` naming the call's span and, through the Stepline SDK, its own spans join."""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
import stepline
import stepline.asgi
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, TraceIdRatioBased
from stepline_gateway import tracing
from stepline_gateway.otel import sampling_id
from stepline_store.ids import new_run_id

from tests.otlp import ReceivedSpan, Receiver
from tests.support import RunningGateway, route, running_gateway, serve

ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


class Headers:
    """An ASGI app wrapped to keep the ``traceparent`` of every call it receives."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.traceparents: list[str] = []

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            self.traceparents.append(headers.get(b"traceparent", b"").decode())
        await self.app(scope, receive, send)


def three_steps(
    service_spans: TracerProvider, *, checkpoint: bool, gateway_url: str
) -> tuple[stepline.Client, list[stepline.Function]]:
    # Checkpointing on: the strictest policy, each step posted as it ends.
    setting = stepline.Checkpoint.every_step() if checkpoint else False
    client = stepline.Client("traced", dev=True, checkpoint=setting, gateway_url=gateway_url)
    tracer = service_spans.get_tracer("shop-service")

    @client.function(id="order", trigger="traced/order")
    async def order(ctx: stepline.Context) -> str:
        async def charge() -> str:
            # The service's own span, made while the SDK runs the step.
            with tracer.start_as_current_span("charge card"):
                return "charged"

        await ctx.step.run("reserve", lambda: "reserved")
        await ctx.step.run("charge", charge)
        await ctx.step.run("ship", lambda: "shipped")
        return "done"

    return client, [order]


@pytest.fixture
def otlp_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[str], None]:
    def point_at(endpoint: str) -> None:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "stepline-gateway-under-test")
        monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")

    return point_at


async def traced_run(
    database_url: str, receiver: Receiver, *, checkpoint: bool
) -> tuple[str, list[ReceivedSpan], list[str], InMemorySpanExporter]:
    service_exporter = InMemorySpanExporter()
    service_spans = TracerProvider()
    service_spans.add_span_processor(SimpleSpanProcessor(service_exporter))
    gw: RunningGateway
    async with running_gateway(database_url) as gw:
        assert gw.gateway.tracing.enabled
        client, functions = three_steps(service_spans, checkpoint=checkpoint, gateway_url=gw.url)
        app = Headers(stepline.asgi.serve_app(client, functions))
        async with serve(app) as app_url:
            await gw.publish(route("traced-order", f"{app_url}/api/inngest", {"event": "traced/order"}))
            [event_id] = await gw.send({"name": "traced/order", "data": {}})
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed"
    # The gateway has stopped: its exporter sent everything it had.
    return run["id"], list(receiver.spans), app.traceparents, service_exporter


async def test_a_three_step_run_is_one_trace_with_calls_under_the_run_and_steps_under_their_calls(
    database_url: str, otlp_env: Callable[[str], None]
) -> None:
    receiver = Receiver()
    async with receiver.serving() as endpoint:
        otlp_env(endpoint)
        run_id, spans, traceparents, service = await traced_run(database_url, receiver, checkpoint=False)

    trace_id = uuid.UUID(run_id).hex
    assert {span.trace_id for span in spans} == {trace_id}, "every span is in the run's trace"
    assert {span.service for span in spans} == {"stepline-gateway-under-test"}
    [root] = [span for span in spans if span.name == "run traced-order"]
    assert root.parent_span_id == ""
    assert root.span_id == trace_id[16:], "the run's span id is taken from the run id"
    assert root.attributes["stepline.status"] == "Completed"
    assert root.attributes["stepline.namespace"] == "default"
    calls = [span for span in spans if span.name == "call traced-order"]
    # One call per step, then the one that returns the function's result.
    assert len(calls) == 4
    assert {call.parent_span_id for call in calls} == {root.span_id}
    assert [call.attributes["stepline.outcome"] for call in calls] == ["steps", "steps", "steps", "completed"]
    assert {call.attributes["stepline.attempt"] for call in calls} == {0}
    assert {call.attributes["stepline.function"] for call in calls} == {"traced-order"}
    steps = {span.name: span for span in spans if span.name.startswith("step ")}
    assert sorted(steps) == ["step charge", "step reserve", "step ship"]
    for step, call in zip(("step reserve", "step charge", "step ship"), calls, strict=False):
        assert steps[step].parent_span_id == call.span_id, step
        assert steps[step].attributes["stepline.outcome"] == "completed"

    # The service got a traceparent for each call naming that call's span in the run's trace.
    assert traceparents == [f"00-{trace_id}-{call.span_id}-01" for call in calls]
    # Its own span joined the trace, under the call that ran the step.
    [charge] = service.get_finished_spans()
    assert charge.name == "charge card"
    assert charge.context.trace_id == uuid.UUID(run_id).int
    assert charge.parent is not None
    assert f"{charge.parent.span_id:016x}" == calls[1].span_id


async def test_checkpointed_steps_are_spans_under_the_call_that_ran_them(
    database_url: str, otlp_env: Callable[[str], None]
) -> None:
    receiver = Receiver()
    async with receiver.serving() as endpoint:
        otlp_env(endpoint)
        run_id, spans, traceparents, _ = await traced_run(database_url, receiver, checkpoint=True)

    trace_id = uuid.UUID(run_id).hex
    assert {span.trace_id for span in spans} == {trace_id}
    [root] = [span for span in spans if span.name.startswith("run ")]
    calls = [span for span in spans if span.name.startswith("call ")]
    assert {call.parent_span_id for call in calls} == {root.span_id}
    steps = [span for span in spans if span.name.startswith("step ")]
    assert sorted(span.name for span in steps) == ["step charge", "step reserve", "step ship"]
    # All three ran in the first call, each posted to the checkpoint API while it ran.
    assert {span.parent_span_id for span in steps} == {calls[0].span_id}
    assert traceparents[0] == f"00-{trace_id}-{calls[0].span_id}-01"


def test_tracing_is_off_unless_the_variables_ask_for_it() -> None:
    assert not tracing.from_env({}).enabled
    assert not tracing.from_env({"OTEL_SERVICE_NAME": "x"}).enabled
    assert not tracing.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}
    ).enabled
    assert not tracing.from_env(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}
    ).enabled
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}) == ["otlp"]
    assert tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    # Off, a call has no span and no header: nothing of OpenTelemetry is made on the hot path.
    assert tracing.Tracing().call(None, "default") is None  # type: ignore[arg-type]


def test_a_ratio_sampler_keeps_its_share_of_runs_with_time_ordered_ids() -> None:
    """Run ids are UUIDv7: ratio samplers read the low 64 bits, whose top two are the UUID's variant; the
    sampler is shown the id's random bits instead, so 10 % means about 10 % of runs."""
    sampler = TraceIdRatioBased(0.1)
    now = datetime.datetime.now(datetime.UTC)
    ids = [new_run_id(now).int for _ in range(4000)]

    def kept(transform: Callable[[int], int]) -> int:
        decisions = [sampler.should_sample(Context(), transform(i), "run").decision for i in ids]
        return sum(d == Decision.RECORD_AND_SAMPLE for d in decisions)

    assert kept(lambda i: i) == 0  # the run id as it is: the variant bits put every id above the bound
    assert 300 <= kept(sampling_id) <= 500
