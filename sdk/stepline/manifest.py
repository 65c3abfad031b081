"""The Function resource (``stepline.dev/v1alpha1``): the API model behind the CRD and manifest files.

The same pydantic classes validate a manifest loaded from a file by ``stepline dev -f``, a custom resource
reconciled by the operator, and generate the CRD schema (``stepline.crd``). Rules a JSON schema cannot state
("exactly one of ...") are model validators here and CEL ``x-kubernetes-validations`` in the CRD, written
side by side so that they stay the same rule. Later versions add fields, never rename them.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepline.flow import FlowControl, RetryPolicy
from stepline.protocol import DEFAULT_SERVE_PATH, full_function_id

API_GROUP = "stepline.dev"
API_VERSION = "v1alpha1"
KIND = "Function"

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# What a schema can tell of a cron line: an optional TZ= prefix, then 5 or 6 fields, or an @-shorthand.
# (No backslashes, so that it reads the same inside a CEL string literal.)
CRON_SYNTAX = (
    r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|((CRON_)?TZ=[^ ]+ +)?[0-9A-Za-z*/,?#-]+( +[0-9A-Za-z*/,?#-]+){4,5})$"
)


def _rules(*rules: tuple[str, str]) -> dict[str, Any]:
    """CEL rules for the CRD (``self`` is the object; a key named like a CEL keyword is ``__if__``)."""
    return {"x-kubernetes-validations": [{"rule": rule, "message": message} for rule, message in rules]}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ServiceRef(_Model):
    """A Service in the Function's namespace; the port by number or by name."""

    name: Annotated[
        str, Field(pattern=_NAME, max_length=63, description="Name of the Service, in the same namespace.")
    ]
    port: int | str = Field(
        description="The Service's port: its number (spec.ports[].port) or its name (spec.ports[].name)."
    )


class Endpoint(_Model):
    """Where the function's service listens: exactly one of ``serviceRef`` or ``url``.

    ``url`` is the complete serve URL and is used as it is; ``path`` applies to ``serviceRef`` only.
    """

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "has(self.serviceRef) != has(self.url)",
                "exactly one of endpoint.serviceRef or endpoint.url must be set",
            )
        )
    )

    service_ref: ServiceRef | None = Field(
        default=None,
        alias="serviceRef",
        description="The Service that serves the app; resolved to "
        "http://<service>.<namespace>.svc.<cluster-domain>:<port><path>.",
    )
    url: Annotated[
        str | None,
        Field(
            pattern=r"^https?://", description="The complete serve URL, used as it is (outside a cluster)."
        ),
    ] = None
    path: Annotated[
        str, Field(pattern=r"^/", description="Path of the serve endpoint on the Service (serviceRef only).")
    ] = DEFAULT_SERVE_PATH

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.service_ref is None) == (self.url is None):
            raise ValueError("exactly one of endpoint.serviceRef or endpoint.url must be set")
        return self


class Trigger(_Model):
    """What starts a run: exactly one of ``event`` (with an optional CEL ``if``) or ``cron``."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("has(self.event) != has(self.cron)", "each trigger needs exactly one of event or cron"),
            ("!has(self.__if__) || has(self.event)", "'if' applies to event triggers only"),
            ("!has(self.timezone) || has(self.cron)", "'timezone' applies to cron triggers only"),
            (
                f"!has(self.cron) || self.cron.matches('{CRON_SYNTAX}')",
                "cron needs five fields (minute hour day-of-month month day-of-week), e.g. '0 8 * * *', "
                "or @hourly, @daily, @weekly, @monthly, @yearly",
            ),
        )
    )

    event: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=256,
            description="Event name that starts a run, e.g. order/created; 'app/*' matches a prefix.",
        ),
    ] = None
    if_: str | None = Field(
        default=None,
        alias="if",
        description="CEL expression over 'event'; the run starts only when it is true.",
    )
    cron: Annotated[
        str | None,
        Field(max_length=256, description="Cron schedule (minute hour day-of-month month day-of-week)."),
    ] = None
    timezone: str | None = Field(
        default=None, description="IANA time zone of the cron schedule, e.g. Europe/Paris; default UTC."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.event is None) == (self.cron is None):
            raise ValueError("each trigger needs exactly one of event or cron")
        if self.if_ is not None and self.event is None:
            raise ValueError("'if' applies to event triggers only")
        if self.timezone is not None and self.cron is None:
            raise ValueError("'timezone' applies to cron triggers only")
        return self


class CancelOn(_Model):
    """An event that cancels a running run between steps: same ``match`` field, or a CEL ``if``."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            ("!(has(self.__if__) && has(self.match))", "give at most one of 'if' or 'match'")
        )
    )

    event: Annotated[
        str, Field(min_length=1, max_length=256, description="Name of the event that cancels the run.")
    ]
    if_: str | None = Field(
        default=None,
        alias="if",
        description="CEL over 'event' (the run's) and 'async' (the cancelling event).",
    )
    match: str | None = Field(
        default=None,
        description="A field both events share, e.g. data.order_id: cancel when they are equal.",
    )
    timeout: Annotated[
        str | None,
        Field(
            pattern=r"^([0-9]+(ms|s|m|h|d))+$",
            description="How long after the run starts the rule applies, e.g. 30m or 1h30m.",
        ),
    ] = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Self:
        if self.if_ is not None and self.match is not None:
            raise ValueError("give at most one of 'if' or 'match'")
        return self


