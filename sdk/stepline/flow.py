"""Flow control and retry policy: what a function may declare, with Inngest's semantics and spelling.

One set of pydantic models validates a ``Function`` resource's spec (``spec.concurrency`` ...
``spec.retryPolicy``), the flow-control settings of an SDK sync (``POST /fn/register``, as the official
Inngest SDKs send them: camelCase, durations as strings) and the options of our SDK's
``client.function(...)``; ``stepline.crd`` generates the CRD's schema from them. Durations are strings such
as ``30s`` or ``1h30m`` (``ms``, ``s``, ``m``, ``h``, ``d``, ``w``); keys, conditions and priorities are CEL
expressions over ``event``. The gateway enforces them (docs/flow-control.md).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stepline.durations import parse_duration

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d|w))+$"
# What a CEL key or condition may be at most (they are compiled once per route).
MAX_EXPRESSION = 1024


def _rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL rules for the CRD (``self`` is the object; a key named like a CEL keyword is ``__if__``)."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


def _duration(description: str) -> Any:
    return Field(pattern=DURATION_PATTERN, max_length=32, description=description)


def _expression(description: str) -> Any:
    return Field(min_length=1, max_length=MAX_EXPRESSION, description=description)


def _check_bounds(
    name: str, value: str | None, *, at_least: str | None = None, at_most: str | None = None
) -> None:
    """Durations the schema's pattern lets through but Inngest's bounds do not."""
    if value is None:
        return
    length = parse_duration(value)
    if at_least is not None and length < parse_duration(at_least):
        raise ValueError(f"{name} must be at least {at_least}, not {value}")
    if at_most is not None and length > parse_duration(at_most):
        raise ValueError(f"{name} must be at most {at_most}, not {value}")


Duration = Annotated[str, _duration("A duration such as 30s, 5m or 1h30m.")]
Scope = Literal["fn", "env", "account"]


class Concurrency(_Model):
    """At most ``limit`` steps of this function executing at once per value of ``key`` (sleeping or waiting
    runs hold no slot); the rest wait their turn, in order. ``scope`` widens who shares the limit."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.scope) || self.scope == 'fn' || has(self.key)",
                "a concurrency limit of scope env or account needs a key",
            )
        )
    )

    limit: Annotated[int, Field(ge=1, le=100_000, description="Steps executing at once per key.")]
    key: Annotated[
        str | None, _expression("CEL over 'event' naming the virtual queue, e.g. event.data.account_id.")
    ] = None
    scope: Scope = Field(
        default="fn",
        description="fn: this function's runs share the limit; env: every function with the same key "
        "in the environment (the namespace); account: every function with the same key in the cluster.",
    )

    @model_validator(mode="after")
    def _key_for_shared_scopes(self) -> Self:
        if self.scope != "fn" and self.key is None:
            raise ValueError("a concurrency limit of scope env or account needs a key")
        return self


class Throttle(_Model):
    """At most ``limit`` run starts per ``period`` per key, spread evenly (GCRA, ``burst`` at once); runs
    over the limit wait, in order."""

    limit: Annotated[int, Field(ge=1, le=100_000, description="Run starts allowed per period.")]
    period: Annotated[str, _duration("The period, from 1s to 7d.")]
    key: Annotated[str | None, _expression("CEL over 'event': a throttle per value.")] = None
    burst: Annotated[int, Field(ge=1, le=100_000, description="Starts allowed at once (default 1).")] = 1

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        _check_bounds("throttle.period", self.period, at_least="1s", at_most="7d")
        return self


class RateLimit(_Model):
    """At most ``limit`` runs per ``period`` per key; events over the limit start nothing (they are
    skipped, and shown as skipped)."""

    limit: Annotated[int, Field(ge=1, le=100_000, description="Runs allowed per period.")]
    period: Annotated[str, _duration("The period, from 1s to 24h.")]
    key: Annotated[str | None, _expression("CEL over 'event': a limit per value.")] = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        _check_bounds("rateLimit.period", self.period, at_least="1s", at_most="24h")
        return self


