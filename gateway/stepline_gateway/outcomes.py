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
import time
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
from stepline_store import queries
from stepline_store.identity import (
    IdentityError,
    namespace_of_function,
    qualified_function_id,
    split_function_id,
)
from stepline_store.pool import Queryable, Store
from stepline_store.queries import FinishRunRow

from stepline_gateway import storable
from stepline_gateway.backoff import Backoff
from stepline_gateway.calls import Call, error_json
from stepline_gateway.clock import Clock
from stepline_gateway.events import Event, new_event_id
from stepline_gateway.ingest import Ingestor, PlannedRun
from stepline_gateway.labels import FunctionLabels
from stepline_gateway.metrics import Metrics
from stepline_gateway.routing import ExpressionError, RoutingTable, compile_expression
from stepline_gateway.tracing import Tracing

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
    # Times in a row the call's lease lapsed (its gateway stopped or crashed) with no step recorded since.
    lost_leases: int = 0


@dataclass(frozen=True)
class RecordedSteps:
    """What ``record_steps`` did: whether the call still held its lease, and how many steps were new."""

    held: bool
    recorded: int
    # The function of the run (None when the lease was lost).
    function_id: str | None = None


def step_name(op: dict[str, Any]) -> str:
    return str(op.get("displayName") or op.get("name") or op.get("id"))


def op_error(op: dict[str, Any]) -> dict[str, Any]:
    error = op.get("error")
    if isinstance(error, dict):
        return error_json(error.get("name"), error.get("message") or "", error.get("stack"))
    return error_json("Error", error or "the step failed", None)


def describe(error: dict[str, Any]) -> str:
    """An error in one line, with its type: ``KeyError: 'user_id'``."""
    name, message = error.get("name"), error.get("message")
    return f"{name}: {message}" if name and message else str(name or message or "error")


def _duration_ms(op: dict[str, Any]) -> float | None:
    """How long the step ran, from the official SDKs' ``timing`` ({"a": start ns, "b": duration ns})."""
    timing = op.get("timing")
    if isinstance(timing, dict) and isinstance(timing.get("b"), int | float) and timing["b"] >= 0:
        return float(timing["b"]) / 1e6
    return None


@dataclass(frozen=True)
class StepWrite:
    """The steps that ran in one call, ready to record: what ``record_steps`` (one call) and the combiner
    (step_combiner.py, many calls in one statement) write."""

    work_id: int
    lease_token: uuid.UUID
    run_id: uuid.UUID
    hashes: list[str]
    names: list[str]
    memos: list[str]
    durations_ms: list[float | None]
    offset: datetime.timedelta
    checkpointed: bool
    # The namespace whose signing key made a checkpoint post ("": the cluster's); None: not checked.
    signer: str | None = None


def step_write(
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    ops: list[dict[str, Any]],
    offset: datetime.timedelta,
    checkpointed: bool,
    signer: str | None = None,
) -> StepWrite:
    """The steps that ran (StepRun operations), in order and each once. ValueError if an output is not JSON
    the store can keep (NaN, infinities)."""
    unique: dict[str, dict[str, Any]] = {}
    for op in ops:
        unique.setdefault(str(op.get("id")), op)
    return StepWrite(
        work_id=work_id,
        lease_token=lease_token,
        run_id=run_id,
        hashes=list(unique),
        names=[step_name(op) for op in unique.values()],
        memos=[json.dumps(data_memo(op.get("data")), allow_nan=False) for op in unique.values()],
        durations_ms=[_duration_ms(op) for op in unique.values()],
        offset=offset,
        checkpointed=checkpointed,
        signer=signer,
    )


async def write_steps(store: Store, write: StepWrite, *, on: Queryable = None) -> RecordedSteps:
    """Record one call's steps with a statement of their own (in ``on``'s transaction when given)."""
    row = await queries.record_steps(
        store,
        work_id=write.work_id,
        lease_token=write.lease_token,
        run_id=write.run_id,
        hashes=write.hashes,
        names=write.names,
        ops=[Opcode.STEP_RUN.value for _ in write.hashes],
        memos=write.memos,
        durations_ms=write.durations_ms,
        clock_offset=write.offset,
        checkpointed=write.checkpointed,
        signer=write.signer,
        on=on,
    )
    if row is None or not row["held"]:
        return RecordedSteps(held=False, recorded=0)
    return RecordedSteps(held=True, recorded=row["recorded"], function_id=row["function_id"])


