"""The gateway's HTTP API (ARCHITECTURE §4): ingest, SDK sync, runs, events, functions, health, metrics.

Handlers only translate between HTTP and the service; errors become ``{"error": "..."}`` with a fitting
4xx code, and nothing internal (no stack trace) reaches a client.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from stepline.protocol import Header
from stepline_store.errors import DATABASE_ERRORS, PoolBusy, is_transient
from stepline_store.identity import DEFAULT_NAMESPACE, namespace_of_function

from stepline_gateway import bodies, checkpoint, dashboard, ingest, query, secrets, sync, webhooks
from stepline_gateway.access import Principal, principal
from stepline_gateway.errors import BadRequest, Forbidden, NotFound, Unauthorized
from stepline_gateway.events import parse_events, refuse_reserved
from stepline_gateway.routing import Scope
from stepline_gateway.runs import RunQueries
from stepline_gateway.service import Gateway

log = logging.getLogger(__name__)

Handler = Callable[[Request], Awaitable[Response]]
# GET /v1/functions/run-counts counts at most this many of each function's newest runs.
RUN_COUNTS_AT_MOST = 1000


def _gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


async def ingest_events(request: Request) -> Response:
    gateway = _gateway(request)
    settings = gateway.settings
    key = request.path_params["event_key"]
    scope = None if settings.dev else gateway.event_keys.scope(key)
    return await _ingest(request, namespace=scope)


async def send_events(request: Request) -> Response:
    """``POST /v1/events``: the same ingest, for operators' API tokens (the dashboard's test events); a
    namespace's token reaches only that namespace's functions, as its event keys would."""
    holder = principal(request)
    holder.require_operator("send events")
    return await _ingest(request, namespace=holder.namespace)


async def _ingest(request: Request, *, namespace: Scope = None) -> Response:
    gateway = _gateway(request)
    settings = gateway.settings
    body = await bodies.read(request, settings.max_body_bytes)
    events = parse_events(body, max_event_bytes=settings.max_event_bytes)
    if not settings.dev:
        refuse_reserved(events)
    starts = None if settings.no_start_here else gateway.dispatcher
    result = await gateway.ingestor.ingest(events, namespace=namespace, starts=starts)
    gateway.metrics.events_ingested(len(result.new_ids))
    log.info("received %s, started %d run(s)", ingest.describe(events), result.runs_created)
    # ``runs_started`` beside Inngest's shape: how many runs these events started (0 when no trigger matched).
    return JSONResponse({"ids": result.ids, "status": 200, "runs_started": result.runs_created})


async def register_app(request: Request) -> Response:
    gateway = _gateway(request)
    settings = gateway.settings
    try:
        # The namespace of the key the app syncs with (the cluster's keys: default).
        namespace = gateway.signing_keys.namespace_of_bearer(request.headers.get(Header.AUTHORIZATION))
    except Unauthorized as err:
        raise Unauthorized(f"sync refused: {err}") from None
    payload = (await bodies.read_json(request, settings.max_body_bytes)).value
    app_id, url, functions = sync.read_sync_from(payload)
    await gateway.registry.sync_app(app_id, url, functions, namespace=namespace)
    await gateway.reload_routes()
    log.info(
        "synced app %s into namespace %s: %d function(s) from %s",
        app_id,
        namespace,
        len(functions),
        payload.get("url"),
    )
    return JSONResponse({"ok": True, "modified": True, "app_id": app_id, "functions": len(functions)})


async def remove_app(request: Request) -> Response:
    """``DELETE /v1/apps/{app_id}?namespace=``: remove an SDK app's functions in one namespace (the token's,
    else the one named, else ``default``), so that it may sync from another URL."""
    gateway = _gateway(request)
    app_id = query.path_id(request.path_params["app_id"], "app")
    holder = principal(request)
    holder.require_operator("remove apps")
    namespace = query.text(request.query_params, "namespace") or holder.namespace or DEFAULT_NAMESPACE
    holder.require_namespace(namespace, f"app {app_id}")
    removed = await gateway.registry.remove_app(app_id, namespace)
    if not removed:
        raise NotFound(
            f"no app {app_id} has synced functions in namespace {namespace}: GET /v1/functions lists them"
        )
    await gateway.reload_routes()
    log.info("removed the %d function(s) of app %s in namespace %s", removed, app_id, namespace)
    return JSONResponse({"app_id": app_id, "namespace": namespace, "removed": removed})


async def list_functions(request: Request) -> Response:
    routes = _gateway(request).routes
    holder = principal(request)
    listed = [f.to_json() for f in routes.functions.values() if holder.sees_function(f.id)]
    return JSONResponse({"data": listed})


async def whoami(request: Request) -> Response:
    """``GET /v1/whoami``: the token's role and the namespaces it sees (the dashboard's selector)."""
    holder = principal(request)
    if holder.namespace is not None:
        namespaces = [holder.namespace]
    else:
        functions = _gateway(request).routes.functions
        namespaces = sorted({namespace_of_function(f) for f in functions})
    return JSONResponse({**holder.json(), "may_change": holder.may_change, "namespaces": namespaces})


def _run_id(request: Request) -> uuid.UUID:
    return query.run_id(request.path_params["run_id"])


async def list_runs(request: Request) -> Response:
    gateway = _gateway(request)
    queries = RunQueries(gateway.read_store, offset=gateway.clock.offset())
    params = request.query_params
    status = params.get("status")
    if status is not None and status not in ("Queued", "Running", "Completed", "Failed", "Cancelled"):
        raise BadRequest("status must be one of Queued, Running, Completed, Failed, Cancelled")
    limit = query.limit(params)
    function_id = query.text(params, "function")
    holder = principal(request)
    namespace = query.text(params, "namespace")
    if function_id is not None:
        holder.require_function(function_id, f"function {function_id}")
    if namespace is not None:
        holder.require_namespace(namespace, f"namespace {namespace}")
    runs = await queries.list_runs(
        function_id=function_id,
        namespace=namespace or holder.namespace,
        status=status,
        after=query.run_cursor(params),
        limit=limit,
        since=query.time(params, "since"),
        until=query.time(params, "until"),
    )
    next_cursor = None
    if len(runs) == limit:
        last = runs[-1]
        next_cursor = query.cursor_out(datetime.datetime.fromisoformat(last["created_at"]), last["id"])
    return JSONResponse({"data": runs, "next_cursor": next_cursor})


async def run_counts(request: Request) -> Response:
    gateway = _gateway(request)
    since = query.time(request.query_params, "since") or gateway.clock.now() - datetime.timedelta(hours=24)
    counts = await RunQueries(gateway.read_store).count_recent_runs(since, at_most=RUN_COUNTS_AT_MOST)
    holder = principal(request)
    counts = [c for c in counts if holder.sees_function(c["function_id"])]
    return JSONResponse({"since": since.isoformat(), "at_most": RUN_COUNTS_AT_MOST, "data": counts})


async def get_run(request: Request) -> Response:
    gateway = _gateway(request)
    run_id = _run_id(request)
    queries = RunQueries(gateway.read_store, offset=gateway.clock.offset())
    await _require_run(request, queries, run_id, None)
    run = await queries.get_run(run_id)
    return JSONResponse(run)


async def _require_run(request: Request, queries: RunQueries, run_id: uuid.UUID, action: str | None) -> None:
    """403 unless the token sees the run's namespace (and, for ``action``, is an operator's)."""
    holder = principal(request)
    if action is not None:
        holder.require_operator(action)
    if holder.namespace is not None:
        holder.require_function(await queries.function_of(run_id), f"run {run_id}")


async def replay_run(request: Request) -> Response:
    gateway = _gateway(request)
    run_id = _run_id(request)
    queries = RunQueries(gateway.store)
    await _require_run(request, queries, run_id, "replay runs")
    old = await queries.get_run(run_id, with_steps=False)
    if old["status"] in ("Queued", "Running"):
        raise BadRequest(
            f"run {run_id} is still {old['status']}: cancel it or let it finish first", status=409
        )
    current = gateway.routes.functions.get(old["function"]["id"])
    new_id = await queries.replay(run_id, gateway.clock.offset(), function=current, event_id=old["event_id"])
    gateway.metrics.runs_created([old["function"]["id"]])
    log.info("replaying run %s as %s", run_id, new_id)
    return JSONResponse({"id": str(new_id), "replay_of": str(run_id)}, status_code=201)


async def cancel_run(request: Request) -> Response:
    gateway = _gateway(request)
    run_id = _run_id(request)
    await _require_run(request, RunQueries(gateway.store), run_id, "cancel runs")
    async with gateway.store.transaction() as conn:
        cancelled = await gateway.ingestor.cancel([run_id], on=conn)
    if not cancelled:
        status = await RunQueries(gateway.store).status(run_id)
        raise BadRequest(f"run {run_id} has already ended ({status}) and cannot be cancelled", status=409)
    log.info("cancelled run %s", run_id)
    return JSONResponse({"id": str(run_id), "status": "Cancelled"})


async def list_events(request: Request) -> Response:
    """``GET /v1/events``: the event log; a namespace's token (or ``?namespace=``) lists the events sent
    into that namespace, a cluster token without one every event."""
    holder = principal(request)
    queries = RunQueries(_gateway(request).read_store)
    params = request.query_params
    limit = query.limit(params)
    internal = params.get("internal", "true")
    if internal not in ("true", "false"):
        raise BadRequest("internal must be true or false (false leaves out the inngest/* events)")
    namespace = query.text(params, "namespace")
    if namespace is not None:
        holder.require_namespace(namespace, f"namespace {namespace}")
    events = await queries.list_events(
        after=query.cursor_in(params),
        limit=limit,
        name=query.text(params, "name"),
        internal=internal == "true",
        namespace=namespace or holder.namespace,
    )
    for event in events:
        _runs_seen_by(holder, event)
    next_cursor = None
    if len(events) == limit:
        last = events[-1]
        next_cursor = query.cursor_out(datetime.datetime.fromisoformat(last["received_at"]), last["id"])
    return JSONResponse({"data": events, "next_cursor": next_cursor})


async def get_event(request: Request) -> Response:
    """``GET /v1/events/{id}``: 403 for a namespace's token unless the event was sent into its namespace."""
    holder = principal(request)
    event_id = query.path_id(request.path_params["event_id"], "event")
    event = await RunQueries(_gateway(request).read_store).get_event(event_id)
    if holder.namespace is not None and holder.namespace not in (event["namespaces"] or []):
        if event["namespaces"] is None:
            raise Forbidden(
                f"event {event_id} was sent to every namespace (with a cluster key or token), and this API "
                f"token sees only namespace {holder.namespace}: read it through its runs, or use a token "
                "of the cluster"
            )
        holder.require_namespace(event["namespaces"][0], f"event {event_id}")
    _runs_seen_by(holder, event)
    return JSONResponse(event)


