"""A run started where it was ingested never takes a slot that a claim in flight may fill: while the
dispatcher's claim waits for its answer, whose rows it cannot know yet, no new run is started beside it past
an endpoint's share (a hung endpoint held two of two slots, with a share of one, when it could)."""

from __future__ import annotations

import asyncpg

from tests.support import eventually, running_gateway

HUNG_URL = "http://127.0.0.1:9/api/inngest"


async def _claim_waiting(admin: asyncpg.Connection) -> bool:
    waiting = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%lost_leases%'"
    )
    return bool(waiting)


async def _gateway_idle(admin: asyncpg.Connection) -> bool:
    """No statement of the gateway running: its claim loop waits to be woken."""
    busy = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = 'stepline-gateway' AND state = 'active'"
    )
    return busy == 0


async def test_no_run_starts_here_past_a_share_while_a_claim_is_in_flight(database_url: str) -> None:
    async with running_gateway(database_url, concurrency=2, endpoint_share=0.5) as gw:
        dispatcher = gw.gateway.dispatcher
        admin = await asyncpg.connect(database_url)
        holder = await asyncpg.connect(database_url)
        try:

            async def room() -> bool:
                taken = dispatcher.reserve([HUNG_URL])
                if taken == [True]:
                    dispatcher.release([HUNG_URL])
                return taken == [True]

            # Idle (its first claims done), a run may start here: a slot is free, the endpoint holds none.
            await eventually(room, timeout=10)

            # The next claim waits on a lock of the queue: it is in flight, its rows unknown.
            await eventually(lambda: _gateway_idle(admin), timeout=10)
            lock = holder.transaction()
            await lock.start()
            await holder.execute("LOCK TABLE work IN ACCESS EXCLUSIVE MODE")
            dispatcher.wake()
            await eventually(lambda: _claim_waiting(admin), timeout=10)
            # It may bring a call of this endpoint, whose share is one slot: nothing may start here now.
            assert dispatcher.reserve([HUNG_URL]) == [False]

            await lock.rollback()
            # The claim answers (nothing due): the slots it might have filled are free again.
            await eventually(room, timeout=10)
        finally:
            await holder.close()
            await admin.close()
