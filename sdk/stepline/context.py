"""One call of a function: the ``ctx`` it sees, and the executor that answers the call.

The executor runs the function as a task. Memoized steps return at once; each new step records itself
(steps.py) and waits. Once new steps stop appearing, the executor runs the chosen one, reports it (a sleep,
a wait, an invocation), or plans several, then cancels the task and returns a CallResult; handler.py turns
that into the HTTP answer. A plain ``def`` function runs the same way in a worker thread of its own pool
(``FUNCTION_THREADS``), its ``ctx.step`` blocking (``SyncStep``); step bodies run in asyncio's default pool.

In checkpoint mode (checkpoint.py) a step that ran does not end the call: its result is buffered (and posted
to the gateway when the flush policy says so), the function resumes with it, and the next new step is run
the same way. The call ends with
the function (200, or a 206 ``RunComplete`` after still-buffered steps), at what needs the gateway (a 206
with the buffered steps and that operation), or with the buffered steps alone when a checkpoint fails.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime
import inspect
import json
import os
import time
import traceback
from collections.abc import Callable
from typing import Any, Generic

import pydantic

from stepline.checkpoint import Checkpointer
from stepline.client import Client
from stepline.errors import NonRetriableError, RetryAfterError, StepError
from stepline.function import Function
from stepline.protocol import (
    RUN_COMPLETE_STEP_ID,
    CallRequest,
    DataT,
    Event,
    Opcode,
    as_json,
    encode_json,
    error_data,
    hash_step_id,
    step_op,
    to_json_value,
)
from stepline.steps import CallState, FoundStep, Step, SyncStep, running_step

# Event-loop turns without a new step after which discovery is over: enough for the siblings of an
# asyncio.gather, even nested ones, to reach their steps (memoized steps return without yielding).
SETTLE_TURNS = 8


@dataclasses.dataclass(frozen=True)
class CallResult:
    """The answer to a call: 200 finished (body = output), 206 operations, 500 failed (body = error)."""

    status: int
    body: bytes
    no_retry: bool = False
    retry_after: datetime.datetime | None = None


# Plain ``def`` functions run here, apart from asyncio's default pool where step bodies run: a function
# waiting on its step never holds the thread the step needs. At most this many run at once.
FUNCTION_THREADS = 32
_function_pool: concurrent.futures.ThreadPoolExecutor | None = None


@dataclasses.dataclass(frozen=True)
class Context(Generic[DataT]):
    """What a function receives: its triggering event(s), its run, and ``step``.

    ``Context[Model]`` types ``ctx.event.data`` when the trigger declares ``data=Model``. A failure
    handler's ``event`` is the ``inngest/function.failed`` event of the run that failed.
    """

    event: Event[DataT]
    events: list[Event[Any]]
    run_id: str
    attempt: int
    step: Step


@dataclasses.dataclass(frozen=True)
class SyncContext(Generic[DataT]):
    """What a plain ``def`` function receives: ``Context``, with steps that block (``SyncStep``)."""

    event: Event[DataT]
    events: list[Event[Any]]
    run_id: str
    attempt: int
    step: SyncStep


@dataclasses.dataclass(frozen=True)
class _StepOutcome:
    """A step that ran: its StepRun (``data`` its output) or its StepError/StepFailed operation."""

    op: dict[str, Any]
    ran: bool
    no_retry: bool = False
    retry_after: datetime.datetime | None = None

    def result(self, *before: dict[str, Any]) -> CallResult:
        return CallResult(
            206, encode_json([*before, self.op]), no_retry=self.no_retry, retry_after=self.retry_after
        )


# Frames of these folders before the function's own are how the SDK called it: left out of stacks (the
# SDK's own modules, and asyncio's and the thread pool's, through which it runs plain functions and steps).
_CALLER_DIRS = frozenset(
    os.path.dirname(os.path.abspath(path))
    for path in (__file__, asyncio.__file__, concurrent.futures.__file__)
)


def describe_error(err: BaseException) -> dict[str, Any]:
    """The wire form of an error; a StepError travels as the original error it stands for. The stack
    starts at the function's own code: the SDK's frames that called it are left out."""
    if isinstance(err, StepError):
        return error_data(err.name, err.message, err.stack)
    tb = err.__traceback__
    while tb is not None and os.path.dirname(os.path.abspath(tb.tb_frame.f_code.co_filename)) in _CALLER_DIRS:
        tb = tb.tb_next
    stack = traceback.format_exception(type(err), err, tb or err.__traceback__)
    return error_data(type(err).__name__, str(err), "".join(stack))


async def execute_call(
    function: Function, request: CallRequest, *, target: str | None, client: Client
) -> CallResult:
    """Answer one call: run ``function`` up to its next new step(s), or to its end.

    ``target`` is the hash from ``stepId`` when the gateway asks for one specific step, else None.
    A single new sleep, wait or invocation (or a targeted one) is reported for the gateway to carry out;
    several new steps are planned, one call each to follow.
    """
    state = CallState(request.steps, target)
    try:
        event = _typed_event(function, request.event)
    except pydantic.ValidationError as err:
        return _bad_event(function, request.event, err)
    events = request.events or [request.event]
    steps = Step(state, client)
    max_attempts = request.ctx.max_attempts or function.retries + 1
    final = request.ctx.attempt + 1 >= max_attempts
    checkpointer = _checkpointer(function, request, target, client)
    if function.is_async:
        ctx = Context(event, events, request.ctx.run_id, request.ctx.attempt, steps)
        task = asyncio.create_task(function.handler(ctx))  # type: ignore[arg-type]
    else:
        loop = asyncio.get_running_loop()
        sync_ctx = SyncContext(event, events, request.ctx.run_id, request.ctx.attempt, SyncStep(steps, loop))
        task = asyncio.create_task(_in_function_thread(function.handler, sync_ctx))
    try:
        if checkpointer is not None:
            return await _checkpointed(task, state, checkpointer, final=final)
        await _discover(task, state)
        if target is not None:
            step = state.find(target)
            if step is None:
                return _target_not_reached(target, state)
        elif task.done():
            return _function_result(task)
        elif len(state.found) == 1 and (
            state.found[0].op is not None or not request.ctx.disable_immediate_execution
        ):
            step = state.found[0]
        else:
            return _planned(state)
        if step.op is not None:
            return CallResult(206, encode_json([step.op]))
        outcome = await _run_step(step, final=final)
        try:
            return outcome.result()
        except (TypeError, ValueError) as exc:
            return _unserializable(step, exc).result()
    finally:
        if checkpointer is not None:
            checkpointer.close()
        await _close(task, state)


def _typed_event(function: Function, event: Event) -> Event[Any]:
    """The event with its data validated into the model its trigger declares, if any."""
    model = function.event_model(event.name)
    if model is None:
        return event
    return Event[model].model_validate(event.model_dump())  # type: ignore[valid-type]


def _bad_event(function: Function, event: Event, err: pydantic.ValidationError) -> CallResult:
    model = function.event_model(event.name)
    name = model.__name__ if model is not None else "its model"
    message = " ".join(f"the data of event {event.name!r} does not fit {name}: {err}".split())
    return CallResult(500, encode_json(error_data("EventDataError", message)), no_retry=True)


async def _in_function_thread(handler: Callable[..., Any], ctx: SyncContext[Any]) -> Any:
    global _function_pool  # one pool for the process, made on first use
    if _function_pool is None:
        _function_pool = concurrent.futures.ThreadPoolExecutor(
            FUNCTION_THREADS, thread_name_prefix="stepline-function"
        )
    run = contextvars.copy_context().run
    return await asyncio.get_running_loop().run_in_executor(_function_pool, run, handler, ctx)


def _checkpointer(
    function: Function, request: CallRequest, target: str | None, client: Client
) -> Checkpointer | None:
    """A checkpointer when this call may run several steps: a discovery call on a first attempt, from a
    gateway that names the call's work item, for a function in checkpoint mode. A retry answers after its
    first step, as the official SDKs do, so that the steps after it start with a fresh attempt count."""
    ctx = request.ctx
    if target is not None or ctx.attempt > 0 or ctx.disable_immediate_execution or not ctx.qi_id:
        return None
    settings = client.checkpoint_settings(function)
    if settings is None:
        return None
    fn_id = ctx.fn_id or function.full_id(client.app_id)
    return Checkpointer(
        client.checkpoint_poster,
        client.config,
        settings,
        run_id=ctx.run_id,
        fn_id=fn_id,
        qi_id=ctx.qi_id,
        durations=client.step_durations,
    )


async def _checkpointed(
    task: asyncio.Task[Any], state: CallState, checkpointer: Checkpointer, *, final: bool
) -> CallResult:
    """Run new steps one after the other, reporting each, until something needs the gateway."""
    while True:
        await _discover(task, state)
        if checkpointer.stale or checkpointer.broken:
            return _stopped(checkpointer, await checkpointer.unreported())
        if task.done():
            return await _checkpointed_end(task, checkpointer)
        if len(state.found) > 1:
            return _planned(state, *await checkpointer.unreported())
        step = state.found[0]
        if step.op is not None:
            return CallResult(206, encode_json([*await checkpointer.unreported(), step.op]))
        if checkpointer.runtime_exceeded():
            return CallResult(206, encode_json([*await checkpointer.unreported(), _discovery_request()]))
        await checkpointer.before_step(step.id)
        if checkpointer.stale or checkpointer.broken:
            return _stopped(checkpointer, await checkpointer.unreported())
        started_ns = time.time_ns()
        started = time.perf_counter()
        outcome = await _run_step(step, final=final)
        seconds = time.perf_counter() - started
        if not outcome.ran:
            return outcome.result(*await checkpointer.unreported())
        try:
            # The function sees the output as the gateway will give it back: as JSON.
            value = as_json(outcome.op["data"])
        except (TypeError, ValueError) as exc:
            return _unserializable(step, exc).result(*await checkpointer.unreported())
        state.resume(step, value)
        timing = {"a": started_ns, "b": time.time_ns() - started_ns}
        await checkpointer.add(
            {**outcome.op, "data": value, "timing": timing}, step_id=step.id, seconds=seconds
        )
        if checkpointer.stale or checkpointer.broken:
            return _stopped(checkpointer, await checkpointer.unreported())


async def _checkpointed_end(task: asyncio.Task[Any], checkpointer: Checkpointer) -> CallResult:
    """The function ended: its result, after the steps still buffered."""
    result = _function_result(task)
    pending = await checkpointer.unreported()
    if not pending:
        return result
    if result.status == 200:
        output = json.loads(result.body)
        done = {"id": hash_step_id(RUN_COMPLETE_STEP_ID), "op": Opcode.RUN_COMPLETE.value, "data": output}
        return CallResult(206, encode_json([*pending, done]))
    # An error answer carries no steps: report them first, or answer with them (the function runs again).
    await checkpointer.flush()
    pending = await checkpointer.unreported()
    if checkpointer.stale or checkpointer.broken:
        return _stopped(checkpointer, pending)
    return result


def _discovery_request() -> dict[str, Any]:
    # A new id each time, as the official SDK does, so that no server takes it for one it has seen.
    return {"id": hash_step_id(f"discovery-request-{time.time_ns()}"), "op": Opcode.DISCOVERY_REQUEST.value}


def _stopped(checkpointer: Checkpointer, pending: list[dict[str, Any]]) -> CallResult:
    """A checkpoint failed: the buffered steps are the answer, and the gateway calls again. Or the gateway
    answered 409 (the call lost its work item): stop; the gateway drops whatever this call answers."""
    if checkpointer.stale:
        message = "the gateway no longer holds this call's work item (lease lost, or run ended): stopped"
        return CallResult(500, encode_json(error_data("StaleCallError", message)), no_retry=True)
    return CallResult(206, encode_json(pending))


def _planned(state: CallState, *before: dict[str, Any]) -> CallResult:
    ops = [step_op(Opcode.STEP_PLANNED, s.hash, s.id) for s in state.found]
    return CallResult(206, encode_json([*before, *ops]))


async def _discover(task: asyncio.Task[Any], state: CallState) -> None:
    """Wait for the first new step or the function's end, then until new steps stop appearing."""
    if not state.found and not task.done():
        progress = asyncio.get_running_loop().create_future()

        def wake(*_: object) -> None:
            if not progress.done():
                progress.set_result(None)

        state.on_found = wake
        task.add_done_callback(wake)
        try:
            await progress
        finally:
            task.remove_done_callback(wake)
    quiet = 0
    while not task.done() and quiet < SETTLE_TURNS:
        if state.target is not None and state.find(state.target) is not None:
            return
        before = len(state.found)
        await asyncio.sleep(0)
        quiet = quiet + 1 if len(state.found) == before else 0