def _runs_seen_by(holder: Principal, event: dict[str, Any]) -> None:
    """Leave out of an event the runs and skips of namespaces the token does not see (an event sent with a
    key that two namespaces hold)."""
    if holder.namespace is not None:
        event["runs"] = [r for r in event["runs"] if holder.sees_function(r["function_id"])]
        event["skipped"] = [s for s in event["skipped"] if holder.sees_function(s["function_id"])]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the database and the listener answer, the routes are loaded and no task is failing."""
    gateway = _gateway(request)
    problems = await gateway.readiness()
    # The replica's name is the lease_owner of the calls it holds.
    body: dict[str, Any] = {
        "replica": gateway.dispatcher.owner if gateway.routes_loaded else None,
        "tasks": {name: health.state for name, health in gateway.supervisor.health.items()},
    }
    if problems:
        return JSONResponse({"status": "unready", "problems": problems, **body}, status_code=503)
    return JSONResponse({"status": "ready", "functions": len(gateway.routes), **body})


async def metrics(request: Request) -> Response:
    gateway = _gateway(request)
    if not gateway.metrics.enabled:
        raise NotFound("metrics are off on this gateway (--no-metrics / STEPLINE_NO_METRICS)")
    return Response(await gateway.render_metrics(), media_type="text/plain; version=0.0.4")


async def queue_depth(request: Request) -> Response:
    """``GET /v1/queue``: the queue's depth and age, of every function or of those named; for autoscalers
    (KEDA's metrics-api scaler reads a field of it, e.g. ``calls_due``)."""
    gateway = _gateway(request)
    function = query.text(request.query_params, "function")
    namespace = query.text(request.query_params, "namespace")
    holder = principal(request)
    if namespace is not None:
        holder.require_namespace(namespace, f"namespace {namespace}")
    elif holder.namespace is not None:
        namespace = holder.namespace

    def chosen(function_id: str) -> bool:
        return (function is None or function_id == function) and (
            namespace is None or gateway.labels.namespace(function_id) == namespace
        )

    snapshot = await gateway.queue.snapshot()
    total = snapshot.total(chosen)
    entries = [
        e.json(gateway.labels.namespace(e.function_id)) for e in snapshot.functions if chosen(e.function_id)
    ]
    return JSONResponse(
        {
            "runs_waiting": total.runs_waiting,
            "calls_due": total.calls_due,
            "oldest_due_s": round(total.oldest_due_s, 3),
            "waiting": dict(sorted(total.waiting.items())),
            "functions": entries,
        }
    )


def _message(exc: Exception) -> str:
    """The error's text, as UTF-8 can carry it: a message that quotes the input may quote a lone surrogate
    (JSON's \\ud800 escapes decode to one), which would fail the answer's encoding."""
    return str(exc).encode("utf-8", "backslashreplace").decode("utf-8")


# The client's mistakes other than a bad request, and their statuses.
_CLIENT_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
)


