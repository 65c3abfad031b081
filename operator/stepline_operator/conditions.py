"""The status a resource shows as ``metav1.Condition``s: a Function's ``Ready``, ``EndpointResolved`` and
``Routed``; a Webhook's ``Ready`` and ``SecretResolved``.

A condition keeps its ``lastTransitionTime`` while its status stays the same. ``Routed`` says whether a
route of this resource is in the routing table; when a newer generation cannot be routed, the older route
stays (bad input changes nothing) and ``Routed`` keeps the generation it was published for.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

READY = "Ready"
ENDPOINT_RESOLVED = "EndpointResolved"
ROUTED = "Routed"
ORDER = (READY, ENDPOINT_RESOLVED, ROUTED)
SECRET_RESOLVED = "SecretResolved"  # noqa: S105 - a condition's name
WEBHOOK_ORDER = (READY, SECRET_RESOLVED)


@dataclass(frozen=True)
class Verdict:
    """One condition as decided by a reconcile."""

    type: str
    status: bool
    reason: str
    message: str


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def find(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def merge(
    previous: Sequence[Mapping[str, Any]],
    verdicts: Sequence[Verdict],
    *,
    generation: int | None,
    order: Sequence[str] = ORDER,
) -> list[dict[str, Any]]:
    """``verdicts`` applied over ``previous``; a transition time is kept while its status is unchanged."""
    result = {c["type"]: dict(c) for c in previous if c.get("type") in order}
    for verdict in verdicts:
        status = "True" if verdict.status else "False"
        old = result.get(verdict.type)
        changed = old is None or old.get("status") != status
        result[verdict.type] = {
            "type": verdict.type,
            "status": status,
            "observedGeneration": generation,
            "lastTransitionTime": _now() if changed else old["lastTransitionTime"],  # type: ignore[index]
            "reason": verdict.reason,
            "message": verdict.message,
        }
        if generation is None:
            del result[verdict.type]["observedGeneration"]
    return [result[t] for t in order if t in result]


def is_true(conditions: Sequence[Mapping[str, Any]], type_: str) -> bool:
    condition = find(conditions, type_)
    return condition is not None and condition.get("status") == "True"
