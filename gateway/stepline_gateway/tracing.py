"""Traces of runs, opt-in: what the executor, the checkpoint API and the run's end tell the tracer.

``Tracing`` is the tracer switched off: every method does nothing and the executor makes no span object,
so tracing costs nothing unless it is asked for. ``from_env`` turns it on, with the OpenTelemetry SDK and its
OTLP/HTTP exporter (otel.py), when the standard variables ask for traces: ``OTEL_TRACES_EXPORTER=otlp`` (or
``console``), or an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)
with ``OTEL_TRACES_EXPORTER`` unset; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` keep it off.
The rest (sampler, resource, batching, headers, timeouts) is read by the OpenTelemetry SDK from the same
``OTEL_*`` variables. docs/tracing.md describes the traces.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stepline_gateway.calls import Answer, Call


class CallSpan(Protocol):
    """The span of one call in flight."""

    @property
    def traceparent(self) -> str:
        """The W3C ``traceparent`` header that names this span to the service."""

    def end(self, answer: Answer) -> None:
        """The call came back with ``answer``: end its span, with a span for each step it reports."""


class Tracing:
    """Tracing switched off: nothing is made, nothing is sent."""

    enabled = False

    def call(self, call: Call, namespace: str) -> CallSpan | None:
        """A call is about to be made: its span (None when off)."""
        return None

    def checkpointed(self, run_id: str, qi_id: str, steps: list[dict[str, Any]]) -> None:
        """Steps came in through the checkpoint API for the call that holds ``qi_id``."""

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
        """A run ended: its own span, the root of its trace."""

    async def close(self) -> None:
        """Send what is still buffered, then stop."""


def wanted(environ: Mapping[str, str]) -> list[str]:
    """The trace exporters the ``OTEL_*`` variables ask for (empty: tracing stays off)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        return [name for name in (part.strip() for part in named.split(",")) if name and name != "none"]
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return ["otlp"] if endpoint else []


def from_env(environ: Mapping[str, str] | None = None, *, service_name: str = "stepline-gateway") -> Tracing:
    """Tracing as the ``OTEL_*`` variables ask for: off unless they ask for an exporter."""
    environ = os.environ if environ is None else environ
    exporters = wanted(environ)
    if not exporters:
        return Tracing()
    from stepline_gateway.otel import OpenTelemetryTracing

    return OpenTelemetryTracing(exporters, environ=environ, service_name=service_name)
