"""The executor: makes a claimed call, then records what the answer means, durably, before going on.

Answers and what follows (docs/protocol.md has the full table):

    200                      the run is Completed with the body as its output
    206 StepRun              the step's output is recorded once; the next call follows at once
    206 StepFailed           the step's error is recorded as its memo; the function decides what follows
    206 StepError            the step is retried with backoff, or recorded as failed when attempts run out
    206 StepPlanned (xN)     parallel steps: one call per step; the last to finish resumes the function
    500 / no answer          the call is retried with backoff; no-retry or exhausted attempts fail the run

A failed run emits ``inngest/function.failed`` and ``inngest/function.finished`` in the same transaction.
Sequential steps go on in the same task while the call's lease is held, so a step costs one call and one
write. Step results arrive through ``settle_ops`` whether they came in a call's answer or, later, through
the checkpoint API.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from stepline.protocol import (
    DISCOVERY_STEP_ID,
    FUNCTION_FAILED_EVENT,
    FUNCTION_FINISHED_EVENT,
    FUNCTION_INVOKED_EVENT,
    Opcode,
    data_memo,
)

from stepline_gateway.backoff import Backoff
from stepline_gateway.calls import Answer, Call, Caller
from stepline_gateway.clock import Clock
from stepline_gateway.durations import parse_duration, parse_instant
from stepline_gateway.events import Event, new_event_id
from stepline_gateway.ingest import Ingestor, PlannedRun
from stepline_gateway.metrics import Metrics
from stepline_gateway.routing import ExpressionError, RoutingTable, compile_expression
from stepline_gateway.store import Queryable, Store

log = logging.getLogger(__name__)


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


# A wait or invoke without a timeout is given up after this long.
_NO_TIMEOUT = "365d"


def _sleep_until(op: dict[str, Any], opts: dict[str, Any], now: datetime.datetime) -> datetime.datetime:
    """SDKs put the wake-up time in ``name`` (an ISO 8601 time, or a duration) or in ``opts.duration``."""
    name = str(op.get("name") or "")
    try:
        return parse_instant(name)
    except ValueError:
        pass
    return now + parse_duration(name if not opts.get("duration") else str(opts["duration"]))


def _step_name(op: dict[str, Any]) -> str:
    return str(op.get("displayName") or op.get("name") or op.get("id"))


def _op_error(op: dict[str, Any]) -> dict[str, Any]:
    error = op.get("error")
    if isinstance(error, dict):
        return {
            "name": str(error.get("name") or "Error"),
            "message": str(error.get("message") or ""),
            "stack": error.get("stack"),
        }
    return {"name": "Error", "message": str(error or "the step failed"), "stack": None}


class Executor:
    def __init__(
        self,
        *,
        store: Store,
        caller: Caller,
        ingestor: Ingestor,
        clock: Clock,
        backoff: Backoff,
        metrics: Metrics,
        lease_s: float,
        wake: Callable[[], None],
        routes: Callable[[], RoutingTable],
    ) -> None:
        self._routes = routes
        self._store = store
        self._caller = caller
        self._ingestor = ingestor
        self._clock = clock
        self._backoff = backoff
        self._metrics = metrics
        self._lease = datetime.timedelta(seconds=lease_s)
        self._wake = wake

    async def run(self, claim: Claim) -> None:
        """Make the claimed call and the calls that follow it while the lease is held."""
        current: Claim | None = claim
        if claim.resolves is not None:
            current = await self._resume(claim)
        while current is not None:
            started = self._clock.now()
            with self._metrics.call_seconds.time():
                answer = await self._caller.call(current.call)
            current = await self.settle(current, answer, started)

    async def settle(self, claim: Claim, answer: Answer, started: datetime.datetime) -> Claim | None:
        """Record an answer; return the claim to go on with in this task, if any."""
        call = claim.call
        if answer.completed:
            self._metrics.calls.labels("completed").inc()
            await self._finish(claim, "Completed", output=answer.output, error=None)
            return None
        if answer.error is not None:
            self._metrics.calls.labels("error").inc()
            target = None if call.step_id == DISCOVERY_STEP_ID else call.step_id
            await self._failed_attempt(claim, answer.error, answer.retriable, answer.retry_at, target, target)
            return None
        self._metrics.calls.labels("steps").inc()
        return await self.settle_ops(claim, answer.ops, answer, started)

    async def settle_ops(
        self, claim: Claim, ops: list[dict[str, Any]], answer: Answer, started: datetime.datetime
    ) -> Claim | None:
        planned = [op for op in ops if op.get("op") == Opcode.STEP_PLANNED]
        if planned:
            await self._plan(claim, planned)
            return None
        if len(ops) != 1:
            await self._protocol_error(claim, f"expected one operation in a 206 answer, got {len(ops)}")
            return None
        op = ops[0]
        kind = op.get("op")
        if kind == Opcode.STEP_RUN:
            return await self._record(claim, op, data_memo(op.get("data")), "Completed", None, started)
        if kind == Opcode.STEP_FAILED:
            error = _op_error(op)
            return await self._record(claim, op, {"error": error}, "Failed", error, started)
        if kind == Opcode.STEP_ERROR:
            error = _op_error(op)
            call = claim.call
            if answer.retriable and call.attempt + 1 < call.max_attempts:
                await self._failed_attempt(claim, error, True, answer.retry_at, op.get("id"), _step_name(op))
                return None
            return await self._record(claim, op, {"error": error}, "Failed", error, started)
        if kind in (Opcode.SLEEP, Opcode.WAIT_FOR_EVENT, Opcode.INVOKE):
            return await self._park(claim, op)
        await self._protocol_error(claim, f"the operation {kind!r} is not supported by this gateway")
        return None

    async def _resume(self, claim: Claim) -> Claim | None:
        """A parked call fell due: record its step's resolution as the memo, then go on as after a step."""
        memo = claim.resolution
        failed = isinstance(memo, dict) and set(memo) == {"error"}
        op = {"id": claim.resolves, "op": claim.resolves_op, "name": claim.resolves_name}
        plain = replace(claim, resolves=None, resolves_op=None, resolves_name=None, resolution=None)
        error = memo["error"] if failed else None
        return await self._record(
            plain, op, memo, "Failed" if failed else "Completed", error, self._clock.now()
        )

    async def _park(self, claim: Claim, op: dict[str, Any]) -> Claim | None:
        """Sleep, WaitForEvent, InvokeFunction: release the call until a time, an event or a child's end."""
        now = self._clock.now()
        kind = op.get("op")
        opts: dict[str, Any] = op["opts"] if isinstance(op.get("opts"), dict) else {}
        try:
            if kind == Opcode.SLEEP:
                due = _sleep_until(op, opts, now)
                await self._park_call(claim, op, "Sleeping", due, None)
            elif kind == Opcode.WAIT_FOR_EVENT:
                event_name = str(opts.get("event") or op.get("name") or "")
                timeout = parse_duration(str(opts.get("timeout") or _NO_TIMEOUT))
                expression = opts.get("if") or None
                if expression:
                    compile_expression(expression)
                await self._park_call(
                    claim, op, "Waiting", now + timeout, None, wait=(event_name, expression)
                )
            else:
                return await self._invoke(claim, op, opts, now)
        except (ValueError, ExpressionError) as err:
            error = {"name": "InvalidOperation", "message": f"{kind}: {err}", "stack": None}
            return await self._record(claim, op, {"error": error}, "Failed", error, now)
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
            _step_name(op),
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
        self, claim: Claim, op: dict[str, Any], opts: dict[str, Any], now: datetime.datetime
    ) -> Claim | None:
        function_id = str(opts.get("function_id") or "")
        function = self._routes().functions.get(function_id)
        if function is None:
            error = {
                "name": "FunctionNotFound",
                "message": f"no function {function_id!r} is routed",
                "stack": None,
            }
            return await self._record(claim, op, {"error": error}, "Failed", error, now)
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
        async with self._store.transaction() as conn:
            await self._park_call(claim, op, "Invoking", now + timeout, {"error": expired}, on=conn)
            await self._ingestor.ingest([event], runs=[child], on=conn)
        self._wake()
        return None

    async def _record(
        self,
        claim: Claim,
        op: dict[str, Any],
        memo: dict[str, Any],
        status: str,
        error: dict[str, Any] | None,
        started: datetime.datetime,
    ) -> Claim | None:
        call = claim.call
        step_hash = str(op.get("id"))
        now = self._clock.now()
        common = (step_hash, _step_name(op))
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
            )
            if row is None or not row["held"]:
                log.info("run %s: lease lost or run cancelled; dropping the answer", call.run_id)
                return None
            # When the step had been recorded already, the stored memo stays; the next call may carry ours.
            memos = {**call.memos, step_hash: memo}
            stack = call.stack if step_hash in call.stack else [*call.stack, step_hash]
            return replace(claim, call=replace(call, memos=memos, stack=stack, attempt=0))
        async with self._store.transaction() as conn:
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

    async def _plan(self, claim: Claim, planned: list[dict[str, Any]]) -> None:
        call = claim.call
        await self._store.fetchrow(
            "plan_steps",
            claim.work_id,
            claim.lease_token,
            uuid.UUID(call.run_id),
            [str(op.get("id")) for op in planned],
            [_step_name(op) for op in planned],
            self._clock.now(),
        )
        self._wake()

    async def _failed_attempt(
        self,
        claim: Claim,
        error: dict[str, Any],
        retriable: bool,
        retry_at: datetime.datetime | None,
        step_hash: str | None,
        step_name: str | None,
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
                step_name or step_hash,
                error,
                now,
            )
            self._wake()
            return
        await self._finish(claim, "Failed", output=None, error=error)

    async def _protocol_error(self, claim: Claim, message: str) -> None:
        error = {"name": "ProtocolError", "message": message, "stack": None}
        await self._finish(claim, "Failed", output=None, error=error)

    async def _finish(self, claim: Claim, status: str, *, output: Any, error: dict[str, Any] | None) -> None:
        call = claim.call
        now = self._clock.now()
        args = (uuid.UUID(call.run_id), status, output, error, now, claim.work_id, claim.lease_token)
        if status == "Completed":
            # One statement, no explicit transaction: the common end of a run costs one round trip.
            if await self._store.fetchrow("finish_run", *args) is None:
                return
            self._metrics.runs_finished.labels(status).inc()
            log.info("run %s of %s completed", call.run_id, call.function_id)
            return
        async with self._store.transaction() as conn:
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