class Debounce(_Model):
    """One run, with the last event, once ``period`` has passed without a new event for the key;
    ``timeout`` caps how long the first event may wait."""

    period: Annotated[str, _duration("Quiet time before the run starts, from 1s to 7d.")]
    key: Annotated[str | None, _expression("CEL over 'event': a debounce per value.")] = None
    timeout: Annotated[str | None, _duration("Longest wait from the first event, up to 7d.")] = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        _check_bounds("debounce.period", self.period, at_least="1s", at_most="7d")
        _check_bounds("debounce.timeout", self.timeout, at_least=self.period, at_most="7d")
        return self


class BatchEvents(_Model):
    """One run receives up to ``max_size`` events (``events`` in the call), once the batch is full or
    ``timeout`` after its first event."""

    max_size: Annotated[
        int, Field(alias="maxSize", ge=1, le=100, description="Events in one batch (1 to 100).")
    ]
    timeout: Annotated[str, _duration("Longest wait for a full batch, from 1s to 60s.")]
    key: Annotated[str | None, _expression("CEL over 'event': a batch per value.")] = None
    if_: Annotated[
        str | None,
        Field(
            alias="if",
            min_length=1,
            max_length=MAX_EXPRESSION,
            description="CEL over 'event': events for which it is false run alone, unbatched.",
        ),
    ] = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        _check_bounds("batchEvents.timeout", self.timeout, at_least="1s", at_most="60s")
        return self


class Priority(_Model):
    """``run``: CEL over 'event' giving seconds from -600 to 600: a run with priority p goes before the
    runs of its function queued up to p seconds before it (a negative p delays it by -p seconds)."""

    run: Annotated[str, _expression("CEL over 'event' giving whole seconds, -600 to 600.")]


class Singleton(_Model):
    """At most one run per key at a time: a new one is skipped (``skip``), or cancels the one running
    (``cancel``)."""

    key: Annotated[str | None, _expression("CEL over 'event': one run at a time per value.")] = None
    mode: Literal["skip", "cancel"] = Field(
        description="skip: the new run is skipped; cancel: the running one is cancelled for the new one."
    )


class Timeouts(_Model):
    """A run queued longer than ``start`` before its first call, or running longer than ``finish``
    after it, is cancelled."""

    start: Annotated[str | None, _duration("Longest wait between the event and the first call.")] = None
    finish: Annotated[str | None, _duration("Longest time from the first call to the run's end.")] = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        _check_bounds("timeouts.start", self.start, at_least="1s")
        _check_bounds("timeouts.finish", self.finish, at_least="1s")
        return self


def known_fields(model: type[BaseModel], data: Any) -> Any:
    """``data`` without the keys ``model`` (and its nested models) does not name: what a later version
    stored is read by an earlier one as far as it understands it."""
    if not isinstance(data, dict):
        return data
    kept: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        key = info.alias or name
        if key not in data:
            continue
        value = data[key]
        nested = _model_of(info.annotation)
        if nested is not None:
            value = (
                [known_fields(nested, v) for v in value]
                if isinstance(value, list)
                else known_fields(nested, value)
            )
        kept[key] = value
    return kept


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds (``X``, ``X | None``, ``list[X]``), if it holds one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _model_of(argument)
        if found is not None:
            return found
    return None


def _listed(value: Any) -> Any:
    """``concurrency`` as the SDKs write it: a number, one object, or a list of up to two."""
    if isinstance(value, bool):
        return value  # refused by the list's validation
    if isinstance(value, int):
        return [{"limit": value}]
    if isinstance(value, dict):
        return [value]
    return value


