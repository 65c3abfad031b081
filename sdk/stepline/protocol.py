"""The wire protocol between Stepline and function services: the Inngest SDK HTTP protocol, version 2.

Both sides import these names: the SDK to answer calls, the gateway to make them and read the answers.
docs/protocol.md describes every message; this module holds the constants and the small pure functions
(step hashing, memo shapes) that the two sides must agree on byte for byte.
"""

from __future__ import annotations

import datetime
import enum
import hashlib
import json
from typing import Any, Final, Generic, TypeAlias

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeVar

try:
    import orjson
except ImportError:  # not one of the SDK's own dependencies (the extra ``fast`` brings it): json serves
    orjson = None  # type: ignore[assignment]

REQUEST_VERSION: Final = "2"
SDK_NAME: Final = "stepline-py"
DEFAULT_SERVE_PATH: Final = "/api/inngest"

# The stepId query parameter that asks the service to run the function and find its next step.
DISCOVERY_STEP_ID: Final = "step"

# The version of the inspection answer (GET) and of the sync payload (PUT), as the official SDKs send them.
INSPECTION_SCHEMA_VERSION: Final = "2024-05-24"
SYNC_PAYLOAD_VERSION: Final = "0.1"

FUNCTION_FAILED_EVENT: Final = "inngest/function.failed"
FUNCTION_FINISHED_EVENT: Final = "inngest/function.finished"
FUNCTION_CANCELLED_EVENT: Final = "inngest/function.cancelled"
FUNCTION_INVOKED_EVENT: Final = "inngest/function.invoked"
CRON_EVENT: Final = "inngest/scheduled.timer"


class Header(enum.StrEnum):
    """HTTP headers of the protocol (lower case, as HTTP/2 and ASGI deliver them)."""

    AUTHORIZATION = "authorization"
    SIGNATURE = "x-inngest-signature"
    NO_RETRY = "x-inngest-no-retry"
    RETRY_AFTER = "retry-after"
    REQUEST_VERSION = "x-inngest-req-version"
    SDK = "x-inngest-sdk"
    SERVER_KIND = "x-inngest-server-kind"
    FRAMEWORK = "x-inngest-framework"
    SYNC_KIND = "x-inngest-sync-kind"


class QueryParam(enum.StrEnum):
    """Query parameters of the serve URL."""

    FUNCTION_ID = "fnId"
    STEP_ID = "stepId"
    SYNC_ID = "deployId"


class ServerKind(enum.StrEnum):
    """What the calling server says it is: the SDK refuses a sync from the other kind."""

    DEV = "dev"
    CLOUD = "cloud"


class Opcode(enum.StrEnum):
    """Operations a service reports in a 206 answer (and StepRun also through the checkpoint API)."""

    STEP_RUN = "StepRun"
    # The official SDKs' older name of StepRun, still sent by their first execution version.
    STEP = "Step"
    STEP_ERROR = "StepError"
    STEP_FAILED = "StepFailed"
    STEP_PLANNED = "StepPlanned"
    SLEEP = "Sleep"
    WAIT_FOR_EVENT = "WaitForEvent"
    INVOKE = "InvokeFunction"
    # Checkpointing: the function finished (``data`` is its output) after steps reported as it went, and
    # the service asks for a new call at once (after ``max_runtime``).
    RUN_COMPLETE = "RunComplete"
    DISCOVERY_REQUEST = "DiscoveryRequest"


# Operations that report a step which ran and returned: the only ones the checkpoint API records. Every
# other operation needs the gateway to act (retry, sleep, wait, invoke, plan) and comes in a 206 answer.
RAN_OPCODES: Final = frozenset({Opcode.STEP_RUN, Opcode.STEP})

# The step id whose hash names the RunComplete operation, as the official TypeScript SDK sends it.
RUN_COMPLETE_STEP_ID: Final = "complete"


def checkpoint_path(run_id: str) -> str:
    """The gateway's path that records steps of a run while its call is still running (async checkpoint)."""
    return f"/v1/checkpoint/{run_id}/async"


# A span of time as the SDK's callers give it: seconds, or a timedelta.
Duration: TypeAlias = float | datetime.timedelta


def duration_string(duration: Duration) -> str:
    """A duration as the protocol writes it: ``1h30m5s``, ``1s500ms``, ``500ms``, ``0s`` (hours at most).

    Seconds are rounded to the millisecond; a negative duration is a ValueError.
    """
    seconds = duration.total_seconds() if isinstance(duration, datetime.timedelta) else float(duration)
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, not {duration!r}")
    total_ms = round(seconds * 1000)
    if total_ms == 0:
        return "0s"
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    parts = zip((hours, minutes, secs, ms), ("h", "m", "s", "ms"), strict=True)
    return "".join(f"{amount}{unit}" for amount, unit in parts if amount)


