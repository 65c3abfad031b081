"""One call of a function: the ``ctx`` it sees, and the executor that answers the call.

The executor runs the function as a task. Memoized steps return at once; each new step records itself
(steps.py) and waits forever. Once new steps stop appearing, the executor runs the chosen one, reports it
(a sleep, a wait, an invocation), or plans several, then cancels the task and returns a CallResult;
handler.py turns that into the HTTP answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import inspect
import traceback
from collections.abc import Callable
from typing import Any

from stepline.client import Client
from stepline.errors import NonRetriableError, RetryAfterError, StepError
from stepline.function import Function
from stepline.protocol import CallRequest, Event, Opcode, encode_json, error_data, step_op
from stepline.steps import CallState, FoundStep, Step, running_step

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


@dataclasses.dataclass(frozen=True)
class Context:
    """What a function receives: its triggering event(s), its run, and ``step``.

    A failure handler's ``event`` is the ``inngest/function.failed`` event of the run that failed.
    """

    event: Event
    events: list[Event]
    run_id: str
    attempt: int
    step: Step


def describe_error(err: BaseException) -> dict[str, Any]:
    """The wire form of an error; a StepError travels as the original error it stands for."""
    if isinstance(err, StepError):
        return error_data(err.name, err.message, err.stack)
    return error_data(type(err).__name__, str(err), "".join(traceback.format_exception(err)))


async def execute_call(
    function: Function, request: CallRequest, *, target: str | None, client: Client
) -> CallResult:
    """Answer one call: run ``function`` up to its next new step(s), or to its end.

    ``target`` is the hash from ``stepId`` when the gateway asks for one specific step, else None.
    A single new sleep, wait or invocation (or a targeted one) is reported for the gateway to carry out;
    several new steps are planned, one call each to follow.
    """
    state = CallState(request.steps, target)
    ctx = Context(
        event=request.event,
        events=request.events or [request.event],
        run_id=request.ctx.run_id,
        attempt=request.ctx.attempt,
        step=Step(state, client),
    )
    task = asyncio.create_task(function.handler(ctx))
    try:
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
            ops = [step_op(Opcode.STEP_PLANNED, s.hash, s.id) for s in state.found]
            return CallResult(206, encode_json(ops))
        if step.op is not None:
            return CallResult(206, encode_json([step.op]))
        max_attempts = request.ctx.max_attempts or function.retries + 1
        return await _run_step(step, final=request.ctx.attempt + 1 >= max_attempts)
    finally:
        await _close(task, state)


async def _discover(task: asyncio.Task[Any], state: CallState) -> None:
    """Wait for the first new step or the function's end, then until new steps stop appearing."""
    progress = asyncio.get_running_loop().create_future()

    def wake(*_: object) -> None:
        if not progress.done():
            progress.set_result(None)

    state.on_found = wake
    task.add_done_callback(wake)
    await progress
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
    for waiter in state.waiters:
        waiter.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _function_result(task: asyncio.Task[Any]) -> CallResult:
    if task.cancelled():
        return CallResult(500, encode_json(error_data("CancelledError", "the function was cancelled")))
    err = task.exception()
    if err is None:
        try:
            return CallResult(200, encode_json(task.result()))
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


async def _run_step(step: FoundStep, *, final: bool) -> CallResult:
    if step.fn is None:
        raise TypeError(f"step {step.id!r} is an operation for the gateway, not one to run")
    token = running_step.set(step)
    try:
        output = await _invoke(step.fn, step.args)
    except Exception as err:
        failed = final or isinstance(err, NonRetriableError)
        retry_after = err.retry_after if isinstance(err, RetryAfterError) and not failed else None
        return _step_error(step, describe_error(err), failed=failed, retry_after=retry_after)
    finally:
        running_step.reset(token)
    try:
        return CallResult(206, encode_json([step_op(Opcode.STEP_RUN, step.hash, step.id, data=output)]))
    except (TypeError, ValueError) as exc:
        message = f"step {step.id!r} returned a value that is not JSON-serializable: {exc}"
        return _step_error(step, error_data("OutputUnserializableError", message), failed=True)


def _step_error(
    step: FoundStep,
    error: dict[str, Any],
    *,
    failed: bool,
    retry_after: datetime.datetime | None = None,
) -> CallResult:
    opcode = Opcode.STEP_FAILED if failed else Opcode.STEP_ERROR
    body = encode_json([step_op(opcode, step.hash, step.id, error=error)])
    return CallResult(206, body, no_retry=failed, retry_after=retry_after)


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Await an async step; run a sync one in a worker thread so it cannot block other calls."""
    if inspect.iscoroutinefunction(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result
