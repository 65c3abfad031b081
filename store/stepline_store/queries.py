"""One typed async function per named query of ``sql/queries.sql``: written by scripts/generate-queries
from the queries and their annotations, with the types Postgres reports for each statement (never edit it
by hand; stepline_store/query_module.py says how it is made).

Each function takes the store (a ``Store``, whose statements are counted, or a bare connection or pool) and
the query's parameters by keyword; ``on`` runs it on a connection of a transaction the caller holds. Rows are
asyncpg records typed as the ``TypedDict`` classes below: read, never written.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Sequence
from typing import Any, TypedDict, cast

from stepline_store.pool import Db, Queryable, execute, fetch, fetchrow, fetchval


class LoadFunctionsRow(TypedDict):
    id: str
    app_id: str
    name: str
    url: str
    triggers: Any
    retries: int
    paused: bool
    source: str
    cancel_on: Any
    checkpoint: Any
    flow: Any
    retry_policy: Any
    created_at: datetime.datetime
    updated_at: datetime.datetime


async def load_functions(db: Db, on: Queryable = None) -> list[LoadFunctionsRow]:
    return cast("list[LoadFunctionsRow]", await fetch(db, "load_functions", (), on))


async def set_cancel_rules(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    cancel_rules: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(db, "set_cancel_rules", (function_ids, cancel_rules), on)


async def set_checkpoint_settings(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    checkpoint_settings: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(db, "set_checkpoint_settings", (function_ids, checkpoint_settings), on)


async def set_flow_control(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    flow: Sequence[str | None],
    retry_policies: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(db, "set_flow_control", (function_ids, flow, retry_policies), on)


async def upsert_functions(
    db: Db,
    *,
    ids: Sequence[str | None],
    app_ids: Sequence[str | None],
    names: Sequence[str | None],
    urls: Sequence[str | None],
    triggers: Sequence[str | None],
    retries: Sequence[int | None],
    paused: Sequence[bool | None],
    sources: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(
        db, "upsert_functions", (ids, app_ids, names, urls, triggers, retries, paused, sources), on
    )


async def delete_functions_of_source_except(
    db: Db,
    *,
    source: str,
    ids_to: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(db, "delete_functions_of_source_except", (source, ids_to), on)


async def delete_app_functions_except(
    db: Db,
    *,
    app_id: str,
    source: str,
    ids_to: Sequence[str | None],
    app: str,
    on: Queryable = None,
) -> str:
    return await execute(db, "delete_app_functions_except", (app_id, source, ids_to, app), on)


async def notify_routes(db: Db, on: Queryable = None) -> str:
    return await execute(db, "notify_routes", (), on)


class IngestRow(TypedDict):
    new_events: Any
    runs_created: int | None
    notified: int | None
    notified_leased: int | None
    leased: Any
    now: datetime.datetime | None
    waits: Any


async def ingest(
    db: Db,
    *,
    event_ids: Sequence[str | None],
    names: Sequence[str | None],
    data: Sequence[Any],
    users: Sequence[Any],
    ts: Sequence[int | None],
    clock_offset: datetime.timedelta,
    run_ids: Sequence[uuid.UUID | None],
    p8: Sequence[str | None],
    function_ids: Sequence[str | None],
    function_names: Sequence[str | None],
    urls: Sequence[str | None],
    max_attempts: Sequence[int | None],
    parent_run: Sequence[uuid.UUID | None],
    parent_step: Sequence[str | None],
    event_versions: Sequence[str | None],
    p16: Sequence[uuid.UUID | None],
    p17: str,
    p18: datetime.timedelta,
    namespaces_the: Sequence[str | None],
    on: Queryable = None,
) -> IngestRow | None:
    """Stores events (a known id is skipped) and, for the events that are new, their runs and first calls;
    answers the open waits for the new events' names, to be matched by the caller in the same transaction.
    """
    return cast(
        "IngestRow | None",
        await fetchrow(
            db,
            "ingest",
            (
                event_ids,
                names,
                data,
                users,
                ts,
                clock_offset,
                run_ids,
                p8,
                function_ids,
                function_names,
                urls,
                max_attempts,
                parent_run,
                parent_step,
                event_versions,
                p16,
                p17,
                p18,
                namespaces_the,
            ),
            on,
        ),
    )


class ResolveWaitsRow(TypedDict):
    resolved: int | None
    notified: int | None


async def resolve_waits(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    step_hashes: Sequence[str | None],
    events: Sequence[str | None],
    on: Queryable = None,
) -> ResolveWaitsRow | None:
    """Events arrived for open waits: each wait is closed and its parked call made due at once (the
    database's statement_timestamp()) with the event as the step's memo.
    """
    return cast(
        "ResolveWaitsRow | None", await fetchrow(db, "resolve_waits", (run_ids, step_hashes, events), on)
    )


class CancelCandidatesRow(TypedDict):
    id: uuid.UUID
    function_id: str
    created_at: datetime.datetime
    event_id: str
    name: str
    data: Any
    ts: int


async def cancel_candidates(
    db: Db,
    *,
    not_yet: Sequence[str | None],
    on: Queryable = None,
) -> list[CancelCandidatesRow]:
    """Runs that a cancel rule may stop: those of functions $1 not yet ended, with their triggering events."""
    return cast("list[CancelCandidatesRow]", await fetch(db, "cancel_candidates", (not_yet,), on))


class ReplayRunRow(TypedDict):
    id: uuid.UUID
    notified: int | None


async def replay_run(
    db: Db,
    *,
    new: uuid.UUID,
    run_replayed: uuid.UUID,
    clock_offset: datetime.timedelta,
    url: str,
    max_attempts: int,
    on: Queryable = None,
) -> ReplayRunRow | None:
    """A new run of the same function on the same event (a batch run: on the same events), due at once."""
    return cast(
        "ReplayRunRow | None",
        await fetchrow(db, "replay_run", (new, run_replayed, clock_offset, url, max_attempts), on),
    )


class ClaimWorkRow(TypedDict):
    id: int
    run_id: uuid.UUID
    step_id: str
    attempt: int
    lease_token: uuid.UUID | None
    resolves: str | None
    resolves_op: str | None
    resolves_name: str | None
    resolution: Any
    lost_leases: int
    function_id: str
    url: str
    max_attempts: int
    event_id: str
    event_name: str
    event_data: Any
    event_user: Any
    event_ts: int | None
    event_v: str | None
    batched: bool | None
    queued_s: float | None
    memos: Any
    stack: list[str | None] | None


async def claim_work(
    db: Db,
    *,
    p1: datetime.timedelta,
    calls_to: int,
    p3: str,
    p4: datetime.timedelta,
    is_not: Sequence[str | None],
    on: Queryable = None,
) -> list[ClaimWorkRow]:
    """Leases up to $2 calls to owner $3 for $4 (an interval of the database's clock), with all a call
    needs: first calls whose lease lapsed (judged by statement_timestamp() alone, so that no replica's own
    clock decides whether another one's lease is over), then due calls (available_at <=
    statement_timestamp() + $1, the clock offset).
    """
    return cast("list[ClaimWorkRow]", await fetch(db, "claim_work", (p1, calls_to, p3, p4, is_not), on))


async def next_due(db: Db, *, or_the: datetime.timedelta, on: Queryable = None) -> float | None:
    """Seconds until a claim would find something (negative: already), null when the queue is empty: the
    next due call for a replica of clock offset $1, or the next lease to lapse.
    """
    return cast("float | None", await fetchval(db, "next_due", (or_the,), on))


async def extend_leases(
    db: Db,
    *,
    p1: Sequence[int | None],
    p2: Sequence[uuid.UUID | None],
    more_from: datetime.timedelta,
    on: Queryable = None,
) -> str:
    """The heartbeat: the leases this replica holds, named by work id and token ($1, $2), last $3 more from
    the database's statement_timestamp().
    """
    return await execute(db, "extend_leases", (p1, p2, more_from), on)


async def lock_run(db: Db, *, run_id: uuid.UUID, on: Queryable = None) -> str:
    """Serialises the outcomes of one run's parallel calls."""
    return cast("str", await fetchval(db, "lock_run", (run_id,), on))


class RecordStepRow(TypedDict):
    held: bool | None
    recorded: bool | None
    memos_before: int | None


async def record_step(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    step_hash: str,
    step_name: str,
    next_step: str,
    from_the: datetime.timedelta,
    op: str,
    status: str,
    memo: Any,
    attempts: int,
    error: Any,
    seconds_the: float,
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> RecordStepRow | None:
    """Records a step's memo once (a second record of the same step changes nothing; SQL NULL means JSON
    null) and turns the held call into the next one: $6 next step id ("step" to discover what follows), its
    lease renewed for $7 from the database's statement_timestamp().
    """
    return cast(
        "RecordStepRow | None",
        await fetchrow(
            db,
            "record_step",
            (
                work_id,
                lease_token,
                run_id,
                step_hash,
                step_name,
                next_step,
                from_the,
                op,
                status,
                memo,
                attempts,
                error,
                seconds_the,
                clock_offset,
            ),
            on,
        ),
    )


class RecordStepsRow(TypedDict):
    held: bool | None
    recorded: int | None
    function_id: str


async def record_steps(
    db: Db,
    *,
    with_lease: int,
    and_restarts: uuid.UUID,
    run_id: uuid.UUID,
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    ops: Sequence[str | None],
    memos: Sequence[str | None],
    durations_in: Sequence[float | None],
    clock_offset: datetime.timedelta,
    whether_they: bool,
    namespace_whose: str,
    on: Queryable = None,
) -> RecordStepsRow | None:
    """Records steps that ran (StepRun), each once (a step recorded already keeps its memo), for the call
    that holds work $1 with lease token $2, and restarts that call's attempt count when one was new: it
    made progress (steps recorded before change nothing, or sending them again would retry without end).
    """
    return cast(
        "RecordStepsRow | None",
        await fetchrow(
            db,
            "record_steps",
            (
                with_lease,
                and_restarts,
                run_id,
                hashes,
                names,
                ops,
                memos,
                durations_in,
                clock_offset,
                whether_they,
                namespace_whose,
            ),
            on,
        ),
    )


class RecordStepsManyRow(TypedDict):
    call: int | None
    held: bool | None
    recorded: int | None
    function_id: str


async def record_steps_many(
    db: Db,
    *,
    index: Sequence[int | None],
    work_ids: Sequence[int | None],
    lease_tokens: Sequence[uuid.UUID | None],
    run_ids: Sequence[uuid.UUID | None],
    clock_offsets: Sequence[datetime.timedelta | None],
    whether_they: Sequence[bool | None],
    index_of: Sequence[int | None],
    place_in: Sequence[int | None],
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    of_record_steps: Sequence[str | None],
    memos: Sequence[str | None],
    durations_in: Sequence[float | None],
    namespaces_whose: Sequence[str | None],
    on: Queryable = None,
) -> list[RecordStepsManyRow]:
    """record_steps for several calls at once (group commit across runs:
    stepline_gateway/step_combiner.py), one statement and one commit for all of them; each call is fenced
    by its own lease token and answered on its own row, so a stale lease refuses that call alone.
    """
    return cast(
        "list[RecordStepsManyRow]",
        await fetch(
            db,
            "record_steps_many",
            (
                index,
                work_ids,
                lease_tokens,
                run_ids,
                clock_offsets,
                whether_they,
                index_of,
                place_in,
                hashes,
                names,
                of_record_steps,
                memos,
                durations_in,
                namespaces_whose,
            ),
            on,
        ),
    )


class FinishRunsManyRow(TypedDict):
    call: int | None
    held: bool | None
    recorded: int | None
    ended: bool | None
    function_id: str
    created_at: datetime.datetime
    ended_at: datetime.datetime | None
    notified: int | None


async def finish_runs_many(
    db: Db,
    *,
    index: Sequence[int | None],
    work_ids: Sequence[int | None],
    lease_tokens: Sequence[uuid.UUID | None],
    run_ids: Sequence[uuid.UUID | None],
    clock_offsets: Sequence[datetime.timedelta | None],
    outputs: Sequence[str | None],
    index_of: Sequence[int | None],
    place_in: Sequence[int | None],
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    ops: Sequence[str | None],
    memos: Sequence[str | None],
    durations_in: Sequence[float | None],
    on: Queryable = None,
) -> list[FinishRunsManyRow]:
    """The steps at the end of a call's answer and the end of its run (Completed) for several calls at once
    (group commit across runs: stepline_gateway/group_commit.py), one statement and one commit for all of
    them; what record_steps and finish_run do for one call, each call fenced by its own lease token and
    answered on its own row, so a stale lease refuses that call alone.
    """
    return cast(
        "list[FinishRunsManyRow]",
        await fetch(
            db,
            "finish_runs_many",
            (
                index,
                work_ids,
                lease_tokens,
                run_ids,
                clock_offsets,
                outputs,
                index_of,
                place_in,
                hashes,
                names,
                ops,
                memos,
                durations_in,
            ),
            on,
        ),
    )


async def held_attempt(db: Db, *, with_lease: int, p2: uuid.UUID, on: Queryable = None) -> int:
    """The attempt count of the call holding work $1 with lease token $2 (null when the lease is lost): the
    checkpoint API restarts it while the call runs.
    """
    return cast("int", await fetchval(db, "held_attempt", (with_lease, p2), on))


class RunMemosRow(TypedDict):
    memos: Any
    stack: list[str | None] | None


async def run_memos(db: Db, *, as_claim_work: uuid.UUID, on: Queryable = None) -> RunMemosRow | None:
    """The memos and the stack of run $1, as claim_work gives them."""
    return cast("RunMemosRow | None", await fetchrow(db, "run_memos", (as_claim_work,), on))


class RediscoverRow(TypedDict):
    held: bool | None
    memos: Any
    stack: list[str | None] | None


async def rediscover(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    from_the: datetime.timedelta,
    run_id: uuid.UUID,
    on: Queryable = None,
) -> RediscoverRow | None:
    """The service asked for a new call (DiscoveryRequest): the held call becomes a discovery call, its
    lease renewed for $3 from the database's clock, with the run's memos and stack.
    """
    return cast(
        "RediscoverRow | None", await fetchrow(db, "rediscover", (work_id, lease_token, from_the, run_id), on)
    )


class RecordParallelStepRow(TypedDict):
    goes_on: bool | None
    done: bool | None


async def record_parallel_step(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    hash: str,
    name: str,
    op: str,
    status: str,
    memo: Any,
    attempts: int,
    error: Any,
    seconds_the: float,
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> RecordParallelStepRow | None:
    """Like record_step for a call that targeted one of several parallel steps (run locked by lock_run):
    the call is done; the last one of the run to finish becomes the discovery call that goes on, released
    and due at once for any replica.
    """
    return cast(
        "RecordParallelStepRow | None",
        await fetchrow(
            db,
            "record_parallel_step",
            (
                work_id,
                lease_token,
                run_id,
                hash,
                name,
                op,
                status,
                memo,
                attempts,
                error,
                seconds_the,
                clock_offset,
            ),
            on,
        ),
    )


class PlanStepsRow(TypedDict):
    held: bool | None
    notified: int | None


async def plan_steps(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> PlanStepsRow | None:
    """The held call found parallel steps: one call per step, due at once, and the held call is done."""
    return cast(
        "PlanStepsRow | None",
        await fetchrow(db, "plan_steps", (work_id, lease_token, run_id, hashes, names, clock_offset), on),
    )


class RetryCallRow(TypedDict):
    held: bool | None
    due: datetime.datetime | None


async def retry_call(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    next_attempt: int,
    p4: datetime.timedelta,
    run_id: uuid.UUID,
    step_hash: str,
    step_name: str,
    error: Any,
    clock_offset: datetime.timedelta,
    p10: datetime.datetime,
    seconds_since: float,
    on: Queryable = None,
) -> RetryCallRow | None:
    """An attempt failed and may be tried again: the call is released with its attempt count raised, due
    after $4 (the backoff, from statement_timestamp() + $9, the clock offset) and not before $10 (a retry-
    after instant, or null), and a step's failed attempt is kept in its history.
    """
    return cast(
        "RetryCallRow | None",
        await fetchrow(
            db,
            "retry_call",
            (
                work_id,
                lease_token,
                next_attempt,
                p4,
                run_id,
                step_hash,
                step_name,
                error,
                clock_offset,
                p10,
                seconds_since,
            ),
            on,
        ),
    )


class FinishRunRow(TypedDict):
    id: uuid.UUID
    function_id: str
    event_id: str
    created_at: datetime.datetime
    ended_at: datetime.datetime | None
    notified: int | None


async def finish_run(
    db: Db,
    *,
    run_id: uuid.UUID,
    status: str,
    output: Any,
    error: Any,
    clock_offset: datetime.timedelta,
    work: int,
    lease_token: uuid.UUID,
    on: Queryable = None,
) -> FinishRunRow | None:
    """Ends a run (Completed or Failed), drops its calls and waits, and hands its result to the run that
    invoked it (its parked call is due at once).
    """
    return cast(
        "FinishRunRow | None",
        await fetchrow(
            db, "finish_run", (run_id, status, output, error, clock_offset, work, lease_token), on
        ),
    )


class ParkCallRow(TypedDict):
    held: bool | None


async def park_call(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    hash: str,
    name: str,
    op: str,
    step_status: str,
    from_statement_timestamp: datetime.timedelta,
    as_the: Any,
    p10: datetime.timedelta,
    event_name: str,
    wait_expression: str,
    p13: datetime.datetime,
    on: Queryable = None,
) -> ParkCallRow | None:
    """The held call waits: for a time (Sleep), an event (WaitForEvent, with an open wait) or a child run
    (InvokeFunction).
    """
    return cast(
        "ParkCallRow | None",
        await fetchrow(
            db,
            "park_call",
            (
                work_id,
                lease_token,
                run_id,
                hash,
                name,
                op,
                step_status,
                from_statement_timestamp,
                as_the,
                p10,
                event_name,
                wait_expression,
                p13,
            ),
            on,
        ),
    )


class CancelRunsRow(TypedDict):
    id: uuid.UUID
    function_id: str
    event_id: str
    name: str
    data: Any
    ts: int
    created_at: datetime.datetime
    ended_at: datetime.datetime | None


async def cancel_runs(
    db: Db,
    *,
    that_have: Sequence[uuid.UUID | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[CancelRunsRow]:
    """Cancels the runs $1 that have not ended; drops their calls and waits."""
    return cast("list[CancelRunsRow]", await fetch(db, "cancel_runs", (that_have, clock_offset), on))


async def run_status(db: Db, *, p1: uuid.UUID, on: Queryable = None) -> str:
    return cast("str", await fetchval(db, "run_status", (p1,), on))


class GetRunRow(TypedDict):
    id: uuid.UUID
    function_id: str
    function_name: str
    url: str
    status: str
    event_id: str
    output: Any
    error: Any
    replay_of: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None


async def get_run(db: Db, *, p1: uuid.UUID, on: Queryable = None) -> GetRunRow | None:
    return cast("GetRunRow | None", await fetchrow(db, "get_run", (p1,), on))


class GetStepsRow(TypedDict):
    hash: str
    name: str
    op: str
    status: str
    attempts: int
    memo: Any
    error: Any
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    checkpointed: bool
    attempt_started_at: datetime.datetime | None
    failed_attempts: Any


async def get_steps(db: Db, *, p1: uuid.UUID, on: Queryable = None) -> list[GetStepsRow]:
    return cast("list[GetStepsRow]", await fetch(db, "get_steps", (p1,), on))


class RunsPageRow(TypedDict):
    id: uuid.UUID
    function_id: str
    function_name: str
    url: str
    status: str
    event_id: str
    output: Any
    error: Any
    replay_of: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None


async def runs_page(
    db: Db,
    *,
    created_at: datetime.datetime,
    p2: datetime.datetime,
    rows_before: uuid.UUID,
    limit: int,
    on: Queryable = None,
) -> list[RunsPageRow]:
    """Runs newest first, keyset paged."""
    return cast("list[RunsPageRow]", await fetch(db, "runs_page", (created_at, p2, rows_before, limit), on))


class RunsPageOfFunctionRow(TypedDict):
    id: uuid.UUID
    function_id: str
    function_name: str
    url: str
    status: str
    event_id: str
    output: Any
    error: Any
    replay_of: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None


async def runs_page_of_function(
    db: Db,
    *,
    p1: datetime.datetime,
    p2: datetime.datetime,
    p3: uuid.UUID,
    p4: int,
    function_id: str,
    on: Queryable = None,
) -> list[RunsPageOfFunctionRow]:
    """Like runs_page; $5 function id."""
    return cast(
        "list[RunsPageOfFunctionRow]",
        await fetch(db, "runs_page_of_function", (p1, p2, p3, p4, function_id), on),
    )


class RunsPageWithStatusRow(TypedDict):
    id: uuid.UUID
    function_id: str
    function_name: str
    url: str
    status: str
    event_id: str
    output: Any
    error: Any
    replay_of: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None


async def runs_page_with_status(
    db: Db,
    *,
    p1: datetime.datetime,
    p2: datetime.datetime,
    p3: uuid.UUID,
    p4: int,
    status: str,
    on: Queryable = None,
) -> list[RunsPageWithStatusRow]:
    """Like runs_page; $5 status."""
    return cast(
        "list[RunsPageWithStatusRow]", await fetch(db, "runs_page_with_status", (p1, p2, p3, p4, status), on)
    )


class RunsPageOfFunctionWithStatusRow(TypedDict):
    id: uuid.UUID
    function_id: str
    function_name: str
    url: str
    status: str
    event_id: str
    output: Any
    error: Any
    replay_of: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None


async def runs_page_of_function_with_status(
    db: Db,
    *,
    p1: datetime.datetime,
    p2: datetime.datetime,
    p3: uuid.UUID,
    p4: int,
    function_id: str,
    status: str,
    on: Queryable = None,
) -> list[RunsPageOfFunctionWithStatusRow]:
    """Like runs_page; $5 function id, $6 status (read through the function's index)."""
    return cast(
        "list[RunsPageOfFunctionWithStatusRow]",
        await fetch(db, "runs_page_of_function_with_status", (p1, p2, p3, p4, function_id, status), on),
    )


class RunsPageInNamespaceRow(TypedDict):
    id: uuid.UUID
    function_id: str
    function_name: str
    url: str
    status: str
    event_id: str
    output: Any
    error: Any
    replay_of: uuid.UUID | None
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None


async def runs_page_in_namespace(
    db: Db,
    *,
    p1: datetime.datetime,
    p2: datetime.datetime,
    p3: uuid.UUID,
    p4: int,
    namespace: str,
    p6: str,
    on: Queryable = None,
) -> list[RunsPageInNamespaceRow]:
    """Like runs_page, for one namespace (a namespace's token, the dashboard's selector); $5 the namespace,
    $6 status or null.
    """
    return cast(
        "list[RunsPageInNamespaceRow]",
        await fetch(db, "runs_page_in_namespace", (p1, p2, p3, p4, namespace, p6), on),
    )


class CountRecentRunsRow(TypedDict):
    function_id: str
    status: str
    runs: int | None


async def count_recent_runs(
    db: Db,
    *,
    at_most: datetime.datetime,
    of_each: int,
    on: Queryable = None,
) -> list[CountRecentRunsRow]:
    """The recent runs of each routed function by status (the dashboard's Functions page): those created at
    or after $1, at most the newest $2 of each function, so that the cost stays bounded however busy the
    window.
    """
    return cast("list[CountRecentRunsRow]", await fetch(db, "count_recent_runs", (at_most, of_each), on))


class GetEventRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str | None] | None


async def get_event(db: Db, *, p1: str, on: Queryable = None) -> GetEventRow | None:
    return cast("GetEventRow | None", await fetchrow(db, "get_event", (p1,), on))


class ListEventsRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str | None] | None


async def list_events(
    db: Db,
    *,
    p1: datetime.datetime,
    last_row: str,
    limit: int,
    name_or: str,
    on: Queryable = None,
) -> list[ListEventsRow]:
    """Newest first, keyset paged: $1/$2 the last row seen (received_at, id) or null, $3 limit, $4 name or
    null.
    """
    return cast("list[ListEventsRow]", await fetch(db, "list_events", (p1, last_row, limit, name_or), on))


class RunsOfEventsRow(TypedDict):
    id: uuid.UUID
    event_id: str
    function_id: str
    status: str
    created_at: datetime.datetime


async def runs_of_events(
    db: Db,
    *,
    those_they: Sequence[str | None],
    on: Queryable = None,
) -> list[RunsOfEventsRow]:
    """The runs of events $1: those they started, and the batch runs they are part of."""
    return cast("list[RunsOfEventsRow]", await fetch(db, "runs_of_events", (those_they,), on))


async def ping(db: Db, on: Queryable = None) -> int | None:
    return cast("int | None", await fetchval(db, "ping", (), on))


async def lock_migrations(db: Db, *, p1: int, on: Queryable = None) -> str:
    return await execute(db, "lock_migrations", (p1,), on)


async def unlock_migrations(db: Db, *, p1: int, on: Queryable = None) -> str:
    return await execute(db, "unlock_migrations", (p1,), on)


async def create_migrations_table(db: Db, on: Queryable = None) -> str:
    return await execute(db, "create_migrations_table", (), on)


async def schema_version(db: Db, on: Queryable = None) -> int | None:
    return cast("int | None", await fetchval(db, "schema_version", (), on))


async def migrations_after(db: Db, *, p1: int, on: Queryable = None) -> list[str | None] | None:
    """The names of the migrations applied after version $1, as "NNNN name", in order."""
    return cast("list[str | None] | None", await fetchval(db, "migrations_after", (p1,), on))


async def record_migration(db: Db, *, p1: int, p2: str, on: Queryable = None) -> str:
    return await execute(db, "record_migration", (p1, p2), on)


async def create_history_partitions(
    db: Db,
    *,
    to: datetime.date,
    that_do: datetime.date,
    ms_for: int,
    on: Queryable = None,
) -> int | None:
    """Makes the day partitions of history (events, runs, steps, step attempts) from UTC day $1 to $2 that
    do not exist yet, waiting at most $3 ms for a lock on the tables (else lock_not_available); answers how
    many days were made.
    """
    return cast("int | None", await fetchval(db, "create_history_partitions", (to, that_do, ms_for), on))


async def drop_history_before(
    db: Db,
    *,
    p1: datetime.timedelta,
    p2: datetime.timedelta,
    ms_is: int,
    on: Queryable = None,
) -> list[datetime.date | None] | None:
    """Retention: drops the days of history that ended at or before statement_timestamp() + $1 (the clock
    offset) - $2 (the retention period), but those still holding a run not ended (or the event of one); a
    day whose tables stay locked for $3 ms is left for the next time.
    """
    return cast(
        "list[datetime.date | None] | None", await fetchval(db, "drop_history_before", (p1, p2, ms_is), on)
    )


class HistoryDaysRow(TypedDict):
    day: datetime.date | None


async def history_days(db: Db, on: Queryable = None) -> list[HistoryDaysRow]:
    """The UTC days of history kept (the day partitions of runs), oldest first."""
    return cast("list[HistoryDaysRow]", await fetch(db, "history_days", (), on))


async def lock_function_id(db: Db, *, function_id: str, on: Queryable = None) -> str:
    """The operator's publish: serialises two resources that would publish the same function id."""
    return await execute(db, "lock_function_id", (function_id,), on)


async def lock_function_ids(db: Db, *, p1: Sequence[str | None], on: Queryable = None) -> str:
    """An SDK sync: the same locks as lock_function_id, for each of $1 (sorted, so two syncs never
    deadlock).
    """
    return await execute(db, "lock_function_ids", (p1,), on)


class SyncOwnersRow(TypedDict):
    id: str
    app_id: str
    url: str
    source: str


async def sync_owners(
    db: Db,
    *,
    and_the: Sequence[str | None],
    into_namespace: str,
    p3: str,
    would_replace: str,
    on: Queryable = None,
) -> list[SyncOwnersRow]:
    """What an SDK sync of app $2 into namespace $4 would replace: the rows of the function ids $1 and the
    rows app $2 synced there before (source $3).
    """
    return cast(
        "list[SyncOwnersRow]",
        await fetch(db, "sync_owners", (and_the, into_namespace, p3, would_replace), on),
    )


class FunctionOwnersRow(TypedDict):
    id: str
    app_id: str
    url: str
    source: str


async def function_owners(
    db: Db,
    *,
    p1: Sequence[str | None],
    on: Queryable = None,
) -> list[FunctionOwnersRow]:
    """What a load of manifest files would replace: the rows of the function ids $1."""
    return cast("list[FunctionOwnersRow]", await fetch(db, "function_owners", (p1,), on))


class FunctionsOfIdOrSourceRow(TypedDict):
    id: str
    app_id: str
    name: str
    url: str
    triggers: Any
    retries: int
    paused: bool
    source: str
    cancel_on: Any
    flow: Any
    retry_policy: Any


async def functions_of_id_or_source(
    db: Db,
    *,
    and_the: str,
    p2: str,
    on: Queryable = None,
) -> list[FunctionsOfIdOrSourceRow]:
    """What the operator's publish would replace: the row of function $1 and the rows published from source
    $2.
    """
    return cast(
        "list[FunctionsOfIdOrSourceRow]", await fetch(db, "functions_of_id_or_source", (and_the, p2), on)
    )


class ListEventsInNamespaceRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str | None] | None


async def list_events_in_namespace(
    db: Db,
    *,
    p1: datetime.datetime,
    p2: str,
    p3: int,
    p4: str,
    p5: str,
    false_leaves: bool,
    on: Queryable = None,
) -> list[ListEventsInNamespaceRow]:
    """Like list_events, of the events sent into namespace $5 (not those sent to every namespace); $6 false
    leaves out the events the system emits (inngest/*).
    """
    return cast(
        "list[ListEventsInNamespaceRow]",
        await fetch(db, "list_events_in_namespace", (p1, p2, p3, p4, p5, false_leaves), on),
    )


class ListEventsWithoutInternalRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str | None] | None


async def list_events_without_internal(
    db: Db,
    *,
    p1: datetime.datetime,
    p2: str,
    p3: int,
    p4: str,
    on: Queryable = None,
) -> list[ListEventsWithoutInternalRow]:
    """Like list_events, leaving out the events the system emits (names starting with inngest/)."""
    return cast(
        "list[ListEventsWithoutInternalRow]",
        await fetch(db, "list_events_without_internal", (p1, p2, p3, p4), on),
    )


class LoadWebhooksRow(TypedDict):
    namespace: str | None
    name: str
    scheme: str
    options: Any
    secrets: Any
    transform: str | None
    source: str
    fingerprint: str
    updated_at: datetime.datetime


async def load_webhooks(db: Db, on: Queryable = None) -> list[LoadWebhooksRow]:
    return cast("list[LoadWebhooksRow]", await fetch(db, "load_webhooks", (), on))


async def lock_webhooks(db: Db, on: Queryable = None) -> str:
    """Serialises publishers (the operator, gateways loading manifests): a publish checks, then writes."""
    return await execute(db, "lock_webhooks", (), on)


class WebhooksOfKeysOrSourceRow(TypedDict):
    namespace: str | None
    name: str
    source: str
    fingerprint: str


async def webhooks_of_keys_or_source(
    db: Db,
    *,
    p1: Sequence[str | None],
    p2: Sequence[str | None],
    p3: str,
    on: Queryable = None,
) -> list[WebhooksOfKeysOrSourceRow]:
    """What a publish would replace: the rows of the given (namespace, name) pairs ($1, $2) and those of
    source $3.
    """
    return cast(
        "list[WebhooksOfKeysOrSourceRow]", await fetch(db, "webhooks_of_keys_or_source", (p1, p2, p3), on)
    )


class UpsertWebhooksRow(TypedDict):
    namespace: str | None
    name: str


async def upsert_webhooks(
    db: Db,
    *,
    namespaces: Sequence[str | None],
    names: Sequence[str | None],
    schemes: Sequence[str | None],
    options: Sequence[str | None],
    sealed_secrets: Sequence[str | None],
    transforms: Sequence[str | None],
    sources: Sequence[str | None],
    fingerprints: Sequence[str | None],
    on: Queryable = None,
) -> list[UpsertWebhooksRow]:
    return cast(
        "list[UpsertWebhooksRow]",
        await fetch(
            db,
            "upsert_webhooks",
            (namespaces, names, schemes, options, sealed_secrets, transforms, sources, fingerprints),
            on,
        ),
    )


class DeleteWebhooksOfSourceExceptRow(TypedDict):
    namespace: str | None
    name: str


async def delete_webhooks_of_source_except(
    db: Db,
    *,
    source: str,
    p2: Sequence[str | None],
    the: Sequence[str | None],
    on: Queryable = None,
) -> list[DeleteWebhooksOfSourceExceptRow]:
    return cast(
        "list[DeleteWebhooksOfSourceExceptRow]",
        await fetch(db, "delete_webhooks_of_source_except", (source, p2, the), on),
    )


async def notify_webhooks(db: Db, on: Queryable = None) -> str:
    return await execute(db, "notify_webhooks", (), on)


async def record_webhook_delivery(
    db: Db,
    *,
    namespace: str,
    name: str,
    received_at: datetime.datetime,
    accepted: bool,
    p5: int,
    reason: str,
    event_ids: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(
        db, "record_webhook_delivery", (namespace, name, received_at, accepted, p5, reason, event_ids), on
    )


class ListWebhookDeliveriesRow(TypedDict):
    id: int
    namespace: str | None
    name: str
    received_at: datetime.datetime
    accepted: bool
    status: int
    reason: str
    event_ids: list[str | None]


async def list_webhook_deliveries(
    db: Db,
    *,
    deliveries_of: int,
    on: Queryable = None,
) -> list[ListWebhookDeliveriesRow]:
    """The newest $1 deliveries of every webhook."""
    return cast(
        "list[ListWebhookDeliveriesRow]", await fetch(db, "list_webhook_deliveries", (deliveries_of,), on)
    )


class ListDeliveriesInNamespaceRow(TypedDict):
    id: int
    namespace: str | None
    name: str
    received_at: datetime.datetime
    accepted: bool
    status: int
    reason: str
    event_ids: list[str | None]


async def list_deliveries_in_namespace(
    db: Db,
    *,
    p1: str,
    deliveries_of: int,
    on: Queryable = None,
) -> list[ListDeliveriesInNamespaceRow]:
    """The newest $2 deliveries of the webhooks of namespace $1 (a namespace's API token)."""
    return cast(
        "list[ListDeliveriesInNamespaceRow]",
        await fetch(db, "list_deliveries_in_namespace", (p1, deliveries_of), on),
    )


class ListDeliveriesOfWebhookRow(TypedDict):
    id: int
    namespace: str | None
    name: str
    received_at: datetime.datetime
    accepted: bool
    status: int
    reason: str
    event_ids: list[str | None]


async def list_deliveries_of_webhook(
    db: Db,
    *,
    p1: str,
    p2: str,
    deliveries_of: int,
    on: Queryable = None,
) -> list[ListDeliveriesOfWebhookRow]:
    """The newest $3 deliveries of webhook $1/$2."""
    return cast(
        "list[ListDeliveriesOfWebhookRow]",
        await fetch(db, "list_deliveries_of_webhook", (p1, p2, deliveries_of), on),
    )


async def prune_webhook_deliveries(
    db: Db,
    *,
    p1: datetime.timedelta,
    p2: datetime.timedelta,
    of_each: int,
    on: Queryable = None,
) -> str:
    """Deletes the deliveries received more than $2 (an interval) before statement_timestamp() + $1 (the
    clock offset), and those beyond the newest $3 of each webhook.
    """
    return await execute(db, "prune_webhook_deliveries", (p1, p2, of_each), on)


async def clock_now(
    db: Db,
    *,
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> datetime.datetime | None:
    """The gateway's now: the database's clock plus $1, the clock offset (zero but in tests)."""
    return cast("datetime.datetime | None", await fetchval(db, "clock_now", (clock_offset,), on))


async def release_orphaned_leases(
    db: Db,
    *,
    without_the: str,
    work_ids: Sequence[int | None],
    on: Queryable = None,
) -> str:
    """After a claim whose answer was lost (the connection died on the way back), the rows it may have
    leased to owner $1 without the owner knowing: every row leased to $1 but the ones it holds ($2 work
    ids) is released, due at once.
    """
    return await execute(db, "release_orphaned_leases", (without_the, work_ids), on)


async def fail_step(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    step_hash: str,
    step_name: str,
    attempts: int,
    error: Any,
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> str:
    """A step's last attempt failed and its run ends with that error: the step shows it too, Failed."""
    return await execute(
        db,
        "fail_step",
        (work_id, lease_token, run_id, step_hash, step_name, attempts, error, clock_offset),
        on,
    )


async def next_due_except(
    db: Db,
    *,
    clock_offset: datetime.timedelta,
    p2: Sequence[str | None],
    on: Queryable = None,
) -> float | None:
    """Like next_due, leaving out the work of $2, URLs at their share of the call slots (a slot of theirs
    that frees wakes the dispatcher instead).
    """
    return cast("float | None", await fetchval(db, "next_due_except", (clock_offset, p2), on))


class QueueDepthRow(TypedDict):
    function_id: str
    reason: str
    runs: int | None
    calls_due: int | None
    oldest_due_s: float | None


async def queue_depth(db: Db, *, or_its: datetime.timedelta, on: Queryable = None) -> list[QueueDepthRow]:
    """The queue by function and by why each call waits, for the metrics (one read per scrape, shared by
    concurrent scrapes): every work row once, its run's function by primary key (never a read of the run
    history).
    """
    return cast("list[QueueDepthRow]", await fetch(db, "queue_depth", (or_its,), on))


class FunctionStatsRow(TypedDict):
    source: str
    function_id: str
    running: int | None
    queued: int | None
    completed_hour: int | None
    failed_hour: int | None
    completed_day: int | None
    failed_day: int | None
    last_run_at: datetime.datetime | None


async def function_stats(
    db: Db,
    *,
    p1: Sequence[str | None],
    of_each: int,
    on: Queryable = None,
) -> list[FunctionStatsRow]:
    """The live counts of the functions whose source is LIKE one of $1 (the operator's Function resources:
    'kubernetes:%', or 'kubernetes:<namespace>/%' for each namespace it watches), for status.stats: runs
    Running and Queued now, Completed and Failed in the last hour and day (by creation, at most the newest
    $2 of each function in the day, so that a tick's cost stays bounded however busy), and when the newest
    run was created.
    """
    return cast("list[FunctionStatsRow]", await fetch(db, "function_stats", (p1, of_each), on))


class GateRunsRow(TypedDict):
    gated: int | None


async def gate_runs(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    their: Sequence[str | None],
    throttle_keys: Sequence[str | None],
    throttle_labels: Sequence[str | None],
    seconds_between: Sequence[float | None],
    seconds_a: Sequence[float | None],
    priority: Sequence[int | None],
    timeouts: Sequence[float | None],
    p9: Sequence[float | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> GateRunsRow | None:
    """The flow control of runs just created (their first call, 'step', not yet committed): $1 run ids, $2
    their concurrency keys (JSON text [[key, label, limit], ...], or null), $3 throttle keys, $4 throttle
    labels, $5 seconds between throttled starts, $6 seconds a start may run ahead of that pace, $7 priority
    (seconds the first call moves ahead in the queue; negative: later), $8 timeouts.start, $9
    timeouts.finish (seconds, or null), $10 clock offset.
    """
    return cast(
        "GateRunsRow | None",
        await fetchrow(
            db,
            "gate_runs",
            (
                run_ids,
                their,
                throttle_keys,
                throttle_labels,
                seconds_between,
                seconds_a,
                priority,
                timeouts,
                p9,
                clock_offset,
            ),
            on,
        ),
    )


class RunsWaitingRow(TypedDict):
    run_id: uuid.UUID
    waiting: str | None
    label: str | None
    in_flight: int
    lim: int | None
    until: datetime.datetime | None


async def runs_waiting(
    db: Db,
    *,
    wait: Sequence[uuid.UUID | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[RunsWaitingRow]:
    """Why the runs $1 wait, for those that wait on flow control: a slot of a concurrency key (its label,
    the leases held under it and the call's limit), or a throttle (its label and the start it allows, later
    than statement_timestamp() + $2, the clock offset).
    """
    return cast("list[RunsWaitingRow]", await fetch(db, "runs_waiting", (wait, clock_offset), on))


async def expire_run(
    db: Db,
    *,
    with_lease: int,
    of_run: uuid.UUID,
    p3: uuid.UUID,
    on: Queryable = None,
) -> bool | None:
    """A timer of timeouts ran out (the claimed row $1 with lease token $2, of run $3): for 'timeout:start'
    the run is cancelled when it is still Queued, for 'timeout:finish' when it has not ended; the timer is
    dropped either way.
    """
    return cast("bool | None", await fetchval(db, "expire_run", (with_lease, of_run, p3), on))


async def set_run_error(db: Db, *, run_id: uuid.UUID, p2: Any, on: Queryable = None) -> str:
    """The error a run that ended shows ($2 JSON), $1 run id."""
    return await execute(db, "set_run_error", (run_id, p2), on)


async def flow_lock_keys(db: Db, *, lock_names: Sequence[str | None], on: Queryable = None) -> int | None:
    """Serialises the ingests of one function and key (singleton, debounce, batchEvents) across replicas,
    for the rest of the transaction; the statements that follow see what the previous holder committed.
    """
    return cast("int | None", await fetchval(db, "flow_lock_keys", (lock_names,), on))


class FlowRateLimitRow(TypedDict):
    function_id: str
    key: str
    admitted: int


async def flow_rate_limit(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    events_arriving: Sequence[int | None],
    seconds: Sequence[float | None],
    second_period: Sequence[float | None],
    p6: Sequence[int | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[FlowRateLimitRow]:
    """GCRA per function and key, in the key's row (locked by the upsert, so concurrent ingests queue up on
    it): of $3 events arriving together, the first ones up to what the limit allows are let through, each
    taking $4 seconds (period / limit) of the $5 second period; a key seen for the first time lets $6 (the
    limit) through.
    """
    return cast(
        "list[FlowRateLimitRow]",
        await fetch(
            db,
            "flow_rate_limit",
            (function_ids, keys, events_arriving, seconds, second_period, p6, clock_offset),
            on,
        ),
    )


class FlowIdempotencyRow(TypedDict):
    function_id: str
    key: str


async def flow_idempotency(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    event_ids: Sequence[str | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[FlowIdempotencyRow]:
    """Takes each idempotency key (one per function and key: the caller keeps the first event of each)
    unless a run took it in the last 24 hours.
    """
    return cast(
        "list[FlowIdempotencyRow]",
        await fetch(db, "flow_idempotency", (function_ids, keys, event_ids, clock_offset), on),
    )


class FlowSingletonsRow(TypedDict):
    function_id: str
    key: str
    run_id: uuid.UUID


async def flow_singletons(
    db: Db,
    *,
    p1: Sequence[str | None],
    p2: Sequence[str | None],
    on: Queryable = None,
) -> list[FlowSingletonsRow]:
    """The runs not yet ended that hold the singleton keys $1 (function ids), $2 (keys); read under their
    locks.
    """
    return cast("list[FlowSingletonsRow]", await fetch(db, "flow_singletons", (p1, p2), on))


class FlowDebouncesRow(TypedDict):
    function_id: str
    key: str
    run_id: uuid.UUID
    first_at: datetime.datetime


async def flow_debounces(
    db: Db,
    *,
    p1: Sequence[str | None],
    p2: Sequence[str | None],
    on: Queryable = None,
) -> list[FlowDebouncesRow]:
    """The pending debounced runs of keys $1 (function ids), $2 (keys), with their first event's time; read
    under their locks.
    """
    return cast("list[FlowDebouncesRow]", await fetch(db, "flow_debounces", (p1, p2), on))


class FlowDebounceExtendRow(TypedDict):
    run_id: uuid.UUID
    available_at: datetime.datetime


async def flow_debounce_extend(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    event_ids: Sequence[str | None],
    seconds_from: Sequence[float | None],
    p4: Sequence[datetime.datetime | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[FlowDebounceExtendRow]:
    """A new event for a pending debounced run: the run takes it as its event and its first call is pushed
    to $3 seconds from now, but not past $4 (the first event's time plus the timeout, or null).
    """
    return cast(
        "list[FlowDebounceExtendRow]",
        await fetch(db, "flow_debounce_extend", (run_ids, event_ids, seconds_from, p4, clock_offset), on),
    )


async def flow_set_debounces(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    run_ids: Sequence[uuid.UUID | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> str:
    """The new pending runs of keys: $1 function ids, $2 keys, $3 run ids, $4 clock offset (first_at is
    now).
    """
    return await execute(db, "flow_set_debounces", (function_ids, keys, run_ids, clock_offset), on)


class FlowBatchesRow(TypedDict):
    function_id: str
    key: str
    run_id: uuid.UUID
    size: int
    max_size: int


async def flow_batches(
    db: Db,
    *,
    p1: Sequence[str | None],
    p2: Sequence[str | None],
    on: Queryable = None,
) -> list[FlowBatchesRow]:
    """The open batches of keys $1 (function ids), $2 (keys); read under their locks."""
    return cast("list[FlowBatchesRow]", await fetch(db, "flow_batches", (p1, p2), on))


class FlowBatchAppendRow(TypedDict):
    run_id: uuid.UUID
    is_full: bool | None
    notified: int | None


async def flow_batch_append(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    event_ids: Sequence[str | None],
    positions: Sequence[int | None],
    runs: Sequence[uuid.UUID | None],
    whether_each: Sequence[bool | None],
    on: Queryable = None,
) -> list[FlowBatchAppendRow]:
    """Adds events to open batches whose run has not been called yet: $1 run ids, $2 event ids, $3
    positions (one row per event), $4 the runs, $5 whether each is full now (its first call is then due at
    once).
    """
    return cast(
        "list[FlowBatchAppendRow]",
        await fetch(db, "flow_batch_append", (run_ids, event_ids, positions, runs, whether_each), on),
    )


async def flow_set_batches(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    run_ids: Sequence[uuid.UUID | None],
    sizes: Sequence[int | None],
    max_sizes: Sequence[int | None],
    on: Queryable = None,
) -> str:
    """The open batch of each key after an ingest: $1 function ids, $2 keys, $3 run ids (null: no open
    batch), $4 sizes, $5 max sizes.
    """
    return await execute(db, "flow_set_batches", (function_ids, keys, run_ids, sizes, max_sizes), on)


class FlowStartRunsRow(TypedDict):
    runs_created: int | None
    notified: int | None


async def flow_start_runs(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    event_ids: Sequence[str | None],
    function_ids: Sequence[str | None],
    function_names: Sequence[str | None],
    urls: Sequence[str | None],
    max_attempts: Sequence[int | None],
    seconds_from: Sequence[float | None],
    batched: Sequence[bool | None],
    clock_offset: datetime.timedelta,
    p10: Sequence[uuid.UUID | None],
    p11: Sequence[str | None],
    positions: Sequence[int | None],
    on: Queryable = None,
) -> FlowStartRunsRow | None:
    """The runs flow control lets start, for events stored by this transaction: each run's first call is
    due $7 seconds from now (debounce, a batch's timeout), or when null at once (or at the event's ts when
    that lies ahead).
    """
    return cast(
        "FlowStartRunsRow | None",
        await fetchrow(
            db,
            "flow_start_runs",
            (
                run_ids,
                event_ids,
                function_ids,
                function_names,
                urls,
                max_attempts,
                seconds_from,
                batched,
                clock_offset,
                p10,
                p11,
                positions,
            ),
            on,
        ),
    )


async def flow_set_singletons(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    run_ids: Sequence[uuid.UUID | None],
    on: Queryable = None,
) -> str:
    """The runs that now hold singleton keys: $1 function ids, $2 keys, $3 run ids."""
    return await execute(db, "flow_set_singletons", (function_ids, keys, run_ids), on)


async def flow_skip_events(
    db: Db,
    *,
    event_ids: Sequence[str | None],
    function_ids: Sequence[str | None],
    reasons: Sequence[str | None],
    clock: datetime.timedelta,
    on: Queryable = None,
) -> str:
    """Events that started no run of a function, and why: $1 event ids, $2 function ids, $3 reasons, $4
    clock offset.
    """
    return await execute(db, "flow_skip_events", (event_ids, function_ids, reasons, clock), on)


class BatchEventsOfRunsRow(TypedDict):
    run_id: uuid.UUID
    events: Any


async def batch_events_of_runs(
    db: Db,
    *,
    in_order: Sequence[uuid.UUID | None],
    on: Queryable = None,
) -> list[BatchEventsOfRunsRow]:
    """The events of batch runs $1 in order, as calls send them; read after the claim that leased their
    calls.
    """
    return cast("list[BatchEventsOfRunsRow]", await fetch(db, "batch_events_of_runs", (in_order,), on))


class SkippedOfEventsRow(TypedDict):
    event_id: str
    function_id: str
    reason: str
    skipped_at: datetime.datetime


async def skipped_of_events(
    db: Db,
    *,
    started_no: Sequence[str | None],
    on: Queryable = None,
) -> list[SkippedOfEventsRow]:
    """Why events $1 started no run of some functions."""
    return cast("list[SkippedOfEventsRow]", await fetch(db, "skipped_of_events", (started_no,), on))


class RunsFlowWaitRow(TypedDict):
    run_id: uuid.UUID
    due: datetime.datetime | None
    debounced: bool | None
    batch_max: int | None
    batch_events: int | None


async def runs_flow_wait(
    db: Db,
    *,
    wait_at: Sequence[uuid.UUID | None],
    on: Queryable = None,
) -> list[RunsFlowWaitRow]:
    """Why the Queued runs $1 wait at ingest's flow control: debounced (until their first call is due) or
    batching (the open batch's events of its max size).
    """
    return cast("list[RunsFlowWaitRow]", await fetch(db, "runs_flow_wait", (wait_at,), on))


async def prune_flow_state(db: Db, *, clock_offset: datetime.timedelta, on: Queryable = None) -> int | None:
    """Flow-control state that decides nothing any more: rate limits whose period has passed, idempotency
    keys past their 24 hours, singletons, debounces and batches whose run is no longer Queued (or Running,
    for singletons).
    """
    return cast("int | None", await fetchval(db, "prune_flow_state", (clock_offset,), on))


async def open_session(
    db: Db,
    *,
    sha: str,
    how_long: datetime.timedelta,
    role: str,
    namespace: str,
    p5: str,
    on: Queryable = None,
) -> str:
    return await execute(db, "open_session", (sha, how_long, role, namespace, p5), on)


class SessionIsOpenRow(TypedDict):
    role: str
    namespace: str | None


async def session_is_open(db: Db, *, sha: str, on: Queryable = None) -> SessionIsOpenRow | None:
    return cast("SessionIsOpenRow | None", await fetchrow(db, "session_is_open", (sha,), on))


async def close_session(db: Db, *, sha: str, on: Queryable = None) -> str:
    return await execute(db, "close_session", (sha,), on)


async def prune_sessions(db: Db, on: Queryable = None) -> str:
    return await execute(db, "prune_sessions", (), on)


class LoadEventKeysRow(TypedDict):
    sha256: str
    namespace: str | None


async def load_event_keys(db: Db, on: Queryable = None) -> list[LoadEventKeysRow]:
    return cast("list[LoadEventKeysRow]", await fetch(db, "load_event_keys", (), on))


async def replace_event_keys(
    db: Db,
    *,
    source: str,
    namespace: str,
    sha: Sequence[str | None],
    on: Queryable = None,
) -> int | None:
    """The keys of one Secret: $1 source, $2 namespace, $3 sha256 hex of each key."""
    return cast("int | None", await fetchval(db, "replace_event_keys", (source, namespace, sha), on))


class LoadSigningKeysRow(TypedDict):
    namespace: str | None
    current: str
    previous: str | None


async def load_signing_keys(db: Db, on: Queryable = None) -> list[LoadSigningKeysRow]:
    return cast("list[LoadSigningKeysRow]", await fetch(db, "load_signing_keys", (), on))


async def replace_signing_key(
    db: Db,
    *,
    p1: str,
    p2: str,
    sealed_current: str,
    sealed_previous: str,
    fingerprint: str,
    on: Queryable = None,
) -> str | None:
    """The keys of Secret $2 (source) for namespace $1: $3 the sealed current key, $4 the sealed previous
    one (null: none), $5 their fingerprint.
    """
    return cast(
        "str | None",
        await fetchval(db, "replace_signing_key", (p1, p2, sealed_current, sealed_previous, fingerprint), on),
    )


async def remove_signing_key(db: Db, *, p1: str, on: Queryable = None) -> str:
    """Secret $1 (source) is gone or no longer labelled: its keys are removed; answers how many rows went."""
    return await execute(db, "remove_signing_key", (p1,), on)


class LoadApiTokensRow(TypedDict):
    sha256: str
    namespace: str | None
    role: str


async def load_api_tokens(db: Db, on: Queryable = None) -> list[LoadApiTokensRow]:
    return cast("list[LoadApiTokensRow]", await fetch(db, "load_api_tokens", (), on))


async def replace_api_tokens(
    db: Db,
    *,
    source: str,
    namespace: str,
    role: str,
    sha: Sequence[str | None],
    on: Queryable = None,
) -> int | None:
    """The tokens of one Secret: $1 source, $2 namespace (null: the cluster), $3 role, $4 sha256 hex of
    each token.
    """
    return cast("int | None", await fetchval(db, "replace_api_tokens", (source, namespace, role, sha), on))