async def _error_response(request: Request, exc: Exception) -> Response:
    if isinstance(exc, BadRequest):
        return JSONResponse({"error": _message(exc)}, status_code=exc.status)
    for kind, status in _CLIENT_ERRORS:
        if isinstance(exc, kind):
            return JSONResponse({"error": _message(exc)}, status_code=status)
    if isinstance(exc, PoolBusy):
        # Ingest's connections all stayed busy for ingest_wait_s: nothing was stored, send the events again.
        log.warning("%s %s: %s", request.method, secrets.redacted_path(request), exc)
        return JSONResponse(
            {"error": f"the gateway is busy taking in events ({exc}): nothing was stored, try again"},
            status_code=503,
            headers={"retry-after": "1"},
        )
    if is_transient(exc):
        # Nothing was stored (the transaction did not commit): the client may send the same request again.
        log.warning(
            "%s %s: the database is unavailable (%s)", request.method, secrets.redacted_path(request), exc
        )
        return JSONResponse(
            {"error": "the database is unavailable (restarting or failing over): try again in a moment"},
            status_code=503,
            headers={"retry-after": "1"},
        )
    log.exception(
        "unexpected error answering %s %s", request.method, secrets.redacted_path(request), exc_info=exc
    )
    return JSONResponse({"error": "internal error: see the gateway's log"}, status_code=500)


