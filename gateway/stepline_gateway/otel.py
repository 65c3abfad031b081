"""Traces of runs with the OpenTelemetry SDK, exported over OTLP/HTTP: imported only when tracing is on.

One trace per run, on any replica, with no coordination: the trace id is the run's id (a UUID is 128 bits),
and the run's own span has a span id taken from that id too (its low 64 bits). Each call is a span whose
parent is the run's span, made by the replica that makes the call and sent to the service as the W3C
``traceparent`` header, so that a service whose SDK continues it (the Stepline SDK does, with OpenTelemetry
installed) puts its own spans under the call. Each step a call reports (in its answer, or through the
checkpoint API while the call runs on this replica) is a span under that call's. The run's span is written
by the replica that ends the run, from the run's creation to its end, so that the calls made before it
already point at it. Sampling is decided once per run from its trace id (the configured sampler's root
decision), the same on every replica: from the id's random bits, since run ids are UUIDv7 (their high bits
are a time, and ratio samplers read the low 64 bits, whose top two are the UUID's fixed variant).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from stepline.protocol import RAN_OPCODES, Opcode

from stepline_gateway.calls import Answer, Call
from stepline_gateway.outcomes import step_name
from stepline_gateway.tracing import CallSpan, Tracing

log = logging.getLogger(__name__)

_LOW_64 = (1 << 64) - 1
_OUTCOMES: dict[str, str] = {
    Opcode.STEP_FAILED: "failed",
    Opcode.STEP_ERROR: "error",
    Opcode.STEP_PLANNED: "planned",
    Opcode.SLEEP: "sleeping",
    Opcode.WAIT_FOR_EVENT: "waiting",
    Opcode.INVOKE: "invoking",
}
# The ids the next span made in this context must have (a run's own span), else random ones.
_forced: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("stepline_forced_ids")


class _RunIds(RandomIdGenerator):
    """Random ids, except for a run's own span, whose ids come from the run id."""

    def generate_trace_id(self) -> int:
        forced = _forced.get(None)
        return forced[0] if forced else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = _forced.get(None)
        return forced[1] if forced else super().generate_span_id()


def sampling_id(trace_id: int) -> int:
    """The trace id a sampler sees: the run's id with its low 64 bits made of random bits only (the 62 of
    rand_b, and 2 of rand_a in place of the variant), so that a ratio sampler keeps that share of runs."""
    low = ((trace_id & (2**62 - 1)) << 2) | ((trace_id >> 64) & 0b11)
    return (trace_id & ~_LOW_64) | low


def run_ids(run_id: str) -> tuple[int, int]:
    """The trace id and the span id of a run's own span."""
    number = uuid.UUID(run_id).int
    return number, (number & _LOW_64) or 1


def _ns(moment: datetime.datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1e9)


def _exporter(name: str, environ: Mapping[str, str]) -> SpanExporter | None:
    if name == "console":
        return ConsoleSpanExporter()
    if name != "otlp":
        log.warning("OTEL_TRACES_EXPORTER names %r: Stepline exports traces with otlp or console only", name)
        return None
    protocol = environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol != "http/protobuf":
        log.warning(
            "OTEL_EXPORTER_OTLP_PROTOCOL is %r: Stepline sends OTLP over HTTP (http/protobuf); point it at "
            "the collector's HTTP port (4318)",
            protocol,
        )
    return OTLPSpanExporter()


class _Call:
    """A call's span while the call is in flight."""

    def __init__(self, tracing: OpenTelemetryTracing, span: Span, traceparent: str, qi_id: str) -> None:
        self._tracing = tracing
        self.span = span
        self._traceparent = traceparent
        self._qi_id = qi_id
        self.started_ns = time.time_ns()

    @property
    def traceparent(self) -> str:
        return self._traceparent

    def end(self, answer: Answer) -> None:
        span = self.span
        self._tracing.forget(self._qi_id, self)
        if answer.status:
            span.set_attribute("http.response.status_code", answer.status)
        if answer.completed:
            span.set_attribute("stepline.outcome", "completed")
        elif answer.error is not None:
            span.set_attribute("stepline.outcome", "error")
            span.set_attribute("stepline.retriable", answer.retriable)
            span.set_status(
                Status(StatusCode.ERROR, f"{answer.error.get('name')}: {answer.error.get('message')}")
            )
        else:
            span.set_attribute("stepline.outcome", "steps")
            self._tracing.steps(span, answer.ops, started_ns=self.started_ns)
        span.end()


