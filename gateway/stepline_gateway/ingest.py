"""Ingest: store events and everything they set off, in one transaction.

For the events that are new (a known id starts nothing), one statement writes the events, one run per
matching function (fan-out: each run has its own retry state) and each run's first call, due at once or at
the event's ``ts`` when that lies in the future; it also answers the open waits for those event names. In
the same transaction the waits that match are resolved and the ``cancelOn`` rules that match cancel their
runs (which emits ``inngest/function.cancelled``). Workers are woken by NOTIFY when the transaction commits.
Functions that declare rateLimit, idempotency, singleton, debounce or batchEvents have their runs decided by
admission.py, in the same transaction, after the events are stored. Given ``starts`` (the ingesting
replica's dispatcher), the first calls of new runs due at once are leased to that replica in the same
statement, as many as it has free call slots, and handed to it right after COMMIT: a run starts where it
was ingested, without a NOTIFY round trip. Runs with flow control at the claim (concurrency, throttle,
priority, timeouts) and those decided by admission are left to the claim, which does their accounting.
The transactions ingest opens itself take their connection from ``share`` (the gateway's ingest pool, sized
apart from the one that runs calls), waiting at most ``within_s``: ``PoolBusy`` then, with nothing stored.
Every time is the database's (plus the clock's offset in tests): an event sent without a ``ts`` gets the
database's now as its ``ts``, so a replica whose own clock runs ahead delays nothing.

Group commit (group_commit.py): the small ``POST``s (at most ``COMBINED_EVENTS`` events, none for a
function with flow control at ingest) that arrive while an ingest of them is in flight go to Postgres
together, as one ingest statement (per namespace) and one commit, each answered with its own ids, new ids
and runs. Two of them carrying one event id are as if sent one after the other: the first's is the new
event. Larger ``POST``s are batches already and keep a transaction of their own. A batch that fails for
its data is tried again ``POST`` by ``POST``; one that finds the database away, or no ingest connection
within ``within_s``, fails all of its ``POST``s (503: nothing was stored).
"""

from __future__ import annotations

import datetime
import functools
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from stepline.protocol import FUNCTION_CANCELLED_EVENT
from stepline_store import queries
from stepline_store.errors import PoolBusy, is_transient
from stepline_store.identity import namespace_of_function, split_function_id
from stepline_store.ids import new_run_id
from stepline_store.pool import Queryable, Store
from stepline_store.queries import CancelRunsRow

from stepline_gateway.admission import Admission, admits
from stepline_gateway.clock import Clock
from stepline_gateway.events import Event, new_event_id
from stepline_gateway.flow_claims import ClaimFlow, gate_runs
from stepline_gateway.group_commit import Combiner
from stepline_gateway.metrics import Metrics
from stepline_gateway.routing import Function, RoutingTable, Scope, evaluate, in_scope, wait_expression

# Events emitted while ingesting (cancellations) are ingested in turn, down to this depth.
_MAX_DEPTH = 3
# A POST of at most this many events is combined with the others that arrive with it (module docstring).
COMBINED_EVENTS = 10
# At most this many POSTs in one combined statement (so at most 1,000 events).
_BATCH_POSTS = 100


@dataclass(frozen=True)
class LeasedRun:
    """A new run whose first call the ingest statement leased to this replica."""

    work_id: int
    lease_token: uuid.UUID
    run_id: uuid.UUID
    function: Function
    # The event as the function receives it (its ts as stored).
    event: dict[str, Any]


class LocalStarts(Protocol):
    """Where new runs may start at once: the ingesting replica's dispatcher (dispatcher.py)."""

    @property
    def owner(self) -> str: ...

    @property
    def lease(self) -> datetime.timedelta: ...

    def reserve(self, urls: list[str]) -> list[bool]:
        """Which of the runs calling ``urls`` may start here (their slots held until adopt or release)."""
        ...

    def release(self, urls: list[str]) -> None: ...

    def adopt(self, leased: list[LeasedRun], reserved: list[str]) -> None:
        """Make the leased runs' first calls (after COMMIT); the slots reserved are the dispatcher's again."""
        ...


