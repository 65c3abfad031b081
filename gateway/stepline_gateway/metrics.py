"""Prometheus metrics of one gateway: the contract of docs/metrics.md, name by name.

``Metrics`` owns a registry (several gateways in one process, as in tests, do not collide) and offers one
method per thing that happens (a call answered, a step recorded, a run finished...), so that the modules
that make those things happen make one call each and never touch the series themselves. Per-function series
carry ``namespace`` and ``function`` (labels.py). The queue gauges come from a snapshot of Postgres taken at
scrape time (queue.py), the database pool's from the pools themselves. With metrics off
(``--no-metrics``) every method returns at once and nothing is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from stepline_store.pool import Store

from stepline_gateway.labels import FunctionLabels

if TYPE_CHECKING:
    from stepline_gateway.queue import QueueSnapshot

# Seconds. Calls: a millisecond to the call timeout's order. Waits for a first call: a millisecond to an hour.
# Runs: from a few milliseconds to a week of sleeps.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
START_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400, 604800)

# The client's ``*_created`` series (when each labelled child was made) double the text for nothing.
disable_created_metrics()  # type: ignore[no-untyped-call]

FUNCTION = ("namespace", "function")
# Why a run waits, as the queue shows it (queue.py); flow control adds its own reasons.
WAITING_REASONS = (
    "queued",
    "scheduled",
    "sleeping",
    "waiting",
    "invoking",
    "retrying",
    "concurrency",
    "throttled",
    "debounced",
    "batching",
)


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, ``5xx``... of an HTTP status; ``error`` when no answer came (timeout, connection)."""
    return f"{status // 100}xx" if 100 <= status < 600 else "error"


