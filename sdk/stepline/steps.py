"""``ctx.step``: the durable operations a function awaits, and the record of one call's new steps.

Each operation returns its memo when the run has one. Otherwise it records itself as a FoundStep in the
call's CallState and waits; the executor (context.py) then runs, plans or reports it. In checkpoint mode
the executor resumes a step that ran with its output (``CallState.resume``) and the function goes on.
``SyncStep`` is the same operations for a plain ``def`` function, which runs in a worker thread: each one
hands its coroutine to the event loop and blocks until it is resolved.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import dataclasses
import datetime
import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, TypeVar, TypeVarTuple, overload

import pydantic

from stepline.client import Client, EventLike
from stepline.errors import NonRetriableError, StepError
from stepline.function import Function
from stepline.protocol import (
    Duration,
    Event,
    Opcode,
    data_memo,
    duration_string,
    hash_step,
    iso_utc,
    match_expression,
    step_op,
)

_T = TypeVar("_T")
_M = TypeVar("_M")
_Ts = TypeVarTuple("_Ts")

# The keys of a wrapped memo; a memo with other keys is the value itself (a fulfilled wait's event).
_MEMO_KEYS = frozenset({"data", "error"})


@dataclasses.dataclass(frozen=True, eq=False)
class FoundStep:
    """A step the function reached that has no memo yet.

    A ``step.run`` has ``fn`` and ``args``, run by the SDK; the other operations have ``op``, the operation
    the gateway carries out itself (Sleep, WaitForEvent, InvokeFunction).
    """

    id: str
    hash: str
    fn: Callable[..., Any] | None = None
    args: tuple[Any, ...] = ()
    op: dict[str, Any] | None = None


# The step being executed, seen by code running inside it (also in its worker thread), not by the function.
running_step: contextvars.ContextVar[FoundStep | None] = contextvars.ContextVar("running_step", default=None)


class CallState:
    """What one call knows about the function's steps: memos in, steps found out."""

    def __init__(self, memos: dict[str, Any], target: str | None) -> None:
        self.memos = memos
        self.target = target
        self.occurrences: dict[str, int] = {}
        self.found: list[FoundStep] = []
        self.waiters: dict[str, asyncio.Future[Any]] = {}
        self.on_found: Callable[[], None] = lambda: None
        self.closed = False

    def find(self, step_hash: str) -> FoundStep | None:
        return next((step for step in self.found if step.hash == step_hash), None)

    def resume(self, step: FoundStep, value: Any) -> None:
        """The step ran in this call and returned ``value`` (as JSON gives it back): the function goes on,
        and steps found from now on are those after it."""
        self.memos[step.hash] = data_memo(value)
        self.found = [found for found in self.found if found is not step]
        waiter = self.waiters.get(step.hash)
        if waiter is not None and not waiter.done():
            waiter.set_result(value)


