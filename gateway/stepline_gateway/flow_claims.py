"""Flow control enforced when calls are claimed: what a new run carries to the claim, and why a run waits.

When a run is created, ``ClaimFlow.of`` computes from its function's settings and its event the run's
concurrency keys (scope fn / env / account) with their limits, its throttle (GCRA: the interval between
starts and how far ahead of that pace a burst may run), its priority and its timeouts; ``gate_runs`` writes
them onto the run's first call in the transaction that creates it. The claim (``claim_work``) does the
rest in Postgres, and a trigger wakes the next waiting call when a slot frees. ``waiting_of`` answers why
runs wait, for the API and the dashboard. Keys and priorities are CEL over ``event``, compiled once.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from stepline.durations import parse_duration
from stepline.flow import FlowControl
from stepline_store import queries
from stepline_store.pool import Queryable, Store

from stepline_gateway.routing import Function, compile_expression

log = logging.getLogger(__name__)

# Key values longer than this are stored by their hash (the label keeps the first characters).
_MAX_KEY_VALUE = 200
_MAX_LABEL = 120
PRIORITY_BOUND_S = 600
# The timers of timeouts are work rows with these step ids; claimed, they cancel the run (timeouts.py).
START_TIMER = "timeout:start"
FINISH_TIMER = "timeout:finish"
TIMERS = (START_TIMER, FINISH_TIMER)


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str) -> Any:
    return compile_expression(expression)


def _evaluate(expression: str, event: Mapping[str, Any]) -> Any:
    """The value of a key or priority expression; None when it fails on this event."""
    try:
        return _compiled(expression).execute({"event": dict(event)})
    except (ValueError, TypeError, RuntimeError, KeyError) as err:
        log.debug("flow-control expression %r failed: %s", expression, err)
        return None


def key_value(expression: str | None, event: Mapping[str, Any]) -> str | None:
    """A key expression's value as text (None without an expression; "" when it fails or is null)."""
    if expression is None:
        return None
    value = _evaluate(expression, event)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return str(value)


def _stored(value: str) -> str:
    if len(value) <= _MAX_KEY_VALUE:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def _label(value: str | None) -> str | None:
    return None if value is None else value[:_MAX_LABEL]


def priority_of(expression: str, event: Mapping[str, Any]) -> int:
    """``priority.run``: whole seconds, clamped to -600..600; 0 when it fails or is not a number."""
    value = _evaluate(expression, event)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return max(-PRIORITY_BOUND_S, min(PRIORITY_BOUND_S, int(value)))


def has_claim_flow(flow: FlowControl | None) -> bool:
    """Whether anything of ``flow`` is enforced at claim time."""
    return flow is not None and bool(
        flow.concurrency
        or flow.throttle
        or flow.priority
        or (flow.timeouts and (flow.timeouts.start or flow.timeouts.finish))
    )


