"""The Function resource (``stepline.dev/v1alpha1``): the API model behind the CRD and manifest files.

The same pydantic classes validate a manifest loaded from a file by ``stepline dev -f``, a custom resource
reconciled by the operator, and generate the CRD schema. Later versions add fields, never rename them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stepline.protocol import DEFAULT_SERVE_PATH, full_function_id

API_GROUP = "stepline.dev"
API_VERSION = "v1alpha1"
KIND = "Function"

_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ServiceRef(_Model):
    """A Service in the Function's namespace; the port by number or by name."""

    name: Annotated[str, Field(pattern=_NAME, max_length=63)]
    port: int | str


class Endpoint(_Model):
    """Where the function's service listens: exactly one of ``serviceRef`` or ``url``.

    ``url`` is the complete serve URL and is used as it is; ``path`` applies to ``serviceRef`` only.
    """

    service_ref: ServiceRef | None = Field(default=None, alias="serviceRef")
    url: Annotated[str | None, Field(pattern=r"^https?://")] = None
    path: Annotated[str, Field(pattern=r"^/")] = DEFAULT_SERVE_PATH

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        if (self.service_ref is None) == (self.url is None):
            raise ValueError("exactly one of endpoint.serviceRef or endpoint.url must be set")
        return self


class Trigger(_Model):
    """What starts a run: exactly one of ``event`` (with an optional CEL ``if``) or ``cron``."""

    event: Annotated[str | None, Field(min_length=1, max_length=256)] = None
    if_: str | None = Field(default=None, alias="if")
    cron: str | None = None
    timezone: str | None = None

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

    event: Annotated[str, Field(min_length=1, max_length=256)]
    if_: str | None = Field(default=None, alias="if")
    match: str | None = None
    timeout: Annotated[str | None, Field(pattern=r"^([0-9]+(ms|s|m|h|d))+$")] = None

    @model_validator(mode="after")
    def _at_most_one(self) -> Self:
        if self.if_ is not None and self.match is not None:
            raise ValueError("give at most one of 'if' or 'match'")
        return self


class FunctionSpec(_Model):
    app: Annotated[str, Field(min_length=1, max_length=128)]
    function_id: Annotated[str | None, Field(alias="functionId", min_length=1, max_length=128)] = None
    endpoint: Endpoint
    triggers: Annotated[list[Trigger], Field(min_length=1, max_length=10)]
    retries: Annotated[int, Field(ge=0, le=20)] = 4
    paused: bool = False
    cancel_on: Annotated[list[CancelOn], Field(alias="cancelOn", max_length=5)] = []


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
