"""A durable function as the SDK holds it: its id, triggers, retries, cancellation, failure handler, flow
control and retry policy (the models of ``stepline.flow``).

``Client.function`` builds these; the handler looks them up by id to answer calls, and ``config`` renders
one the way a sync (PUT) reports it to the gateway, exactly as the official SDKs do. ``Checkpoint`` holds
the settings of checkpoint mode (checkpoint.py runs it).
"""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import urllib.parse
import zoneinfo
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stepline.flow import FlowControl, RetryPolicy
from stepline.protocol import (
    DISCOVERY_STEP_ID,
    FUNCTION_FAILED_EVENT,
    Duration,
    QueryParam,
    duration_string,
    full_function_id,
    match_expression,
)

if TYPE_CHECKING:
    from stepline.context import Context, SyncContext

# ``async def fn(ctx: stepline.Context)``, or a plain ``def fn(ctx: stepline.SyncContext)`` run in a thread.
FunctionHandler: TypeAlias = (
    "Callable[[Context[Any]], Coroutine[Any, Any, Any]] | Callable[[SyncContext[Any]], Any]"
)

MAX_RETRIES = 20

# Appended to a function's id to name the function that handles its failures, as the official SDKs do.
FAILURE_SUFFIX = "-failure"

# The prefix by which a cron expression names its time zone (Inngest's convention).
CRON_TIMEZONE_PREFIX = "TZ="