@dataclass(frozen=True)
class Ingested:
    ids: list[str]
    new_ids: list[str]
    runs_created: int
    leased: list[LeasedRun] = field(default_factory=list)
    # The URLs of the call slots held for runs that could start here (LocalStarts.reserve).
    reserved: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PlannedRun:
    """A run to create for an event: chosen by routing, or given (invokes, cron ticks). Its first call is due
    at once, or at the event's ``ts`` when that is later."""

    function: Function
    event: Event
    parent_run_id: uuid.UUID | None = None
    parent_step: str | None = None


@functools.lru_cache(maxsize=1024)
def _condition(expression: str | None) -> Any:
    return wait_expression(expression)


def cancelled_event(row: CancelRunsRow) -> Event:
    trigger = {"id": row["event_id"], "name": row["name"], "data": row["data"], "ts": row["ts"]}
    # The function as its app knows it (its fnId): what failure and cancel handlers compare with.
    data = {
        "function_id": split_function_id(row["function_id"])[1],
        "run_id": str(row["id"]),
        "event": trigger,
    }
    return Event(id=new_event_id(), name=FUNCTION_CANCELLED_EVENT, data=data, ts=None)


@dataclass(frozen=True)
class _Post:
    """A small POST waiting for its batch, with the runs routing chose for its events."""

    events: list[Event]
    planned: list[PlannedRun]
    namespace: Scope
    starts: LocalStarts | None
    # Orders the batch by arrival (the combiner sorts by it) and keeps each POST apart.
    key: uuid.UUID


class _Batches(Combiner[_Post, Ingested]):
    """The small POSTs that arrive together, in one ingest statement per namespace and one commit."""

    what = "ingests"

    def __init__(self, ingestor: Ingestor, *, enabled: bool, in_flight: int) -> None:
        super().__init__(enabled=enabled, max_calls=_BATCH_POSTS, in_flight=in_flight)
        self._ingestor = ingestor
        self._arrivals = 0

    async def post(
        self, events: list[Event], planned: list[PlannedRun], namespace: Scope, starts: LocalStarts | None
    ) -> Ingested:
        """Ingest a small POST with the others that arrive with it; PoolBusy (nothing stored) when it is not
        in a batch within the ingest's wait."""
        self._arrivals += 1
        post = _Post(events, planned, namespace, starts, uuid.UUID(int=self._arrivals))
        return await self.record(post, within_s=self._ingestor.within_s)

    def run_of(self, write: _Post) -> uuid.UUID:
        return write.key

    def waited_too_long(self, within_s: float) -> Exception:
        return PoolBusy(f"the ingests ahead of it took more than {within_s:g} s")

    def fails_together(self, err: BaseException) -> bool:
        # No ingest connection came free: trying each POST again would have each wait as long again.
        return is_transient(err) or isinstance(err, PoolBusy)

    async def write_one(self, write: _Post) -> Ingested:
        return await self._ingestor.alone(write.events, write.planned, write.namespace, write.starts)

    async def write_many(self, writes: list[_Post]) -> list[Ingested]:
        groups: dict[tuple[str, int], list[_Post]] = {}
        for write in writes:
            scope = json.dumps(sent_into(write.namespace))
            groups.setdefault((scope, id(write.starts)), []).append(write)
        held: list[tuple[LocalStarts, list[str]]] = []
        combined: list[tuple[list[_Post], set[str], list[PlannedRun], Ingested]] = []
        try:
            async with self._ingestor.share.transaction(within_s=self._ingestor.within_s) as conn:
                for posts in groups.values():
                    events = [event for post in posts for event in post.events]
                    # A run for each event's first POST in the batch: a later one carries a duplicate.
                    firsts: set[str] = set()
                    planned: list[PlannedRun] = []
                    for post in posts:
                        own = {event.id for event in post.events} - firsts
                        planned += [run for run in post.planned if run.event.id in own]
                        firsts |= own
                    reserved: list[str] = []
                    if posts[0].starts is not None:
                        held.append((posts[0].starts, reserved))
                    result = await self._ingestor._ingest(
                        conn,
                        events,
                        planned,
                        depth=0,
                        namespace=posts[0].namespace,
                        starts=posts[0].starts,
                        reserved=reserved,
                    )
                    combined.append((posts, set(result.new_ids), planned, result))
        except BaseException:
            for starts, reserved in held:
                if reserved:
                    starts.release(reserved)
            raise
        answers: dict[uuid.UUID, Ingested] = {}
        for posts, new, planned, result in combined:
            if posts[0].starts is not None and result.reserved:
                posts[0].starts.adopt(result.leased, result.reserved)
            claimed: set[str] = set()
            for post in posts:
                mine = list(dict.fromkeys(event.id for event in post.events))
                new_here = [event_id for event_id in mine if event_id in new and event_id not in claimed]
                claimed.update(mine)
                runs = [run for run in planned if run.event.id in new_here]
                answers[post.key] = Ingested(
                    ids=[event.id for event in post.events], new_ids=new_here, runs_created=len(runs)
                )
        return [answers[write.key] for write in writes]


