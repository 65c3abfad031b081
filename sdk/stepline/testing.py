"""Run a function in a unit test, in-process, with no gateway: ``await stepline.testing.run(fn, event)``.

The test plays the gateway: it calls the function as the gateway would, call after call, recording each
step's output as a memo, until the run ends. Steps run for real unless the test gives their output
(``steps={"charge-card": "ch_1"}``, or an exception to make the step fail for good); sleeps end at once
(each is listed in ``TestRun.sleeps``); a ``wait_for_event`` gets the event the test gives in ``waits``
(None: it timed out), an ``invoke`` the output in ``invokes``. Failed attempts are retried at once, up to
the function's retries, as the gateway would after a backoff. Checkpointing is off: one step per call.
``run_sync`` is the same for tests that are not async.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from stepline.client import Client
from stepline.context import execute_call
from stepline.errors import SteplineError
from stepline.function import Function
from stepline.protocol import (
    CallRequest,
    Event,
    Opcode,
    data_memo,
    error_memo,
    hash_step_id,
    to_json_value,
)

# A function that makes more calls than this is taken to loop forever.
MAX_CALLS = 1000


class TestingError(SteplineError):
    """The test did not give what the function needs (an awaited event, an invoked function's output)."""

    __test__ = False  # not a test class, for pytest, though its name starts with Test


@dataclasses.dataclass
class StepRecord:
    """A step as the run recorded it: ``op`` (StepRun, Sleep, WaitForEvent, InvokeFunction, StepFailed),
    its output or error, how many attempts it took, and whether the test gave its output."""

    id: str
    op: str
    output: Any = None
    error: dict[str, Any] | None = None
    attempts: int = 1
    mocked: bool = False


@dataclasses.dataclass
class TestRun:
    """The end of a run: ``status`` Completed or Failed, its output or error, its steps in order."""

    __test__ = False  # not a test class, for pytest, though its name starts with Test

    status: str
    output: Any
    error: dict[str, Any] | None
    steps: list[StepRecord]
    calls: int

    @property
    def sleeps(self) -> list[StepRecord]:
        return [step for step in self.steps if step.op == Opcode.SLEEP]

    def step(self, step_id: str) -> StepRecord:
        """The step named ``step_id``; KeyError if the run had none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(f"the run had no step {step_id!r}: it had {[s.id for s in self.steps]}")


def _memo_of(value: Any) -> dict[str, Any]:
    """The memo of a value the test gives: an exception is a failure, anything else an output."""
    if isinstance(value, BaseException):
        return error_memo(type(value).__name__, str(value))
    return data_memo(to_json_value(value))


class _Run:
    def __init__(
        self,
        function: Function,
        event: Event,
        *,
        client: Client,
        steps: Mapping[str, Any],
        waits: Mapping[str, Any],
        invokes: Mapping[str, Any],
    ) -> None:
        self.function = function
        self.event = event
        self.client = client
        self.waits = waits
        self.invokes = invokes
        self.memos: dict[str, Any] = {}
        self.records: dict[str, StepRecord] = {}
        self.names: dict[str, str] = {}
        for step_id, value in steps.items():
            step_hash = hash_step_id(step_id)
            memo = _memo_of(value)
            self.memos[step_hash] = memo
            error = memo.get("error")
            self.records[step_hash] = StepRecord(step_id, "StepRun", memo.get("data"), error, 0, mocked=True)
        self.calls = 0
        self.attempt = 0
        self.max_attempts = function.retries + 1

    async def call(self, target: str | None = None) -> tuple[int, Any, bool]:
        self.calls += 1
        if self.calls > MAX_CALLS:
            raise TestingError(f"the function made more than {MAX_CALLS} calls without ending")
        request = CallRequest.model_validate(
            {
                "event": self.event.model_dump(exclude_none=True),
                "events": [self.event.model_dump(exclude_none=True)],
                "steps": self.memos,
                "ctx": {
                    "run_id": "test-run",
                    "attempt": self.attempt,
                    "max_attempts": self.max_attempts,
                    "stack": {"stack": list(self.memos)},
                },
            }
        )
        result = await execute_call(self.function, request, target=target, client=self.client)
        return result.status, json.loads(result.body), result.no_retry

    def record(self, op: dict[str, Any], memo: dict[str, Any], *, attempts: int) -> None:
        step_hash = str(op["id"])
        self.memos[step_hash] = memo
        name = str(op.get("displayName") or op.get("name") or step_hash)
        self.records[step_hash] = StepRecord(
            name, str(op["op"]), memo.get("data") if memo else None, (memo or {}).get("error"), attempts
        )

    def resolve(self, op: dict[str, Any]) -> None:
        """A Sleep, WaitForEvent or InvokeFunction: resolved as the test says, at once."""
        step_id = str(op.get("displayName") or op.get("name"))
        kind = op["op"]
        if kind == Opcode.SLEEP:
            self.record(op, data_memo(None), attempts=1)
        elif kind == Opcode.WAIT_FOR_EVENT:
            if step_id not in self.waits:
                raise TestingError(
                    f"step {step_id!r} waits for an event: give waits={{{step_id!r}: event}} (None: time out)"
                )
            awaited = self.waits[step_id]
            event = None if awaited is None else Event.model_validate(awaited).model_dump(exclude_none=True)
            self.record(op, data_memo(event), attempts=1)
        else:
            if step_id not in self.invokes:
                raise TestingError(
                    f"step {step_id!r} invokes a function: give invokes={{{step_id!r}: output}}"
                )
            self.record(op, _memo_of(self.invokes[step_id]), attempts=1)

    async def run_step(self, target: str) -> TestRun | None:
        """A parallel step, called on its own until it ran or failed for good."""
        attempts = 0
        while True:
            attempts += 1
            status, body, no_retry = await self.call(target)
            if status != 206:
                return self.end(status, body)
            [op] = body
            if op["op"] == Opcode.STEP_ERROR and not no_retry and self.attempt + 1 < self.max_attempts:
                self.attempt += 1
                continue
            self.attempt = 0
            if op["op"] in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
                self.record(op, {"error": op["error"]}, attempts=attempts)
            else:
                self.record(op, data_memo(op.get("data")), attempts=attempts)
            return None

    def end(self, status: int, body: Any) -> TestRun:
        ended = "Completed" if status == 200 else "Failed"
        return TestRun(
            status=ended,
            output=body if status == 200 else None,
            error=None if status == 200 else body,
            steps=list(self.records.values()),
            calls=self.calls,
        )

    async def run(self) -> TestRun:
        attempts: dict[str, int] = {}
        while True:
            status, body, no_retry = await self.call()
            if status == 200:
                return self.end(status, body)
            if status != 206:
                if not no_retry and self.attempt + 1 < self.max_attempts:
                    self.attempt += 1
                    continue
                return self.end(status, body)
            planned = [op for op in body if op["op"] == Opcode.STEP_PLANNED]
            if planned:
                for op in planned:
                    ended = await self.run_step(str(op["id"]))
                    if ended is not None:
                        return ended
                continue
            [op] = body
            kind, step_hash = op["op"], str(op["id"])
            attempts[step_hash] = attempts.get(step_hash, 0) + 1
            if kind == Opcode.STEP_ERROR and not no_retry and self.attempt + 1 < self.max_attempts:
                self.attempt += 1
                continue
            self.attempt = 0
            if kind in (Opcode.STEP_RUN, Opcode.STEP):
                self.record(op, data_memo(op.get("data")), attempts=attempts[step_hash])
            elif kind in (Opcode.STEP_ERROR, Opcode.STEP_FAILED):
                self.record(op, {"error": op["error"]}, attempts=attempts[step_hash])
            else:
                self.resolve(op)


async def run(
    function: Function,
    event: Event | Mapping[str, Any],
    *,
    client: Client | None = None,
    steps: Mapping[str, Any] | None = None,
    waits: Mapping[str, Any] | None = None,
    invokes: Mapping[str, Any] | None = None,
) -> TestRun:
    """Run ``function`` on ``event`` to its end, in this process; answer how it ended.

    ``steps``: outputs of steps by step id (``"id:1"`` for a repeat), given instead of running them; an
    exception makes that step fail for good. ``waits``: the event each ``wait_for_event`` step receives
    (None: it timed out). ``invokes``: the output of each ``invoke`` step (an exception: the child failed).
    ``client``: the client whose functions these are (its app id names invoked functions), by default a
    dev-mode client of the app ``test``.
    """
    own_client = client is None
    client = client or Client("test", dev=True, checkpoint=False)
    started = Event.model_validate(event)
    if started.id is None:
        started = started.model_copy(update={"id": "test-event"})
    test_run = _Run(
        function, started, client=client, steps=steps or {}, waits=waits or {}, invokes=invokes or {}
    )
    try:
        return await test_run.run()
    finally:
        if own_client:
            await client.aclose()


def run_sync(
    function: Function,
    event: Event | Mapping[str, Any],
    *,
    client: Client | None = None,
    steps: Mapping[str, Any] | None = None,
    waits: Mapping[str, Any] | None = None,
    invokes: Mapping[str, Any] | None = None,
) -> TestRun:
    """``run`` for tests that are not async."""
    return asyncio.run(run(function, event, client=client, steps=steps, waits=waits, invokes=invokes))