async def _close(task: asyncio.Task[Any], state: CallState) -> None:
    state.closed = True
    task.cancel()
    # Waiters in tasks the function no longer awaits (a gather that already failed) are freed here.
    for waiter in state.waiters.values():
        waiter.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _function_result(task: asyncio.Task[Any]) -> CallResult:
    if task.cancelled():
        return CallResult(500, encode_json(error_data("CancelledError", "the function was cancelled")))
    err = task.exception()
    if err is None:
        try:
            return CallResult(200, encode_json(to_json_value(task.result())))
        except (TypeError, ValueError) as exc:
            message = f"the function returned a value that is not JSON-serializable: {exc}"
            body = encode_json(error_data("OutputUnserializableError", message))
            return CallResult(500, body, no_retry=True)
    return CallResult(
        500,
        encode_json(describe_error(err)),
        no_retry=isinstance(err, NonRetriableError | StepError),
        retry_after=err.retry_after if isinstance(err, RetryAfterError) else None,
    )


def _target_not_reached(target: str, state: CallState) -> CallResult:
    reached = ", ".join(repr(step.id) for step in state.found) or "no new step"
    message = (
        f"the step the gateway asked for (stepId={target}) was not reached; the function reached {reached}. "
        "A function must call its steps in the same order on every call: keep nondeterminism inside steps."
    )
    return CallResult(500, encode_json(error_data("StepNotReachedError", message)), no_retry=True)


