"""SDK syncs (``POST /fn/register``): the payload the official Inngest SDKs send, validated as a whole.

Pydantic models of what inngest-py (``appname``, snake-case top level), the TypeScript SDK (``appName``,
camel case) and Stepline's SDK send. Every field the gateway uses is typed and checked before anything is
written: ids and names, the serve URL, triggers (exactly one of event or cron, the CEL ``expression``
compiled, the cron line scheduled once), retries, cancel rules, checkpoint settings. The flow-control
settings (concurrency, throttle, rate limit, debounce, batching, priority, idempotency, timeouts, singleton)
are read as the SDKs send them into the models of ``stepline.flow`` (keys compiled), and Stepline's own
``retryPolicy`` beside them. Fields the gateway does not know are ignored, as
the Inngest server does, so that newer SDKs still sync. ``read_sync`` answers the app and its functions, or
raises BadRequest naming every field at fault (``function shop-x (functions[0]): triggers[0].event: ...``).
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit, urlunsplit

import pydantic
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from stepline import flow
from stepline.durations import parse_duration
from stepline.protocol import DISCOVERY_STEP_ID, match_expression

from stepline_gateway import storable
from stepline_gateway.errors import BadRequest
from stepline_gateway.routing import ExpressionError, Function, compile_expression
from stepline_gateway.scheduler import CronError, parse_schedule

SDK_SOURCE = "sdk"
DEFAULT_RETRIES = 4
MAX_RETRIES = 20
MAX_TRIGGERS = 10
MAX_URL_LENGTH = 2048
MAX_EXPRESSION_LENGTH = 4096
# Errors named in one answer; a payload wrong everywhere gets the first few, which is enough to start.
_MAX_ERRORS = 5

# Stands in for the function whose cron triggers are checked before it exists.
_PROBE = Function(id="", app_id="", name="", url="", triggers=[], retries=0, paused=True, source="")


def _expression(source: str) -> str:
    try:
        compile_expression(source)
    except ExpressionError as err:
        raise ValueError(str(err)) from None
    return source


def _duration(text: str) -> str:
    parse_duration(text)
    return text


def _serve_url(url: str) -> str:
    """An absolute http(s) URL with a host; answered without its query (the gateway adds fnId and stepId)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as err:
        raise ValueError(f"{url!r} is not a URL: {err}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an absolute http:// or https:// URL")
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


Id = Annotated[str, Field(min_length=1, max_length=256)]
Name = Annotated[str, Field(max_length=256)]
Expression = Annotated[
    str, Field(min_length=1, max_length=MAX_EXPRESSION_LENGTH), AfterValidator(_expression)
]
Duration = Annotated[str, Field(max_length=64), AfterValidator(_duration)]
Count = Annotated[int, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, populate_by_name=True)


class Trigger(_Model):
    """``{"event", "expression"?}`` or ``{"cron", "jitter"?}``."""

    event: Id | None = None
    expression: Expression | None = None
    cron: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    jitter: Duration | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if (self.event is None) == (self.cron is None):
            raise ValueError("a trigger needs exactly one of 'event' or 'cron'")
        if self.expression is not None and self.event is None:
            raise ValueError("'expression' applies to event triggers only")
        if self.cron is not None:
            try:
                parse_schedule(_PROBE, {"cron": self.cron}).next_after(datetime.datetime.now(datetime.UTC))
            except CronError as err:
                raise ValueError(str(err)) from None
            except (ValueError, KeyError, OverflowError):
                raise ValueError(f"the cron line {self.cron!r} never fires") from None
        return self

    def route(self) -> dict[str, Any]:
        """The trigger as the routing table stores it."""
        if self.cron is not None:
            return {"cron": self.cron}
        return {"event": self.event, **({"if": self.expression} if self.expression else {})}


class Runtime(_Model):
    type: Literal["http", "ws"]
    url: Annotated[str, Field(max_length=MAX_URL_LENGTH), AfterValidator(_serve_url)]

    @model_validator(mode="after")
    def _http_only(self) -> Self:
        if self.type != "http":
            raise ValueError("runtime type 'ws' (Inngest Connect) is not served by Stepline: serve over HTTP")
        return self


class Retries(_Model):
    attempts: Annotated[int, Field(ge=0, le=MAX_RETRIES)] | None = None