class TriggerEvent(BaseModel):
    """Start a run for each event named ``event`` (for which the CEL ``expression``, if any, is true).

    ``data``: a pydantic model of the events' data, e.g. ``TriggerEvent("order/created", data=Order)``:
    the function's ``ctx.event.data`` is then an ``Order``, validated when the call arrives (an event
    whose data does not fit fails the run at once, since no retry can change it).
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event: str = Field(min_length=1, max_length=256)
    expression: str | None = None
    data: type[BaseModel] | None = Field(default=None, exclude=True)

    def __init__(self, event: str | None = None, /, **fields: Any) -> None:
        if event is not None:
            fields["event"] = event
        super().__init__(**fields)

    def matches(self, name: str) -> bool:
        """Whether an event named ``name`` is one of this trigger's (``prefix/*`` names a prefix)."""
        if self.event.endswith("*"):
            return name.startswith(self.event[:-1])
        return name == self.event

    def config(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class TriggerCron(BaseModel):
    """Start a run on a cron schedule, e.g. ``"0 * * * *"``, in ``timezone`` (an IANA name) if given.

    The time zone may also be written in the expression: ``"TZ=Europe/Paris 0 9 * * *"``.
    """

    model_config = ConfigDict(frozen=True)

    cron: str = Field(min_length=1)
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(
                    f"unknown time zone {value!r}: use an IANA name like 'Europe/Paris'"
                ) from None
        return value

    @model_validator(mode="after")
    def _one_timezone(self) -> TriggerCron:
        if self.timezone is not None and self.cron.startswith(CRON_TIMEZONE_PREFIX):
            raise ValueError(
                "give the time zone either in the cron expression (TZ=...) or as timezone, not both"
            )
        return self

    def config(self) -> dict[str, Any]:
        """``{"cron": ...}``, the time zone as the expression's ``TZ=<zone>`` prefix."""
        if self.timezone is None:
            return {"cron": self.cron}
        return {"cron": f"{CRON_TIMEZONE_PREFIX}{self.timezone} {self.cron}"}


Trigger: TypeAlias = TriggerEvent | TriggerCron
TriggerSpec: TypeAlias = "str | Trigger | Sequence[str | Trigger]"


def parse_triggers(spec: TriggerSpec) -> tuple[Trigger, ...]:
    """Accept one trigger or a list; a plain string is an event name."""
    items = [spec] if isinstance(spec, str | TriggerEvent | TriggerCron) else list(spec)
    if not items:
        raise ValueError("a function needs at least one trigger")
    return tuple(TriggerEvent(event=item) if isinstance(item, str) else item for item in items)


class Cancel(BaseModel):
    """Cancel a run, between its steps, when an event named ``event`` arrives.

    ``if_exp`` is a CEL expression over ``event`` (the run's triggering event) and ``async`` (the arriving
    one); ``match="data.order_id"`` is short for ``event.data.order_id == async.data.order_id``. ``timeout``
    (seconds, a timedelta, or a duration string like ``"1h"``) limits how long after the run's start the
    event counts.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    event: str = Field(min_length=1, max_length=256)
    if_exp: str | None = None
    match: str | None = None
    timeout: float | datetime.timedelta | str | None = None

    @model_validator(mode="after")
    def _one_condition(self) -> Cancel:
        if self.if_exp is not None and self.match is not None:
            raise ValueError("give a cancellation either if_exp or match, not both")
        return self

    @property
    def expression(self) -> str | None:
        return match_expression(self.match) if self.match is not None else self.if_exp

    def config(self) -> dict[str, Any]:
        """The entry in a function's ``cancel`` list of a sync payload: ``{"event", "if"?, "timeout"?}``."""
        config: dict[str, Any] = {"event": self.event}
        if self.expression is not None:
            config["if"] = self.expression
        if self.timeout is not None:
            timeout = self.timeout
            config["timeout"] = timeout if isinstance(timeout, str) else duration_string(timeout)
        return config


CancelSpec: TypeAlias = "Cancel | Mapping[str, Any]"


def parse_cancel(spec: Sequence[CancelSpec]) -> tuple[Cancel, ...]:
    """Accept Cancel models, or mappings of ``event``, ``if`` (or ``if_exp``), ``match``, ``timeout``."""
    return tuple(
        item
        if isinstance(item, Cancel)
        else Cancel.model_validate({("if_exp" if key == "if" else key): value for key, value in item.items()})
        for item in spec
    )


# The official TypeScript SDK's default: a call ends (DiscoveryRequest) after running steps this long.
DEFAULT_MAX_RUNTIME = datetime.timedelta(seconds=10)

# The default flush policy's threshold: the step work a crash between two checkpoints may have to redo.
DEFAULT_MAX_AT_RISK = datetime.timedelta(milliseconds=100)


def _seconds(value: Duration | None) -> float | None:
    if value is None:
        return None
    seconds = value.total_seconds() if isinstance(value, datetime.timedelta) else float(value)
    if seconds < 0:
        raise ValueError(f"a checkpoint duration must not be negative, not {value!r}")
    return seconds or None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """How a function's calls checkpoint (``Client(checkpoint=...)``, ``client.function(checkpoint=...)``).

    In checkpoint mode a call runs the function's sequential steps back to back and reports their results
    to the gateway, instead of answering after every step (checkpoint.py). The steps that ran are buffered
    and posted to the checkpoint API (a flush) when any of these limits is reached:

    * ``max_at_risk`` (default 100 ms): the buffered steps' own run time, the work a crash before the next
      flush would run again; also, before a step whose last run in this process took at least this long,
      what is buffered is posted first, so that a long step never puts earlier steps at risk;
    * ``buffered_steps``: this many steps are buffered (None, the default: no limit by count; 1 posts after
      every step, the strictest setting, ``Checkpoint.every_step()``);
    * ``max_interval``: this long after the first of them was buffered, by the clock (None: no limit).

    Whatever is still buffered when the function ends comes with its result in the call's answer, and
    what needs the gateway (a sleep, a wait, parallel steps, a failed attempt) ends the call with the
    buffered steps before it. A crash between flushes loses no recorded output: the unflushed steps run
    again in the next call. ``max_runtime``: after running steps this long, end the call and have the
    gateway make a new one (None: no limit). Durations are seconds or timedeltas. ``checkpoint=True``
    means these defaults; ``checkpoint=False`` turns checkpointing off (one call per step).
    """

    buffered_steps: int | None = None
    max_interval: Duration | None = None
    max_runtime: Duration | None = DEFAULT_MAX_RUNTIME
    max_at_risk: Duration | None = DEFAULT_MAX_AT_RISK

    def __post_init__(self) -> None:
        steps = self.buffered_steps
        if steps is not None:
            if isinstance(steps, bool) or not isinstance(steps, int):
                raise TypeError(f"buffered_steps must be a whole number or None, not {steps!r}")
            if steps < 1:
                raise ValueError(f"buffered_steps must be 1 or more (or None: no limit), not {steps}")
        _seconds(self.max_interval)
        _seconds(self.max_runtime)
        _seconds(self.max_at_risk)

    @classmethod
    def every_step(cls, *, max_runtime: Duration | None = DEFAULT_MAX_RUNTIME) -> Checkpoint:
        """The strictest policy: each step's result is posted as soon as it ends, before the next starts."""
        return cls(buffered_steps=1, max_at_risk=None, max_runtime=max_runtime)

    @property
    def interval_s(self) -> float | None:
        return _seconds(self.max_interval)

    @property
    def runtime_s(self) -> float | None:
        return _seconds(self.max_runtime)

    @property
    def at_risk_s(self) -> float | None:
        return _seconds(self.max_at_risk)

    def config(self) -> dict[str, Any]:
        """The function's ``checkpoint`` in a sync payload, with the names the spec gives the settings
        (``batch_steps`` 0: no limit by count), and ``max_at_risk``, Stepline's own."""
        return {
            "batch_steps": self.buffered_steps or 0,
            "batch_interval": duration_string(self.interval_s or 0),
            "max_runtime": duration_string(self.runtime_s or 0),
            "max_at_risk": duration_string(self.at_risk_s or 0),
        }


CheckpointSetting: TypeAlias = "bool | Checkpoint"


def resolve_checkpoint(setting: CheckpointSetting) -> Checkpoint | None:
    """The settings in force: ``True`` is ``Checkpoint()``, ``False`` is off (None)."""
    if isinstance(setting, Checkpoint):
        return setting
    return Checkpoint() if setting else None


class Function:
    """A function registered with a client; it is not callable itself, the gateway calls it."""

    def __init__(
        self,
        *,
        id: str,
        handler: FunctionHandler,
        triggers: Sequence[Trigger],
        retries: int = 4,
        name: str | None = None,
        cancel_on: Sequence[Cancel] = (),
        on_failure: FunctionHandler | None = None,
        checkpoint: CheckpointSetting | None = None,
        flow: FlowControl | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        if not id:
            raise ValueError("a function id must not be empty")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be between 0 and {MAX_RETRIES}, not {retries}")
        self.id = id
        self.name = name or id
        self.handler = handler
        # A plain ``def`` runs in a worker thread with blocking steps (SyncContext).
        self.is_async = inspect.iscoroutinefunction(handler)
        self.triggers = tuple(triggers)
        self.retries = retries
        self.cancel_on = tuple(cancel_on)
        self.on_failure = on_failure
        # None: the client's setting applies.
        self.checkpoint = checkpoint
        self.flow = FlowControl() if flow is None else flow
        self.retry_policy = retry_policy

    def __repr__(self) -> str:
        return f"Function(id={self.id!r})"

    def full_id(self, app_id: str) -> str:
        return full_function_id(app_id, self.id)

    def event_model(self, name: str) -> type[BaseModel] | None:
        """The data model the trigger of events named ``name`` declares, if any."""
        for trigger in self.triggers:
            if isinstance(trigger, TriggerEvent) and trigger.data is not None and trigger.matches(name):
                return trigger.data
        return None

    def failure_function(self, app_id: str) -> Function | None:
        """The function that runs ``on_failure``: ``<id>-failure``, started by this function's failed runs.

        Its event is ``inngest/function.failed`` with data ``{function_id, run_id, error, event}``.
        """
        if self.on_failure is None:
            return None
        failed = TriggerEvent(
            event=FUNCTION_FAILED_EVENT,
            expression=f"event.data.function_id == '{self.full_id(app_id)}'",
        )
        return Function(
            id=f"{self.id}{FAILURE_SUFFIX}",
            handler=self.on_failure,
            triggers=[failed],
            retries=0,
            name=f"{self.name} (failure)",
        )

    def config(self, *, app_id: str, serve_url: str, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
        """The function's entry in a sync payload (``functions[]`` of ``POST /fn/register``), with the
        checkpoint settings in force for it, if any."""
        full_id = self.full_id(app_id)
        query = urllib.parse.urlencode(
            {QueryParam.FUNCTION_ID.value: full_id, QueryParam.STEP_ID.value: DISCOVERY_STEP_ID}
        )
        config: dict[str, Any] = {
            "id": full_id,
            "name": self.name,
            "triggers": [trigger.config() for trigger in self.triggers],
            "steps": {
                DISCOVERY_STEP_ID: {
                    "id": DISCOVERY_STEP_ID,
                    "name": DISCOVERY_STEP_ID,
                    "retries": {"attempts": self.retries},
                    "runtime": {"type": "http", "url": f"{serve_url}?{query}"},
                }
            },
        }
        if self.cancel_on:
            config["cancel"] = [cancel.config() for cancel in self.cancel_on]
        # As the official SDKs send them (camelCase, durations as strings); ``retryPolicy`` is Stepline's own.
        config.update(self.flow.to_json())
        if self.retry_policy is not None:
            config["retryPolicy"] = self.retry_policy.to_json()
        if checkpoint is not None:
            config["checkpoint"] = checkpoint.config()
        return config


def with_failure_functions(functions: Sequence[Function], app_id: str) -> list[Function]:
    """The functions an app serves: each one, followed by its failure function if it has one."""
    served: list[Function] = []
    for fn in functions:
        served.append(fn)
        failure = fn.failure_function(app_id)
        if failure is not None:
            served.append(failure)
    return served