async def record_steps(
    store: Store,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    ops: list[dict[str, Any]],
    offset: datetime.timedelta,
    checkpointed: bool,
    on: Queryable = None,
) -> RecordedSteps:
    """Record steps that ran (StepRun operations), in order and each once, for the call holding work
    ``work_id``; the call's attempt count starts again, since it made progress. They end at the database's
    now() plus ``offset`` (the clock's). ValueError if an output is not JSON the store can keep (NaN,
    infinities)."""
    write = step_write(
        work_id=work_id,
        lease_token=lease_token,
        run_id=run_id,
        ops=ops,
        offset=offset,
        checkpointed=checkpointed,
    )
    return await write_steps(store, write, on=on)


_NOW = datetime.timedelta(0)


def _sleep_until(
    op: dict[str, Any], opts: dict[str, Any]
) -> tuple[datetime.timedelta, datetime.datetime | None]:
    """When a sleep ends, as (a delay from now, an instant or None): SDKs put the wake-up time in ``name`` (an
    ISO 8601 time, or a duration) or in ``opts.duration``. The database adds the delay to its own clock."""
    name = str(op.get("name") or "")
    try:
        return _NOW, parse_instant(name)
    except ValueError:
        pass
    return parse_duration(name if not opts.get("duration") else str(opts["duration"])), None


def _step_outcome(status: str) -> str:
    """The outcome label of a step recorded with ``status``."""
    return "completed" if status == "Completed" else "failed"