class Step:
    """``ctx.step``: the durable operations of a function. Each ``step_id`` names one operation in a run."""

    def __init__(self, state: CallState, client: Client) -> None:
        self._state = state
        self._client = client

    @overload
    async def run(
        self, step_id: str, fn: Callable[[*_Ts], Any], *args: *_Ts, output_type: type[_M]
    ) -> _M: ...

    @overload
    async def run(self, step_id: str, fn: Callable[[*_Ts], Awaitable[_T]], *args: *_Ts) -> _T: ...

    @overload
    async def run(self, step_id: str, fn: Callable[[*_Ts], _T], *args: *_Ts) -> _T: ...

    async def run(self, step_id: str, fn: Callable[[*_Ts], Any], *args: *_Ts, output_type: Any = None) -> Any:
        """Run ``fn(*args)`` (sync or async) once per run; later calls return its memoized output.

        The output is recorded as JSON, the way pydantic serializes it (datetimes, UUIDs and Decimals as
        strings, models and dataclasses as objects). ``output_type`` (a pydantic model, a dataclass, or any
        type pydantic validates) turns the recorded JSON back into that type, on the first run and on
        every replay alike. A step that failed for good raises StepError here. Steps in
        ``asyncio.gather`` run in parallel.
        """
        value = await self._reach(step_id, lambda step_hash: FoundStep(step_id, step_hash, fn=fn, args=args))
        if output_type is None:
            return value
        try:
            return _adapter(output_type).validate_python(value)
        except pydantic.ValidationError as err:
            message = f"step {step_id!r}: its recorded output does not fit {output_type!r}: {err}"
            raise NonRetriableError(" ".join(message.split())) from None

    async def sleep(self, step_id: str, duration: Duration) -> None:
        """Pause the run for ``duration``; no worker or connection is held meanwhile.

        ``duration`` is in seconds (the official SDK takes milliseconds), or a timedelta; so are the
        timeouts of ``wait_for_event`` and ``invoke``.
        """
        if isinstance(duration, int | float):
            duration = datetime.timedelta(seconds=duration)
        if duration < datetime.timedelta(0):
            raise ValueError(f"step {step_id!r}: a sleep cannot be negative, not {duration}")
        sleep_for = duration

        def op(step_hash: str) -> dict[str, Any]:
            until = datetime.datetime.now(datetime.UTC) + sleep_for
            return _sleep_op(step_hash, step_id, until, sleep_for)

        await self._reach(step_id, lambda step_hash: FoundStep(step_id, step_hash, op=op(step_hash)))

    async def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        """Pause the run until ``until`` (a naive datetime is UTC); a moment already past ends at once."""
        if until.tzinfo is None:
            until = until.replace(tzinfo=datetime.UTC)

        def op(step_hash: str) -> dict[str, Any]:
            remaining = max(until - datetime.datetime.now(datetime.UTC), datetime.timedelta(0))
            return _sleep_op(step_hash, step_id, until, remaining)

        await self._reach(step_id, lambda step_hash: FoundStep(step_id, step_hash, op=op(step_hash)))

    async def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        # The gateway's timeout, not this coroutine's: asyncio.timeout cannot express it.
        timeout: Duration,  # noqa: ASYNC109
        if_exp: str | None = None,
        match: str | None = None,
    ) -> Event | None:
        """Wait for the first event named ``event`` sent after the wait began; None after ``timeout``.

        ``if_exp`` is a CEL expression over ``event`` (the run's triggering event) and ``async`` (the
        candidate); ``match="data.x"`` is short for ``event.data.x == async.data.x``.
        """
        if if_exp is not None and match is not None:
            raise ValueError(f"step {step_id!r}: give wait_for_event either if_exp or match, not both")
        if not event:
            raise ValueError(f"step {step_id!r}: wait_for_event needs the name of the event to wait for")
        opts: dict[str, Any] = {"event": event, "timeout": duration_string(timeout)}
        expression = match_expression(match) if match is not None else if_exp
        if expression is not None:
            opts["if"] = expression

        def found(step_hash: str) -> FoundStep:
            op = step_op(Opcode.WAIT_FOR_EVENT, step_hash, step_id, name=event, opts=opts)
            return FoundStep(step_id, step_hash, op=op)

        received = await self._reach(step_id, found)
        if received is None:
            return None
        try:
            return Event.model_validate(received)
        except pydantic.ValidationError as err:
            raise NonRetriableError(
                f"step {step_id!r}: the awaited event is not a valid event: {err}"
            ) from None

    async def invoke(
        self,
        step_id: str,
        *,
        function: Function | str,
        data: dict[str, Any] | None = None,
        timeout: Duration | None = None,  # noqa: ASYNC109 (the gateway's timeout, as above)
    ) -> Any:
        """Run ``function`` as a child run with ``data`` as its event's data; return the child's output.

        ``function`` is a Function of this app, or the full id ``<app>-<function>`` of any function. A child
        that fails (or does not finish within ``timeout``) raises StepError here.
        """
        function_id = function.full_id(self._client.app_id) if isinstance(function, Function) else function
        if not function_id:
            raise ValueError(f"step {step_id!r}: invoke needs a function or a full function id")
        opts: dict[str, Any] = {"function_id": function_id, "payload": {"data": data or {}}}
        if timeout is not None:
            opts["timeout"] = duration_string(timeout)

        def found(step_hash: str) -> FoundStep:
            return FoundStep(step_id, step_hash, op=step_op(Opcode.INVOKE, step_hash, step_id, opts=opts))

        return await self._reach(step_id, found)

    async def send_event(self, step_id: str, events: EventLike | Sequence[EventLike]) -> list[str]:
        """Send events once per run, as a step: later calls return the memoized ids without sending."""

        async def send() -> list[str]:
            return await self._client.send(events)

        return await self.run(step_id, send)

    async def _reach(self, step_id: str, found: Callable[[str], FoundStep]) -> Any:
        """The memoized value of the next occurrence of ``step_id``; if it has none, record it and wait."""
        state = self._state
        if not step_id:
            raise ValueError("a step id must not be empty")
        running = running_step.get()
        if running is not None:
            message = f"step {step_id!r} was started inside step {running.id!r}: steps cannot be nested"
            raise NonRetriableError(message)
        if state.closed:
            raise asyncio.CancelledError
        occurrence = state.occurrences.get(step_id, 0)
        state.occurrences[step_id] = occurrence + 1
        step_hash = hash_step(step_id, occurrence)
        if step_hash in state.memos:
            return memo_value(state.memos[step_hash])
        state.found.append(found(step_hash))
        waiter = asyncio.get_running_loop().create_future()
        state.waiters[step_hash] = waiter
        state.on_found()
        # Resolved only in checkpoint mode, by the step's output; otherwise the call ends with this step run,
        # planned or reported, and the task is cancelled.
        return await waiter


