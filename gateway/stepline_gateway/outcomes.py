"""What a call's answer means, written down: the statements that record each outcome of a leased call.

The executor (executor.py) decides which outcome an answer is; ``Outcomes`` records it, durably and only
while the call's lease is held: a step's memo (once), a retry after a backoff, a parked call (sleep, wait,
invoke), planned parallel steps, the end of the run. ``record_steps`` records steps that ran, for answers
that carry several and for the checkpoint API (checkpoint.py). Every method takes ``on``, a connection in a
transaction, so that the operations of one answer are recorded in one transaction, in order.
"""

from __future__ import annotations

import datetime
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stepline.durations import parse_duration, parse_instant
from stepline.protocol import (
    DISCOVERY_STEP_ID,
    FUNCTION_FAILED_EVENT,
    FUNCTION_FINISHED_EVENT,
    FUNCTION_INVOKED_EVENT,
    Opcode,
    data_memo,
)
from stepline_store.pool import Queryable, Store

from stepline_gateway.backoff import Backoff
from stepline_gateway.calls import Call
from stepline_gateway.clock import Clock
from stepline_gateway.events import Event, new_event_id
from stepline_gateway.ingest import Ingestor, PlannedRun
from stepline_gateway.metrics import Metrics
from stepline_gateway.routing import ExpressionError, RoutingTable, compile_expression

log = logging.getLogger(__name__)

# A wait or invoke without a timeout is given up after this long.
_NO_TIMEOUT = "365d"


@dataclass(frozen=True)
class Claim:
    """A leased call: the row that holds it, the token that proves the lease, and the call itself."""

    work_id: int
    lease_token: uuid.UUID
    call: Call
    # Set when the call was parked on a sleep, wait or invoke: record this memo for that step first.
    resolves: str | None = None
    resolves_op: str | None = None
    resolves_name: str | None = None
    resolution: Any = None


@dataclass(frozen=True)
class RecordedSteps:
    """What ``record_steps`` did: whether the call still held its lease, and how many steps were new."""

    held: bool
    recorded: int


def step_name(op: dict[str, Any]) -> str:
    return str(op.get("displayName") or op.get("name") or op.get("id"))


def op_error(op: dict[str, Any]) -> dict[str, Any]:
    error = op.get("error")
    if isinstance(error, dict):
        return {
            "name": str(error.get("name") or "Error"),
            "message": str(error.get("message") or ""),
            "stack": error.get("stack"),
        }
    return {"name": "Error", "message": str(error or "the step failed"), "stack": None}


def _duration_ms(op: dict[str, Any]) -> float | None:
    """How long the step ran, from the official SDKs' ``timing`` ({"a": start ns, "b": duration ns})."""
    timing = op.get("timing")
    if isinstance(timing, dict) and isinstance(timing.get("b"), int | float) and timing["b"] >= 0:
        return float(timing["b"]) / 1e6
    return None


async def record_steps(
    store: Store,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    ops: list[dict[str, Any]],
    now: datetime.datetime,
    checkpointed: bool,
    on: Queryable = None,
) -> RecordedSteps:
    """Record steps that ran (StepRun operations), in order and each once, for the call holding work
    ``work_id``; the call's attempt count starts again, since it made progress. ValueError if an output is
    not JSON the store can keep (NaN, infinities)."""
    unique: dict[str, dict[str, Any]] = {}
    for op in ops:
        unique.setdefault(str(op.get("id")), op)
    memos = [json.dumps(data_memo(op.get("data")), allow_nan=False) for op in unique.values()]
    row = await store.fetchrow(
        "record_steps",
        work_id,
        lease_token,
        run_id,
        list(unique),
        [step_name(op) for op in unique.values()],
        [Opcode.STEP_RUN.value for _ in unique],
        memos,
        [_duration_ms(op) for op in unique.values()],
        now,
        checkpointed,
        on=on,
    )
    if row is None or not row["held"]:
        return RecordedSteps(held=False, recorded=0)
    return RecordedSteps(held=True, recorded=row["recorded"])


def _sleep_until(op: dict[str, Any], opts: dict[str, Any], now: datetime.datetime) -> datetime.datetime:
    """SDKs put the wake-up time in ``name`` (an ISO 8601 time, or a duration) or in ``opts.duration``."""
    name = str(op.get("name") or "")
    try:
        return parse_instant(name)
    except ValueError:
        pass
    return now + parse_duration(name if not opts.get("duration") else str(opts["duration"]))