def _elapsed_s(started: float) -> float:
    """Seconds since ``started`` (a monotonic time): how long a step's call took, for its timing."""
    return max(0.0, time.monotonic() - started)


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
        tracing: Tracing | None = None,
        labels: FunctionLabels | None = None,
    ) -> None:
        self._store = store
        self._tracing = tracing or Tracing()
        self._labels = labels or FunctionLabels(routes)
        self._ingestor = ingestor
        self._clock = clock
        self._backoff = backoff
        self._metrics = metrics
        self._lease = lease
        self._wake = wake
        self._routes = routes

    def _backoff_delay(self, call: Call) -> float:
        """Seconds before ``call`` is tried again: by its function's retry policy, if it declares one."""
        function = self._routes().functions.get(call.function_id)
        policy = None if function is None else function.retry_policy
        return self._backoff.delay(call.attempt, policy=policy)

    async def resume(self, claim: Claim) -> Claim | None:
        """A parked call fell due: record its step's resolution as the memo, then go on as after a step."""
        memo = claim.resolution
        failed = isinstance(memo, dict) and set(memo) == {"error"}
        op = {"id": claim.resolves, "op": claim.resolves_op, "name": claim.resolves_name}
        plain = replace(claim, resolves=None, resolves_op=None, resolves_name=None, resolution=None)
        error = memo["error"] if failed else None
        return await self.record(
            plain, op, memo, "Failed" if failed else "Completed", error, time.monotonic()
        )

    async def record(
        self,
        claim: Claim,
        op: dict[str, Any],
        memo: dict[str, Any],
        status: str,
        error: dict[str, Any] | None,
        started: float,
        *,
        on: Queryable = None,
    ) -> Claim | None:
        """Record one step's memo (its call made at ``started``, a monotonic time); answer the discovery call
        that goes on in this task, if any."""
        call = claim.call
        step_hash = str(op.get("id"))
        offset = self._clock.offset()
        if call.step_id == DISCOVERY_STEP_ID:
            row = await queries.record_step(
                self._store,
                work_id=claim.work_id,
                lease_token=claim.lease_token,
                run_id=uuid.UUID(call.run_id),
                step_hash=step_hash,
                step_name=step_name(op),
                next_step_id=DISCOVERY_STEP_ID,
                lease_duration=self._lease,
                op=op["op"],
                status=status,
                memo=memo,
                attempts=call.attempt + 1,
                error=error,
                elapsed_s=_elapsed_s(started),
                clock_offset=offset,
                on=on,
            )
            if row is None or not row["held"]:
                log.info("run %s: lease lost or run cancelled; dropping the answer", call.run_id)
                return None
            if row["recorded"]:
                self._metrics.steps_recorded(call.function_id, _step_outcome(status))
            if row["memos_before"] > len(call.memos):
                # Steps came in through the checkpoint API during the call: the next call carries them too.
                return replace(claim, call=await self._with_run_memos(call, on=on))
            # When the step had been recorded already, the stored memo stays; the next call may carry ours.
            memos = {**call.memos, step_hash: memo}
            stack = call.stack if step_hash in call.stack else [*call.stack, step_hash]
            state = call.state_bytes + (0 if step_hash in call.memos else storable.size(memo))
            return replace(claim, call=replace(call, memos=memos, stack=stack, attempt=0, state_bytes=state))
        async with self._store.transaction(on) as conn:
            status_now = await queries.lock_run(self._store, run_id=uuid.UUID(call.run_id), on=conn)
            if status_now not in ("Queued", "Running"):
                return None
            parallel = await queries.record_parallel_step(
                self._store,
                work_id=claim.work_id,
                lease_token=claim.lease_token,
                run_id=uuid.UUID(call.run_id),
                step_hash=step_hash,
                step_name=step_name(op),
                op=op["op"],
                status=status,
                memo=memo,
                attempts=call.attempt + 1,
                error=error,
                elapsed_s=_elapsed_s(started),
                clock_offset=offset,
                on=conn,
            )
        if parallel is not None and (parallel["goes_on"] or parallel["done"]):
            self._metrics.steps_recorded(call.function_id, _step_outcome(status))
        self._wake()
        return None

    async def _with_run_memos(self, call: Call, *, on: Queryable) -> Call:
        row = await queries.run_memos(self._store, run_id=uuid.UUID(call.run_id), on=on)
        memos, stack = (row["memos"], list(row["stack"])) if row is not None else ({}, [])
        return replace(call, memos=memos, stack=stack, attempt=0, state_bytes=storable.size(memos))

    async def rediscover(self, claim: Claim, *, on: Queryable = None) -> Claim | None:
        """DiscoveryRequest: the held call becomes a new discovery call, made at once in this task."""
        call = claim.call
        row = await queries.rediscover(
            self._store,
            work_id=claim.work_id,
            lease_token=claim.lease_token,
            lease_duration=self._lease,
            run_id=uuid.UUID(call.run_id),
            on=on,
        )
        if row is None or not row["held"]:
            return None
        next_call = replace(
            call,
            step_id=DISCOVERY_STEP_ID,
            attempt=0,
            memos=row["memos"],
            stack=list(row["stack"]),
            state_bytes=storable.size(row["memos"]),
        )
        return replace(claim, call=next_call)

    async def park(self, claim: Claim, op: dict[str, Any], *, on: Queryable = None) -> Claim | None:
        """Sleep, WaitForEvent, InvokeFunction: release the call until a time, an event or a child's end."""
        started = time.monotonic()
        kind = op.get("op")
        opts: dict[str, Any] = op["opts"] if isinstance(op.get("opts"), dict) else {}
        try:
            if kind == Opcode.SLEEP:
                delay, until = _sleep_until(op, opts)
                await self._park_call(claim, op, "Sleeping", delay, None, not_before=until, on=on)
            elif kind == Opcode.WAIT_FOR_EVENT:
                event_name = str(opts.get("event") or op.get("name") or "")
                timeout = parse_duration(str(opts.get("timeout") or _NO_TIMEOUT))
                expression = opts.get("if") or None
                if expression:
                    compile_expression(expression)
                await self._park_call(
                    claim, op, "Waiting", timeout, None, wait=(event_name, expression), on=on
                )
            else:
                return await self._invoke(claim, op, opts, on=on)
        except (ValueError, OverflowError, ExpressionError) as err:
            # OverflowError: a wake-up time past what a timestamp can hold.
            error = error_json("InvalidOperation", f"{kind}: {err}", None)
            return await self.record(claim, op, {"error": error}, "Failed", error, started, on=on)
        self._wake()
        return None

    async def _park_call(
        self,
        claim: Claim,
        op: dict[str, Any],
        status: str,
        delay: datetime.timedelta,
        resolution: Any,
        *,
        not_before: datetime.datetime | None = None,
        wait: tuple[str, str | None] | None = None,
        on: Queryable = None,
    ) -> None:
        """Release the held call until ``delay`` from the database's now (plus the clock's offset), and not
        before ``not_before``."""
        call = claim.call
        event_name, expression = wait if wait else (None, None)
        await queries.park_call(
            self._store,
            work_id=claim.work_id,
            lease_token=claim.lease_token,
            run_id=uuid.UUID(call.run_id),
            step_hash=str(op.get("id")),
            step_name=step_name(op),
            op=op["op"],
            step_status=status,
            delay=delay,
            resolution=resolution,
            clock_offset=self._clock.offset(),
            event_name=event_name,
            wait_expression=expression,
            not_before=not_before,
            on=on,
        )

    async def _invoke(
        self,
        claim: Claim,
        op: dict[str, Any],
        opts: dict[str, Any],
        *,
        on: Queryable,
    ) -> Claim | None:
        function_id = str(opts.get("function_id") or "")
        # An app invokes by fnId, within its own namespace.
        try:
            qualified = qualified_function_id(namespace_of_function(claim.call.function_id), function_id)
        except IdentityError:
            qualified = ""
        function = self._routes().functions.get(qualified)
        if function is None:
            error = {
                "name": "FunctionNotFound",
                "message": f"no function {function_id!r} is routed",
                "stack": None,
            }
            return await self.record(claim, op, {"error": error}, "Failed", error, time.monotonic(), on=on)
        payload: dict[str, Any] = opts["payload"] if isinstance(opts.get("payload"), dict) else {}
        data: dict[str, Any] = payload["data"] if isinstance(payload.get("data"), dict) else {}
        timeout = parse_duration(str(opts["timeout"])) if opts.get("timeout") else parse_duration(_NO_TIMEOUT)
        expired = {
            "name": "InvokeTimeoutError",
            "stack": None,
            "message": f"{function_id} did not finish within {opts.get('timeout')}",
        }
        event = Event(id=new_event_id(), name=FUNCTION_INVOKED_EVENT, data=data, ts=None)
        child = PlannedRun(
            function, event, parent_run_id=uuid.UUID(claim.call.run_id), parent_step=str(op.get("id"))
        )
        async with self._store.transaction(on) as conn:
            await self._park_call(claim, op, "Invoking", timeout, {"error": expired}, on=conn)
            await self._ingestor.ingest([event], runs=[child], on=conn, namespace=function.namespace)
        self._wake()
        return None

    async def plan(self, claim: Claim, planned: list[dict[str, Any]], *, on: Queryable = None) -> None:
        call = claim.call
        await queries.plan_steps(
            self._store,
            work_id=claim.work_id,
            lease_token=claim.lease_token,
            run_id=uuid.UUID(call.run_id),
            hashes=[str(op.get("id")) for op in planned],
            names=[step_name(op) for op in planned],
            clock_offset=self._clock.offset(),
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
        started: float | None = None,
        on: Queryable = None,
    ) -> None:
        """A failed attempt (whose call began at ``started``, a monotonic time, if known): retried after its
        backoff, or the run fails."""
        call = claim.call
        if retriable and call.attempt + 1 < call.max_attempts:
            # The backoff runs from the database's clock; a retry-after instant is a floor.
            row = await queries.retry_call(
                self._store,
                work_id=claim.work_id,
                lease_token=claim.lease_token,
                next_attempt=call.attempt + 1,
                backoff=datetime.timedelta(seconds=self._backoff_delay(call)),
                run_id=uuid.UUID(call.run_id),
                step_hash=step_hash,
                step_name=name or step_hash,
                error=error,
                clock_offset=self._clock.offset(),
                not_before=retry_at,
                elapsed_s=None if started is None else time.monotonic() - started,
                on=on,
            )
            if row is not None and row["held"]:
                self._metrics.retried(call.function_id)
                # A held call's row was released with its due time: ``due`` is set whenever ``held`` is.
                due = row["due"]
                log.info(
                    "run %s: attempt %d failed (%s), retrying at %s",
                    call.run_id,
                    call.attempt + 1,
                    describe(error),
                    due.isoformat() if due is not None else None,
                )
            self._wake()
            return
        if step_hash is None:
            await self.finish(claim, "Failed", output=None, error=error, on=on)
            return
        async with self._store.transaction(on) as conn:
            # The step's last attempt: it shows the error that ended the run, not the one before.
            failed = await queries.fail_step(
                self._store,
                work_id=claim.work_id,
                lease_token=claim.lease_token,
                run_id=uuid.UUID(call.run_id),
                step_hash=step_hash,
                step_name=name or step_hash,
                attempts=call.attempt + 1,
                error=error,
                clock_offset=self._clock.offset(),
                on=conn,
            )
            if failed != "INSERT 0 0":
                self._metrics.steps_recorded(call.function_id, "failed")
            await self.finish(claim, "Failed", output=None, error=error, on=conn)

    async def wait_for_app(self, claim: Claim, error: dict[str, Any]) -> None:
        """The app could not be reached and is waited for (reachability.py): the call is tried again on
        the backoff of its current attempt, which it does not spend; the run shows the error meanwhile."""
        call = claim.call
        await queries.retry_call(
            self._store,
            work_id=claim.work_id,
            lease_token=claim.lease_token,
            next_attempt=call.attempt,
            backoff=datetime.timedelta(seconds=self._backoff_delay(call)),
            run_id=uuid.UUID(call.run_id),
            step_hash=None,
            step_name=None,
            error=error,
            clock_offset=self._clock.offset(),
            not_before=None,
            elapsed_s=None,
        )
        self._wake()

    async def protocol_error(self, claim: Claim, message: str, *, on: Queryable = None) -> None:
        error = error_json("ProtocolError", message, None)
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
        if status == "Completed":
            # One statement, no explicit transaction: the common end of a run costs one round trip.
            ended = await self._finish_run(claim, status, output, error, on=on)
            if ended is None:
                return
            self._ended(call, status, ended, error)
            log.info("run %s of %s completed", call.run_id, call.function_id)
            return
        async with self._store.transaction(on) as conn:
            ended = await self._finish_run(claim, status, output, error, on=conn)
            if ended is None:
                return
            namespace, wire_id = split_function_id(call.function_id)
            data = {
                "function_id": wire_id,
                "run_id": call.run_id,
                "error": error,
                "event": call.event,
            }
            await self._ingestor.ingest(
                [
                    Event(id=new_event_id(), name=FUNCTION_FAILED_EVENT, data=data, ts=None),
                    Event(id=new_event_id(), name=FUNCTION_FINISHED_EVENT, data=data, ts=None),
                ],
                on=conn,
                namespace=namespace,
            )
        self._ended(call, status, ended, error)
        log.warning("run %s of %s failed: %s", call.run_id, call.function_id, describe(error or {}))

    async def _finish_run(
        self, claim: Claim, status: str, output: Any, error: dict[str, Any] | None, *, on: Queryable
    ) -> FinishRunRow | None:
        return await queries.finish_run(
            self._store,
            run_id=uuid.UUID(claim.call.run_id),
            status=status,
            output=output,
            error=error,
            clock_offset=self._clock.offset(),
            work_id=claim.work_id,
            lease_token=claim.lease_token,
            on=on,
        )

    def completed(
        self, call: Call, created_at: datetime.datetime | None, ended_at: datetime.datetime | None
    ) -> None:
        """The run of ``call`` was completed by a statement of run_ends.py: its metrics, span and log line."""
        self._run_ended(call, "Completed", created_at, ended_at, None)
        log.info("run %s of %s completed", call.run_id, call.function_id)

    def _ended(self, call: Call, status: str, ended: FinishRunRow, error: dict[str, Any] | None) -> None:
        """The run ended (``ended``: the row of finish_run): its metrics and its trace's root span."""
        self._run_ended(call, status, ended["created_at"], ended["ended_at"], error)

    def _run_ended(
        self,
        call: Call,
        status: str,
        created_at: datetime.datetime | None,
        ended_at: datetime.datetime | None,
        error: dict[str, Any] | None,
    ) -> None:
        seconds = (ended_at - created_at).total_seconds() if created_at and ended_at else None
        self._metrics.run_ended(call.function_id, status, seconds)
        if self._tracing.enabled:
            self._tracing.run_ended(
                run_id=call.run_id,
                function_id=call.function_id,
                namespace=self._labels.namespace(call.function_id),
                status=status,
                created_at=created_at,
                ended_at=ended_at,
                error=error,
            )
