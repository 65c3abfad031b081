"""What the CRD's schema and CEL rules cannot check: run before a Function (or a Webhook) is published.

The API server has already refused what the schema can tell (an event and a cron in one trigger...); this
module parses the spec with the same pydantic models (so an API server without the CRD's rules is covered
too), compiles every CEL expression once, and checks cron lines and time zones the way the gateway's
scheduler will read them. It answers the triggers, cancel rules, flow-control settings and retry policy as
the routing table stores them; a spec wrong only in its retry policy (or its flow control) says so in its
reason (``InvalidRetryPolicy``, ``InvalidFlowControl``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import cel
import pydantic
from croniter import croniter
from stepline.flow import FlowControl
from stepline.manifest import API_GROUP, API_VERSION, KIND, FunctionResource, describe_error, parse_function
from stepline.webhook import KIND as WEBHOOK_KIND
from stepline.webhook import WebhookResource, parse_webhook

from stepline_operator.errors import InvalidSpec


@dataclass(frozen=True)
class CheckedFunction:
    """A Function whose spec passed every check, with its routing-table columns."""

    resource: FunctionResource
    triggers: list[dict[str, Any]]
    cancel_on: list[dict[str, Any]]
    # As the routing table stores them: None when the spec declares none.
    flow: dict[str, Any] | None = None
    retry_policy: dict[str, Any] | None = None

    @property
    def summary(self) -> str:
        """The triggers in one line, as ``kubectl get fn`` shows them."""
        parts = []
        for trigger in self.triggers:
            if "event" in trigger:
                parts.append(trigger["event"] + (" (if)" if trigger.get("if") else ""))
            else:
                parts.append(
                    f"cron {trigger['cron']}" + (f" {trigger['timezone']}" if "timezone" in trigger else "")
                )
        return ", ".join(parts)


# The spec fields of flow control, as the CRD spells them.
_FLOW_FIELDS = frozenset(info.alias or name for name, info in FlowControl.model_fields.items())


def _reason_of(err: pydantic.ValidationError) -> str:
    """``InvalidRetryPolicy`` or ``InvalidFlowControl`` when every problem is in one of those settings."""
    fields = {problem["loc"][1] if len(problem["loc"]) > 1 else None for problem in err.errors()}
    if fields == {"retryPolicy"}:
        return "InvalidRetryPolicy"
    if fields and fields <= _FLOW_FIELDS:
        return "InvalidFlowControl"
    return InvalidSpec.reason


def _compile(expression: str, where: str) -> None:
    try:
        cel.compile(expression)
    except ValueError as err:
        first_line = str(err).splitlines()[0] if str(err) else "syntax error"
        raise InvalidSpec(
            f"{where}: {expression!r} is not valid CEL: {first_line}", reason="InvalidExpression"
        ) from None


def _check_cron(trigger: Mapping[str, Any], where: str) -> None:
    """Read a cron trigger as the gateway's scheduler does (a ``TZ=Zone`` prefix is allowed)."""
    expression = str(trigger["cron"]).strip()
    zone = trigger.get("timezone") or "UTC"
    if expression.startswith(("TZ=", "CRON_TZ=")):
        prefix, _, expression = expression.partition(" ")
        zone = prefix.split("=", 1)[1]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSpec(
            f"{where}: unknown time zone {zone!r}: use an IANA name such as Europe/Paris or UTC",
            reason="UnknownTimeZone",
        ) from None
    if not croniter.is_valid(expression.strip()):
        raise InvalidSpec(
            f"{where}.cron: {expression!r} is not a valid schedule: give minute hour day-of-month month "
            "day-of-week, e.g. '0 8 * * *'",
            reason="InvalidSchedule",
        )


def match_expression(match: str) -> str:
    """``match: data.id`` is ``event.data.id == async.data.id``, as the gateway reads it."""
    return f"event.{match} == async.{match}"


def check_function(body: Mapping[str, Any]) -> CheckedFunction:
    """Validate a Function resource's body; raise ``InvalidSpec`` naming the field and what to change."""
    meta = body.get("metadata") or {}
    document = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": KIND,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace") or "default"},
        "spec": body.get("spec"),
    }
    try:
        resource = parse_function(document)
    except pydantic.ValidationError as err:
        raise InvalidSpec(describe_error(err), reason=_reason_of(err)) from None
    triggers = []
    for index, trigger in enumerate(resource.spec.triggers):
        where = f"spec.triggers[{index}]"
        stored = trigger.model_dump(by_alias=True, exclude_none=True)
        if trigger.if_ is not None:
            _compile(trigger.if_, f"{where}.if")
        if trigger.cron is not None:
            _check_cron(stored, where)
        triggers.append(stored)
    cancel_on = []
    for index, rule in enumerate(resource.spec.cancel_on):
        where = f"spec.cancelOn[{index}]"
        stored = {"event": rule.event}
        expression = rule.if_ or (match_expression(rule.match) if rule.match else None)
        if expression:
            _compile(expression, f"{where}.{'if' if rule.if_ else 'match'}")
            stored["if"] = expression
        if rule.timeout:
            stored["timeout"] = rule.timeout
        cancel_on.append(stored)
    flow = resource.flow
    for path, expression in flow.expressions():
        _compile(expression, f"spec.{path}")
    policy = resource.spec.retry_policy
    return CheckedFunction(
        resource=resource,
        triggers=triggers,
        cancel_on=cancel_on,
        flow=None if flow.is_empty() else flow.to_json(),
        retry_policy=None if policy is None else policy.to_json(),
    )


def check_webhook(body: Mapping[str, Any]) -> WebhookResource:
    """Validate a Webhook's body and compile its transform; raise ``InvalidSpec`` saying what to fix."""
    meta = body.get("metadata") or {}
    document = {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": WEBHOOK_KIND,
        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace") or "default"},
        "spec": body.get("spec"),
    }
    try:
        resource = parse_webhook(document)
    except pydantic.ValidationError as err:
        raise InvalidSpec(describe_error(err)) from None
    if resource.spec.transform:
        try:
            _compile(resource.spec.transform, "spec.transform")
        except InvalidSpec as err:
            raise InvalidSpec(err.message, reason="InvalidTransform") from None
    return resource
