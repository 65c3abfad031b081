"""``timeouts.start`` and ``timeouts.finish``: a run that waits or lasts too long is cancelled.

Each timeout is a timer, a work row due when it runs out (``timeout:start`` written with the run,
``timeout:finish`` by the claim that starts it), so the dispatcher's timed wake and the leases of
ordinary calls serve it: no replica polls, and a replica that dies while expiring one leaves the timer to
another. A run that ends first drops its timers with its other work rows. Claimed, a timer cancels its run
as ``POST /v1/runs/{id}/cancel`` does (``inngest/function.cancelled`` emitted), with an error that says
which timeout ran out.
"""

from __future__ import annotations

import logging
import uuid

from stepline_store import queries
from stepline_store.pool import Store

from stepline_gateway.calls import error_json
from stepline_gateway.flow_claims import START_TIMER
from stepline_gateway.ingest import Ingestor
from stepline_gateway.outcomes import Claim
from stepline_gateway.routing import RoutingTable

log = logging.getLogger(__name__)


def _timeout_error(timer: str, setting: str | None) -> dict[str, object]:
    if timer == START_TIMER:
        what = f"the run did not start within timeouts.start ({setting or '?'})"
    else:
        what = f"the run did not finish within timeouts.finish ({setting or '?'}) of its start"
    return error_json("FunctionTimeoutError", f"cancelled: {what}", None)


async def expire(store: Store, ingestor: Ingestor, routes: RoutingTable, claim: Claim) -> bool:
    """Cancel the run of a claimed timer when it still waits (start) or runs (finish); drop the timer.
    Answers whether the run was cancelled."""
    run_id = uuid.UUID(claim.call.run_id)
    timer = claim.call.step_id
    async with store.transaction() as conn:
        expired = await queries.expire_run(
            store, work_id=claim.work_id, lease_token=claim.lease_token, run_id=run_id, on=conn
        )
        if not expired:
            return False
        if not await ingestor.cancel([run_id], on=conn):
            return False
        function = routes.functions.get(claim.call.function_id)
        timeouts = function.flow.timeouts if function and function.flow else None
        setting = None if timeouts is None else (timeouts.start if timer == START_TIMER else timeouts.finish)
        await queries.set_run_error(store, run_id=run_id, error=_timeout_error(timer, setting), on=conn)
    log.info("run %s cancelled: %s ran out", run_id, timer.replace("timeout:", "timeouts."))
    return True