@functools.lru_cache(maxsize=256)
def _adapter(output_type: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(output_type)


class CallEnded(BaseException):
    """Raised in a plain function's thread when the call ended while it waited on a step: the function
    stops there, and the gateway's next call runs it again from the start with the step's memo.
    A BaseException, so that ``except Exception`` in the function does not keep it going."""


class SyncStep:
    """``ctx.step`` of a plain ``def`` function: the operations of ``Step``, each blocking until done.

    Its steps run one after the other (a plain function cannot await several at once).
    """

    def __init__(self, step: Step, loop: asyncio.AbstractEventLoop) -> None:
        self._step = step
        self._loop = loop

    def _wait(self, operation: Coroutine[Any, Any, _T]) -> _T:
        running = running_step.get()
        if running is not None:
            operation.close()
            message = f"a step was started inside step {running.id!r}: steps cannot be nested"
            raise NonRetriableError(message)
        future = asyncio.run_coroutine_threadsafe(operation, self._loop)
        try:
            return future.result()
        except (concurrent.futures.CancelledError, asyncio.CancelledError):
            raise CallEnded from None

    @overload
    def run(self, step_id: str, fn: Callable[[*_Ts], Any], *args: *_Ts, output_type: type[_M]) -> _M: ...

    @overload
    def run(self, step_id: str, fn: Callable[[*_Ts], Awaitable[_T]], *args: *_Ts) -> _T: ...

    @overload
    def run(self, step_id: str, fn: Callable[[*_Ts], _T], *args: *_Ts) -> _T: ...

    def run(self, step_id: str, fn: Callable[[*_Ts], Any], *args: *_Ts, output_type: Any = None) -> Any:
        """``Step.run``, blocking: run ``fn(*args)`` once per run and return its output."""
        return self._wait(self._step.run(step_id, fn, *args, output_type=output_type))

    def sleep(self, step_id: str, duration: Duration) -> None:
        """``Step.sleep``: pause the run; the function's thread is not held meanwhile."""
        self._wait(self._step.sleep(step_id, duration))

    def sleep_until(self, step_id: str, until: datetime.datetime) -> None:
        self._wait(self._step.sleep_until(step_id, until))

    def wait_for_event(
        self,
        step_id: str,
        *,
        event: str,
        timeout: Duration,
        if_exp: str | None = None,
        match: str | None = None,
    ) -> Event | None:
        """``Step.wait_for_event``: the first matching event, or None after ``timeout``."""
        return self._wait(
            self._step.wait_for_event(step_id, event=event, timeout=timeout, if_exp=if_exp, match=match)
        )

    def invoke(
        self,
        step_id: str,
        *,
        function: Function | str,
        data: dict[str, Any] | None = None,
        timeout: Duration | None = None,
    ) -> Any:
        """``Step.invoke``: run ``function`` as a child run and return its output."""
        return self._wait(self._step.invoke(step_id, function=function, data=data, timeout=timeout))

    def send_event(self, step_id: str, events: EventLike | Sequence[EventLike]) -> list[str]:
        """``Step.send_event``: send events once per run; return their ids."""
        return self._wait(self._step.send_event(step_id, events))


def _sleep_op(step_hash: str, step_id: str, until: datetime.datetime, duration: Duration) -> dict[str, Any]:
    # The official SDKs put the wake-up time in name; the duration is there for servers that prefer it.
    return step_op(
        Opcode.SLEEP, step_hash, step_id, name=iso_utc(until), opts={"duration": duration_string(duration)}
    )


def memo_value(memo: Any) -> Any:
    """What a memo stands for: ``{"data": x}`` is x, ``{"error": ...}`` raises StepError, else the memo.

    A sleep's memo is null and a fulfilled wait's is the raw event, so only a mapping with no keys but
    ``data`` and ``error`` is read as wrapped (the rule of the official SDK).
    """
    if not isinstance(memo, dict) or not memo.keys() <= _MEMO_KEYS:
        return memo
    error = memo.get("error")
    if error is None:
        return memo.get("data")
    if not isinstance(error, dict):
        raise StepError(str(error))
    raise StepError(
        str(error.get("message", "")), name=str(error.get("name") or "Error"), stack=error.get("stack")
    )