async def _run_step(step: FoundStep, *, final: bool) -> _StepOutcome:
    if step.fn is None:
        raise TypeError(f"step {step.id!r} is an operation for the gateway, not one to run")
    token = running_step.set(step)
    try:
        output = await _invoke(step.fn, step.args)
        try:
            output = to_json_value(output)
        except ValueError as exc:
            return _unserializable(step, exc)
    except Exception as err:
        failed = final or isinstance(err, NonRetriableError)
        retry_after = err.retry_after if isinstance(err, RetryAfterError) and not failed else None
        return _step_error(step, describe_error(err), failed=failed, retry_after=retry_after)
    finally:
        running_step.reset(token)
    return _StepOutcome(step_op(Opcode.STEP_RUN, step.hash, step.id, data=output), ran=True)


def _unserializable(step: FoundStep, exc: Exception) -> _StepOutcome:
    message = f"step {step.id!r} returned a value that is not JSON-serializable: {exc}"
    return _step_error(step, error_data("OutputUnserializableError", message), failed=True)


def _step_error(
    step: FoundStep,
    error: dict[str, Any],
    *,
    failed: bool,
    retry_after: datetime.datetime | None = None,
) -> _StepOutcome:
    opcode = Opcode.STEP_FAILED if failed else Opcode.STEP_ERROR
    op = step_op(opcode, step.hash, step.id, error=error)
    return _StepOutcome(op, ran=False, no_retry=failed, retry_after=retry_after)


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Await an async step; run a sync one in a worker thread so it cannot block other calls."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result
