"""The gateway service: wires store, routing, ingest, executor and dispatcher, and owns their lifetime.

``Gateway.start`` connects, verifies (or in dev, applies) the schema, listens for NOTIFY, loads the routing
table and starts the background tasks under supervision (supervision.py): the listener, the dispatcher and
its heartbeat, route refresh, cron, the days of history (history_days.py) and pruning, each of which comes
back by itself after a database error.
``readiness`` says what keeps the replica from serving; ``Gateway.stop`` drains it. ``api.create_app``
serves it over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable
from pathlib import Path

import asyncpg
from stepline.protocol import ServerKind
from stepline_store import queries, schema
from stepline_store.pool import Store, connect, create_pool

from stepline_gateway.access import ApiTokens
from stepline_gateway.answers import AnswerLimits
from stepline_gateway.backoff import Backoff
from stepline_gateway.calls import Caller
from stepline_gateway.clock import Clock, SystemClock
from stepline_gateway.dispatcher import Dispatcher
from stepline_gateway.event_keys import EventKeys
from stepline_gateway.executor import Executor
from stepline_gateway.history_days import HistoryDays
from stepline_gateway.ingest import Ingestor
from stepline_gateway.labels import FunctionLabels
from stepline_gateway.metrics import Metrics
from stepline_gateway.notifications import Listener
from stepline_gateway.queue import QueueGauges, QueueSnapshot
from stepline_gateway.reachability import Reachability
from stepline_gateway.registry import MANIFEST_SOURCE, Registry, load_manifests
from stepline_gateway.routing import RoutingTable
from stepline_gateway.run_ends import RunEndCombiner
from stepline_gateway.scheduler import Scheduler
from stepline_gateway.settings import Settings
from stepline_gateway.signing_keys import KeyPair, SigningKeys
from stepline_gateway.step_combiner import StepCombiner
from stepline_gateway.supervision import Health, Supervisor, describe
from stepline_gateway.tracing import Tracing
from stepline_gateway.tracing import from_env as tracing_from_env
from stepline_gateway.webhook_manifests import load_webhook_manifests
from stepline_gateway.webhooks import Webhooks

log = logging.getLogger(__name__)

_PRUNE_EVERY_S = 600.0
# The readiness probe waits this long for the database (and for the listener's connection) to answer.
_PING_TIMEOUT_S = 2.0
_APPLICATION_NAME = "stepline-gateway"


class Gateway:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        migrate: bool = False,
        manifests: list[Path] | None = None,
        on_unrecoverable: Callable[[str], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.settings = settings
        self._manifests = manifests or []
        self.clock = clock or SystemClock(datetime.timedelta(seconds=settings.clock_offset_s))
        self.labels = FunctionLabels(lambda: self.routes)
        self.metrics = Metrics(self.labels, enabled=not settings.no_metrics)
        # Traces only when the OTEL_* variables ask for them (tracing.py).
        self.tracing = tracing if tracing is not None else tracing_from_env()
        self.routes = RoutingTable()
        self.event_keys = EventKeys(settings.event_keys)
        self.api_tokens = ApiTokens()
        self.signing_keys = SigningKeys(
            None
            if settings.signing_key is None
            else KeyPair(settings.signing_key, settings.signing_key_fallback),
            sealer=settings.sealer(),
            enabled=not settings.dev,
        )
        self.routes_loaded = False
        self._migrate = migrate
        self._store: Store | None = None
        self._read_store: Store | None = None
        self._ingest_store: Store | None = None
        self._listener: Listener | None = None
        self._routes_changed = asyncio.Event()
        # One reload at a time: two that overlap could finish out of order and install the older read.
        self._reloading = asyncio.Lock()
        # Why the gateway gave up (a task that kept failing with errors that waiting does not cure).
        self.unrecoverable: str | None = None
        self._on_unrecoverable = on_unrecoverable
        self.supervisor = Supervisor(
            exit_after_s=settings.unrecoverable_exit_s, on_unrecoverable=self._give_up
        )
        self.answer_limits = AnswerLimits(
            max_output_bytes=settings.max_step_output_bytes,
            max_state_bytes=settings.max_run_state_bytes,
            max_answer_bytes=settings.max_answer_bytes,
        )
        self.caller = Caller(
            self.clock,
            keys=self.signing_keys,
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

    @property
    def ingest_store(self) -> Store:
        """Where events are taken in: a pool of its own, so that ingest and execution never starve each
        other of connections (``ingest_pool_size``)."""
        if self._ingest_store is None:
            raise RuntimeError("the gateway is not started")
        return self._ingest_store

    @property
    def read_store(self) -> Store:
        """Where the dashboard and the /v1 list and detail routes read: the replica when one is given."""
        return self._read_store or self.store

    async def start(self) -> None:
        settings = self.settings
        conn = await connect(settings.session_url, application_name=_APPLICATION_NAME)
        try:
            if self._migrate:
                await schema.migrate(conn)
            else:
                await schema.verify(conn)
        finally:
            await conn.close()
        self._store = Store(
            await create_pool(
                settings.database_url,
                max_size=settings.execution_connections,
                application_name=_APPLICATION_NAME,
            )
        )
        self._ingest_store = Store(
            await create_pool(
                settings.database_url,
                min_size=1,
                max_size=settings.ingest_connections,
                application_name=f"{_APPLICATION_NAME} ingest",
            )
        )
        if settings.read_database_url:
            self._read_store = Store(
                await create_pool(
                    settings.read_database_url,
                    min_size=1,
                    max_size=settings.pool_size,
                    application_name=f"{_APPLICATION_NAME} reads",
                )
            )
        self.metrics.watch_pool("primary", self.store)
        self.metrics.watch_pool("ingest", self.ingest_store)
        if self._read_store is not None:
            self.metrics.watch_pool("replica", self._read_store)
        combining = not settings.no_group_commit
        wait_s = settings.group_commit_wait_ms / 1000
        in_flight = settings.group_commit_in_flight
        self.step_combiner = StepCombiner(self.store, enabled=combining, wait_s=wait_s, in_flight=in_flight)
        self.run_ends = RunEndCombiner(self.store, enabled=combining, wait_s=wait_s, in_flight=in_flight)
        self.history = HistoryDays(
            store=self.store, clock=self.clock, retention=datetime.timedelta(hours=settings.retention_h)
        )
        # The days this replica's clock writes into exist before the first write (its clock may be ahead);
        # while the tables are too busy to add one, the supervised loop keeps trying.
        with contextlib.suppress(asyncpg.LockNotAvailableError):
            await self.history.make()
        self.queue = QueueGauges(self.store, self.clock)
        self.registry = Registry(self.store)
        self.ingestor = Ingestor(
            self.store,
            lambda: self.routes,
            self.clock,
            metrics=self.metrics,
            share=self.ingest_store,
            within_s=settings.ingest_wait_s,
            group_commit=not settings.no_group_commit,
            in_flight=settings.group_commit_in_flight,
        )
        self.dispatcher = Dispatcher(
            store=self.store,
            executor=Executor(
                store=self.store,
                caller=self.caller,
                ingestor=self.ingestor,
                clock=self.clock,
                backoff=Backoff(settings.retry_base_s, settings.retry_max_s),
                metrics=self.metrics,
                tracing=self.tracing,
                labels=self.labels,
                lease_s=settings.lease_s,
                wake=lambda: self.dispatcher.wake(),
                routes=lambda: self.routes,
                reachability=Reachability(datetime.timedelta(seconds=settings.unreachable_patience_s)),
                limits=self.answer_limits,
                max_lost_leases=settings.max_lost_leases,
                run_ends=self.run_ends,
            ),
            clock=self.clock,
            metrics=self.metrics,
            concurrency=settings.concurrency,
            lease_s=settings.lease_s,
            endpoint_share=settings.endpoint_share,
        )
        self.scheduler = Scheduler(
            store=self.store,
            ingestor=self.ingestor,
            routes=lambda: self.routes,
            clock=self.clock,
            catch_up_within=datetime.timedelta(hours=settings.retention_h),
        )
        self.webhooks = Webhooks(
            store=self.store,
            ingest_store=self.ingest_store,
            ingestor=self.ingestor,
            clock=self.clock,
            metrics=self.metrics,
            settings=settings,
            sealer=settings.sealer(),
        )
        self._listener = Listener(
            settings.session_url,
            on_work=self.dispatcher.wake,
            on_leased=self.dispatcher.leased_elsewhere,
            on_routes=self._routes_changed.set,
            on_subscribed=self._resubscribed,
            application_name=f"{_APPLICATION_NAME} listener",
        )
        # Subscribed before the routes are loaded: a change published in between is not missed.
        await self._listener.subscribe()
        if self._manifests:
            await self.load_manifests()
        await self.reload_routes()
        await self.webhooks.reload()
        supervisor = self.supervisor
        supervisor.start("listener", self._listener.run)
        supervisor.start("dispatcher", self.dispatcher.run)
        supervisor.start("heartbeat", self.dispatcher.heartbeat)
        supervisor.start("routes", self._refresh_routes)
        supervisor.start("cron", self.scheduler.run)
        supervisor.start("history", self.history.run)
        supervisor.start("prune", self._prune_periodically)

    async def load_manifests(self) -> None:
        """Publish the Function and Webhook manifests given at start (replacing those published from
        manifests before); ``FunctionIdTaken`` (409) when one names a function another owner published."""
        functions = load_manifests(self._manifests)
        webhooks = load_webhook_manifests(self._manifests, sealer=self.webhooks.sealer)
        await self.registry.publish_manifests(functions)
        await self.webhooks.publish(webhooks, source=MANIFEST_SOURCE)
        log.info("loaded %d function(s) and %d webhook(s) from manifests", len(functions), len(webhooks))

    def _resubscribed(self) -> None:
        """The listener is back after losing its connection: what was notified meanwhile is lost, so reload
        the routes and wake every loop now (their backoffs too) instead of waiting for a timer."""
        self.metrics.reconnected()
        self._routes_changed.set()
        self.dispatcher.wake()
        self.scheduler.routes_changed()
        self.supervisor.wake()

    async def reload_routes(self) -> None:
        """Read the routing table and the keys and install them. Reloads are serialised, so the last one
        to finish is the last one to start: a reload begun after a change always leaves it installed."""
        async with self._reloading:
            functions = await self.registry.load()
            self.event_keys.load(await queries.load_event_keys(self.store))
            self.api_tokens.load(await queries.load_api_tokens(self.store))
            self.signing_keys.load(await queries.load_signing_keys(self.store))
            self.routes = RoutingTable(functions)
            self.routes_loaded = True
            self.scheduler.routes_changed()
            self.metrics.routes.set(len(self.routes))

    async def _refresh_routes(self, health: Health) -> None:
        """Reload the routing table on NOTIFY stepline_routes, and every ``routes_refresh_s`` (supervised).
        Notifications that come in a burst make one reload."""
        while True:
            self._routes_changed.clear()
            await self.reload_routes()
            await self.webhooks.reload()
            health.ok()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._routes_changed.wait(), self.settings.routes_refresh_s)

    async def render_metrics(self) -> bytes:
        """The Prometheus text of ``GET /metrics``; without the queue's series while the database is away."""
        try:
            snapshot: QueueSnapshot | None = await self.queue.snapshot()
        except Exception as err:
            log.warning("metrics without the queue's gauges: %s", describe(err))
            snapshot = None
        return self.metrics.render(snapshot)

    async def prune(self) -> int:
        """Delete webhook deliveries older than the retention period (and beyond the newest kept of each),
        the flow control state no run needs any more and expired dashboard sessions; answer how many
        deliveries went. History itself goes by whole days (``history``)."""
        pruned = await self.webhooks.prune(datetime.timedelta(hours=self.settings.retention_h))
        await queries.prune_flow_state(self.store, clock_offset=self.clock.offset())
        await queries.prune_sessions(self.store)
        return pruned

    async def _prune_periodically(self, health: Health) -> None:
        while True:
            await self.prune()
            health.ok()
            await asyncio.sleep(_PRUNE_EVERY_S)

    async def readiness(self) -> list[str]:
        """What keeps this replica from serving, for ``GET /readyz``: the database (a round trip), the
        listener's connection (a round trip on it), the read replica when one is set, the routing table and
        every supervised task."""
        if self._store is None or self._listener is None:
            return ["the gateway is not started"]
        # Both round trips at once: the probe answers within one ping timeout.
        database, listener, replica = await asyncio.gather(
            self.store.ping(within_s=_PING_TIMEOUT_S),
            self._listener.ping(within_s=_PING_TIMEOUT_S),
            self._read_store.ping(within_s=_PING_TIMEOUT_S) if self._read_store else asyncio.sleep(0),
            return_exceptions=True,
        )
        problems = []
        if isinstance(database, BaseException):
            problems.append(f"database unreachable: {describe(database)}")
        if isinstance(listener, BaseException):
            problems.append(f"listener: {describe(listener)}")
        if isinstance(replica, BaseException):
            problems.append(f"read replica unreachable: {describe(replica)}")
        if not self.routes_loaded:
            problems.append("routing table not loaded yet")
        problems.extend(self.supervisor.problems())
        if self.unrecoverable:
            problems.append(f"stopping: {self.unrecoverable}")
        return problems

    def _give_up(self, reason: str) -> None:
        self.unrecoverable = reason
        if self._on_unrecoverable is not None:
            self._on_unrecoverable(reason)

    async def stop(self) -> None:
        if self._store is None:
            return
        self.supervisor.stopping()
        await self.dispatcher.stop(self.settings.shutdown_grace_s)
        await self.supervisor.stop()
        if self._listener is not None:
            await self._listener.close()
        await self.caller.close()
        await self.tracing.close()
        if self._read_store is not None:
            await self._read_store.close()
            self._read_store = None
        if self._ingest_store is not None:
            await self._ingest_store.close()
            self._ingest_store = None
        await self.store.close()
        self._store = None