class Ingestor:
    def __init__(
        self,
        store: Store,
        routes: Callable[[], RoutingTable],
        clock: Clock,
        *,
        metrics: Metrics | None = None,
        share: Store | None = None,
        within_s: float | None = None,
        group_commit: bool = True,
        in_flight: int = 2,
    ) -> None:
        self._store = store
        self.share = share or store
        self.within_s = within_s
        self._routes = routes
        self._clock = clock
        self._metrics = metrics
        self._admission = Admission(store, clock, metrics=metrics)
        self.batches = _Batches(self, enabled=group_commit, in_flight=in_flight)

    async def ingest(
        self,
        events: list[Event],
        *,
        on: Queryable = None,
        runs: list[PlannedRun] | None = None,
        namespace: Scope = None,
        starts: LocalStarts | None = None,
    ) -> Ingested:
        """Store ``events``; start the runs routing chooses for them, or exactly ``runs`` when given.

        With a ``namespace`` (an event a run of it emits, or one sent with its key) the events reach only
        that namespace's functions, waits and cancel rules; without one, those of every namespace. With
        ``starts`` (and a transaction of its own: no ``on``) new runs start on this replica after COMMIT.
        """
        if on is not None:
            return await self._ingest(on, events, runs, depth=0, namespace=namespace)
        if runs is None and self.batches.enabled and len(events) <= COMBINED_EVENTS:
            planned, flowed = self._plan(events, namespace)
            if not flowed:
                return await self.batches.post(events, planned, namespace, starts)
            # Routed already: admission decides the flowed runs in the POST's own transaction.
            return await self.alone(events, planned, namespace, starts, flowed=flowed)
        return await self.alone(events, runs, namespace, starts)

    async def alone(
        self,
        events: list[Event],
        runs: list[PlannedRun] | None,
        namespace: Scope,
        starts: LocalStarts | None,
        *,
        flowed: list[PlannedRun] | None = None,
    ) -> Ingested:
        """``events`` in a transaction of their own (``runs``: exactly these runs, as ``ingest`` takes, and
        ``flowed`` those admission decides)."""
        reserved: list[str] = []
        try:
            async with self.share.transaction(within_s=self.within_s) as conn:
                result = await self._ingest(
                    conn,
                    events,
                    runs,
                    depth=0,
                    namespace=namespace,
                    starts=starts,
                    reserved=reserved,
                    flowed=flowed,
                )
        except BaseException:
            if starts is not None and reserved:
                starts.release(reserved)
            raise
        if starts is not None and reserved:
            starts.adopt(result.leased, result.reserved)
        return result

    def _plan(self, events: list[Event], namespace: Scope) -> tuple[list[PlannedRun], list[PlannedRun]]:
        """The runs routing chooses for the distinct events: those created by the ingest statement, and
        those of functions with flow control at ingest (decided by admission.py afterwards)."""
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.id, event)
        table = self._routes()
        planned: list[PlannedRun] = []
        flowed: list[PlannedRun] = []
        for event in unique.values():
            for function in table.match(event.payload(), namespace):
                (flowed if admits(function) else planned).append(PlannedRun(function, event))
        return planned, flowed

    async def cancel(self, run_ids: list[uuid.UUID], *, on: Queryable) -> list[CancelRunsRow]:
        """Cancel runs not yet ended; emit ``inngest/function.cancelled`` for each; answer those cancelled."""
        return await self._cancel(on, run_ids, depth=0)

    async def _ingest(
        self,
        conn: Queryable,
        events: list[Event],
        planned: list[PlannedRun] | None,
        depth: int,
        *,
        namespace: Scope,
        starts: LocalStarts | None = None,
        reserved: list[str] | None = None,
        flowed: list[PlannedRun] | None = None,
    ) -> Ingested:
        """Store ``events`` and start ``planned`` (None: the runs routing chooses) and ``flowed`` (runs that
        admission decides, routed by the caller) in ``conn``'s transaction."""
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.id, event)
        # Routed runs of functions with flow control at ingest are decided after the events are stored
        # (admission.py); every other run is created by the one ingest statement.
        if planned is None:
            planned, flowed = self._plan(list(unique.values()), namespace)
        flowed = flowed or []
        run_ids = [new_run_id(self._clock.now()) for _ in planned]
        here: list[uuid.UUID] = []
        if starts is not None and reserved is not None:
            # Runs with flow control at the claim go through it; the others may start here.
            eligible = [
                (r, p.function.url) for r, p in zip(run_ids, planned, strict=True) if p.function.flow is None
            ]
            if eligible:
                taken = starts.reserve([url for _, url in eligible])
                chosen = [item for item, ok in zip(eligible, taken, strict=True) if ok]
                reserved.extend(url for _, url in chosen)
                here = [run_id for run_id, _ in chosen]
        row = await queries.ingest(
            self._store,
            event_ids=[e.id for e in unique.values()],
            event_names=[e.name for e in unique.values()],
            event_data=[e.data for e in unique.values()],
            event_users=[e.user for e in unique.values()],
            event_ts=[e.ts for e in unique.values()],
            clock_offset=self._clock.offset(),
            run_ids=run_ids,
            run_event_ids=[p.event.id for p in planned],
            function_ids=[p.function.id for p in planned],
            function_names=[p.function.name for p in planned],
            urls=[p.function.url for p in planned],
            max_attempts=[p.function.max_attempts for p in planned],
            parent_run_ids=[p.parent_run_id for p in planned],
            parent_steps=[p.parent_step for p in planned],
            event_versions=[e.v for e in unique.values()],
            leased_run_ids=here,
            lease_owner=None if starts is None else starts.owner,
            lease_duration=None if starts is None else starts.lease,
            namespaces=sent_into(namespace),
            on=conn,
        )
        assert row is not None
        now: datetime.datetime = row["now"]
        stamped: dict[str, int] = row["new_events"]
        # The new events as stored: those sent without a ts have the database's.
        fresh = [replace(event, ts=stamped[event.id]) for event in unique.values() if event.id in stamped]
        gated = [
            (run_id, flow)
            for run_id, p in zip(run_ids, planned, strict=True)
            if p.function.flow is not None
            and p.event.id in stamped
            and (flow := ClaimFlow.of(p.function, replace(p.event, ts=stamped[p.event.id]).payload()))
        ]
        if gated:
            await gate_runs(self._store, gated, self._clock.offset(), on=conn)
        if self._metrics is not None:
            # Counted when the statement succeeds (a transaction rolled back after it is rare: an error
            # while recording an answer).
            self._metrics.runs_created(p.function.id for p in planned if p.event.id in stamped)
        runs_created: int = row["runs_created"]
        if flowed:
            by_id = {event.id: event for event in fresh}
            pairs = [(p.function, by_id[p.event.id]) for p in flowed if p.event.id in by_id]
            if pairs:
                admitted = await self._admission.admit(conn, pairs)
                runs_created += len(admitted.started)
                if admitted.cancel:
                    await self._cancel(conn, admitted.cancel, depth)
        if row["waits"]:
            waits = row["waits"]
            if namespace is not None:
                waits = [w for w in waits if in_scope(namespace_of_function(w["function_id"]), namespace)]
            await self._resolve_waits(conn, waits, fresh)
        if depth < _MAX_DEPTH:
            await self._apply_cancel_rules(conn, fresh, now, depth, namespace)
        leased: list[LeasedRun] = []
        if row["leased"]:
            by_run = {run_id: p for run_id, p in zip(run_ids, planned, strict=True)}
            for item in row["leased"]:
                run_id = uuid.UUID(item["run_id"])
                p = by_run[run_id]
                payload = replace(p.event, ts=stamped[p.event.id]).payload()
                leased.append(
                    LeasedRun(item["id"], uuid.UUID(item["lease_token"]), run_id, p.function, payload)
                )
        return Ingested(
            ids=[event.id for event in events],
            new_ids=list(stamped),
            runs_created=runs_created,
            leased=leased,
            reserved=list(reserved or []),
        )

    async def _resolve_waits(
        self, conn: Queryable, waits: list[dict[str, Any]], fresh: Iterable[Event]
    ) -> None:
        open_waits = list(waits)
        matched: list[tuple[uuid.UUID, str, str]] = []
        for event in fresh:
            incoming = event.payload()
            for wait in list(open_waits):
                if wait["event_name"] != event.name:
                    continue
                variables = {"event": wait["event"], "async": incoming}
                if evaluate(_condition(wait["expression"]), variables):
                    matched.append((uuid.UUID(wait["run_id"]), wait["hash"], json.dumps(incoming)))
                    open_waits.remove(wait)
        if matched:
            run_ids, hashes, payloads = (list(column) for column in zip(*matched, strict=True))
            await queries.resolve_waits(
                self._store, run_ids=run_ids, step_hashes=hashes, events=payloads, on=conn
            )

    async def _apply_cancel_rules(
        self,
        conn: Queryable,
        fresh: list[Event],
        now: datetime.datetime,
        depth: int,
        namespace: Scope,
    ) -> None:
        rules = self._routes().cancel_rules
        relevant = [
            (event, [r for r in rules[event.name] if in_scope(r.function.namespace, namespace)])
            for event in fresh
            if event.name in rules
        ]
        relevant = [(event, event_rules) for event, event_rules in relevant if event_rules]
        if not relevant:
            return
        function_ids = sorted({rule.function.id for _, event_rules in relevant for rule in event_rules})
        candidates = await queries.cancel_candidates(self._store, function_ids=function_ids, on=conn)
        doomed: set[uuid.UUID] = set()
        for run in candidates:
            trigger = {"id": run["event_id"], "name": run["name"], "data": run["data"], "ts": run["ts"]}
            for event, event_rules in relevant:
                if event.id == run["event_id"]:
                    continue
                for rule in event_rules:
                    if rule.function.id != run["function_id"]:
                        continue
                    if rule.timeout is not None and run["created_at"] + rule.timeout < now:
                        continue
                    if evaluate(rule.condition, {"event": trigger, "async": event.payload()}):
                        doomed.add(run["id"])
        if doomed:
            await self._cancel(conn, sorted(doomed), depth)

    async def _cancel(self, conn: Queryable, run_ids: list[uuid.UUID], depth: int) -> list[CancelRunsRow]:
        rows = await queries.cancel_runs(
            self._store, run_ids=run_ids, clock_offset=self._clock.offset(), on=conn
        )
        if self._metrics is not None:
            for row in rows:
                self._metrics.run_ended(row["function_id"], "Cancelled", _seconds(row))
        if rows and depth < _MAX_DEPTH:
            # Each cancelled run's event reaches only its own namespace.
            by_namespace: dict[str, list[Event]] = {}
            for row in rows:
                namespace = namespace_of_function(row["function_id"])
                by_namespace.setdefault(namespace, []).append(cancelled_event(row))
            for namespace, emitted in sorted(by_namespace.items()):
                await self._ingest(conn, emitted, None, depth + 1, namespace=namespace)
        return rows


def _seconds(row: CancelRunsRow) -> float | None:
    """How long a run lasted, from the row that ended it."""
    if row["created_at"] is None or row["ended_at"] is None:
        return None
    seconds: float = (row["ended_at"] - row["created_at"]).total_seconds()
    return seconds


def sent_into(namespace: Scope) -> list[str] | None:
    """What the event log keeps of the namespaces an event was sent into (None: every namespace)."""
    if namespace is None:
        return None
    return [namespace] if isinstance(namespace, str) else sorted(namespace)


def describe(events: list[Event]) -> str:
    """A short log form of a batch of events."""
    names = sorted({event.name for event in events})
    return f"{len(events)} event(s): {json.dumps(names)}"
