"""Traces continued from the gateway: a call's W3C ``traceparent`` becomes the current OpenTelemetry context.

The gateway sends ``traceparent`` with every call when its tracing is on; its trace id is the run's id.
When OpenTelemetry's API is installed in the service (``pip install 'stepline[tracing]'``), the function
runs inside that context, so the spans the service makes meanwhile (its own, its HTTP clients', its
database's) join the run's trace under the call's span. Without it, or without the header, nothing happens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

try:
    from opentelemetry import context as _context
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # OpenTelemetry is optional: the function runs without a trace context
    _context = None  # type: ignore[assignment]
    TraceContextTextMapPropagator = None  # type: ignore[assignment,misc]

_HEADERS = ("traceparent", "tracestate")


@contextlib.contextmanager
def continued(headers: Mapping[str, str]) -> Iterator[None]:
    """Run the block in the trace context that ``headers`` (lower-case names) carry, if any."""
    if _context is None or TraceContextTextMapPropagator is None or "traceparent" not in headers:
        yield
        return
    carrier = {name: headers[name] for name in _HEADERS if name in headers}
    token = _context.attach(TraceContextTextMapPropagator().extract(carrier))
    try:
        yield
    finally:
        _context.detach(token)