def routes() -> list[Route]:
    return [
        Route("/e/{event_key}", ingest_events, methods=["POST"]),
        Route("/fn/register", register_app, methods=["POST"]),
        *checkpoint.routes(),
        *webhooks.routes(),
        Route("/v1/functions", list_functions, methods=["GET"]),
        Route("/v1/whoami", whoami, methods=["GET"]),
        Route("/v1/apps/{app_id}", remove_app, methods=["DELETE"]),
        Route("/v1/functions/run-counts", run_counts, methods=["GET"]),
        Route("/v1/events", list_events, methods=["GET"]),
        Route("/v1/events", send_events, methods=["POST"]),
        Route("/v1/events/{event_id}", get_event, methods=["GET"]),
        Route("/v1/runs", list_runs, methods=["GET"]),
        Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
        Route("/v1/runs/{run_id}/replay", replay_run, methods=["POST"]),
        Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
        Route("/v1/queue", queue_depth, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]


def create_app(gateway: Gateway, *, extra_routes: list[Any] | None = None) -> Starlette:
    """The ASGI app serving ``gateway``; starting the app starts the gateway."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        try:
            yield
        finally:
            await gateway.stop()

    handlers: dict[Any, Any] = {
        BadRequest: _error_response,
        NotFound: _error_response,
        Unauthorized: _error_response,
        Forbidden: _error_response,
        PoolBusy: _error_response,
        # Database errors by class, not only through Exception: Starlette re-raises what the Exception
        # handler answered (a traceback in the log), and a 503 while the database is away is no crash.
        **dict.fromkeys(DATABASE_ERRORS, _error_response),
        Exception: _error_response,
    }
    app = Starlette(
        routes=[*routes(), *dashboard.routes(), *(extra_routes or [])],
        middleware=dashboard.middleware(gateway.settings),
        lifespan=lifespan,
        exception_handlers=handlers,
    )
    app.state.gateway = gateway
    return app