class Metrics:
    def __init__(self, labels: FunctionLabels, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._labels = labels
        self.registry = CollectorRegistry()
        registry = self.registry
        self.events = Counter("stepline_events_ingested", "Events accepted (new ids only)", registry=registry)
        self.runs_started = Counter(
            "stepline_runs_started", "Runs created, by function", FUNCTION, registry=registry
        )
        self.runs_finished = Counter(
            "stepline_runs_finished",
            "Runs that ended, by function and status (Completed, Failed, Cancelled)",
            (*FUNCTION, "status"),
            registry=registry,
        )
        self.steps = Counter(
            "stepline_steps",
            "Steps recorded, by function and outcome (completed, failed)",
            (*FUNCTION, "outcome"),
            registry=registry,
        )
        self.calls = Counter(
            "stepline_calls",
            "Calls to function services (attempts), by function and outcome (completed, steps, error)",
            (*FUNCTION, "outcome"),
            registry=registry,
        )
        self.retries = Counter(
            "stepline_retries",
            "Failed attempts that are tried again after their backoff, by function",
            FUNCTION,
            registry=registry,
        )
        self.events_skipped = Counter(
            "stepline_events_skipped",
            "Events that started no run of a function they matched, by function and reason",
            (*FUNCTION, "reason"),
            registry=registry,
        )
        self.call_duration = Histogram(
            "stepline_call_duration_seconds",
            "Duration of calls to function services, by function and status class (2xx, 4xx, 5xx, error)",
            (*FUNCTION, "status_class"),
            registry=registry,
            buckets=CALL_BUCKETS,
        )
        self.run_duration = Histogram(
            "stepline_run_duration_seconds",
            "Time from a run's creation to its end, by function and status",
            (*FUNCTION, "status"),
            registry=registry,
            buckets=RUN_BUCKETS,
        )
        self.schedule_to_start = Histogram(
            "stepline_schedule_to_start_seconds",
            "Time from the moment a run's first call fell due (its event received, or its ts) to the claim "
            "that makes it, by function",
            FUNCTION,
            registry=registry,
            buckets=START_BUCKETS,
        )
        self.checkpoint_posts = Counter(
            "stepline_checkpoint_posts",
            "Posts to the checkpoint API, by outcome (recorded, lease_lost, refused)",
            ("outcome",),
            registry=registry,
        )
        self.checkpointed_steps = Counter(
            "stepline_checkpointed_steps", "Steps recorded through the checkpoint API", registry=registry
        )
        self.routes = Gauge("stepline_functions_routed", "Functions in the routing table", registry=registry)
        self.inflight = Gauge("stepline_calls_in_flight", "Calls being made now", registry=registry)
        self.listener_reconnects = Counter(
            "stepline_listener_reconnects",
            "Times the LISTEN connection was opened again after it was lost",
            registry=registry,
        )
        # Outcomes: accepted, duplicate, unauthorized, bad_request, too_large, unavailable; requests to a
        # webhook that does not exist count once, unlabelled (their names are the sender's to choose).
        self.webhook_deliveries = Counter(
            "stepline_webhook_deliveries",
            "Requests to webhooks by webhook and outcome",
            ["namespace", "webhook", "outcome"],
            registry=registry,
        )
        self._state = _ScrapedState()
        registry.register(self._state)

    def _function(self, function_id: str) -> tuple[str, str]:
        return self._labels.namespace(function_id), function_id

    def events_ingested(self, count: int) -> None:
        if self.enabled and count:
            self.events.inc(count)

    def runs_created(self, function_ids: Iterable[str]) -> None:
        if self.enabled:
            for function_id in function_ids:
                self.runs_started.labels(*self._function(function_id)).inc()

    def event_skipped(self, function_id: str, reason: str) -> None:
        """An event matched ``function_id`` and started no run of it: rate_limited, idempotency, singleton."""
        if self.enabled:
            self.events_skipped.labels(*self._function(function_id), reason).inc()

    def run_ended(self, function_id: str, status: str, seconds: float | None) -> None:
        if not self.enabled:
            return
        labels = self._function(function_id)
        self.runs_finished.labels(*labels, status).inc()
        if seconds is not None:
            self.run_duration.labels(*labels, status).observe(max(0.0, seconds))

    def answered(self, function_id: str, status: int, outcome: str, seconds: float) -> None:
        """A call came back (or failed to): counted once per answer, however often it is recorded."""
        if not self.enabled:
            return
        labels = self._function(function_id)
        self.calls.labels(*labels, outcome).inc()
        self.call_duration.labels(*labels, status_class(status)).observe(seconds)

    def steps_recorded(self, function_id: str, outcome: str, count: int = 1) -> None:
        if self.enabled and count:
            self.steps.labels(*self._function(function_id), outcome).inc(count)

    def retried(self, function_id: str) -> None:
        if self.enabled:
            self.retries.labels(*self._function(function_id)).inc()

    def first_call(self, function_id: str, waited_s: float | None) -> None:
        """A run's first call was claimed ``waited_s`` after it fell due (None: not a first call)."""
        if self.enabled and waited_s is not None:
            self.schedule_to_start.labels(*self._function(function_id)).observe(max(0.0, waited_s))

    def checkpoint_posted(self, outcome: str, recorded: int = 0) -> None:
        if not self.enabled:
            return
        self.checkpoint_posts.labels(outcome).inc()
        if recorded:
            self.checkpointed_steps.inc(recorded)

    def reconnected(self) -> None:
        if self.enabled:
            self.listener_reconnects.inc()

    def watch_pool(self, name: str, store: Store) -> None:
        """Report the connections of ``store``'s pool and its statement errors as pool ``name``."""
        self._state.pools[name] = store

    def render(self, queue: QueueSnapshot | None = None) -> bytes:
        """The Prometheus text of every series, with the queue as ``queue`` shows it (None: not known)."""
        self._state.queue = queue
        self._state.labels = self._labels
        return generate_latest(self.registry)


class _ScrapedState(Collector):
    """The series read at scrape time: the queue (from its snapshot) and the database pools."""

    def __init__(self) -> None:
        self.pools: dict[str, Store] = {}
        self.queue: QueueSnapshot | None = None
        self.labels: FunctionLabels | None = None

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily(
            "stepline_runs_waiting",
            "Runs waiting, by function and reason (queued, scheduled, sleeping, waiting, invoking, retrying, "
            "concurrency, throttled, debounced, batching)",
            labels=[*FUNCTION, "reason"],
        )
        due = GaugeMetricFamily(
            "stepline_calls_due", "Calls due now and not yet claimed, by function", labels=list(FUNCTION)
        )
        oldest = GaugeMetricFamily(
            "stepline_oldest_due_call_age_seconds",
            "How long the oldest due call has been waiting for a gateway, by function",
            labels=list(FUNCTION),
        )
        queue, labels = self.queue, self.labels
        if queue is not None and labels is not None:
            for entry in queue.functions:
                names = [labels.namespace(entry.function_id), entry.function_id]
                for reason, runs in sorted(entry.waiting.items()):
                    waiting.add_metric([*names, reason], runs)
                due.add_metric(names, entry.calls_due)
                oldest.add_metric(names, entry.oldest_due_s)
        yield from (waiting, due, oldest)
        connections = GaugeMetricFamily(
            "stepline_db_pool_connections",
            "Connections of the gateway's database pools, by pool (primary, replica) and state "
            "(in_use, idle)",
            labels=["pool", "state"],
        )
        limit = GaugeMetricFamily(
            "stepline_db_pool_max_connections", "Most connections a pool opens", labels=["pool"]
        )
        errors = CounterMetricFamily(
            "stepline_db_errors",
            "Statements that failed, by pool and kind (transient: the database was away or busy; "
            "permanent: anything else)",
            labels=["pool", "kind"],
        )
        for name, store in sorted(self.pools.items()):
            usage = store.usage()
            connections.add_metric([name, "in_use"], usage.in_use)
            connections.add_metric([name, "idle"], usage.idle)
            limit.add_metric([name], usage.max_size)
            for kind, count in sorted(store.errors.items()):
                errors.add_metric([name, kind], count)
        yield from (connections, limit, errors)
