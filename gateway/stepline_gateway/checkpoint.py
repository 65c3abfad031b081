"""The checkpoint API: ``POST /v1/checkpoint/{run_id}/async`` records steps while their call still runs.

A service in checkpoint mode (the Inngest SDK spec, section 10) runs sequential steps back to back inside
one call and reports each step's result here as it goes, instead of answering the call after every step.
The body names the call's work item (``qi_id``, as the call's ``ctx`` gave it); the steps are recorded for
that item's run, each once, and the item's attempt count starts again. Only steps that ran (``StepRun``)
are taken: anything that needs the gateway to act (sleep, wait, invoke, retry, parallel steps) must come in
the call's 206 answer. A call that no longer holds its work item (its lease ran out, the run was cancelled
or has ended) is answered 409, and the SDK stops. Auth: the bearer token that ``/fn/register`` takes; a
namespace's key records only steps of that namespace's runs, the cluster's only of namespaces without keys
of their own (checked in the recording statement itself, so the post costs no query more).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from stepline.protocol import RAN_OPCODES, Header

from stepline_gateway import bodies, storable
from stepline_gateway.answers import AnswerLimits
from stepline_gateway.calls import parse_queue_item_ref, queue_item_ref
from stepline_gateway.errors import BadRequest, NotFound, Unauthorized
from stepline_gateway.log_context import about_run
from stepline_gateway.outcomes import step_write
from stepline_gateway.service import Gateway

log = logging.getLogger(__name__)


def _steps(
    payload: dict[str, Any], limits: AnswerLimits, document: storable.Document
) -> list[dict[str, Any]]:
    steps = payload.get("steps")
    if not isinstance(steps, list) or not all(
        isinstance(op, dict) and isinstance(op.get("op"), str) and isinstance(op.get("id"), str)
        for op in steps
    ):
        raise BadRequest("'steps' must be a list of operations, each with an 'op' and a step 'id' (its hash)")
    others = sorted({op["op"] for op in steps if op["op"] not in RAN_OPCODES})
    if others:
        raise BadRequest(
            f"async operations cannot be checkpointed ({', '.join(others)}): the checkpoint API records "
            "only steps that ran (StepRun); return the others in the 206 answer to the call"
        )
    for index, op in enumerate(steps):
        problem = limits.op_problem(op, document=document)
        if problem is not None:
            status = 413 if problem.too_large else 400
            raise BadRequest(f"steps[{index}] cannot be recorded: {problem.message}", status=status)
    return steps


async def checkpoint_async(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        signer = gateway.signing_keys.signer_of(request.headers.get(Header.AUTHORIZATION))
    except Unauthorized as err:
        raise Unauthorized(f"checkpoint refused: {err}") from None
    try:
        run_id = uuid.UUID(request.path_params["run_id"])
    except ValueError:
        raise NotFound(f"no run {request.path_params['run_id']!r}: run ids are UUIDs") from None
    about_run(str(run_id), None, None)
    try:
        work_id, lease_token, steps = await _read(request, gateway, run_id)
    except BadRequest:
        gateway.metrics.checkpoint_posted("refused")
        raise
    try:
        write = step_write(
            work_id=work_id,
            lease_token=lease_token,
            run_id=run_id,
            ops=steps,
            offset=gateway.clock.offset(),
            checkpointed=True,
            signer=signer,
        )
    except ValueError as err:
        gateway.metrics.checkpoint_posted("refused")
        raise BadRequest(f"a step's output cannot be stored: {err}") from None
    result = await gateway.step_combiner.record(write)
    if not result.held:
        gateway.metrics.checkpoint_posted("lease_lost")
        raise BadRequest(
            f"the call of run {run_id} no longer holds its work item (its lease ran out, or the run was "
            "cancelled or has ended), or holds none with this signing key (the run is of another "
            "namespace): stop running steps; the gateway drops the call's answer",
            status=409,
        )
    gateway.metrics.checkpoint_posted("recorded", result.recorded)
    if result.function_id is not None:
        gateway.metrics.steps_recorded(result.function_id, "completed", result.recorded)
    gateway.tracing.checkpointed(str(run_id), queue_item_ref(work_id, lease_token), steps)
    return JSONResponse({"run_id": str(run_id), "steps": len(steps), "recorded": result.recorded})


async def _read(
    request: Request, gateway: Gateway, run_id: uuid.UUID
) -> tuple[int, uuid.UUID, list[dict[str, Any]]]:
    """The work item and the steps of a checkpoint post; BadRequest when they cannot be."""
    settings = gateway.settings
    document = await bodies.read_json(request, settings.max_body_bytes)
    payload = document.value
    if not isinstance(payload, dict):
        raise BadRequest("the body must be an object: {run_id, fn_id, qi_id, steps}")
    if payload.get("run_id") not in (None, "", str(run_id)):
        raise BadRequest(f"the body's run_id {payload['run_id']!r} is not the run of the path, {run_id}")
    steps = _steps(payload, gateway.answer_limits, document)
    try:
        work_id, lease_token = parse_queue_item_ref(str(payload.get("qi_id") or ""))
    except ValueError:
        raise BadRequest("'qi_id' must be the ctx.qi_id of the call that ran the steps") from None
    return work_id, lease_token, steps


def routes() -> list[Route]:
    return [Route("/v1/checkpoint/{run_id}/async", checkpoint_async, methods=["POST"])]
