"""Flow control at ingest: which of an event's matching functions start a run, and which run.

Ingest (ingest.py) stores events and starts the runs of functions without these settings in one statement;
for the functions that declare ``rateLimit``, ``idempotency``, ``singleton``, ``debounce`` or
``batchEvents`` it hands the (function, new event) pairs here, in the same transaction:

- ``rateLimit``: GCRA per key in the key's row (``flow_rate_limit``); events over the limit are skipped.
- ``idempotency``: one run per key per 24 hours (``flow_idempotency``); later events are skipped.
- ``singleton``, ``debounce``, ``batchEvents``: the keys are locked (``flow_lock_keys``, advisory locks for
  the transaction), then their state is read and written; ``skip`` skips a new event while a run of the key
  has not ended, ``cancel`` cancels that run and starts the new one.
- ``debounce``: the key's pending run takes the newest event and its first call is pushed back (a due time,
  woken like any other); a run already claimed is left and a new pending run starts.
- ``batchEvents``: events join the key's open batch run until it is full (due at once) or its timeout
  (its first call's due time) passes; the run's call carries the batch as ``events``.

Skipped events are recorded with their reason (``skipped_events``) and counted in
``stepline_events_skipped_total``. Keys are CEL over ``event``; a key that fails to evaluate is the empty key,
one longer than 200 characters is kept by its SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from stepline.durations import parse_duration
from stepline.flow import FlowControl
from stepline_store import queries
from stepline_store.ids import new_run_id
from stepline_store.pool import Queryable, Store

from stepline_gateway.clock import Clock
from stepline_gateway.events import Event
from stepline_gateway.flow_claims import ClaimFlow, gate_runs
from stepline_gateway.metrics import Metrics
from stepline_gateway.routing import Function, compile_expression

log = logging.getLogger(__name__)

# Skip reasons, as skipped_events and stepline_events_skipped_total{reason} name them.
RATE_LIMITED = "rate_limited"
IDEMPOTENCY = "idempotency"
SINGLETON = "singleton"

Key = tuple[str, str]

# Key values longer than this are stored by their SHA-256.
_MAX_KEY = 200


def admits(function: Function) -> bool:
    """Whether ingest's flow control applies to this function's runs."""
    flow = function.flow
    return flow is not None and (
        flow.rate_limit is not None
        or flow.idempotency is not None
        or flow.singleton is not None
        or flow.debounce is not None
        or flow.batch_events is not None
    )


@functools.lru_cache(maxsize=1024)
def _compiled(expression: str) -> Any:
    return compile_expression(expression)


def key_of(expression: str | None, event: dict[str, Any]) -> str:
    """The value of a key expression for an event, as text; the empty key without an expression (or when it
    cannot be evaluated on this event)."""
    if not expression:
        return ""
    try:
        value = _compiled(expression).execute({"event": event})
    except (ValueError, TypeError, RuntimeError, KeyError) as err:
        log.debug("key %r failed on event %s: %s", expression, event.get("id"), err)
        return ""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    # A long value is kept by its digest: the state tables' keys stay small enough to index.
    return text if len(text) <= _MAX_KEY else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _condition(expression: str, event: dict[str, Any]) -> bool:
    try:
        return bool(_compiled(expression).execute({"event": event}))
    except (ValueError, TypeError, RuntimeError, KeyError):
        return False


@dataclass
class _Candidate:
    function: Function
    event: Event
    payload: dict[str, Any]

    @property
    def flow(self) -> FlowControl:
        assert self.function.flow is not None
        return self.function.flow


@dataclass
class _NewRun:
    run_id: uuid.UUID
    candidate: _Candidate
    delay_s: float | None = None
    batch: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Admitted:
    """What flow control did with the candidates: runs started (by function), runs to cancel (singleton
    ``cancel``), events skipped."""

    started: list[str]
    cancel: list[uuid.UUID]
    skipped: int


def _grouped(
    candidates: Iterable[_Candidate], key: Callable[[_Candidate], str]
) -> dict[Key, list[_Candidate]]:
    groups: dict[Key, list[_Candidate]] = {}
    for candidate in candidates:
        groups.setdefault((candidate.function.id, key(candidate)), []).append(candidate)
    return groups


def _seconds(duration: str) -> float:
    return parse_duration(duration).total_seconds()


class Admission:
    def __init__(self, store: Store, clock: Clock, *, metrics: Metrics | None = None) -> None:
        self._store = store
        self._clock = clock
        self._metrics = metrics

    async def admit(self, conn: Queryable, pairs: list[tuple[Function, Event]]) -> Admitted:
        """Decide the runs of ``pairs`` (functions that ``admits``, events new in this transaction)."""
        candidates = [_Candidate(function, event, event.payload()) for function, event in pairs]
        skipped: list[tuple[_Candidate, str]] = []
        candidates = await self._rate_limit(conn, candidates, skipped)
        candidates = await self._idempotency(conn, candidates, skipped)
        await self._lock(conn, candidates)
        cancel: list[uuid.UUID] = []
        candidates, holders = await self._singleton(conn, candidates, skipped, cancel)
        runs: list[_NewRun] = []
        debounced = [c for c in candidates if c.flow.debounce is not None]
        batched = [
            c
            for c in candidates
            if c.flow.debounce is None
            and c.flow.batch_events is not None
            and (c.flow.batch_events.if_ is None or _condition(c.flow.batch_events.if_, c.payload))
        ]
        taken = {id(c) for c in debounced} | {id(c) for c in batched}
        runs += [_NewRun(new_run_id(self._clock.now()), c) for c in candidates if id(c) not in taken]
        chosen: dict[int, uuid.UUID] = {}
        runs += await self._debounce(conn, debounced, chosen)
        runs += await self._batch(conn, batched, chosen)
        for run in runs:
            chosen[id(run.candidate)] = run.run_id
        await self._start(conn, runs)
        # The runs started here obey the function's flow control at claim time too (flow_claims.py).
        gated = [
            (run.run_id, flow)
            for run in runs
            if (flow := ClaimFlow.of(run.candidate.function, run.candidate.payload)) is not None
        ]
        if gated:
            await gate_runs(self._store, gated, self._clock.offset(), on=conn)
        if holders:
            held = [(key, chosen[id(c)]) for key, c in holders.items() if id(c) in chosen]
            if held:
                await queries.flow_set_singletons(
                    self._store,
                    function_ids=[k[0] for k, _ in held],
                    keys=[k[1] for k, _ in held],
                    run_ids=[run_id for _, run_id in held],
                    on=conn,
                )
        if skipped:
            await queries.flow_skip_events(
                self._store,
                event_ids=[c.event.id for c, _ in skipped],
                function_ids=[c.function.id for c, _ in skipped],
                reasons=[reason for _, reason in skipped],
                clock_offset=self._clock.offset(),
                on=conn,
            )
            if self._metrics is not None:
                for candidate, reason in skipped:
                    self._metrics.event_skipped(candidate.function.id, reason)
        started = [run.candidate.function.id for run in runs]
        if self._metrics is not None:
            self._metrics.runs_created(started)
        # A singleton key's run that took the new event (a debounced run) goes on; any other is cancelled.
        kept = set(chosen.values())
        cancel = [run_id for run_id in cancel if run_id not in kept]
        return Admitted(started=started, cancel=cancel, skipped=len(skipped))

    async def _rate_limit(
        self, conn: Queryable, candidates: list[_Candidate], skipped: list[tuple[_Candidate, str]]
    ) -> list[_Candidate]:
        limited = [c for c in candidates if c.flow.rate_limit is not None]
        if not limited:
            return candidates
        groups = _grouped(
            limited, lambda c: key_of(c.flow.rate_limit.key if c.flow.rate_limit else None, c.payload)
        )
        settings = [group[0].flow.rate_limit for group in groups.values()]
        rows = await queries.flow_rate_limit(
            self._store,
            function_ids=[k[0] for k in groups],
            keys=[k[1] for k in groups],
            event_counts=[len(group) for group in groups.values()],
            step_seconds=[_seconds(s.period) / s.limit for s in settings if s is not None],
            period_seconds=[_seconds(s.period) for s in settings if s is not None],
            limits=[s.limit for s in settings if s is not None],
            clock_offset=self._clock.offset(),
            on=conn,
        )
        admitted = {(row["function_id"], row["key"]): row["admitted"] for row in rows}
        refused: set[int] = set()
        for key, group in groups.items():
            for candidate in group[admitted.get(key, 0) :]:
                skipped.append((candidate, RATE_LIMITED))
                refused.add(id(candidate))
        return [c for c in candidates if id(c) not in refused]

    async def _idempotency(
        self, conn: Queryable, candidates: list[_Candidate], skipped: list[tuple[_Candidate, str]]
    ) -> list[_Candidate]:
        keyed = [c for c in candidates if c.flow.idempotency is not None]
        if not keyed:
            return candidates
        groups = _grouped(keyed, lambda c: key_of(c.flow.idempotency, c.payload))
        rows = await queries.flow_idempotency(
            self._store,
            function_ids=[k[0] for k in groups],
            keys=[k[1] for k in groups],
            event_ids=[group[0].event.id for group in groups.values()],
            clock_offset=self._clock.offset(),
            on=conn,
        )
        taken = {(row["function_id"], row["key"]) for row in rows}
        refused: set[int] = set()
        for key, group in groups.items():
            later = group if key not in taken else group[1:]
            for candidate in later:
                skipped.append((candidate, IDEMPOTENCY))
                refused.add(id(candidate))
        return [c for c in candidates if id(c) not in refused]

    async def _lock(self, conn: Queryable, candidates: list[_Candidate]) -> None:
        names: set[str] = set()
        for c in candidates:
            flow = c.flow
            if flow.singleton is not None:
                names.add(f"stepline.singleton:{c.function.id}:{key_of(flow.singleton.key, c.payload)}")
            if flow.debounce is not None:
                names.add(f"stepline.debounce:{c.function.id}:{key_of(flow.debounce.key, c.payload)}")
            if flow.batch_events is not None:
                names.add(f"stepline.batch:{c.function.id}:{key_of(flow.batch_events.key, c.payload)}")
        if names:
            await queries.flow_lock_keys(self._store, lock_names=sorted(names), on=conn)

    async def _singleton(
        self,
        conn: Queryable,
        candidates: list[_Candidate],
        skipped: list[tuple[_Candidate, str]],
        cancel: list[uuid.UUID],
    ) -> tuple[list[_Candidate], dict[Key, _Candidate]]:
        single = [c for c in candidates if c.flow.singleton is not None]
        if not single:
            return candidates, {}
        groups = _grouped(
            single, lambda c: key_of(c.flow.singleton.key if c.flow.singleton else None, c.payload)
        )
        rows = await queries.flow_singletons(
            self._store, function_ids=[k[0] for k in groups], keys=[k[1] for k in groups], on=conn
        )
        running = {(row["function_id"], row["key"]): row["run_id"] for row in rows}
        refused: set[int] = set()
        holders: dict[Key, _Candidate] = {}
        for key, group in groups.items():
            setting = group[0].flow.singleton
            assert setting is not None
            if setting.mode == "skip":
                chosen = None if key in running else group[0]
            else:
                chosen = group[-1]
                if key in running:
                    cancel.append(running[key])
            for candidate in group:
                if candidate is not chosen:
                    skipped.append((candidate, SINGLETON))
                    refused.add(id(candidate))
            if chosen is not None:
                holders[key] = chosen
        return [c for c in candidates if id(c) not in refused], holders

    async def _debounce(
        self, conn: Queryable, candidates: list[_Candidate], chosen: dict[int, uuid.UUID]
    ) -> list[_NewRun]:
        if not candidates:
            return []
        groups = _grouped(
            candidates, lambda c: key_of(c.flow.debounce.key if c.flow.debounce else None, c.payload)
        )
        rows = await queries.flow_debounces(
            self._store, function_ids=[k[0] for k in groups], keys=[k[1] for k in groups], on=conn
        )
        pending = {(row["function_id"], row["key"]): row for row in rows}
        # The newest event of each key is the one the run gets; the others are superseded.
        last = {key: group[-1] for key, group in groups.items()}
        moving = [(key, pending[key]) for key in last if key in pending]
        moved: set[uuid.UUID] = set()
        if moving:
            settings = [last[key].flow.debounce for key, _ in moving]
            answer = await queries.flow_debounce_extend(
                self._store,
                run_ids=[row["run_id"] for _, row in moving],
                event_ids=[last[key].event.id for key, _ in moving],
                delay_seconds=[_seconds(s.period) for s in settings if s is not None],
                deadlines=[
                    row["first_at"] + parse_duration(s.timeout) if s.timeout else None
                    for (_, row), s in zip(moving, settings, strict=True)
                    if s is not None
                ],
                clock_offset=self._clock.offset(),
                on=conn,
            )
            moved = {row["run_id"] for row in answer}
        runs: list[_NewRun] = []
        # The keys of the new runs, as grouped above (their CEL is not evaluated again).
        new_keys: list[Key] = []
        for key, candidate in last.items():
            row = pending.get(key)
            if row is not None and row["run_id"] in moved:
                chosen[id(candidate)] = row["run_id"]
                continue
            setting = candidate.flow.debounce
            assert setting is not None
            runs.append(_NewRun(new_run_id(self._clock.now()), candidate, delay_s=_seconds(setting.period)))
            new_keys.append(key)
        if runs:
            await queries.flow_set_debounces(
                self._store,
                function_ids=[function_id for function_id, _ in new_keys],
                keys=[value for _, value in new_keys],
                run_ids=[run.run_id for run in runs],
                clock_offset=self._clock.offset(),
                on=conn,
            )
        return runs

    async def _batch(
        self, conn: Queryable, candidates: list[_Candidate], chosen: dict[int, uuid.UUID]
    ) -> list[_NewRun]:
        if not candidates:
            return []
        groups = _grouped(
            candidates, lambda c: key_of(c.flow.batch_events.key if c.flow.batch_events else None, c.payload)
        )
        rows = await queries.flow_batches(
            self._store, function_ids=[k[0] for k in groups], keys=[k[1] for k in groups], on=conn
        )
        open_batches = {(row["function_id"], row["key"]): row for row in rows}
        # Fill the open batches first, all in one statement.
        appends: dict[Key, tuple[uuid.UUID, int, list[_Candidate], bool]] = {}
        for key, group in groups.items():
            row = open_batches.get(key)
            setting = group[0].flow.batch_events
            assert setting is not None
            if row is None or row["size"] >= setting.max_size:
                continue
            room = setting.max_size - row["size"]
            appends[key] = (
                row["run_id"],
                row["size"],
                group[:room],
                row["size"] + len(group[:room]) >= setting.max_size,
            )
        appended: set[uuid.UUID] = set()
        if appends:
            members = [
                (run_id, c.event.id, size + n)
                for run_id, size, joining, _ in appends.values()
                for n, c in enumerate(joining)
            ]
            answer = await queries.flow_batch_append(
                self._store,
                event_run_ids=[m[0] for m in members],
                event_ids=[m[1] for m in members],
                event_positions=[m[2] for m in members],
                run_ids=[run_id for run_id, _, _, _ in appends.values()],
                is_full=[full for _, _, _, full in appends.values()],
                on=conn,
            )
            appended = {row["run_id"] for row in answer}
        runs: list[_NewRun] = []
        batch_state: list[tuple[Key, uuid.UUID | None, int, int]] = []
        for key, group in groups.items():
            setting = group[0].flow.batch_events
            assert setting is not None
            rest = group
            state: tuple[uuid.UUID | None, int] = (None, 0)
            if key in appends and appends[key][0] in appended:
                run_id, size, joining, full = appends[key]
                for candidate in joining:
                    chosen[id(candidate)] = run_id
                rest = group[len(joining) :]
                state = (None, 0) if full else (run_id, size + len(joining))
            for start in range(0, len(rest), setting.max_size):
                chunk = rest[start : start + setting.max_size]
                full = len(chunk) == setting.max_size
                run = _NewRun(
                    new_run_id(self._clock.now()),
                    chunk[0],
                    delay_s=None if full else _seconds(setting.timeout),
                    batch=[c.event.id for c in chunk],
                )
                for candidate in chunk[1:]:
                    chosen[id(candidate)] = run.run_id
                runs.append(run)
                state = (None, 0) if full else (run.run_id, len(chunk))
            batch_state.append((key, state[0], state[1], setting.max_size))
        await queries.flow_set_batches(
            self._store,
            function_ids=[key[0] for key, _, _, _ in batch_state],
            keys=[key[1] for key, _, _, _ in batch_state],
            run_ids=[run_id for _, run_id, _, _ in batch_state],
            sizes=[size for _, _, size, _ in batch_state],
            max_sizes=[max_size for _, _, _, max_size in batch_state],
            on=conn,
        )
        return runs

    async def _start(self, conn: Queryable, runs: list[_NewRun]) -> None:
        if not runs:
            return
        members = [(run.run_id, event_id, n) for run in runs for n, event_id in enumerate(run.batch)]
        await queries.flow_start_runs(
            self._store,
            run_ids=[run.run_id for run in runs],
            event_ids=[run.candidate.event.id for run in runs],
            function_ids=[run.candidate.function.id for run in runs],
            function_names=[run.candidate.function.name for run in runs],
            urls=[run.candidate.function.url for run in runs],
            max_attempts=[run.candidate.function.max_attempts for run in runs],
            delay_seconds=[run.delay_s for run in runs],
            batched=[True if run.batch else None for run in runs],
            clock_offset=self._clock.offset(),
            batch_run_ids=[m[0] for m in members],
            batch_event_ids=[m[1] for m in members],
            batch_positions=[m[2] for m in members],
            on=conn,
        )
