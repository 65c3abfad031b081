"""The NOTIFY listener: one connection of its own that LISTENs on ``stepline_work``, ``stepline_routes`` and
``stepline_webhooks``.

A notification on ``stepline_work`` wakes the dispatcher (one with the payload ``leased``, runs leased as
they were ingested, only has it look for a lapsed lease a lease later); one on ``stepline_routes`` or
``stepline_webhooks`` asks for a reload of the routing table and the webhooks. The connection is watched
without polling: asyncpg reports its end (the server restarted, failed over or terminated the backend)
through a termination listener, and ``run`` (a supervised task) then fails, so the supervisor opens a new
one with backoff. Every time the listener is subscribed again ``on_subscribed`` runs: notifications sent
while it was away are lost, so the gateway reloads its routes and wakes its loops rather than waiting for a
timer. A connection that vanished silently (no FIN, no RST) is found by ``ping``, which the readiness probe
calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from stepline_store import queries
from stepline_store.pool import Connection, connect

from stepline_gateway.supervision import Health, describe

log = logging.getLogger(__name__)

WORK_CHANNEL = "stepline_work"
ROUTES_CHANNEL = "stepline_routes"
WEBHOOKS_CHANNEL = "stepline_webhooks"
# The payload of a work notification for runs leased as they were ingested (nothing to claim now).
LEASED = "leased"


class ListenerLost(ConnectionError):
    """The LISTEN connection ended."""


class Listener:
    def __init__(
        self,
        database_url: str,
        *,
        on_work: Callable[[], None],
        on_routes: Callable[[], None],
        on_subscribed: Callable[[], None],
        application_name: str,
        on_leased: Callable[[], None] | None = None,
    ) -> None:
        self._on_leased = on_leased
        self._database_url = database_url
        self._on_work = on_work
        self._on_routes = on_routes
        self._on_subscribed = on_subscribed
        self._application_name = application_name
        self._conn: Connection | None = None
        self._lost = asyncio.Event()
        self._ping_lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def subscribe(self) -> None:
        """Open the connection and LISTEN on both channels (raises what connecting raises)."""
        conn = await connect(self._database_url, application_name=self._application_name, within_s=10)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(WORK_CHANNEL, self._work)
            await conn.add_listener(ROUTES_CHANNEL, self._routes)
            await conn.add_listener(WEBHOOKS_CHANNEL, self._routes)
        except BaseException:
            conn.terminate()
            raise
        self._conn, self._lost = conn, lost

    async def run(self, health: Health) -> None:
        """Supervised: (re)subscribe when needed, then wait until the connection ends, and fail."""
        if not self.connected:
            self._conn = None
            await self.subscribe()
            log.info("listening for notifications again")
            self._on_subscribed()
        health.ok()
        await self._lost.wait()
        self._conn = None
        raise ListenerLost("the LISTEN connection to the database was closed")

    async def ping(self, *, within_s: float) -> None:
        """Check the connection with a round trip; a connection that does not answer is closed (and then
        re-opened by ``run``). Raises ListenerLost when there is no connection."""
        conn = self._conn
        if conn is None or conn.is_closed():
            raise ListenerLost("not connected to the database")
        async with self._ping_lock:
            try:
                async with asyncio.timeout(within_s):
                    await queries.ping(conn)
            except Exception as err:
                # Closing it fires the termination listener: run() sees the loss and reconnects.
                conn.terminate()
                raise ListenerLost(f"the LISTEN connection does not answer: {describe(err)}") from None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _work(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == LEASED:
            if self._on_leased is not None:
                self._on_leased()
            return
        self._on_work()

    def _routes(self, *_: Any) -> None:
        self._on_routes()