def iso_utc(moment: datetime.datetime) -> str:
    """A moment as ISO 8601 UTC with milliseconds and ``Z``; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def match_expression(field: str) -> str:
    """The ``if`` expression of the ``match="data.x"`` shorthand: the field equal in both events."""
    if not field:
        raise ValueError("match names a field of both events, e.g. 'data.order_id'; it must not be empty")
    return f"event.{field} == async.{field}"


def hash_step_id(step_id: str) -> str:
    """The key of a step in the memo map: sha1 hex of its id (``id``, then ``id:1``, ``id:2`` for repeats)."""
    return hashlib.sha1(step_id.encode("utf-8"), usedforsecurity=False).hexdigest()


def full_function_id(app_id: str, function_id: str) -> str:
    """The id the server knows a function by: ``<app>-<function>``."""
    return f"{app_id}-{function_id}"


def data_memo(output: Any) -> dict[str, Any]:
    """The memo of a step that returned ``output``."""
    return {"data": output}


def error_memo(name: str, message: str, stack: str | None = None) -> dict[str, Any]:
    """The memo of a step whose retries are exhausted: the function sees it raised as a StepError."""
    return {"error": {"name": name, "message": message, "stack": stack}}


# What orjson leaves to the standard library's json (a TypeError), so that both refuse the same values:
# datetimes, dataclasses and subclasses of str, int, dict and list (json encodes the last four as their
# base type; orjson would too, but with its own rules for some). Integers beyond 64 bits and non-string
# keys fail in orjson alike.
_ORJSON_OPTIONS = (
    (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_SUBCLASS)
    if orjson is not None
    else 0
)


def _stdlib_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _orjson(value: Any) -> bytes | None:
    """``value`` encoded by orjson, or None where the standard library must decide: a type orjson leaves
    to it, or a ``null`` in the output, which may be a NaN or an infinity (orjson writes them as null, where
    json refuses them)."""
    if orjson is None:
        return None
    try:
        encoded = orjson.dumps(value, option=_ORJSON_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError
        return None
    return None if b"null" in encoded else encoded


def encode_json(value: Any) -> bytes:
    """JSON as Stepline writes it on the wire: compact UTF-8; NaN and infinities are refused (ValueError).

    orjson encodes it when it is installed (five to ten times faster on the SDK's answers), the standard
    library's json otherwise, and for what orjson would encode differently."""
    encoded = _orjson(value)
    return encoded if encoded is not None else _stdlib_json(value)


def as_json(value: Any) -> Any:
    """``value`` as it comes back from a trip through JSON (tuples become lists, keys strings...);
    ValueError or TypeError as ``encode_json`` raises them."""
    encoded = _orjson(value)
    if encoded is not None:
        return orjson.loads(encoded)
    return json.loads(_stdlib_json(value))


def hash_step(step_id: str, occurrence: int = 0) -> str:
    """The memo key of the ``occurrence``-th call (0-based, in call order) of a step id within one run."""
    return hash_step_id(step_id if occurrence == 0 else f"{step_id}:{occurrence}")


def error_data(name: str, message: str, stack: str | None = None) -> dict[str, Any]:
    """How an error travels: in an error memo, a StepError/StepFailed op, and a 500 answer's body."""
    return {"name": name, "message": message, "stack": stack}


def step_op(opcode: Opcode, step_hash: str, step_id: str, **fields: Any) -> dict[str, Any]:
    """One operation of a 206 answer; ``fields`` adds ``data`` (StepRun), ``error`` (StepError/Failed), or
    ``opts`` and another ``name`` (Sleep, WaitForEvent, InvokeFunction)."""
    return {"id": step_hash, "op": opcode.value, "name": step_id, "displayName": step_id, **fields}


def to_json_value(value: Any) -> Any:
    """``value`` as JSON types, the way pydantic serializes it: datetimes and UUIDs as strings, Decimals as
    strings, pydantic models and dataclasses as objects, sets as lists. ValueError if it has no JSON form."""
    try:
        return pydantic_core.to_jsonable_python(value)
    except pydantic_core.PydanticSerializationError as err:
        raise ValueError(str(err)) from None


# The type of an event's data: a JSON object, or the pydantic model its trigger declares.
DataT = TypeVar("DataT", default=dict[str, Any])


class Event(BaseModel, Generic[DataT]):
    """An event: sent to ``/e/<event key>`` and handed to the functions it triggers.

    ``data`` may be given as a pydantic model (or a dataclass): it is sent as the JSON object it dumps to.
    A function whose trigger declares a data model (``TriggerEvent("x", data=Model)``) sees it validated.
    """

    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    data: DataT = Field(default_factory=dict)  # type: ignore[assignment]
    id: str | None = None
    ts: int | None = Field(default=None, description="milliseconds since the Unix epoch")
    user: dict[str, Any] | None = None
    # The event's version, as the sender gives it (Inngest's ``v``, e.g. "2024-01-01.1").
    v: str | None = None

    @field_validator("data", mode="before")
    @classmethod
    def _null_data_is_empty(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict | list | str | int | float | bool):
            return value
        # A model given as data: sent as what it dumps to (validated again if the event is typed).
        return to_json_value(value)


class CallStack(BaseModel):
    model_config = ConfigDict(extra="ignore")

    stack: list[str] | None = None


class CallContext(BaseModel):
    """The ``ctx`` of a call; keys this SDK does not know are ignored."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    attempt: int = 0
    max_attempts: int | None = None
    disable_immediate_execution: bool = False
    stack: CallStack = Field(default_factory=CallStack)
    # The function's full id and the gateway's name for the work item of this call: what a checkpoint
    # names. A gateway that sends no qi_id does not take checkpoints.
    fn_id: str | None = None
    qi_id: str | None = None


class CallRequest(BaseModel):
    """The body of ``POST <serve url>?fnId=...&stepId=...``: the run's events and the memos of its steps."""

    model_config = ConfigDict(extra="ignore")

    event: Event
    events: list[Event] = Field(default_factory=list)
    steps: dict[str, Any] = Field(default_factory=dict)
    ctx: CallContext
    use_api: bool = False

    @field_validator("events", mode="before")
    @classmethod
    def _null_events_are_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("steps", mode="before")
    @classmethod
    def _null_steps_are_empty(cls, value: Any) -> Any:
        return {} if value is None else value