class FunctionSpec(FlowControl):
    """The desired state of a Function: which app serves it, where, what starts its runs, how they are
    retried and (``FlowControl``'s fields) how their flow is controlled."""

    app: Annotated[
        str, Field(min_length=1, max_length=128, description="The SDK client's app id, e.g. shop.")
    ]
    function_id: Annotated[
        str | None,
        Field(
            alias="functionId",
            min_length=1,
            max_length=128,
            description="The function's id in the app; defaults to metadata.name.",
        ),
    ] = None
    endpoint: Endpoint = Field(description="Where the app's serve endpoint is.")
    triggers: Annotated[
        list[Trigger], Field(min_length=1, max_length=10, description="What starts a run (1 to 10).")
    ]
    retries: Annotated[
        int, Field(ge=0, le=20, description="Retries of a failing step (0 to 20): retries + 1 attempts.")
    ] = 4
    retry_policy: RetryPolicy | None = Field(
        default=None,
        alias="retryPolicy",
        description="When failed attempts are tried again, and how long one call may take.",
    )
    paused: bool = Field(default=False, description="True stops new runs; runs already started finish.")
    cancel_on: Annotated[
        list[CancelOn],
        Field(alias="cancelOn", max_length=5, description="Events that cancel a running run."),
    ] = []


class ObjectMeta(_Model):
    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    name: Annotated[str, Field(pattern=_NAME, max_length=253)]
    namespace: Annotated[str, Field(pattern=_NAME, max_length=63)] = "default"


class FunctionResource(_Model):
    """A whole ``Function`` document as written in a manifest file."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    api_version: Literal["stepline.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Function"]
    metadata: ObjectMeta
    spec: FunctionSpec

    @property
    def function_id(self) -> str:
        return self.spec.function_id or self.metadata.name

    @property
    def full_id(self) -> str:
        return full_function_id(self.spec.app, self.function_id)

    @property
    def flow(self) -> FlowControl:
        """The spec's flow-control settings alone."""
        return FlowControl.model_validate(self.spec.model_dump(include=set(FlowControl.model_fields)))


class Condition(_Model):
    """One aspect of the observed state, in the shape of Kubernetes' ``metav1.Condition``."""

    type: Annotated[
        str,
        Field(
            max_length=316,
            pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
            description="Ready, EndpointResolved or Routed.",
        ),
    ]
    status: Literal["True", "False", "Unknown"]
    observed_generation: Annotated[
        int | None,
        Field(
            alias="observedGeneration",
            ge=0,
            description="The metadata.generation this condition was set for.",
        ),
    ] = None
    last_transition_time: datetime.datetime = Field(
        alias="lastTransitionTime", description="When the status last changed."
    )
    reason: Annotated[
        str,
        Field(
            min_length=1,
            max_length=1024,
            pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
            description="Why, in CamelCase.",
        ),
    ]
    message: Annotated[str, Field(max_length=32768, description="What to know or do, in words.")]


class FunctionStats(_Model):
    """Live counts of a Function's runs, written by the operator on a slow timer from Postgres."""

    running: Annotated[int, Field(ge=0, description="Runs started and not ended (sleeping ones too).")] = 0
    queued: Annotated[int, Field(ge=0, description="Runs created whose first call has not been made.")] = 0
    completed_last_hour: Annotated[
        int,
        Field(alias="completedLastHour", ge=0, description="Runs created in the last hour that completed."),
    ] = 0
    failed_last_hour: Annotated[
        int, Field(alias="failedLastHour", ge=0, description="Runs created in the last hour that failed.")
    ] = 0
    completed_last_day: Annotated[
        int, Field(alias="completedLastDay", ge=0, description="Runs created in the last day that completed.")
    ] = 0
    failed_last_day: Annotated[
        int, Field(alias="failedLastDay", ge=0, description="Runs created in the last day that failed.")
    ] = 0
    last_run_time: datetime.datetime | None = Field(
        default=None, alias="lastRunTime", description="When the newest run was created."
    )


class FunctionStatus(_Model):
    """The observed state of a Function, written by the operator."""

    observed_generation: Annotated[
        int | None,
        Field(alias="observedGeneration", ge=0, description="The metadata.generation last reconciled."),
    ] = None
    endpoint_url: str | None = Field(
        default=None, alias="endpointURL", description="The serve URL the gateway calls."
    )
    triggers: str | None = Field(default=None, description="The triggers in one line, for kubectl get.")
    stats: FunctionStats | None = Field(
        default=None,
        description="Live counts of the Function's runs (running, queued, completed and failed in the last "
        "hour and day), refreshed every 30 s by default.",
    )
    conditions: Annotated[
        list[Condition],
        Field(
            description="Ready, EndpointResolved and Routed.",
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
        ),
    ] = []


def parse_function(document: Any) -> FunctionResource:
    """Validate one manifest document; raises pydantic.ValidationError naming the field at fault."""
    return FunctionResource.model_validate(document)


def describe_error(err: pydantic.ValidationError) -> str:
    """One line per problem, each naming the field by its manifest path (``spec.triggers[0].event``)."""
    lines = []
    for problem in err.errors():
        path = ""
        for part in problem["loc"]:
            path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{path or '(document)'}: {message}")
    return "; ".join(lines)
