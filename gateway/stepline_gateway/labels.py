"""The labels that name a function in metrics, traces and log lines: its namespace and its id.

Every per-function series carries ``namespace`` and ``function`` (the function id, never a run or event id,
so that label sets stay bounded). A function's namespace is part of its id in the store
(``stepline_store.identity``): ``<namespace>/<app>-<function>``, or ``<app>-<function>`` in ``default``.
"""

from __future__ import annotations

from collections.abc import Callable

from stepline_store.identity import DEFAULT_NAMESPACE, namespace_of_function

from stepline_gateway.routing import RoutingTable

__all__ = ["DEFAULT_NAMESPACE", "FunctionLabels"]


class FunctionLabels:
    """The namespace of each function id, read from the id itself (so a function unpublished since, whose
    runs are still finishing, stays in the same series)."""

    def __init__(self, routes: Callable[[], RoutingTable]) -> None:
        self._routes = routes

    def namespace(self, function_id: str) -> str:
        return namespace_of_function(function_id)