class FlowControl(_Model):
    """Every flow-control setting a function may have; all optional."""

    concurrency: Annotated[
        list[Concurrency],
        Field(max_length=2, description="Up to two concurrency limits, each with its own key and scope."),
    ] = []
    throttle: Throttle | None = Field(default=None, description="Spread run starts over time.")
    rate_limit: RateLimit | None = Field(
        default=None, alias="rateLimit", description="Skip runs over a limit per period."
    )
    debounce: Debounce | None = Field(default=None, description="Run once after a burst of events.")
    batch_events: BatchEvents | None = Field(
        default=None, alias="batchEvents", description="Run once for several events."
    )
    priority: Priority | None = Field(default=None, description="Move runs ahead in the function's queue.")
    idempotency: Annotated[str | None, _expression("CEL over 'event': one run per value per 24 hours.")] = (
        None
    )
    singleton: Singleton | None = Field(default=None, description="One run at a time per key.")
    timeouts: Timeouts | None = Field(default=None, description="Cancel runs that wait or last too long.")

    _concurrency_forms = field_validator("concurrency", mode="before")(_listed)

    def is_empty(self) -> bool:
        return self == FlowControl()

    def expressions(self) -> list[tuple[str, str]]:
        """Every CEL expression of the settings, with its path as the CRD spells it, to be compiled."""
        found = [(f"concurrency[{i}].key", c.key) for i, c in enumerate(self.concurrency)]
        found += [
            ("throttle.key", self.throttle.key if self.throttle else None),
            ("rateLimit.key", self.rate_limit.key if self.rate_limit else None),
            ("debounce.key", self.debounce.key if self.debounce else None),
            ("batchEvents.key", self.batch_events.key if self.batch_events else None),
            ("batchEvents.if", self.batch_events.if_ if self.batch_events else None),
            ("priority.run", self.priority.run if self.priority else None),
            ("idempotency", self.idempotency),
            ("singleton.key", self.singleton.key if self.singleton else None),
        ]
        return [(path, source) for path, source in found if source]

    def to_json(self) -> dict[str, Any]:
        """As the CRD and the sync spell it, without the settings left out."""
        return self.model_dump(by_alias=True, exclude_defaults=True, mode="json")


class RetryPolicy(_Model):
    """When a failed attempt is tried again, and how long one attempt may take (beside ``retries``)."""

    backoff: Literal["Exponential", "Linear", "Constant"] = Field(
        default="Exponential",
        description="Exponential: initialDelay, doubled after each attempt; Linear: initialDelay times "
        "the attempt number; Constant: initialDelay every time. Capped by maxDelay.",
    )
    initial_delay: Annotated[
        str, Field(alias="initialDelay", pattern=DURATION_PATTERN, description="The first delay.")
    ] = "10s"
    max_delay: Annotated[
        str, Field(alias="maxDelay", pattern=DURATION_PATTERN, description="The longest delay.")
    ] = "1h"
    jitter_percent: Annotated[
        int,
        Field(
            alias="jitterPercent",
            ge=0,
            le=100,
            description="Up to this share of each delay is random, so that retries spread out.",
        ),
    ] = 50
    timeout: Annotated[
        str | None,
        Field(
            pattern=DURATION_PATTERN,
            description="Longest time one call may take; a longer one is cut off and retried.",
        ),
    ] = None

    @model_validator(mode="after")
    def _bounds(self) -> Self:
        _check_bounds("retryPolicy.initialDelay", self.initial_delay, at_least="1ms", at_most="24h")
        _check_bounds("retryPolicy.maxDelay", self.max_delay, at_least=self.initial_delay, at_most="7d")
        _check_bounds("retryPolicy.timeout", self.timeout, at_least="1s", at_most="24h")
        return self

    def delay(self, attempt: int, random_share: float) -> datetime.timedelta:
        """The wait after failed attempt ``attempt`` (0-based); ``random_share`` in [0, 1) draws jitter."""
        initial = parse_duration(self.initial_delay).total_seconds()
        if self.backoff == "Exponential":
            seconds = initial * float(2 ** min(attempt, 40))
        elif self.backoff == "Linear":
            seconds = initial * (attempt + 1)
        else:
            seconds = initial
        ceiling = min(seconds, parse_duration(self.max_delay).total_seconds())
        jitter = ceiling * self.jitter_percent / 100
        return datetime.timedelta(seconds=ceiling - jitter + jitter * random_share)

    def to_json(self) -> dict[str, Any]:
        """As the CRD spells it, every field given (the defaults filled in)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")

    def call_timeout(self) -> datetime.timedelta | None:
        return None if self.timeout is None else parse_duration(self.timeout)
