"""The labels that name a function in metrics, traces and log lines: its namespace and its id.

Every per-function series carries ``namespace`` and ``function`` (the function id, never a run or event id,
so that label sets stay bounded). A function's namespace is that of the ``Function`` resource that published
it (its source ``kubernetes:<namespace>/<name>``), else ``default``: ``namespace_of`` is the one place that
says so.
"""

from __future__ import annotations

from collections.abc import Callable

from stepline_gateway.routing import RoutingTable

DEFAULT_NAMESPACE = "default"
_KUBERNETES = "kubernetes:"


def namespace_of(source: str | None) -> str:
    """The namespace of a function published from ``source``: a Function resource's, else ``default``."""
    if source and source.startswith(_KUBERNETES):
        namespace, _, _ = source.removeprefix(_KUBERNETES).partition("/")
        return namespace or DEFAULT_NAMESPACE
    return DEFAULT_NAMESPACE


class FunctionLabels:
    """The namespace of each function id, from the routing table; a function unpublished since keeps the
    namespace it was last seen with, so that its runs still finishing stay in the same series."""

    def __init__(self, routes: Callable[[], RoutingTable]) -> None:
        self._routes = routes
        self._seen: dict[str, str] = {}

    def namespace(self, function_id: str) -> str:
        function = self._routes().functions.get(function_id)
        if function is not None:
            namespace = namespace_of(function.source)
            self._seen[function_id] = namespace
            return namespace
        return self._seen.get(function_id, DEFAULT_NAMESPACE)
