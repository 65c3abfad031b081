"""The routing table: which functions an event starts, held in memory by every gateway replica.

Built from the ``functions`` table, rebuilt on ``NOTIFY stepline_routes`` and on a slow timer. Lookup is a
dict access for exact names plus a short list of wildcard prefixes (``app/*``), so its cost does not grow
with the number of functions routed. ``if`` expressions are CEL, compiled once per route.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cel
from stepline.durations import parse_duration
from stepline.flow import FlowControl, RetryPolicy
from stepline_store.identity import split_function_id

log = logging.getLogger(__name__)


# Which namespaces an event reaches: one, several (a key published in more than one), or every one (None).
Scope = str | frozenset[str] | None


def in_scope(namespace: str, scope: Scope) -> bool:
    if scope is None:
        return True
    return namespace == scope if isinstance(scope, str) else namespace in scope


class ExpressionError(ValueError):
    """An ``if`` expression does not compile."""


def compile_expression(source: str) -> Any:
    try:
        return cel.compile(source)
    except ValueError as err:
        first_line = str(err).splitlines()[0]
        raise ExpressionError(f"the expression {source!r} is not valid CEL: {first_line}") from None


@dataclass(frozen=True)
class Function:
    """A routed function, as stored in the ``functions`` table."""

    id: str
    app_id: str
    name: str
    url: str
    triggers: list[dict[str, Any]]
    retries: int
    paused: bool
    source: str
    cancel_on: list[dict[str, Any]] = field(default_factory=list)
    # Checkpoint settings from the SDK's sync ({"batch_steps", "batch_interval", "max_runtime"}), kept to be
    # shown: checkpointing is the SDK's to do; the gateway records whatever arrives.
    checkpoint: dict[str, Any] | None = None
    # Flow control (docs/flow-control.md): None when the function declares none, so that paths that do not
    # use it test one attribute and nothing else.
    flow: FlowControl | None = None
    # When failed attempts are retried and how long one call may take; None: the gateway's defaults.
    retry_policy: RetryPolicy | None = None
    created_at: datetime.datetime | None = field(default=None, compare=False)

    @property
    def max_attempts(self) -> int:
        return self.retries + 1

    @property
    def namespace(self) -> str:
        """The namespace the function belongs to (stepline_store/identity.py)."""
        return split_function_id(self.id)[0]

    @property
    def wire_id(self) -> str:
        """The id the service knows the function by (``fnId``): ``<app>-<function>``."""
        return split_function_id(self.id)[1]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "fn_id": self.wire_id,
            "app_id": self.app_id,
            "name": self.name,
            "url": self.url,
            "triggers": self.triggers,
            "retries": self.retries,
            "paused": self.paused,
            "source": self.source,
            "cancel_on": self.cancel_on,
            "checkpoint": self.checkpoint,
            "flow": None if self.flow is None else self.flow.to_json(),
            "retry_policy": None if self.retry_policy is None else self.retry_policy.to_json(),
        }


def wait_expression(expression: str | None) -> Any:
    """Compile the CEL of a wait or a cancel rule (over ``event`` and ``async``); None matches any event."""
    return compile_expression(expression) if expression else None


def evaluate(condition: Any, variables: Mapping[str, Any]) -> bool:
    """Run a compiled condition; one that fails on this input (a missing field...) does not match."""
    if condition is None:
        return True
    try:
        return bool(condition.execute(dict(variables)))
    except (ValueError, TypeError, RuntimeError, KeyError) as err:
        log.debug("a condition failed: %s", err)
        return False


@dataclass(frozen=True)
class CancelRule:
    """``cancelOn``: an event that cancels the function's unfinished runs (within ``timeout``, if set)."""

    function: Function
    event: str
    condition: Any = field(default=None, compare=False)
    timeout: datetime.timedelta | None = None


@dataclass(frozen=True)
class Route:
    function: Function
    condition: Any = field(default=None, compare=False)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return evaluate(self.condition, {"event": event})


class RoutingTable:
    def __init__(self, functions: Iterable[Function] = ()) -> None:
        self.functions: dict[str, Function] = {}
        self._exact: dict[str, list[Route]] = {}
        self._prefixes: list[tuple[str, Route]] = []
        self.cancel_rules: dict[str, list[CancelRule]] = {}
        for function in functions:
            self._add(function)

    def _add(self, function: Function) -> None:
        try:
            rules, exact, prefixes = self._compile(function)
        except Exception:
            # Rows are checked when they are loaded (registry.py); whatever still slips through leaves out
            # this one function, never the table: nothing stored may stop a gateway from routing.
            log.exception("function %s is not routed: its routes cannot be built", function.id)
            return
        self.functions[function.id] = function
        for rule in rules:
            self.cancel_rules.setdefault(rule.event, []).append(rule)
        for name, route in exact:
            self._exact.setdefault(name, []).append(route)
        self._prefixes += prefixes

    @staticmethod
    def _compile(
        function: Function,
    ) -> tuple[list[CancelRule], list[tuple[str, Route]], list[tuple[str, Route]]]:
        rules: list[CancelRule] = []
        for rule in function.cancel_on:
            try:
                timeout = parse_duration(rule["timeout"]) if rule.get("timeout") else None
                condition = wait_expression(rule.get("if"))
            except (ValueError, ExpressionError) as err:
                log.error("function %s: cancel rule on %s ignored: %s", function.id, rule.get("event"), err)
                continue
            rules.append(CancelRule(function, rule["event"], condition, timeout))
        exact: list[tuple[str, Route]] = []
        prefixes: list[tuple[str, Route]] = []
        for trigger in function.triggers:
            name = trigger.get("event")
            if not name:
                continue
            expression = trigger.get("if")
            try:
                condition = compile_expression(expression) if expression else None
            except ExpressionError as err:
                log.error("function %s is not routed for %s: %s", function.id, name, err)
                continue
            route = Route(function, condition)
            if name.endswith("*"):
                prefixes.append((name[:-1], route))
            else:
                exact.append((name, route))
        return rules, exact, prefixes

    def match(self, event: Mapping[str, Any], namespace: Scope = None) -> list[Function]:
        """The unpaused functions this event starts, each once; only those of ``namespace`` when given
        (an event emitted for a run, or sent with a namespace's key), else those of every namespace."""
        name = event["name"]
        candidates = list(self._exact.get(name, ()))
        candidates += [route for prefix, route in self._prefixes if name.startswith(prefix)]
        started: dict[str, Function] = {}
        for route in candidates:
            function = route.function
            if function.paused or function.id in started:
                continue
            if not in_scope(function.namespace, namespace):
                continue
            if route.matches(event):
                started[function.id] = function
        return list(started.values())

    def __len__(self) -> int:
        return len(self.functions)
