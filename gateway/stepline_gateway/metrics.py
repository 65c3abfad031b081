"""Prometheus metrics of one gateway: what it ingested, called and finished.

Each gateway owns its registry, so several gateways in one process (tests) do not collide.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("stepline_events_ingested", "Events accepted", registry=self.registry)
        self.runs_started = Counter("stepline_runs_started", "Runs created by events", registry=self.registry)
        self.runs_finished = Counter(
            "stepline_runs_finished", "Runs that ended", ["status"], registry=self.registry
        )
        self.calls = Counter(
            "stepline_calls", "Calls to function services", ["outcome"], registry=self.registry
        )
        self.checkpointed_steps = Counter(
            "stepline_checkpointed_steps", "Steps recorded through the checkpoint API", registry=self.registry
        )
        self.call_seconds = Histogram(
            "stepline_call_seconds",
            "Duration of calls to function services",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.routes = Gauge(
            "stepline_functions_routed", "Functions in the routing table", registry=self.registry
        )
        self.inflight = Gauge("stepline_calls_in_flight", "Calls being made now", registry=self.registry)
        # Outcomes: accepted, duplicate, unauthorized, bad_request, too_large, unavailable; requests to a
        # webhook that does not exist count once, unlabelled (their names are the sender's to choose).
        self.webhook_deliveries = Counter(
            "stepline_webhook_deliveries",
            "Requests to webhooks by webhook and outcome",
            ["namespace", "webhook", "outcome"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