@dataclass(frozen=True)
class ClaimFlow:
    """What one run carries to the claim."""

    # (stored key, label, limit) per concurrency entry, at most two; the lower limit when two keys agree.
    keys: tuple[tuple[str, str | None, int], ...] = ()
    throttle_key: str | None = None
    throttle_label: str | None = None
    throttle_interval_s: float | None = None
    throttle_tolerance_s: float | None = None
    priority_s: int = 0
    start_timeout_s: float | None = None
    finish_timeout_s: float | None = None

    @staticmethod
    def of(function: Function, event: Mapping[str, Any]) -> ClaimFlow | None:
        flow = function.flow
        if flow is None or not has_claim_flow(flow):
            return None
        limits: dict[str, tuple[str | None, int]] = {}
        for entry in flow.concurrency:
            value = key_value(entry.key, event)
            if entry.scope == "account":
                key = f"account/{_stored(value or '')}"
            elif entry.scope == "env":
                key = f"env/{function.namespace}/{_stored(value or '')}"
            else:
                key = f"fn/{function.id}/{_stored(value or '')}" if value is not None else f"fn/{function.id}"
            known = limits.get(key)
            limits[key] = (_label(value), min(entry.limit, known[1]) if known else entry.limit)
        throttle_key = throttle_label = None
        interval_s = tolerance_s = None
        if flow.throttle is not None:
            value = key_value(flow.throttle.key, event)
            throttle_key = f"throttle/{function.id}/{_stored(value or '')}"
            throttle_label = _label(value)
            interval_s = parse_duration(flow.throttle.period).total_seconds() / flow.throttle.limit
            # limit + burst - 1 starts may go at once, then one every interval (docs/flow-control.md).
            tolerance_s = interval_s * (flow.throttle.limit + flow.throttle.burst - 2)
        timeouts = flow.timeouts
        return ClaimFlow(
            keys=tuple((key, label, limit) for key, (label, limit) in sorted(limits.items())),
            throttle_key=throttle_key,
            throttle_label=throttle_label,
            throttle_interval_s=interval_s,
            throttle_tolerance_s=tolerance_s,
            priority_s=priority_of(flow.priority.run, event) if flow.priority else 0,
            start_timeout_s=_seconds(timeouts.start if timeouts else None),
            finish_timeout_s=_seconds(timeouts.finish if timeouts else None),
        )


def _seconds(duration: str | None) -> float | None:
    return None if duration is None else parse_duration(duration).total_seconds()


async def gate_runs(
    store: Store, runs: Iterable[tuple[uuid.UUID, ClaimFlow]], offset: datetime.timedelta, *, on: Queryable
) -> None:
    """Write the flow control of runs just created onto their first calls (one statement for all)."""
    gated = list(runs)
    if not gated:
        return
    flows = [flow for _, flow in gated]
    await queries.gate_runs(
        store,
        run_ids=[run_id for run_id, _ in gated],
        concurrency_keys=[
            json.dumps([list(key) for key in flow.keys]) if flow.keys else None for flow in flows
        ],
        throttle_keys=[flow.throttle_key for flow in flows],
        throttle_labels=[flow.throttle_label for flow in flows],
        throttle_interval_seconds=[flow.throttle_interval_s for flow in flows],
        throttle_tolerance_seconds=[flow.throttle_tolerance_s for flow in flows],
        priority_seconds=[flow.priority_s for flow in flows],
        start_timeout_seconds=[flow.start_timeout_s for flow in flows],
        finish_timeout_seconds=[flow.finish_timeout_s for flow in flows],
        clock_offset=offset,
        on=on,
    )


def _clock_time(value: datetime.datetime) -> str:
    return value.astimezone(datetime.UTC).strftime("%H:%M:%S")


async def waiting_of(
    store: Store, run_ids: list[uuid.UUID], offset: datetime.timedelta
) -> dict[uuid.UUID, dict[str, Any]]:
    """Why each of ``run_ids`` waits on flow control (runs that do not are left out):
    ``{"reason": "concurrency", "key", "running", "limit", "message"}`` or
    ``{"reason": "throttled", "key", "until", "message"}``."""
    if not run_ids:
        return {}
    found: dict[uuid.UUID, dict[str, Any]] = {}
    for row in await queries.runs_waiting(store, run_ids=run_ids, clock_offset=offset):
        if row["run_id"] in found:
            continue
        label = row["label"]
        if row["waiting"] == "concurrency":
            running, limit = row["in_flight"] or 0, row["lim"]
            what = f"concurrency key `{label}`" if label is not None else "concurrency limit"
            found[row["run_id"]] = {
                "reason": "concurrency",
                "key": label,
                "running": running,
                "limit": limit,
                "message": f"{what}: {running} of {limit} running",
            }
        else:
            until = row["until"]
            # A throttled call's ``until`` is its due time, which every call has.
            assert until is not None
            found[row["run_id"]] = {
                "reason": "throttled",
                "until": until.isoformat(),
                "message": f"throttled until {_clock_time(until)}",
            }
    return found