class Step(_Model):
    id: str
    name: str
    runtime: Runtime
    retries: Retries | None = None


class Cancel(_Model):
    event: Id
    if_: Expression | None = Field(default=None, alias="if")
    match: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _match_compiles(self) -> Self:
        if self.if_ is None and self.match is not None:
            _expression(match_expression(self.match))
        return self

    def rule(self) -> dict[str, Any]:
        """The rule as the routing table stores it: ``{"event", "if"?, "timeout"?}``."""
        expression = self.if_ or (match_expression(self.match) if self.match else None)
        rule: dict[str, Any] = {"event": self.event}
        if expression:
            rule["if"] = expression
        if self.timeout:
            rule["timeout"] = self.timeout
        return rule


class Checkpoint(_Model):
    batch_steps: Count | None = None
    batch_interval: Duration | None = None
    max_runtime: Duration | None = None

    def settings(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _as_sent(value: Any) -> Any:
    """A flow-control setting as an SDK sends it, without the nulls the Python SDK writes for what is
    unset and without the fields Stepline does not know (ignored, as the Inngest server does)."""
    if isinstance(value, dict):
        return {k: _as_sent(v) for k, v in value.items() if v is not None and k in _KNOWN_FLOW_FIELDS}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    return value


_KNOWN_FLOW_FIELDS = frozenset(
    name
    for model in (
        flow.Concurrency,
        flow.Throttle,
        flow.RateLimit,
        flow.Debounce,
        flow.BatchEvents,
        flow.Priority,
        flow.Singleton,
        flow.Timeouts,
        flow.RetryPolicy,
    )
    for field_name, info in model.model_fields.items()
    for name in (field_name, info.alias)
    if name
)


def _concurrency_list(value: Any) -> Any:
    """The TypeScript SDK sends a number, an object or a list of them; the Python SDK a list. A limit of 0
    is Inngest's "no limit": the entry is left out."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"limit": value}
    entries = _as_sent([value] if isinstance(value, dict) else value)
    if not isinstance(entries, list):
        return entries
    return [e for e in entries if not (isinstance(e, dict) and _is_zero(e.get("limit")))]


def _is_zero(limit: Any) -> bool:
    return isinstance(limit, int) and not isinstance(limit, bool) and limit == 0


AsSent = BeforeValidator(_as_sent)


def _priority(value: Any) -> Any:
    """``priority: {}`` (the TypeScript SDK's ``run`` is optional) sets no priority."""
    value = _as_sent(value)
    return None if value == {} else value


class FunctionConfig(_Model):
    id: Id
    name: Name | None = None
    triggers: Annotated[list[Trigger], Field(max_length=MAX_TRIGGERS)] | None = None
    steps: dict[str, Step]
    cancel: list[Cancel] | None = None
    checkpoint: Checkpoint | None = None
    concurrency: Annotated[
        list[flow.Concurrency] | None, BeforeValidator(_concurrency_list), Field(max_length=2)
    ] = None
    throttle: Annotated[flow.Throttle | None, AsSent] = None
    rate_limit: Annotated[flow.RateLimit | None, AsSent] = Field(default=None, alias="rateLimit")
    debounce: Annotated[flow.Debounce | None, AsSent] = None
    batch_events: Annotated[flow.BatchEvents | None, AsSent] = Field(default=None, alias="batchEvents")
    priority: Annotated[flow.Priority | None, BeforeValidator(_priority)] = None
    idempotency: Annotated[str, Field(min_length=1, max_length=flow.MAX_EXPRESSION)] | None = None
    timeouts: Annotated[flow.Timeouts | None, AsSent] = None
    singleton: Annotated[flow.Singleton | None, AsSent] = None
    # Stepline's own (the Inngest SDKs send none): backoff and per-call timeout, as spec.retryPolicy.
    retry_policy: Annotated[flow.RetryPolicy | None, AsSent] = Field(default=None, alias="retryPolicy")

    @model_validator(mode="after")
    def _has_serve_step(self) -> Self:
        if "/" in self.id:
            raise ValueError(
                f"id: {self.id!r} holds a '/', which sets a namespace apart in Stepline: give an id without"
            )
        if DISCOVERY_STEP_ID not in self.steps:
            raise ValueError(
                f"steps.{DISCOVERY_STEP_ID} is missing: it gives the function's serve URL (runtime.url)"
            )
        return self

    @model_validator(mode="after")
    def _expressions_compile(self) -> Self:
        for path, source in self.flow_control().expressions():
            try:
                compile_expression(source)
            except ExpressionError as err:
                raise ValueError(f"{path}: {err}") from None
        return self

    def flow_control(self) -> flow.FlowControl:
        """The flow-control settings, as the CRD spells them."""
        fields = {name: getattr(self, name) for name in flow.FlowControl.model_fields}
        return flow.FlowControl.model_validate({**fields, "concurrency": self.concurrency or []})

    def function(self, app_id: str) -> Function:
        step = self.steps[DISCOVERY_STEP_ID]
        attempts = step.retries.attempts if step.retries is not None else None
        settings = self.flow_control()
        return Function(
            id=self.id,
            app_id=app_id,
            name=self.name or self.id,
            url=step.runtime.url,
            triggers=[trigger.route() for trigger in self.triggers or []],
            retries=DEFAULT_RETRIES if attempts is None else attempts,
            paused=False,
            source=SDK_SOURCE,
            cancel_on=[rule.rule() for rule in self.cancel or []],
            checkpoint=None if self.checkpoint is None else self.checkpoint.settings(),
            flow=None if settings.is_empty() else settings,
            retry_policy=self.retry_policy,
        )


class SyncPayload(_Model):
    appname: Id | None = None
    app_name: Id | None = Field(default=None, alias="appName")
    url: Annotated[str, Field(max_length=MAX_URL_LENGTH), AfterValidator(_serve_url)] | None = None
    functions: list[FunctionConfig] = []
    framework: str | None = None
    sdk: str | None = None
    v: str | None = None

    @model_validator(mode="after")
    def _one_app(self) -> Self:
        if not self.app_id:
            raise ValueError("the sync names no app: send 'appname' (or 'appName') as the Inngest SDKs do")
        seen: set[str] = set()
        for function in self.functions:
            if function.id in seen:
                raise ValueError(f"function {function.id!r} is listed twice: function ids must be unique")
            seen.add(function.id)
        return self

    @property
    def app_id(self) -> str:
        # The Python SDKs write "appname", the TypeScript SDK "appName".
        return self.appname or self.app_name or ""


def _describe(err: pydantic.ValidationError, payload: Any) -> str:
    """Each problem on a line of its own path, naming the function by its id when the path is inside one."""
    functions = payload.get("functions") if isinstance(payload, dict) else None
    parts = []
    for problem in err.errors()[:_MAX_ERRORS]:
        loc = list(problem["loc"])
        prefix = ""
        if len(loc) >= 2 and loc[0] == "functions" and isinstance(loc[1], int):
            raw = functions[loc[1]] if isinstance(functions, list) and loc[1] < len(functions) else None
            function_id = raw.get("id") if isinstance(raw, dict) else None
            named = f"function {function_id} " if isinstance(function_id, str) else "function "
            prefix = f"{named}(functions[{loc[1]}]): "
            loc = loc[2:]
        path = storable.format_path(tuple(loc)) if loc else ""
        message = problem["msg"].removeprefix("Value error, ")
        parts.append(f"{prefix}{path + ': ' if path else ''}{message}")
    more = len(err.errors()) - _MAX_ERRORS
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def read_sync(payload: Any) -> tuple[str, list[Function]]:
    """The app id and the functions of a sync payload; BadRequest naming each field at fault."""
    app_id, _, functions = read_sync_from(payload)
    return app_id, functions


def read_sync_from(payload: Any) -> tuple[str, str, list[Function]]:
    """The app id, its serve URL and its functions; BadRequest naming each field at fault."""
    found = storable.problem(payload)
    if found is not None:
        raise BadRequest(f"the sync is refused: it contains {found}: Postgres cannot store it")
    if not isinstance(payload, dict):
        raise BadRequest("the sync is refused: the body must be an object with 'appname' and 'functions'")
    try:
        # Strict all the way down: the flow-control models are lax by their own config (YAML manifests).
        sync = SyncPayload.model_validate(payload, strict=True)
    except pydantic.ValidationError as err:
        raise BadRequest(f"the sync is refused: {_describe(err, payload)}") from None
    functions = [function.function(sync.app_id) for function in sync.functions]
    url = sync.url or (functions[0].url if functions else "")
    return sync.app_id, url, functions
