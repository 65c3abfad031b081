"""Helpers of the flow-control tests: functions with flow control, as a manifest would publish them."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from stepline.flow import FlowControl
from stepline_gateway.routing import Function

from tests.support import RunningGateway, eventually, route


def flow_route(function_id: str, url: str, event: str, **flow: Any) -> Function:
    """A function triggered by ``event`` with the flow-control settings given (as the CRD spells them)."""
    return dataclasses.replace(
        route(function_id, url, {"event": event}), flow=FlowControl.model_validate(flow)
    )


async def runs_of_function(gw: RunningGateway, function_id: str) -> list[dict[str, Any]]:
    page = await gw.http.get("/v1/runs", params={"function": function_id, "limit": "500"})
    runs: list[dict[str, Any]] = page.json()["data"]
    return runs


async def all_ended(
    gw: RunningGateway, function_id: str, count: int, timeout: float = 30
) -> list[dict[str, Any]]:
    """Wait until ``count`` runs of the function have ended; answer them."""

    async def ended() -> list[dict[str, Any]] | None:
        runs = await runs_of_function(gw, function_id)
        done = [run for run in runs if run["status"] in ("Completed", "Failed", "Cancelled")]
        return done if len(done) >= count else None

    result: list[dict[str, Any]] = await eventually(ended, timeout=timeout)
    return result


def holds(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    """``predicate`` as a check for ``eventually``."""

    async def check() -> bool:
        return predicate()

    return check
