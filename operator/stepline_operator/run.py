"""Running the operator: open the routing tables, then run kopf with our registry and settings.

``run`` serves ``stepline operator`` and the tests alike (a ``stop_flag`` ends it). kopf keeps its
progress and last-handled state in annotations under ``stepline.dev/`` and uses our finalizer name; it runs
standalone (one replica: the chart's Deployment uses ``Recreate``), namespaced or cluster-wide.
"""

from __future__ import annotations

import asyncio

import kopf

from stepline_operator.handlers import build_registry
from stepline_operator.routes import RouteTable, check_schema
from stepline_operator.secrets import SecretReader
from stepline_operator.settings import ANNOTATIONS_PREFIX, FINALIZER, OperatorSettings

# How long a deletion waits at a time for a timer tick in progress to end (seconds).
EXIT_WAIT_S = 1.0


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    config = kopf.OperatorSettings()
    config.persistence.finalizer = FINALIZER
    config.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATIONS_PREFIX)
    config.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATIONS_PREFIX, key="last-handled-configuration"
    )
    config.peering.standalone = True
    # A deletion first stops the object's timers. One caught in a tick (a slow Secret read or database
    # write) is waited for up to EXIT_WAIT_S, then checked every EXIT_WAIT_S, not kopf's default of every
    # 60 s, which held a deleted Webhook or Function (and its finalizer) for a minute.
    config.background.instant_exit_timeout = EXIT_WAIT_S
    config.background.cancellation_polling = EXIT_WAIT_S
    # Namespaced mode needs only a Role: no cluster-wide watch of namespaces or CRDs.
    config.scanning.disabled = not settings.clusterwide
    return config


async def run(
    settings: OperatorSettings,
    *,
    stop_flag: asyncio.Event | None = None,
    ready_flag: asyncio.Event | None = None,
) -> None:
    """Run until ``stop_flag`` is set (or the process is signalled); the database is checked first."""
    await check_schema(settings.database_url)
    routes = await RouteTable.open(settings.database_url, size=settings.pool_size)
    secrets = SecretReader()
    try:
        await kopf.operator(
            registry=build_registry(settings, routes, secrets),
            settings=kopf_settings(settings),
            standalone=True,
            clusterwide=settings.clusterwide,
            namespaces=list(settings.namespaces),
            liveness_endpoint=settings.liveness_endpoint,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
    finally:
        secrets.close()
        await routes.close()