class OpenTelemetryTracing(Tracing):
    enabled = True

    def __init__(self, exporters: list[str], *, environ: Mapping[str, str], service_name: str) -> None:
        resource = Resource.create()
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": service_name}))
        self._provider = TracerProvider(resource=resource, id_generator=_RunIds())
        for name in exporters:
            exporter = _exporter(name, environ)
            if exporter is not None:
                self._provider.add_span_processor(BatchSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("stepline_gateway")
        self._propagator = TraceContextTextMapPropagator()
        # Calls in flight on this replica by their qi_id: the parents of the steps they checkpoint.
        self._in_flight: dict[str, _Call] = {}

    def _run_context(self, run_id: str) -> Context:
        """A context whose current span is the run's own (made later, when the run ends)."""
        trace_id, span_id = run_ids(run_id)
        decision = self._provider.sampler.should_sample(Context(), sampling_id(trace_id), "run").decision
        sampled = decision in (Decision.RECORD_AND_SAMPLE,)
        flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        parent = SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
        return trace.set_span_in_context(NonRecordingSpan(parent), Context())

    def call(self, call: Call, namespace: str) -> CallSpan:
        span = self._tracer.start_span(
            f"call {call.function_id}",
            context=self._run_context(call.run_id),
            kind=SpanKind.CLIENT,
            attributes={
                "stepline.run_id": call.run_id,
                "stepline.function": call.function_id,
                "stepline.namespace": namespace,
                "stepline.step_id": call.step_id,
                "stepline.attempt": call.attempt,
                "url.full": call.url,
            },
        )
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=trace.set_span_in_context(span, Context()))
        made = _Call(self, span, carrier.get("traceparent", ""), call.qi_id)
        if call.qi_id:
            self._in_flight[call.qi_id] = made
        return made

    def forget(self, qi_id: str, made: _Call) -> None:
        if self._in_flight.get(qi_id) is made:
            del self._in_flight[qi_id]

    def steps(self, parent: Span, ops: list[dict[str, Any]], *, started_ns: int) -> None:
        """A span for each step of ``ops``, under ``parent``; a step's own duration when its SDK gave it."""
        context = trace.set_span_in_context(parent, Context())
        ended_ns = time.time_ns()
        for op in ops:
            kind = op.get("op")
            outcome = "completed" if kind in RAN_OPCODES else _OUTCOMES.get(str(kind))
            if outcome is None:
                continue  # RunComplete, DiscoveryRequest: no step of their own
            timing = op.get("timing")
            duration = timing.get("b") if isinstance(timing, dict) else None
            begun = (
                ended_ns - int(duration)
                if isinstance(duration, int | float) and duration >= 0
                else started_ns
            )
            span = self._tracer.start_span(
                f"step {step_name(op)}",
                context=context,
                start_time=max(started_ns, begun),
                attributes={
                    "stepline.step.id": str(op.get("id")),
                    "stepline.step.name": step_name(op),
                    "stepline.step.op": str(kind),
                    "stepline.outcome": outcome,
                },
            )
            if outcome in ("failed", "error"):
                error = op.get("error")
                message = error.get("message") if isinstance(error, dict) else error
                span.set_status(Status(StatusCode.ERROR, str(message or outcome)))
            span.end(end_time=ended_ns)

    def checkpointed(self, run_id: str, qi_id: str, steps: list[dict[str, Any]]) -> None:
        made = self._in_flight.get(qi_id)
        if made is not None:
            self.steps(made.span, steps, started_ns=made.started_ns)
            return
        # The call runs on another replica: the steps go under the run's own span.
        parent = trace.get_current_span(self._run_context(run_id))
        self.steps(parent, steps, started_ns=time.time_ns())

    def run_ended(
        self,
        *,
        run_id: str,
        function_id: str,
        namespace: str,
        status: str,
        created_at: datetime.datetime | None,
        ended_at: datetime.datetime | None,
        error: dict[str, Any] | None,
    ) -> None:
        with _forcing(run_ids(run_id)):
            span = self._tracer.start_span(
                f"run {function_id}",
                context=Context(),
                kind=SpanKind.CONSUMER,
                start_time=_ns(created_at),
                attributes={
                    "stepline.run_id": run_id,
                    "stepline.function": function_id,
                    "stepline.namespace": namespace,
                    "stepline.status": status,
                },
            )
        if status == "Failed":
            message = f"{(error or {}).get('name')}: {(error or {}).get('message')}"
            span.set_status(Status(StatusCode.ERROR, message))
        span.end(end_time=_ns(ended_at))

    async def close(self) -> None:
        # The exporters post from their own threads; waiting for them here would block the event loop.
        await asyncio.to_thread(self._provider.shutdown)


@contextlib.contextmanager
def _forcing(ids: tuple[int, int]) -> Iterator[None]:
    token = _forced.set(ids)
    try:
        yield
    finally:
        _forced.reset(token)
