"""The executor: makes a claimed call, then decides what the answer means and has it recorded (outcomes.py).

Answers and what follows (docs/protocol.md has the full table):

    200                      the run is Completed with the body as its output
    206 StepRun              the step's output is recorded once; the next call follows at once
    206 StepFailed           the step's error is recorded as its memo; the function decides what follows
    206 StepError            the step is retried with backoff, or recorded as failed when attempts run out
    206 StepPlanned (xN)     parallel steps: one call per step; the last to finish resumes the function
    206 RunComplete          the run is Completed with the operation's data as its output
    206 DiscoveryRequest     the next call follows at once
    500 / no answer          the call is retried with backoff; no-retry or exhausted attempts fail the run
    no connection            as no answer; with patience set, tried again without spending an attempt

A 206 answer may report several steps that ran (StepRun) before the operation that ends it (checkpointing
SDKs buffer steps, and return them in the answer when the checkpoint API fails): they are recorded in
order, in the same transaction as that operation. Steps also arrive during a call through the checkpoint
API (checkpoint.py), which records them for the call's work item and restarts its attempt count; the
executor reads those back before the next call and before counting a failed attempt.

A failed run emits ``inngest/function.failed`` and ``inngest/function.finished`` in the same transaction.
An answer whose recording fails because the database is away is kept and recorded once it is back
(``_recorded``): the call is not made again for a restart or a failover.
Sequential steps go on in the same task while the call's lease is held, so a step costs one call and one
write.

No answer is retried without bound. One that cannot be recorded (answers.py: an output Postgres refuses or
over its limit, a run's state over its limit) is a failed attempt of its step, with the reason as its error,
after the steps before it in the answer are recorded; any other error while recording an answer is a failed
attempt too, written in a fresh transaction. A call whose lease lapsed ``max_lost_leases`` times in a row
with no step recorded meanwhile (a gateway that crashes on its answer) fails its run instead of being made
again, and so does a run whose state is over its limit when it is claimed. A claimed timer of
``timeouts`` is no call: it cancels its run (timeouts.py).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, TypeVar

from stepline.protocol import DISCOVERY_STEP_ID, RAN_OPCODES, Opcode, data_memo
from stepline_store import queries
from stepline_store.errors import is_transient
from stepline_store.pool import Queryable, Store

from stepline_gateway import timeouts
from stepline_gateway.answers import AnswerLimits, Problem
from stepline_gateway.backoff import Backoff
from stepline_gateway.calls import Answer, Caller, error_json
from stepline_gateway.clock import Clock
from stepline_gateway.flow_claims import TIMERS
from stepline_gateway.ingest import Ingestor
from stepline_gateway.labels import FunctionLabels
from stepline_gateway.log_context import about_run
from stepline_gateway.metrics import Metrics
from stepline_gateway.outcomes import Claim, Outcomes, op_error, record_steps, step_name, step_write
from stepline_gateway.reachability import Reachability
from stepline_gateway.routing import RoutingTable
from stepline_gateway.run_ends import RunEnd, RunEndCombiner
from stepline_gateway.supervision import RetryDelay, describe
from stepline_gateway.tracing import Tracing

log = logging.getLogger(__name__)

T = TypeVar("T")


class RunEnded:
    """What settling an answer gives when the answer completed its run in a statement of run_ends.py:
    nothing follows in this task, and nothing was queued by it (the dispatcher need not look for work)."""


RUN_ENDED = RunEnded()

_PARKING = frozenset({Opcode.SLEEP, Opcode.WAIT_FOR_EVENT, Opcode.INVOKE})
# How long an answer is kept and its recording tried again while the database is away.
_RECORD_PATIENCE_S = 600.0
# Operations whose id names a step that a retry targets (``stepId=<hash>``); for the others, the call that
# failed is made again as it was.
_STEP_OPS = frozenset({*RAN_OPCODES, Opcode.STEP_ERROR, Opcode.STEP_FAILED})


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
        reachability: Reachability | None = None,
        limits: AnswerLimits | None = None,
        max_lost_leases: int = 5,
        tracing: Tracing | None = None,
        labels: FunctionLabels | None = None,
        run_ends: RunEndCombiner | None = None,
    ) -> None:
        self._store = store
        self._run_ends = run_ends
        self._routes = routes
        self._tracing = tracing or Tracing()
        self._labels = labels or FunctionLabels(routes)
        self._reachability = reachability or Reachability(datetime.timedelta(0))
        self._caller = caller
        self._clock = clock
        self._metrics = metrics
        self._wake = wake
        self._ingestor = ingestor
        self._routes = routes
        self._retry_delay = RetryDelay()
        self._limits = limits or AnswerLimits()
        self._max_lost_leases = max_lost_leases
        self._outcomes = Outcomes(
            store=store,
            ingestor=ingestor,
            clock=clock,
            backoff=backoff,
            metrics=metrics,
            lease=datetime.timedelta(seconds=lease_s),
            wake=wake,
            routes=routes,
            tracing=self._tracing,
            labels=self._labels,
        )

    async def run(self, claim: Claim) -> bool:
        """Make the claimed call and the calls that follow it while the lease is held. True: the run was
        completed by the last answer and nothing was queued meanwhile; False: any other end, after which
        the dispatcher looks for work (a retry, a sleep, planned steps or a lapsing lease may be due)."""
        namespace = self._labels.namespace(claim.call.function_id)
        about_run(claim.call.run_id, claim.call.function_id, namespace)
        if claim.call.step_id in TIMERS:
            await timeouts.expire(self._store, self._ingestor, self._routes(), claim)
            return False
        refusal = self._refusal(claim)
        if refusal is not None:
            await self._outcomes.finish(claim, "Failed", output=None, error=refusal)
            return False
        current: Claim | None = claim
        if claim.resolves is not None:
            current = await self._recorded(claim, functools.partial(self._outcomes.resume, claim))
        while current is not None:
            started = time.monotonic()
            span = self._tracing.call(current.call, namespace)
            answer = await self._caller.call(
                current.call,
                traceparent=None if span is None else span.traceparent,
                timeout_s=self._call_timeout(current.call.function_id),
            )
            # Counted here, once per answer, however many times its recording is tried.
            self._metrics.answered(
                current.call.function_id, answer.status, _outcome(answer), time.monotonic() - started
            )
            if span is not None:
                span.end(answer)
            made = current
            try:
                following = await self._recorded(made, functools.partial(self.settle, made, answer, started))
            except Exception as err:
                # Whatever went wrong (a database away for longer than the recording's patience aside, which
                # ends in a lapsed lease), it counts an attempt: no answer may be retried without end.
                await self._settling_failed(made, err)
                return False
            if isinstance(following, RunEnded):
                return True
            current = following
        return False

    def _call_timeout(self, function_id: str) -> float | None:
        """The function's ``retryPolicy.timeout`` in seconds; None: the gateway's call timeout."""
        function = self._routes().functions.get(function_id)
        policy = None if function is None else function.retry_policy
        timeout = None if policy is None else policy.call_timeout()
        return None if timeout is None else timeout.total_seconds()

    def _refusal(self, claim: Claim) -> dict[str, Any] | None:
        """Why a claimed call is not made at all but fails its run, if it is not to be made."""
        if claim.lost_leases >= self._max_lost_leases:
            return error_json(
                "LeaseLost",
                f"the call to {claim.call.url} was cut off {claim.lost_leases} times in a row before its "
                "answer was recorded (the gateway making it stopped, crashed or lost its lease each time): "
                "the run fails rather than making it again without end",
                None,
            )
        problem = self._limits.state_problem(claim.call.state_bytes)
        return None if problem is None else problem.error()

    async def _settling_failed(self, claim: Claim, err: Exception) -> None:
        """An answer could not be recorded for a reason of the gateway's: count a failed attempt, in a
        transaction of its own (the one that failed has been rolled back)."""
        call = claim.call
        log.exception("run %s: the answer of %s could not be recorded", call.run_id, call.url, exc_info=err)
        error = error_json(
            "GatewayError",
            f"the gateway could not record the answer of {call.url} ({type(err).__name__}: {err}); "
            "see the gateway's log",
            None,
        )
        current = await self._current_attempt(claim)
        if current is None:
            return
        target = None if call.step_id == DISCOVERY_STEP_ID else call.step_id
        await self._outcomes.failed_attempt(current, error, True, None, target, target)

    async def _recorded(self, claim: Claim, record: Callable[[], Awaitable[T]]) -> T:
        """Record an outcome, trying again while the database is away (a restart, a failover, a terminated
        connection): the answer is kept rather than lost, so the step it carries does not run again. Every
        statement checks the lease token, so a try that committed unbeknown to us makes the next one a no-op.
        After ``_RECORD_PATIENCE_S`` of failures the answer is given up; the call is made again once its lease
        lapses (at least once, as for a replica that dies)."""
        failures = 0
        deadline = time.monotonic() + _RECORD_PATIENCE_S
        while True:
            try:
                return await record()
            except Exception as err:
                if not is_transient(err) or time.monotonic() >= deadline:
                    raise
                failures += 1
                if failures == 1:
                    log.warning(
                        "run %s: cannot record the answer yet (%s); trying again while the database is away",
                        claim.call.run_id,
                        describe(err),
                    )
                await asyncio.sleep(self._retry_delay.after(failures))

    async def settle(self, claim: Claim, answer: Answer, started: float) -> Claim | RunEnded | None:
        """Record an answer (to a call made at ``started``, a monotonic time); return the claim to go on with
        in this task, if any, or ``RUN_ENDED`` when the answer completed the run through run_ends.py."""
        call = claim.call
        if answer.unreachable:
            if self._reachability.waits_for(call.url, self._clock.now()):
                await self._outcomes.wait_for_app(claim, answer.error or {})
                return None
        else:
            self._reachability.reached(call.url)
        if answer.completed:
            problem = self._limits.output_problem(answer.output, document=answer.document)
            if problem is not None:
                await self._refuse(claim, [], None, problem)
                return None
            if self._run_ends is not None and self._run_ends.enabled:
                return await self._complete(self._run_ends, claim, [], answer.output)
            await self._outcomes.finish(claim, "Completed", output=answer.output, error=None)
            return None
        if answer.error is not None:
            current = await self._current_attempt(claim)
            if current is None:
                return None
            target = None if call.step_id == DISCOVERY_STEP_ID else call.step_id
            await self._outcomes.failed_attempt(
                current, answer.error, answer.retriable, answer.retry_at, target, target, started=started
            )
            return None
        return await self.settle_ops(claim, answer.ops, answer, started)

    async def settle_ops(
        self, claim: Claim, ops: list[dict[str, Any]], answer: Answer, started: float
    ) -> Claim | RunEnded | None:
        """Record the operations of a 206 answer, in order: the steps that ran, then what ends the answer."""
        bad = self._limits.first_problem(ops, state_bytes=claim.call.state_bytes, document=answer.document)
        if bad is not None:
            index, problem = bad
            before = [op for op in ops[:index] if op.get("op") in RAN_OPCODES]
            await self._refuse(claim, before, ops[index], problem)
            return None
        ran = [op for op in ops if op.get("op") in RAN_OPCODES]
        rest = [op for op in ops if op.get("op") not in RAN_OPCODES]
        if not rest:
            # Only steps that ran: the last one goes on to the next call, like a single StepRun.
            rest = [ran.pop()]
        if (
            self._run_ends is not None
            and self._run_ends.enabled
            and len(rest) == 1
            and rest[0].get("op") == Opcode.RUN_COMPLETE
        ):
            return await self._complete(self._run_ends, claim, ran, rest[0].get("data"))
        if not ran:
            return await self._settle_final(claim, rest, answer, started)
        call = claim.call
        async with self._store.transaction() as conn:
            recorded = await record_steps(
                self._store,
                work_id=claim.work_id,
                lease_token=claim.lease_token,
                run_id=uuid.UUID(call.run_id),
                ops=ran,
                offset=self._clock.offset(),
                checkpointed=False,
                on=conn,
            )
            if not recorded.held:
                log.info("run %s: lease lost or run cancelled; dropping the answer", call.run_id)
                return None
            self._metrics.steps_recorded(call.function_id, "completed", recorded.recorded)
            # What follows began after the steps before it. Steps recorded already are no progress: an
            # answer that repeats them goes on counting its attempts, or it would be retried without end.
            progressed = await self._after_steps(claim, recorded.recorded, on=conn)
            following = await self._settle_final(progressed, rest, answer, time.monotonic(), on=conn)
        self._wake()
        return following

    async def _complete(
        self, run_ends: RunEndCombiner, claim: Claim, ran: list[dict[str, Any]], output: Any
    ) -> RunEnded | None:
        """Complete the run with ``output`` after recording the steps that ran before its end, in a statement
        shared with the other runs that end meanwhile (run_ends.py). ``RUN_ENDED`` when this write ended the
        run: it queued nothing (an invoking parent it resolved is NOTIFYed by the statement)."""
        call = claim.call
        steps = step_write(
            work_id=claim.work_id,
            lease_token=claim.lease_token,
            run_id=uuid.UUID(call.run_id),
            ops=ran,
            offset=self._clock.offset(),
            checkpointed=False,
        )
        result = await run_ends.record(RunEnd.of(steps, output))
        if not result.held:
            log.info("run %s: lease lost or run cancelled; dropping the answer", call.run_id)
            return None
        if result.recorded:
            self._metrics.steps_recorded(call.function_id, "completed", result.recorded)
        if not result.ended:
            return None
        self._outcomes.completed(call, result.created_at, result.ended_at)
        return RUN_ENDED

    async def _refuse(
        self, claim: Claim, before: list[dict[str, Any]], op: dict[str, Any] | None, problem: Problem
    ) -> None:
        """An answer that cannot be recorded as it is: the steps ``before`` the operation at fault are
        recorded, then that operation (None: the run's output) is a failed attempt with the problem as its
        error, so that it spends the retry budget."""
        call = claim.call
        log.warning("run %s: the answer of %s is refused: %s", call.run_id, call.url, problem.message)
        target = str(op.get("id")) if op is not None and op.get("op") in _STEP_OPS else None
        name = step_name(op) if op is not None and target is not None else None
        if not before:
            current = await self._current_attempt(claim)
            if current is not None:
                await self._outcomes.failed_attempt(current, problem.error(), True, None, target, name)
            return
        async with self._store.transaction() as conn:
            recorded = await record_steps(
                self._store,
                work_id=claim.work_id,
                lease_token=claim.lease_token,
                run_id=uuid.UUID(call.run_id),
                ops=before,
                offset=self._clock.offset(),
                checkpointed=False,
                on=conn,
            )
            if not recorded.held:
                log.info("run %s: lease lost or run cancelled; dropping the answer", call.run_id)
                return
            self._metrics.steps_recorded(call.function_id, "completed", recorded.recorded)
            progressed = await self._after_steps(claim, recorded.recorded, on=conn)
            await self._outcomes.failed_attempt(
                progressed, problem.error(), True, None, target, name, on=conn
            )
        self._wake()

    async def _settle_final(
        self,
        claim: Claim,
        ops: list[dict[str, Any]],
        answer: Answer,
        started: float,
        *,
        on: Queryable = None,
    ) -> Claim | None:
        """The operation that ends an answer (or the parallel steps it plans)."""
        outcomes = self._outcomes
        planned = [op for op in ops if op.get("op") == Opcode.STEP_PLANNED]
        if planned:
            await outcomes.plan(claim, planned, on=on)
            return None
        if len(ops) != 1:
            kinds = ", ".join(str(op.get("op")) for op in ops)
            await outcomes.protocol_error(
                claim, f"expected one operation to end a 206 answer, got {kinds}", on=on
            )
            return None
        op = ops[0]
        kind = op.get("op")
        if kind in RAN_OPCODES:
            return await outcomes.record(
                claim, op, data_memo(op.get("data")), "Completed", None, started, on=on
            )
        if kind == Opcode.STEP_FAILED:
            error = op_error(op)
            return await outcomes.record(claim, op, {"error": error}, "Failed", error, started, on=on)
        if kind == Opcode.STEP_ERROR:
            error = op_error(op)
            current = claim if on is not None else await self._current_attempt(claim)
            if current is None:
                return None
            call = current.call
            if answer.retriable and call.attempt + 1 < call.max_attempts:
                await outcomes.failed_attempt(
                    current, error, True, answer.retry_at, op.get("id"), step_name(op), started=started, on=on
                )
                return None
            return await outcomes.record(current, op, {"error": error}, "Failed", error, started, on=on)
        if kind in _PARKING:
            return await outcomes.park(claim, op, on=on)
        if kind == Opcode.RUN_COMPLETE:
            await outcomes.finish(claim, "Completed", output=op.get("data"), error=None, on=on)
            return None
        if kind == Opcode.DISCOVERY_REQUEST:
            return await outcomes.rediscover(claim, on=on)
        await outcomes.protocol_error(
            claim, f"the operation {kind!r} is not supported by this gateway", on=on
        )
        return None

    async def _after_steps(self, claim: Claim, recorded: int, *, on: Queryable) -> Claim:
        """The claim to go on with once the steps at the head of an answer are recorded, ``recorded`` of
        them new: a call that made progress counts what follows afresh (record_steps reset its row)."""
        if recorded:
            return replace(claim, call=replace(claim.call, attempt=0))
        return await self._current_attempt(claim, on=on) or claim

    async def _current_attempt(self, claim: Claim, *, on: Queryable = None) -> Claim | None:
        """The claim with the attempt count its row has now (None when its lease is lost).

        A discovery call's count restarts when steps are checkpointed during it: a failure after them is
        the first attempt of what follows, not one more of the call's.
        """
        if claim.call.step_id != DISCOVERY_STEP_ID or claim.call.attempt == 0:
            return claim
        attempt = await queries.held_attempt(
            self._store, work_id=claim.work_id, lease_token=claim.lease_token, on=on
        )
        if attempt is None:
            log.info("run %s: lease lost or run cancelled; dropping the answer", claim.call.run_id)
            return None
        if attempt == claim.call.attempt:
            return claim
        return replace(claim, call=replace(claim.call, attempt=attempt))


def _outcome(answer: Answer) -> str:
    """The label of an answer in the calls metric."""
    if answer.completed:
        return "completed"
    return "error" if answer.error is not None else "steps"