class Outcomes:
    def __init__(
        self,
        *,
        store: Store,
        ingestor: Ingestor,
        clock: Clock,
        backoff: Backoff,
        metrics: Metrics,
        lease: datetime.timedelta,
        wake: Callable[[], None],
        routes: Callable[[], RoutingTable],
    ) -> None:
        self._store = store
        self._ingestor = ingestor
        self._clock = clock
        self._backoff = backoff
        self._metrics = metrics
        self._lease = lease
        self._wake = wake
        self._routes = routes

    async def resume(self, claim: Claim) -> Claim | None:
        """A parked call fell due: record its step's resolution as the memo, then go on as after a step."""
        memo = claim.resolution
        failed = isinstance(memo, dict) and set(memo) == {"error"}
        op = {"id": claim.resolves, "op": claim.resolves_op, "name": claim.resolves_name}
        plain = replace(claim, resolves=None, resolves_op=None, resolves_name=None, resolution=None)
        error = memo["error"] if failed else None
        return await self.record(
            plain, op, memo, "Failed" if failed else "Completed", error, self._clock.now()
        )

    async def record(
        self,
        claim: Claim,
        op: dict[str, Any],
        memo: dict[str, Any],
        status: str,
        error: dict[str, Any] | None,
        started: datetime.datetime,
        *,
        on: Queryable = None,
    ) -> Claim | None:
        """Record one step's memo; answer the discovery call that goes on in this task, if any."""
        call = claim.call
        step_hash = str(op.get("id"))
        now = self._clock.now()
        common = (step_hash, step_name(op))
        if call.step_id == DISCOVERY_STEP_ID:
            row = await self._store.fetchrow(
                "record_step",
                claim.work_id,
                claim.lease_token,
                uuid.UUID(call.run_id),
                *common,
                DISCOVERY_STEP_ID,
                now + self._lease,
                op.get("op"),
                status,
                memo,
                call.attempt + 1,
                error,
                started,
                now,
                on=on,
            )
            if row is None or not row["held"]:
                log.info("run %s: lease lost or run cancelled; dropping the answer", call.run_id)
                return None
            if row["memos_before"] > len(call.memos):
                # Steps came in through the checkpoint API during the call: the next call carries them too.
                return replace(claim, call=await self._with_run_memos(call, on=on))
            # When the step had been recorded already, the stored memo stays; the next call may carry ours.
            memos = {**call.memos, step_hash: memo}
            stack = call.stack if step_hash in call.stack else [*call.stack, step_hash]
            return replace(claim, call=replace(call, memos=memos, stack=stack, attempt=0))
        async with self._store.transaction(on) as conn:
            status_now = await self._store.fetchval("lock_run", uuid.UUID(call.run_id), on=conn)
            if status_now not in ("Queued", "Running"):
                return None
            await self._store.fetchrow(
                "record_parallel_step",
                claim.work_id,
                claim.lease_token,
                uuid.UUID(call.run_id),
                *common,
                op.get("op"),
                status,
                memo,
                call.attempt + 1,
                error,
                started,
                now,
                now,
                on=conn,
            )
        self._wake()
        return None

    async def _with_run_memos(self, call: Call, *, on: Queryable) -> Call:
        row = await self._store.fetchrow("run_memos", uuid.UUID(call.run_id), on=on)
        memos, stack = (row["memos"], list(row["stack"])) if row is not None else ({}, [])
        return replace(call, memos=memos, stack=stack, attempt=0)

    async def rediscover(self, claim: Claim, *, on: Queryable = None) -> Claim | None:
        """DiscoveryRequest: the held call becomes a new discovery call, made at once in this task."""
        call = claim.call
        row = await self._store.fetchrow(
            "rediscover",
            claim.work_id,
            claim.lease_token,
            self._clock.now() + self._lease,
            uuid.UUID(call.run_id),
            on=on,
        )
        if row is None or not row["held"]:
            return None
        next_call = replace(
            call, step_id=DISCOVERY_STEP_ID, attempt=0, memos=row["memos"], stack=list(row["stack"])
        )
        return replace(claim, call=next_call)

    async def park(self, claim: Claim, op: dict[str, Any], *, on: Queryable = None) -> Claim | None:
        """Sleep, WaitForEvent, InvokeFunction: release the call until a time, an event or a child's end."""
        now = self._clock.now()
        kind = op.get("op")
        opts: dict[str, Any] = op["opts"] if isinstance(op.get("opts"), dict) else {}
        try:
            if kind == Opcode.SLEEP:
                due = _sleep_until(op, opts, now)
                await self._park_call(claim, op, "Sleeping", due, None, on=on)
            elif kind == Opcode.WAIT_FOR_EVENT:
                event_name = str(opts.get("event") or op.get("name") or "")
                timeout = parse_duration(str(opts.get("timeout") or _NO_TIMEOUT))
                expression = opts.get("if") or None
                if expression:
                    compile_expression(expression)
                await self._park_call(
                    claim, op, "Waiting", now + timeout, None, wait=(event_name, expression), on=on
                )
            else:
                return await self._invoke(claim, op, opts, now, on=on)
        except (ValueError, ExpressionError) as err:
            error = {"name": "InvalidOperation", "message": f"{kind}: {err}", "stack": None}
            return await self.record(claim, op, {"error": error}, "Failed", error, now, on=on)
        self._wake()
        return None

    async def _park_call(
        self,
        claim: Claim,
        op: dict[str, Any],
        status: str,
        due: datetime.datetime,
        resolution: Any,
        *,
        wait: tuple[str, str | None] | None = None,
        on: Queryable = None,
    ) -> None:
        call = claim.call
        event_name, expression = wait if wait else (None, None)
        await self._store.fetchrow(
            "park_call",
            claim.work_id,
            claim.lease_token,
            uuid.UUID(call.run_id),
            str(op.get("id")),
            step_name(op),
            op.get("op"),
            status,
            due,
            resolution,
            self._clock.now(),
            event_name,
            expression,
            on=on,
        )

    async def _invoke(
        self,
        claim: Claim,
        op: dict[str, Any],
        opts: dict[str, Any],
        now: datetime.datetime,
        *,
        on: Queryable,
    ) -> Claim | None:
        function_id = str(opts.get("function_id") or "")
        function = self._routes().functions.get(function_id)
        if function is None:
            error = {
                "name": "FunctionNotFound",
                "message": f"no function {function_id!r} is routed",
                "stack": None,
            }
            return await self.record(claim, op, {"error": error}, "Failed", error, now, on=on)
        payload: dict[str, Any] = opts["payload"] if isinstance(opts.get("payload"), dict) else {}
        data: dict[str, Any] = payload["data"] if isinstance(payload.get("data"), dict) else {}
        timeout = parse_duration(str(opts["timeout"])) if opts.get("timeout") else parse_duration(_NO_TIMEOUT)
        expired = {
            "name": "InvokeTimeoutError",
            "stack": None,
            "message": f"{function_id} did not finish within {opts.get('timeout')}",
        }
        event = Event(
            id=new_event_id(), name=FUNCTION_INVOKED_EVENT, data=data, ts=int(now.timestamp() * 1000)
        )
        child = PlannedRun(
            function, event, now, parent_run_id=uuid.UUID(claim.call.run_id), parent_step=str(op.get("id"))
        )
        async with self._store.transaction(on) as conn:
            await self._park_call(claim, op, "Invoking", now + timeout, {"error": expired}, on=conn)
            await self._ingestor.ingest([event], runs=[child], on=conn)
        self._wake()
        return None

    async def plan(self, claim: Claim, planned: list[dict[str, Any]], *, on: Queryable = None) -> None:
        call = claim.call
        await self._store.fetchrow(
            "plan_steps",
            claim.work_id,
            claim.lease_token,
            uuid.UUID(call.run_id),
            [str(op.get("id")) for op in planned],
            [step_name(op) for op in planned],
            self._clock.now(),
            on=on,
        )
        self._wake()

    async def failed_attempt(
        self,
        claim: Claim,
        error: dict[str, Any],
        retriable: bool,
        retry_at: datetime.datetime | None,
        step_hash: str | None,
        name: str | None,
        *,
        on: Queryable = None,
    ) -> None:
        call = claim.call
        if retriable and call.attempt + 1 < call.max_attempts:
            now = self._clock.now()
            due = self._backoff.next_attempt_at(call.attempt, now, not_before=retry_at)
            log.info(
                "run %s: attempt %d failed (%s), retrying at %s",
                call.run_id,
                call.attempt + 1,
                error.get("message"),
                due.isoformat(),
            )
            await self._store.fetchrow(
                "retry_call",
                claim.work_id,
                claim.lease_token,
                call.attempt + 1,
                due,
                uuid.UUID(call.run_id),
                step_hash,
                name or step_hash,
                error,
                now,
                on=on,
            )
            self._wake()
            return
        await self.finish(claim, "Failed", output=None, error=error, on=on)

    async def protocol_error(self, claim: Claim, message: str, *, on: Queryable = None) -> None:
        error = {"name": "ProtocolError", "message": message, "stack": None}
        await self.finish(claim, "Failed", output=None, error=error, on=on)

    async def finish(
        self,
        claim: Claim,
        status: str,
        *,
        output: Any,
        error: dict[str, Any] | None,
        on: Queryable = None,
    ) -> None:
        call = claim.call
        now = self._clock.now()
        args = (uuid.UUID(call.run_id), status, output, error, now, claim.work_id, claim.lease_token)
        if status == "Completed":
            # One statement, no explicit transaction: the common end of a run costs one round trip.
            if await self._store.fetchrow("finish_run", *args, on=on) is None:
                return
            self._metrics.runs_finished.labels(status).inc()
            log.info("run %s of %s completed", call.run_id, call.function_id)
            return
        async with self._store.transaction(on) as conn:
            if await self._store.fetchrow("finish_run", *args, on=conn) is None:
                return
            data = {
                "function_id": call.function_id,
                "run_id": call.run_id,
                "error": error,
                "event": call.event,
            }
            ts = int(now.timestamp() * 1000)
            await self._ingestor.ingest(
                [
                    Event(id=new_event_id(), name=FUNCTION_FAILED_EVENT, data=data, ts=ts),
                    Event(id=new_event_id(), name=FUNCTION_FINISHED_EVENT, data=data, ts=ts),
                ],
                on=conn,
            )
        self._metrics.runs_finished.labels(status).inc()
        log.warning("run %s of %s failed: %s", call.run_id, call.function_id, (error or {}).get("message"))
