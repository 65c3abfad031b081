"""The gateway service: wires store, routing, ingest, executor and dispatcher, and owns their lifetime.

``Gateway.start`` connects, verifies (or in dev, applies) the schema, loads the routing table, listens for
NOTIFY and starts the dispatcher; ``Gateway.stop`` drains it. ``api.create_app`` serves it over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from pathlib import Path

from stepline.protocol import ServerKind
from stepline_store import schema
from stepline_store.pool import Connection, Store, connect, create_pool

from stepline_gateway.answers import AnswerLimits
from stepline_gateway.backoff import Backoff
from stepline_gateway.calls import Caller
from stepline_gateway.clock import Clock, SystemClock
from stepline_gateway.dispatcher import Dispatcher
from stepline_gateway.executor import Executor
from stepline_gateway.ingest import Ingestor
from stepline_gateway.metrics import Metrics
from stepline_gateway.registry import MANIFEST_SOURCE, Registry, load_manifests
from stepline_gateway.routing import RoutingTable
from stepline_gateway.scheduler import Scheduler
from stepline_gateway.settings import Settings

log = logging.getLogger(__name__)

_PRUNE_BATCH = 1000
_PRUNE_EVERY_S = 600.0


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        migrate: bool = False,
        manifests: list[Path] | None = None,
    ) -> None:
        self.settings = settings
        self._manifests = manifests or []
        self.clock = clock or SystemClock()
        self.metrics = Metrics()
        self.routes = RoutingTable()
        self.routes_loaded = False
        self._migrate = migrate
        self._store: Store | None = None
        self._listener: Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.answer_limits = AnswerLimits(
            max_output_bytes=settings.max_step_output_bytes,
            max_state_bytes=settings.max_run_state_bytes,
            max_answer_bytes=settings.max_answer_bytes,
        )
        self.caller = Caller(
            self.clock,
            signing_key=None if settings.dev else settings.signing_key,
            timeout_s=settings.call_timeout_s,
            server_kind=ServerKind.DEV if settings.dev else ServerKind.CLOUD,
            max_answer_bytes=settings.max_answer_bytes,
            retry_after_max_s=settings.retry_after_max_s,
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("the gateway is not started")
        return self._store

    async def start(self) -> None:
        settings = self.settings
        conn = await connect(settings.database_url)
        try:
            if self._migrate:
                await schema.migrate(conn)
            else:
                await schema.verify(conn)
        finally:
            await conn.close()
        self._store = Store(await create_pool(settings.database_url, max_size=settings.pool_size))
        self.registry = Registry(self.store)
        self.ingestor = Ingestor(self.store, lambda: self.routes, self.clock)
        self.dispatcher = Dispatcher(
            store=self.store,
            executor=Executor(
                store=self.store,
                caller=self.caller,
                ingestor=self.ingestor,
                clock=self.clock,
                backoff=Backoff(settings.retry_base_s, settings.retry_max_s),
                metrics=self.metrics,
                lease_s=settings.lease_s,
                wake=lambda: self.dispatcher.wake(),
                routes=lambda: self.routes,
                limits=self.answer_limits,
                max_lost_leases=settings.max_lost_leases,
            ),
            clock=self.clock,
            metrics=self.metrics,
            concurrency=settings.concurrency,
            lease_s=settings.lease_s,
            endpoint_share=settings.endpoint_share,
        )
        self.scheduler = Scheduler(
            ingestor=self.ingestor,
            routes=lambda: self.routes,
            clock=self.clock,
            catch_up_within=datetime.timedelta(hours=settings.retention_h),
        )
        if self._manifests:
            await self.load_manifests()
        await self.reload_routes()
        self._listener = await connect(settings.database_url)
        await self._listener.add_listener("stepline_work", lambda *_: self.dispatcher.wake())
        await self._listener.add_listener("stepline_routes", lambda *_: self._schedule_reload())
        self._tasks = [
            asyncio.create_task(self.dispatcher.run(), name="dispatcher"),
            asyncio.create_task(self._refresh_routes_periodically(), name="routes-refresh"),
            asyncio.create_task(self._prune_periodically(), name="prune"),
            asyncio.create_task(self.scheduler.run(), name="cron"),
        ]

    async def load_manifests(self) -> None:
        """Publish the Function manifests given at start (replacing those published from manifests before)."""
        functions = load_manifests(self._manifests)
        await self.registry.publish(functions, replace_source=MANIFEST_SOURCE)
        log.info("loaded %d function(s) from manifests", len(functions))

    def _schedule_reload(self) -> None:
        task = asyncio.create_task(self.reload_routes())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def reload_routes(self) -> None:
        functions = await self.registry.load()
        self.routes = RoutingTable(functions)
        self.routes_loaded = True
        self.scheduler.routes_changed()
        self.metrics.routes.set(len(self.routes))

    async def _refresh_routes_periodically(self) -> None:
        while True:
            await asyncio.sleep(self.settings.routes_refresh_s)
            try:
                await self.reload_routes()
            except (OSError, ConnectionError) as err:
                log.error("cannot reload the routing table: %s", err)

    async def prune(self) -> int:
        """Delete history older than the retention period, in batches; answer how many events went."""
        cutoff = self.clock.now() - datetime.timedelta(hours=self.settings.retention_h)
        total = 0
        while True:
            status = await self.store.execute("prune_history", cutoff, _PRUNE_BATCH)
            deleted = int(status.split()[-1])
            total += deleted
            if deleted < _PRUNE_BATCH:
                return total

    async def _prune_periodically(self) -> None:
        while True:
            await asyncio.sleep(_PRUNE_EVERY_S)
            try:
                pruned = await self.prune()
            except (OSError, ConnectionError) as err:
                log.error("cannot prune old history: %s", err)
            else:
                if pruned:
                    log.info(
                        "pruned %d event(s) older than %s h with their runs",
                        pruned,
                        self.settings.retention_h,
                    )

    async def stop(self) -> None:
        if self._store is None:
            return
        await self.dispatcher.stop(self.settings.shutdown_grace_s)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._listener is not None:
            await self._listener.close()
        await self.caller.close()
        await self.store.close()
        self._store = None
