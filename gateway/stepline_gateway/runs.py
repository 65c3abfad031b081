"""Runs and events as the API and the dashboard show them, and the run actions (replay, cancel).

Shapes follow ARCHITECTURE §4: a run with its function, status, event, output or error and its steps,
each step with its attempts, timing, output or error; a run that waits on flow control says why
(``waiting``).
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Any

from stepline_store import queries
from stepline_store.ids import new_run_id
from stepline_store.pool import Store
from stepline_store.queries import GetEventRow, GetRunRow, GetStepsRow, ListEventsInNamespaceRow

from stepline_gateway.errors import NotFound
from stepline_gateway.flow_claims import ClaimFlow, gate_runs, waiting_of
from stepline_gateway.routing import Function

_NIL_UUID = uuid.UUID(int=0)

# Why an event started no run of a function it matched (skipped_events.reason), as the dashboard says it.
SKIP_MESSAGES = {
    "rate_limited": "rate limited: over the function's rateLimit for this key",
    "idempotency": "idempotency: a run with the same idempotency key started in the last 24 hours",
    "singleton": "singleton: another run with the same singleton key had not ended",
}

# An event as the queries read it: of the log (sent into some namespaces or every one), or of one namespace.
EventRow = GetEventRow | ListEventsInNamespaceRow


def _time(value: datetime.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_json(row: GetRunRow) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "function": {"id": row["function_id"], "name": row["function_name"], "url": row["url"]},
        "status": row["status"],
        "event_id": row["event_id"],
        "created_at": _time(row["created_at"]),
        "started_at": _time(row["started_at"]),
        "ended_at": _time(row["ended_at"]),
        "output": row["output"],
        "error": row["error"],
        "replay_of": str(row["replay_of"]) if row["replay_of"] else None,
    }


def step_json(row: GetStepsRow) -> dict[str, Any]:
    memo = row["memo"] or {}
    return {
        "id": row["hash"],
        "name": row["name"],
        "op": row["op"],
        "status": row["status"],
        "attempts": row["attempts"],
        "started_at": _time(row["started_at"]),
        "ended_at": _time(row["ended_at"]),
        # When the attempt that ended it (or runs it now) began: without the backoff waits before it.
        "attempt_started_at": _time(row["attempt_started_at"]),
        "output": memo.get("data"),
        "error": memo.get("error") or row["error"],
        # True when the step's result came through the checkpoint API, during the call that ran it.
        "checkpointed": row["checkpointed"],
        # The attempts that failed and were tried again, oldest first:
        # {"attempt", "error", "started_at" (null when unknown), "ended_at"}.
        "failed_attempts": row["failed_attempts"],
    }


def event_json(row: EventRow) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "data": row["data"],
        "user": row["user"],
        "ts": row["ts"],
        "v": row["v"],
        "received_at": _time(row["received_at"]),
    }


def logged_event_json(row: EventRow) -> dict[str, Any]:
    """An event of the log: with the namespaces it was sent into (null: every namespace)."""
    return {**event_json(row), "namespaces": row["namespaces"]}


class RunQueries:
    def __init__(self, store: Store, *, offset: datetime.timedelta = datetime.timedelta(0)) -> None:
        self._store = store
        # The clock's offset (zero but in tests): a throttled run waits until a time on that clock.
        self._offset = offset

    async def _attach_waiting(self, runs: list[dict[str, Any]]) -> None:
        """``waiting``: why a run that has not ended waits on flow control (flow_claims.py at claim time, the
        debounce or batch of admission.py at ingest), else null."""
        for run in runs:
            run["waiting"] = None
        live = {uuid.UUID(run["id"]): run for run in runs if run["status"] in ("Queued", "Running")}
        if not live:
            return
        for run_id, waiting in (await waiting_of(self._store, list(live), self._offset)).items():
            live[run_id]["waiting"] = waiting
        # Flow control at ingest holds back first calls: debounced, or a batch still filling.
        queued = [
            run_id for run_id, run in live.items() if run["status"] == "Queued" and run["waiting"] is None
        ]
        for run_id, waiting in (await self._flow_waits(queued)).items():
            live[run_id]["waiting"] = waiting

    async def get_run(self, run_id: uuid.UUID, *, with_steps: bool = True) -> dict[str, Any]:
        row = await queries.get_run(self._store, run_id=run_id)
        if row is None:
            raise NotFound(f"no run {run_id}")
        run = run_json(row)
        await self._attach_waiting([run])
        if with_steps:
            run["steps"] = [step_json(s) for s in await queries.get_steps(self._store, run_id=run_id)]
            event = await queries.get_event(self._store, event_id=row["event_id"])
            run["event"] = event_json(event) if event is not None else None
        return run

    async def function_of(self, run_id: uuid.UUID) -> str:
        """The function id of run ``run_id``; NotFound if there is no such run."""
        row = await queries.get_run(self._store, run_id=run_id)
        if row is None:
            raise NotFound(f"no run {run_id}")
        return row["function_id"]

    async def list_runs(
        self,
        *,
        function_id: str | None,
        status: str | None,
        after: tuple[datetime.datetime, uuid.UUID] | None,
        limit: int,
        since: datetime.datetime | None = None,
        until: datetime.datetime | None = None,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Runs newest first, created in [since, until), after the keyset position ``after``; of
        ``namespace`` only when given (a function given is checked against it by the caller)."""
        # "Before until" is "before (until, the smallest uuid)": one bound with the cursor, one index range.
        bounds = [b for b in (after, (until, _NIL_UUID) if until else None) if b is not None]
        before_at, before_id = min(bounds) if bounds else (None, None)
        store = self._store
        rows: Sequence[GetRunRow]
        if namespace is not None and function_id is None:
            rows = await queries.runs_page_in_namespace(
                store,
                since=since,
                before_at=before_at,
                before_id=before_id,
                limit=limit,
                namespace=namespace,
                status=status,
            )
        elif function_id is not None and status is not None:
            rows = await queries.runs_page_of_function_with_status(
                store,
                since=since,
                before_at=before_at,
                before_id=before_id,
                limit=limit,
                function_id=function_id,
                status=status,
            )
        elif function_id is not None:
            rows = await queries.runs_page_of_function(
                store,
                since=since,
                before_at=before_at,
                before_id=before_id,
                limit=limit,
                function_id=function_id,
            )
        elif status is not None:
            rows = await queries.runs_page_with_status(
                store, since=since, before_at=before_at, before_id=before_id, limit=limit, status=status
            )
        else:
            rows = await queries.runs_page(
                store, since=since, before_at=before_at, before_id=before_id, limit=limit
            )
        runs = [run_json(row) for row in rows]
        await self._attach_waiting(runs)
        return runs

    async def count_recent_runs(self, since: datetime.datetime, *, at_most: int) -> list[dict[str, Any]]:
        """Per routed function, its runs created since ``since`` (the newest ``at_most``) by status."""
        counts: dict[str, dict[str, int]] = {}
        for row in await queries.count_recent_runs(self._store, since=since, at_most=at_most):
            counts.setdefault(row["function_id"], {})[row["status"]] = row["runs"]
        return [
            {"function_id": function_id, "counts": by_status, "capped": sum(by_status.values()) >= at_most}
            for function_id, by_status in counts.items()
        ]

    async def list_events(
        self,
        *,
        after: tuple[datetime.datetime, str] | None,
        limit: int,
        name: str | None,
        internal: bool = True,
        namespace: str | None = None,
    ) -> list[dict[str, Any]]:
        """Events newest first; without ``internal``, those the system emits (``inngest/*``) are left out;
        with a ``namespace``, only the events sent into it (not those sent to every namespace)."""
        after_at, after_id = after if after else (None, None)
        rows: Sequence[EventRow]
        if namespace is not None:
            rows = await queries.list_events_in_namespace(
                self._store,
                after_received_at=after_at,
                after_id=after_id,
                limit=limit,
                name=name,
                namespace=namespace,
                include_internal=internal,
            )
        elif internal:
            rows = await queries.list_events(
                self._store, after_at=after_at, after_id=after_id, limit=limit, name=name
            )
        else:
            rows = await queries.list_events_without_internal(
                self._store, after_received_at=after_at, after_id=after_id, limit=limit, name=name
            )
        events = [logged_event_json(row) for row in rows]
        await self._attach_runs(events)
        return events

    async def get_event(self, event_id: str) -> dict[str, Any]:
        row = await queries.get_event(self._store, event_id=event_id)
        if row is None:
            raise NotFound(f"no event {event_id!r}")
        event = logged_event_json(row)
        await self._attach_runs([event])
        return event

    async def _attach_runs(self, events: list[dict[str, Any]]) -> None:
        by_id = {event["id"]: event for event in events}
        for event in events:
            event["runs"] = []
            event["skipped"] = []
        if not by_id:
            return
        for row in await queries.runs_of_events(self._store, event_ids=list(by_id)):
            by_id[row["event_id"]]["runs"].append(
                {"id": str(row["id"]), "function_id": row["function_id"], "status": row["status"]}
            )
        for skipped in await queries.skipped_of_events(self._store, event_ids=list(by_id)):
            by_id[skipped["event_id"]]["skipped"].append(
                {
                    "function_id": skipped["function_id"],
                    "reason": skipped["reason"],
                    "message": SKIP_MESSAGES.get(skipped["reason"], skipped["reason"]),
                    "at": _time(skipped["skipped_at"]),
                }
            )

    async def _flow_waits(self, run_ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, Any]]:
        """Why Queued runs wait at ingest's flow control (debounce, batchEvents), for those that do."""
        found: dict[uuid.UUID, dict[str, Any]] = {}
        if not run_ids:
            return found
        for row in await queries.runs_flow_wait(self._store, run_ids=run_ids):
            until = row["due"].astimezone(datetime.UTC)
            shown = f"{until:%Y-%m-%d %H:%M:%S} UTC"
            if row["debounced"]:
                found[row["run_id"]] = {
                    "reason": "debounced",
                    "until": _time(until),
                    "message": f"debounced until {shown}",
                }
            else:
                size, max_size = row["batch_events"], row["batch_max"]
                found[row["run_id"]] = {
                    "reason": "batching",
                    "until": _time(until),
                    "size": size,
                    "max_size": max_size,
                    "message": f"batch {size} of {max_size}, starts by {shown}",
                }
        return found

    async def replay(
        self,
        run_id: uuid.UUID,
        offset: datetime.timedelta,
        *,
        function: Function | None,
        event_id: str,
    ) -> uuid.UUID:
        """A new run of the same function on the same event, due at once; ``offset`` is the clock's. With the
        current route (``function``) it calls the function's URL, has its attempts and its flow control."""
        new_id = new_run_id(datetime.datetime.now(datetime.UTC) + offset)
        url = function.url if function else None
        max_attempts = function.max_attempts if function else None
        async with self._store.transaction() as conn:
            row = await queries.replay_run(
                self._store,
                new_run_id=new_id,
                replayed_run_id=run_id,
                clock_offset=offset,
                url=url,
                max_attempts=max_attempts,
                on=conn,
            )
            if row is None or row["id"] is None:
                raise NotFound(f"no run {run_id}")
            if function is not None and function.flow is not None:
                event = await queries.get_event(self._store, event_id=event_id, on=conn)
                flow = ClaimFlow.of(function, event_json(event)) if event is not None else None
                if flow is not None:
                    await gate_runs(self._store, [(new_id, flow)], offset, on=conn)
        return new_id

    async def status(self, run_id: uuid.UUID) -> str:
        status = await queries.run_status(self._store, run_id=run_id)
        if status is None:
            raise NotFound(f"no run {run_id}")
        return status
