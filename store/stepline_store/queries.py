"""One typed async function per named query of ``sql/queries.sql``.

Written by scripts/generate-queries from the queries and their annotations, with the types Postgres reports
for each statement (never edit it by hand; stepline_store/query_module.py says how it is made).

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
    flows: Sequence[str | None],
    retry_policies: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(db, "set_flow_control", (function_ids, flows, retry_policies), on)


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
    keep_ids: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(db, "delete_functions_of_source_except", (source, keep_ids), on)


async def delete_app_functions_except(
    db: Db,
    *,
    app_id: str,
    source: str,
    keep_ids: Sequence[str | None],
    namespace: str | None,
    on: Queryable = None,
) -> str:
    return await execute(db, "delete_app_functions_except", (app_id, source, keep_ids, namespace), on)


async def notify_routes(db: Db, on: Queryable = None) -> str:
    return await execute(db, "notify_routes", (), on)


class IngestRow(TypedDict):
    new_events: Any
    runs_created: int
    notified: int
    notified_leased: int
    leased: Any
    now: datetime.datetime
    waits: Any


async def ingest(
    db: Db,
    *,
    event_ids: Sequence[str | None],
    event_names: Sequence[str | None],
    event_data: Sequence[Any],
    event_users: Sequence[Any],
    event_ts: Sequence[int | None],
    clock_offset: datetime.timedelta,
    run_ids: Sequence[uuid.UUID | None],
    run_event_ids: Sequence[str | None],
    function_ids: Sequence[str | None],
    function_names: Sequence[str | None],
    urls: Sequence[str | None],
    max_attempts: Sequence[int | None],
    parent_run_ids: Sequence[uuid.UUID | None],
    parent_steps: Sequence[str | None],
    event_versions: Sequence[str | None],
    leased_run_ids: Sequence[uuid.UUID | None],
    lease_owner: str | None,
    lease_duration: datetime.timedelta | None,
    namespaces: Sequence[str | None] | None,
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
                event_names,
                event_data,
                event_users,
                event_ts,
                clock_offset,
                run_ids,
                run_event_ids,
                function_ids,
                function_names,
                urls,
                max_attempts,
                parent_run_ids,
                parent_steps,
                event_versions,
                leased_run_ids,
                lease_owner,
                lease_duration,
                namespaces,
            ),
            on,
        ),
    )


class ResolveWaitsRow(TypedDict):
    resolved: int
    notified: int


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
    function_ids: Sequence[str | None],
    on: Queryable = None,
) -> list[CancelCandidatesRow]:
    """Runs that a cancel rule may stop: those of functions $1 not yet ended, with their triggering events."""
    return cast("list[CancelCandidatesRow]", await fetch(db, "cancel_candidates", (function_ids,), on))


class ReplayRunRow(TypedDict):
    id: uuid.UUID | None
    notified: int


async def replay_run(
    db: Db,
    *,
    new_run_id: uuid.UUID,
    replayed_run_id: uuid.UUID,
    clock_offset: datetime.timedelta,
    url: str | None,
    max_attempts: int | None,
    on: Queryable = None,
) -> ReplayRunRow | None:
    """A new run of the same function on the same event (a batch run: on the same events), due at once."""
    return cast(
        "ReplayRunRow | None",
        await fetchrow(db, "replay_run", (new_run_id, replayed_run_id, clock_offset, url, max_attempts), on),
    )


class ClaimWorkRow(TypedDict):
    id: int
    run_id: uuid.UUID
    step_id: str
    attempt: int
    lease_token: uuid.UUID
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
    event_ts: int
    event_v: str | None
    batched: bool | None
    queued_s: float | None
    memos: Any
    stack: list[str]


async def claim_work(
    db: Db,
    *,
    clock_offset: datetime.timedelta,
    limit: int,
    lease_owner: str,
    lease_duration: datetime.timedelta,
    urls_at_cap: Sequence[str | None],
    on: Queryable = None,
) -> list[ClaimWorkRow]:
    """Leases up to $2 calls to owner $3 for $4 (an interval of the database's clock), with all a call
    needs: first calls whose lease lapsed (judged by statement_timestamp() alone, so that no replica's own
    clock decides whether another one's lease is over), then due calls (available_at <=
    statement_timestamp() + $1, the clock offset).
    """
    return cast(
        "list[ClaimWorkRow]",
        await fetch(db, "claim_work", (clock_offset, limit, lease_owner, lease_duration, urls_at_cap), on),
    )


async def next_due(db: Db, *, clock_offset: datetime.timedelta, on: Queryable = None) -> float | None:
    """Seconds until a claim would find something (negative: already), null when the queue is empty: the
    next due call for a replica of clock offset $1, or the next lease to lapse.
    """
    return cast("float | None", await fetchval(db, "next_due", (clock_offset,), on))


async def extend_leases(
    db: Db,
    *,
    work_ids: Sequence[int | None],
    lease_tokens: Sequence[uuid.UUID | None],
    lease_duration: datetime.timedelta,
    on: Queryable = None,
) -> str:
    """The heartbeat: the leases this replica holds, named by work id and token ($1, $2), last $3 more from
    the database's statement_timestamp().
    """
    return await execute(db, "extend_leases", (work_ids, lease_tokens, lease_duration), on)


async def lock_run(db: Db, *, run_id: uuid.UUID, on: Queryable = None) -> str | None:
    """Serialises the outcomes of one run's parallel calls."""
    return cast("str | None", await fetchval(db, "lock_run", (run_id,), on))


class RecordStepRow(TypedDict):
    held: bool
    recorded: bool
    memos_before: int


async def record_step(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    step_hash: str,
    step_name: str,
    next_step_id: str,
    lease_duration: datetime.timedelta,
    op: str,
    status: str,
    memo: Any,
    attempts: int,
    error: Any,
    elapsed_s: float,
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
                next_step_id,
                lease_duration,
                op,
                status,
                memo,
                attempts,
                error,
                elapsed_s,
                clock_offset,
            ),
            on,
        ),
    )


class RecordStepsRow(TypedDict):
    held: bool
    recorded: int
    function_id: str | None


async def record_steps(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    ops: Sequence[str | None],
    memos: Sequence[str | None],
    durations_ms: Sequence[float | None],
    clock_offset: datetime.timedelta,
    checkpointed: bool,
    signer: str | None,
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
                work_id,
                lease_token,
                run_id,
                hashes,
                names,
                ops,
                memos,
                durations_ms,
                clock_offset,
                checkpointed,
                signer,
            ),
            on,
        ),
    )


class RecordStepsManyRow(TypedDict):
    call: int
    held: bool
    recorded: int
    function_id: str | None


async def record_steps_many(
    db: Db,
    *,
    call_indexes: Sequence[int | None],
    work_ids: Sequence[int | None],
    lease_tokens: Sequence[uuid.UUID | None],
    run_ids: Sequence[uuid.UUID | None],
    clock_offsets: Sequence[datetime.timedelta | None],
    checkpointed: Sequence[bool | None],
    step_call_indexes: Sequence[int | None],
    step_places: Sequence[int | None],
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    ops: Sequence[str | None],
    memos: Sequence[str | None],
    durations_ms: Sequence[float | None],
    signers: Sequence[str | None],
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
                call_indexes,
                work_ids,
                lease_tokens,
                run_ids,
                clock_offsets,
                checkpointed,
                step_call_indexes,
                step_places,
                hashes,
                names,
                ops,
                memos,
                durations_ms,
                signers,
            ),
            on,
        ),
    )


class FinishRunsManyRow(TypedDict):
    call: int
    held: bool
    recorded: int
    ended: bool
    function_id: str | None
    created_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    notified: int


async def finish_runs_many(
    db: Db,
    *,
    call_indexes: Sequence[int | None],
    work_ids: Sequence[int | None],
    lease_tokens: Sequence[uuid.UUID | None],
    run_ids: Sequence[uuid.UUID | None],
    clock_offsets: Sequence[datetime.timedelta | None],
    outputs: Sequence[str | None],
    step_call_indexes: Sequence[int | None],
    step_places: Sequence[int | None],
    hashes: Sequence[str | None],
    names: Sequence[str | None],
    ops: Sequence[str | None],
    memos: Sequence[str | None],
    durations_ms: Sequence[float | None],
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
                call_indexes,
                work_ids,
                lease_tokens,
                run_ids,
                clock_offsets,
                outputs,
                step_call_indexes,
                step_places,
                hashes,
                names,
                ops,
                memos,
                durations_ms,
            ),
            on,
        ),
    )


async def held_attempt(db: Db, *, work_id: int, lease_token: uuid.UUID, on: Queryable = None) -> int | None:
    """The attempt count of the call holding work $1 with lease token $2 (null when the lease is lost): the
    checkpoint API restarts it while the call runs.
    """
    return cast("int | None", await fetchval(db, "held_attempt", (work_id, lease_token), on))


class RunMemosRow(TypedDict):
    memos: Any
    stack: list[str]


async def run_memos(db: Db, *, run_id: uuid.UUID, on: Queryable = None) -> RunMemosRow | None:
    """The memos and the stack of run $1, as claim_work gives them."""
    return cast("RunMemosRow | None", await fetchrow(db, "run_memos", (run_id,), on))


class RediscoverRow(TypedDict):
    held: bool
    memos: Any
    stack: list[str]


async def rediscover(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    lease_duration: datetime.timedelta,
    run_id: uuid.UUID,
    on: Queryable = None,
) -> RediscoverRow | None:
    """The service asked for a new call (DiscoveryRequest): the held call becomes a discovery call, its
    lease renewed for $3 from the database's clock, with the run's memos and stack.
    """
    return cast(
        "RediscoverRow | None",
        await fetchrow(db, "rediscover", (work_id, lease_token, lease_duration, run_id), on),
    )


class RecordParallelStepRow(TypedDict):
    goes_on: bool
    done: bool


async def record_parallel_step(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    step_hash: str,
    step_name: str,
    op: str,
    status: str,
    memo: Any,
    attempts: int,
    error: Any,
    elapsed_s: float,
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
                step_hash,
                step_name,
                op,
                status,
                memo,
                attempts,
                error,
                elapsed_s,
                clock_offset,
            ),
            on,
        ),
    )


class PlanStepsRow(TypedDict):
    held: bool
    notified: int


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
    held: bool
    due: datetime.datetime | None


async def retry_call(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    next_attempt: int,
    backoff: datetime.timedelta,
    run_id: uuid.UUID,
    step_hash: str | None,
    step_name: str | None,
    error: Any,
    clock_offset: datetime.timedelta,
    not_before: datetime.datetime | None,
    elapsed_s: float | None,
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
                backoff,
                run_id,
                step_hash,
                step_name,
                error,
                clock_offset,
                not_before,
                elapsed_s,
            ),
            on,
        ),
    )


class FinishRunRow(TypedDict):
    id: uuid.UUID
    function_id: str
    event_id: str
    created_at: datetime.datetime
    ended_at: datetime.datetime
    notified: int


async def finish_run(
    db: Db,
    *,
    run_id: uuid.UUID,
    status: str,
    output: Any,
    error: Any,
    clock_offset: datetime.timedelta,
    work_id: int,
    lease_token: uuid.UUID,
    on: Queryable = None,
) -> FinishRunRow | None:
    """Ends a run (Completed or Failed), drops its calls and waits, and hands its result to the run that
    invoked it (its parked call is due at once).
    """
    return cast(
        "FinishRunRow | None",
        await fetchrow(
            db, "finish_run", (run_id, status, output, error, clock_offset, work_id, lease_token), on
        ),
    )


class ParkCallRow(TypedDict):
    held: bool


async def park_call(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    step_hash: str,
    step_name: str,
    op: str,
    step_status: str,
    delay: datetime.timedelta,
    resolution: Any,
    clock_offset: datetime.timedelta,
    event_name: str | None,
    wait_expression: str | None,
    not_before: datetime.datetime | None,
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
                step_hash,
                step_name,
                op,
                step_status,
                delay,
                resolution,
                clock_offset,
                event_name,
                wait_expression,
                not_before,
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
    ended_at: datetime.datetime


async def cancel_runs(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[CancelRunsRow]:
    """Cancels the runs $1 that have not ended; drops their calls and waits."""
    return cast("list[CancelRunsRow]", await fetch(db, "cancel_runs", (run_ids, clock_offset), on))


async def run_status(db: Db, *, run_id: uuid.UUID, on: Queryable = None) -> str | None:
    return cast("str | None", await fetchval(db, "run_status", (run_id,), on))


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


async def get_run(db: Db, *, run_id: uuid.UUID, on: Queryable = None) -> GetRunRow | None:
    return cast("GetRunRow | None", await fetchrow(db, "get_run", (run_id,), on))


class GetStepsRow(TypedDict):
    hash: str
    name: str
    op: str
    status: str
    attempts: int
    memo: Any
    error: Any
    started_at: datetime.datetime
    ended_at: datetime.datetime | None
    checkpointed: bool
    attempt_started_at: datetime.datetime | None
    failed_attempts: Any


async def get_steps(db: Db, *, run_id: uuid.UUID, on: Queryable = None) -> list[GetStepsRow]:
    return cast("list[GetStepsRow]", await fetch(db, "get_steps", (run_id,), on))


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
    since: datetime.datetime | None,
    before_at: datetime.datetime | None,
    before_id: uuid.UUID | None,
    limit: int,
    on: Queryable = None,
) -> list[RunsPageRow]:
    """Runs newest first, keyset paged."""
    return cast("list[RunsPageRow]", await fetch(db, "runs_page", (since, before_at, before_id, limit), on))


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
    since: datetime.datetime | None,
    before_at: datetime.datetime | None,
    before_id: uuid.UUID | None,
    limit: int,
    function_id: str,
    on: Queryable = None,
) -> list[RunsPageOfFunctionRow]:
    """Like runs_page; $5 function id."""
    return cast(
        "list[RunsPageOfFunctionRow]",
        await fetch(db, "runs_page_of_function", (since, before_at, before_id, limit, function_id), on),
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
    since: datetime.datetime | None,
    before_at: datetime.datetime | None,
    before_id: uuid.UUID | None,
    limit: int,
    status: str,
    on: Queryable = None,
) -> list[RunsPageWithStatusRow]:
    """Like runs_page; $5 status."""
    return cast(
        "list[RunsPageWithStatusRow]",
        await fetch(db, "runs_page_with_status", (since, before_at, before_id, limit, status), on),
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
    since: datetime.datetime | None,
    before_at: datetime.datetime | None,
    before_id: uuid.UUID | None,
    limit: int,
    function_id: str,
    status: str,
    on: Queryable = None,
) -> list[RunsPageOfFunctionWithStatusRow]:
    """Like runs_page; $5 function id, $6 status (read through the function's index)."""
    return cast(
        "list[RunsPageOfFunctionWithStatusRow]",
        await fetch(
            db,
            "runs_page_of_function_with_status",
            (since, before_at, before_id, limit, function_id, status),
            on,
        ),
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
    since: datetime.datetime | None,
    before_at: datetime.datetime | None,
    before_id: uuid.UUID | None,
    limit: int,
    namespace: str,
    status: str | None,
    on: Queryable = None,
) -> list[RunsPageInNamespaceRow]:
    """Like runs_page, for one namespace (a namespace's token, the dashboard's selector); $5 the namespace,
    $6 status or null.
    """
    return cast(
        "list[RunsPageInNamespaceRow]",
        await fetch(
            db, "runs_page_in_namespace", (since, before_at, before_id, limit, namespace, status), on
        ),
    )


class CountRecentRunsRow(TypedDict):
    function_id: str
    status: str
    runs: int


async def count_recent_runs(
    db: Db,
    *,
    since: datetime.datetime,
    at_most: int,
    on: Queryable = None,
) -> list[CountRecentRunsRow]:
    """The recent runs of each routed function by status (the dashboard's Functions page): those created at
    or after $1, at most the newest $2 of each function, so that the cost stays bounded however busy the
    window.
    """
    return cast("list[CountRecentRunsRow]", await fetch(db, "count_recent_runs", (since, at_most), on))


class GetEventRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str] | None


async def get_event(db: Db, *, event_id: str, on: Queryable = None) -> GetEventRow | None:
    return cast("GetEventRow | None", await fetchrow(db, "get_event", (event_id,), on))


class ListEventsRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str] | None


async def list_events(
    db: Db,
    *,
    after_at: datetime.datetime | None,
    after_id: str | None,
    limit: int,
    name: str | None,
    on: Queryable = None,
) -> list[ListEventsRow]:
    """Newest first, keyset paged: $1/$2 the last row seen (received_at, id) or null, $3 limit, $4 name or
    null.
    """
    return cast("list[ListEventsRow]", await fetch(db, "list_events", (after_at, after_id, limit, name), on))


class RunsOfEventsRow(TypedDict):
    id: uuid.UUID
    event_id: str
    function_id: str
    status: str
    created_at: datetime.datetime


async def runs_of_events(
    db: Db,
    *,
    event_ids: Sequence[str | None],
    on: Queryable = None,
) -> list[RunsOfEventsRow]:
    """The runs of events $1: those they started, and the batch runs they are part of."""
    return cast("list[RunsOfEventsRow]", await fetch(db, "runs_of_events", (event_ids,), on))


async def ping(db: Db, on: Queryable = None) -> int:
    return cast("int", await fetchval(db, "ping", (), on))


async def lock_migrations(db: Db, *, lock_key: int, on: Queryable = None) -> str:
    return await execute(db, "lock_migrations", (lock_key,), on)


async def unlock_migrations(db: Db, *, lock_key: int, on: Queryable = None) -> str:
    return await execute(db, "unlock_migrations", (lock_key,), on)


async def create_migrations_table(db: Db, on: Queryable = None) -> str:
    return await execute(db, "create_migrations_table", (), on)


async def schema_version(db: Db, on: Queryable = None) -> int:
    return cast("int", await fetchval(db, "schema_version", (), on))


async def migrations_after(db: Db, *, version: int, on: Queryable = None) -> list[str]:
    """The names of the migrations applied after version $1, as "NNNN name", in order."""
    return cast("list[str]", await fetchval(db, "migrations_after", (version,), on))


async def record_migration(db: Db, *, version: int, name: str, on: Queryable = None) -> str:
    return await execute(db, "record_migration", (version, name), on)


async def create_history_partitions(
    db: Db,
    *,
    first_day: datetime.date,
    last_day: datetime.date,
    lock_ms: int,
    on: Queryable = None,
) -> int:
    """Makes the day partitions of history (events, runs, steps, step attempts) from UTC day $1 to $2 that
    do not exist yet, waiting at most $3 ms for a lock on the tables (else lock_not_available); answers how
    many days were made.
    """
    return cast("int", await fetchval(db, "create_history_partitions", (first_day, last_day, lock_ms), on))


async def drop_history_before(
    db: Db,
    *,
    clock_offset: datetime.timedelta,
    retention: datetime.timedelta,
    lock_ms: int,
    on: Queryable = None,
) -> list[datetime.date]:
    """Retention: drops the days of history that ended at or before statement_timestamp() + $1 (the clock
    offset) - $2 (the retention period), but those still holding a run not ended (or the event of one); a
    day whose tables stay locked for $3 ms is left for the next time.
    """
    return cast(
        "list[datetime.date]",
        await fetchval(db, "drop_history_before", (clock_offset, retention, lock_ms), on),
    )


class HistoryDaysRow(TypedDict):
    day: datetime.date


async def history_days(db: Db, on: Queryable = None) -> list[HistoryDaysRow]:
    """The UTC days of history kept (the day partitions of runs), oldest first."""
    return cast("list[HistoryDaysRow]", await fetch(db, "history_days", (), on))


async def lock_function_id(db: Db, *, function_id: str, on: Queryable = None) -> str:
    """The operator's publish: serialises two resources that would publish the same function id."""
    return await execute(db, "lock_function_id", (function_id,), on)


async def lock_function_ids(db: Db, *, function_ids: Sequence[str | None], on: Queryable = None) -> str:
    """An SDK sync: the same locks as lock_function_id, for each of $1 (sorted, so two syncs never
    deadlock).
    """
    return await execute(db, "lock_function_ids", (function_ids,), on)


class SyncOwnersRow(TypedDict):
    id: str
    app_id: str
    url: str
    source: str


async def sync_owners(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    app_id: str,
    source: str,
    namespace: str,
    on: Queryable = None,
) -> list[SyncOwnersRow]:
    """What an SDK sync of app $2 into namespace $4 would replace: the rows of the function ids $1 and the
    rows app $2 synced there before (source $3).
    """
    return cast(
        "list[SyncOwnersRow]", await fetch(db, "sync_owners", (function_ids, app_id, source, namespace), on)
    )


class FunctionOwnersRow(TypedDict):
    id: str
    app_id: str
    url: str
    source: str


async def function_owners(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    on: Queryable = None,
) -> list[FunctionOwnersRow]:
    """What a load of manifest files would replace: the rows of the function ids $1."""
    return cast("list[FunctionOwnersRow]", await fetch(db, "function_owners", (function_ids,), on))


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
    function_id: str,
    source: str,
    on: Queryable = None,
) -> list[FunctionsOfIdOrSourceRow]:
    """What the operator's publish would replace: the row of function $1 and the rows published from source
    $2.
    """
    return cast(
        "list[FunctionsOfIdOrSourceRow]",
        await fetch(db, "functions_of_id_or_source", (function_id, source), on),
    )


class ListEventsInNamespaceRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str]


async def list_events_in_namespace(
    db: Db,
    *,
    after_received_at: datetime.datetime | None,
    after_id: str | None,
    limit: int,
    name: str | None,
    namespace: str,
    include_internal: bool,
    on: Queryable = None,
) -> list[ListEventsInNamespaceRow]:
    """Like list_events, of the events sent into namespace $5 (not those sent to every namespace); $6 false
    leaves out the events the system emits (inngest/*).
    """
    return cast(
        "list[ListEventsInNamespaceRow]",
        await fetch(
            db,
            "list_events_in_namespace",
            (after_received_at, after_id, limit, name, namespace, include_internal),
            on,
        ),
    )


class ListEventsWithoutInternalRow(TypedDict):
    id: str
    name: str
    data: Any
    user: Any
    ts: int
    received_at: datetime.datetime
    v: str | None
    namespaces: list[str] | None


async def list_events_without_internal(
    db: Db,
    *,
    after_received_at: datetime.datetime | None,
    after_id: str | None,
    limit: int,
    name: str | None,
    on: Queryable = None,
) -> list[ListEventsWithoutInternalRow]:
    """Like list_events, leaving out the events the system emits (names starting with inngest/)."""
    return cast(
        "list[ListEventsWithoutInternalRow]",
        await fetch(db, "list_events_without_internal", (after_received_at, after_id, limit, name), on),
    )


class LoadWebhooksRow(TypedDict):
    namespace: str
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
    namespace: str
    name: str
    source: str
    fingerprint: str


async def webhooks_of_keys_or_source(
    db: Db,
    *,
    namespaces: Sequence[str | None],
    names: Sequence[str | None],
    source: str,
    on: Queryable = None,
) -> list[WebhooksOfKeysOrSourceRow]:
    """What a publish would replace: the rows of the given (namespace, name) pairs ($1, $2) and those of
    source $3.
    """
    return cast(
        "list[WebhooksOfKeysOrSourceRow]",
        await fetch(db, "webhooks_of_keys_or_source", (namespaces, names, source), on),
    )


class UpsertWebhooksRow(TypedDict):
    namespace: str
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
    namespace: str
    name: str


async def delete_webhooks_of_source_except(
    db: Db,
    *,
    source: str,
    keep_namespaces: Sequence[str | None],
    keep_names: Sequence[str | None],
    on: Queryable = None,
) -> list[DeleteWebhooksOfSourceExceptRow]:
    return cast(
        "list[DeleteWebhooksOfSourceExceptRow]",
        await fetch(db, "delete_webhooks_of_source_except", (source, keep_namespaces, keep_names), on),
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
    http_status: int,
    reason: str,
    event_ids: Sequence[str | None],
    on: Queryable = None,
) -> str:
    return await execute(
        db,
        "record_webhook_delivery",
        (namespace, name, received_at, accepted, http_status, reason, event_ids),
        on,
    )


class ListWebhookDeliveriesRow(TypedDict):
    id: int
    namespace: str
    name: str
    received_at: datetime.datetime
    accepted: bool
    status: int
    reason: str
    event_ids: list[str]


async def list_webhook_deliveries(
    db: Db,
    *,
    limit: int,
    on: Queryable = None,
) -> list[ListWebhookDeliveriesRow]:
    """The newest $1 deliveries of every webhook."""
    return cast("list[ListWebhookDeliveriesRow]", await fetch(db, "list_webhook_deliveries", (limit,), on))


class ListDeliveriesInNamespaceRow(TypedDict):
    id: int
    namespace: str
    name: str
    received_at: datetime.datetime
    accepted: bool
    status: int
    reason: str
    event_ids: list[str]


async def list_deliveries_in_namespace(
    db: Db,
    *,
    namespace: str,
    limit: int,
    on: Queryable = None,
) -> list[ListDeliveriesInNamespaceRow]:
    """The newest $2 deliveries of the webhooks of namespace $1 (a namespace's API token)."""
    return cast(
        "list[ListDeliveriesInNamespaceRow]",
        await fetch(db, "list_deliveries_in_namespace", (namespace, limit), on),
    )


class ListDeliveriesOfWebhookRow(TypedDict):
    id: int
    namespace: str
    name: str
    received_at: datetime.datetime
    accepted: bool
    status: int
    reason: str
    event_ids: list[str]


async def list_deliveries_of_webhook(
    db: Db,
    *,
    namespace: str,
    name: str,
    limit: int,
    on: Queryable = None,
) -> list[ListDeliveriesOfWebhookRow]:
    """The newest $3 deliveries of webhook $1/$2."""
    return cast(
        "list[ListDeliveriesOfWebhookRow]",
        await fetch(db, "list_deliveries_of_webhook", (namespace, name, limit), on),
    )


async def prune_webhook_deliveries(
    db: Db,
    *,
    clock_offset: datetime.timedelta,
    retention: datetime.timedelta,
    keep_per_webhook: int,
    on: Queryable = None,
) -> str:
    """Deletes the deliveries received more than $2 (an interval) before statement_timestamp() + $1 (the
    clock offset), and those beyond the newest $3 of each webhook.
    """
    return await execute(db, "prune_webhook_deliveries", (clock_offset, retention, keep_per_webhook), on)


async def clock_now(db: Db, *, clock_offset: datetime.timedelta, on: Queryable = None) -> datetime.datetime:
    """The gateway's now: the database's clock plus $1, the clock offset (zero but in tests)."""
    return cast("datetime.datetime", await fetchval(db, "clock_now", (clock_offset,), on))


async def release_orphaned_leases(
    db: Db,
    *,
    lease_owner: str,
    held_work_ids: Sequence[int | None],
    on: Queryable = None,
) -> str:
    """After a claim whose answer was lost (the connection died on the way back), the rows it may have
    leased to owner $1 without the owner knowing: every row leased to $1 but the ones it holds ($2 work
    ids) is released, due at once.
    """
    return await execute(db, "release_orphaned_leases", (lease_owner, held_work_ids), on)


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
    capped_urls: Sequence[str | None],
    on: Queryable = None,
) -> float | None:
    """Like next_due, leaving out the work of $2, URLs at their share of the call slots (a slot of theirs
    that frees wakes the dispatcher instead).
    """
    return cast("float | None", await fetchval(db, "next_due_except", (clock_offset, capped_urls), on))


class QueueDepthRow(TypedDict):
    function_id: str
    reason: str
    runs: int
    calls_due: int
    oldest_due_s: float | None


async def queue_depth(
    db: Db,
    *,
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[QueueDepthRow]:
    """The queue by function and by why each call waits, for the metrics (one read per scrape, shared by
    concurrent scrapes): every work row once, its run's function by primary key (never a read of the run
    history).
    """
    return cast("list[QueueDepthRow]", await fetch(db, "queue_depth", (clock_offset,), on))


class FunctionStatsRow(TypedDict):
    source: str
    function_id: str
    running: int
    queued: int
    completed_hour: int
    failed_hour: int
    completed_day: int
    failed_day: int
    last_run_at: datetime.datetime | None


async def function_stats(
    db: Db,
    *,
    source_patterns: Sequence[str | None],
    counted_at_most: int,
    on: Queryable = None,
) -> list[FunctionStatsRow]:
    """The live counts of the functions whose source is LIKE one of $1 (the operator's Function resources:
    'kubernetes:%', or 'kubernetes:<namespace>/%' for each namespace it watches), for status.stats: runs
    Running and Queued now, Completed and Failed in the last hour and day (by creation, at most the newest
    $2 of each function in the day, so that a tick's cost stays bounded however busy), and when the newest
    run was created.
    """
    return cast(
        "list[FunctionStatsRow]", await fetch(db, "function_stats", (source_patterns, counted_at_most), on)
    )


class GateRunsRow(TypedDict):
    gated: int


async def gate_runs(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    concurrency_keys: Sequence[str | None],
    throttle_keys: Sequence[str | None],
    throttle_labels: Sequence[str | None],
    throttle_interval_seconds: Sequence[float | None],
    throttle_tolerance_seconds: Sequence[float | None],
    priority_seconds: Sequence[int | None],
    start_timeout_seconds: Sequence[float | None],
    finish_timeout_seconds: Sequence[float | None],
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
                concurrency_keys,
                throttle_keys,
                throttle_labels,
                throttle_interval_seconds,
                throttle_tolerance_seconds,
                priority_seconds,
                start_timeout_seconds,
                finish_timeout_seconds,
                clock_offset,
            ),
            on,
        ),
    )


class RunsWaitingRow(TypedDict):
    run_id: uuid.UUID
    waiting: str
    label: str | None
    in_flight: int | None
    lim: int | None
    until: datetime.datetime | None


async def runs_waiting(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[RunsWaitingRow]:
    """Why the runs $1 wait, for those that wait on flow control: a slot of a concurrency key (its label,
    the leases held under it and the call's limit), or a throttle (its label and the start it allows, later
    than statement_timestamp() + $2, the clock offset).
    """
    return cast("list[RunsWaitingRow]", await fetch(db, "runs_waiting", (run_ids, clock_offset), on))


async def expire_run(
    db: Db,
    *,
    work_id: int,
    lease_token: uuid.UUID,
    run_id: uuid.UUID,
    on: Queryable = None,
) -> bool:
    """A timer of timeouts ran out (the claimed row $1 with lease token $2, of run $3): for 'timeout:start'
    the run is cancelled when it is still Queued, for 'timeout:finish' when it has not ended; the timer is
    dropped either way.
    """
    return cast("bool", await fetchval(db, "expire_run", (work_id, lease_token, run_id), on))


async def set_run_error(db: Db, *, run_id: uuid.UUID, error: Any, on: Queryable = None) -> str:
    """The error a run that ended shows ($2 JSON), $1 run id."""
    return await execute(db, "set_run_error", (run_id, error), on)


async def flow_lock_keys(db: Db, *, lock_names: Sequence[str | None], on: Queryable = None) -> int:
    """Serialises the ingests of one function and key (singleton, debounce, batchEvents) across replicas,
    for the rest of the transaction; the statements that follow see what the previous holder committed.
    """
    return cast("int", await fetchval(db, "flow_lock_keys", (lock_names,), on))


class FlowRateLimitRow(TypedDict):
    function_id: str
    key: str
    admitted: int


async def flow_rate_limit(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    event_counts: Sequence[int | None],
    step_seconds: Sequence[float | None],
    period_seconds: Sequence[float | None],
    limits: Sequence[int | None],
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
            (function_ids, keys, event_counts, step_seconds, period_seconds, limits, clock_offset),
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
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    on: Queryable = None,
) -> list[FlowSingletonsRow]:
    """The runs not yet ended that hold the singleton keys $1 (function ids), $2 (keys); read under their
    locks.
    """
    return cast("list[FlowSingletonsRow]", await fetch(db, "flow_singletons", (function_ids, keys), on))


class FlowDebouncesRow(TypedDict):
    function_id: str
    key: str
    run_id: uuid.UUID
    first_at: datetime.datetime


async def flow_debounces(
    db: Db,
    *,
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    on: Queryable = None,
) -> list[FlowDebouncesRow]:
    """The pending debounced runs of keys $1 (function ids), $2 (keys), with their first event's time; read
    under their locks.
    """
    return cast("list[FlowDebouncesRow]", await fetch(db, "flow_debounces", (function_ids, keys), on))


class FlowDebounceExtendRow(TypedDict):
    run_id: uuid.UUID
    available_at: datetime.datetime


async def flow_debounce_extend(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    event_ids: Sequence[str | None],
    delay_seconds: Sequence[float | None],
    deadlines: Sequence[datetime.datetime | None],
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> list[FlowDebounceExtendRow]:
    """A new event for a pending debounced run: the run takes it as its event and its first call is pushed
    to $3 seconds from now, but not past $4 (the first event's time plus the timeout, or null).
    """
    return cast(
        "list[FlowDebounceExtendRow]",
        await fetch(
            db, "flow_debounce_extend", (run_ids, event_ids, delay_seconds, deadlines, clock_offset), on
        ),
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
    function_ids: Sequence[str | None],
    keys: Sequence[str | None],
    on: Queryable = None,
) -> list[FlowBatchesRow]:
    """The open batches of keys $1 (function ids), $2 (keys); read under their locks."""
    return cast("list[FlowBatchesRow]", await fetch(db, "flow_batches", (function_ids, keys), on))


class FlowBatchAppendRow(TypedDict):
    run_id: uuid.UUID
    is_full: bool | None
    notified: int


async def flow_batch_append(
    db: Db,
    *,
    event_run_ids: Sequence[uuid.UUID | None],
    event_ids: Sequence[str | None],
    event_positions: Sequence[int | None],
    run_ids: Sequence[uuid.UUID | None],
    is_full: Sequence[bool | None],
    on: Queryable = None,
) -> list[FlowBatchAppendRow]:
    """Adds events to open batches whose run has not been called yet: $1 run ids, $2 event ids, $3
    positions (one row per event), $4 the runs, $5 whether each is full now (its first call is then due at
    once).
    """
    return cast(
        "list[FlowBatchAppendRow]",
        await fetch(
            db, "flow_batch_append", (event_run_ids, event_ids, event_positions, run_ids, is_full), on
        ),
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
    runs_created: int
    notified: int


async def flow_start_runs(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    event_ids: Sequence[str | None],
    function_ids: Sequence[str | None],
    function_names: Sequence[str | None],
    urls: Sequence[str | None],
    max_attempts: Sequence[int | None],
    delay_seconds: Sequence[float | None],
    batched: Sequence[bool | None],
    clock_offset: datetime.timedelta,
    batch_run_ids: Sequence[uuid.UUID | None],
    batch_event_ids: Sequence[str | None],
    batch_positions: Sequence[int | None],
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
                delay_seconds,
                batched,
                clock_offset,
                batch_run_ids,
                batch_event_ids,
                batch_positions,
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
    clock_offset: datetime.timedelta,
    on: Queryable = None,
) -> str:
    """Events that started no run of a function, and why: $1 event ids, $2 function ids, $3 reasons, $4
    clock offset.
    """
    return await execute(db, "flow_skip_events", (event_ids, function_ids, reasons, clock_offset), on)


class BatchEventsOfRunsRow(TypedDict):
    run_id: uuid.UUID
    events: Any


async def batch_events_of_runs(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    on: Queryable = None,
) -> list[BatchEventsOfRunsRow]:
    """The events of batch runs $1 in order, as calls send them; read after the claim that leased their
    calls.
    """
    return cast("list[BatchEventsOfRunsRow]", await fetch(db, "batch_events_of_runs", (run_ids,), on))


class SkippedOfEventsRow(TypedDict):
    event_id: str
    function_id: str
    reason: str
    skipped_at: datetime.datetime


async def skipped_of_events(
    db: Db,
    *,
    event_ids: Sequence[str | None],
    on: Queryable = None,
) -> list[SkippedOfEventsRow]:
    """Why events $1 started no run of some functions."""
    return cast("list[SkippedOfEventsRow]", await fetch(db, "skipped_of_events", (event_ids,), on))


class RunsFlowWaitRow(TypedDict):
    run_id: uuid.UUID
    due: datetime.datetime
    debounced: bool
    batch_max: int | None
    batch_events: int


async def runs_flow_wait(
    db: Db,
    *,
    run_ids: Sequence[uuid.UUID | None],
    on: Queryable = None,
) -> list[RunsFlowWaitRow]:
    """Why the Queued runs $1 wait at ingest's flow control: debounced (until their first call is due) or
    batching (the open batch's events of its max size).
    """
    return cast("list[RunsFlowWaitRow]", await fetch(db, "runs_flow_wait", (run_ids,), on))


async def prune_flow_state(db: Db, *, clock_offset: datetime.timedelta, on: Queryable = None) -> int:
    """Flow-control state that decides nothing any more: rate limits whose period has passed, idempotency
    keys past their 24 hours, singletons, debounces and batches whose run is no longer Queued (or Running,
    for singletons).
    """
    return cast("int", await fetchval(db, "prune_flow_state", (clock_offset,), on))


async def open_session(
    db: Db,
    *,
    session_sha256: str,
    lifetime: datetime.timedelta,
    role: str,
    namespace: str | None,
    token_sha256: str | None,
    on: Queryable = None,
) -> str:
    return await execute(db, "open_session", (session_sha256, lifetime, role, namespace, token_sha256), on)


class SessionIsOpenRow(TypedDict):
    role: str
    namespace: str | None


async def session_is_open(db: Db, *, session_sha256: str, on: Queryable = None) -> SessionIsOpenRow | None:
    return cast("SessionIsOpenRow | None", await fetchrow(db, "session_is_open", (session_sha256,), on))


async def close_session(db: Db, *, session_sha256: str, on: Queryable = None) -> str:
    return await execute(db, "close_session", (session_sha256,), on)


async def prune_sessions(db: Db, on: Queryable = None) -> str:
    return await execute(db, "prune_sessions", (), on)


class LoadEventKeysRow(TypedDict):
    sha256: str
    namespace: str


async def load_event_keys(db: Db, on: Queryable = None) -> list[LoadEventKeysRow]:
    return cast("list[LoadEventKeysRow]", await fetch(db, "load_event_keys", (), on))


async def replace_event_keys(
    db: Db,
    *,
    source: str,
    namespace: str,
    key_hashes: Sequence[str | None],
    on: Queryable = None,
) -> int:
    """The keys of one Secret: $1 source, $2 namespace, $3 sha256 hex of each key."""
    return cast("int", await fetchval(db, "replace_event_keys", (source, namespace, key_hashes), on))


class LoadSigningKeysRow(TypedDict):
    namespace: str
    current: str
    previous: str | None


async def load_signing_keys(db: Db, on: Queryable = None) -> list[LoadSigningKeysRow]:
    return cast("list[LoadSigningKeysRow]", await fetch(db, "load_signing_keys", (), on))


async def replace_signing_key(
    db: Db,
    *,
    namespace: str,
    source: str,
    sealed_current: str,
    sealed_previous: str | None,
    fingerprint: str,
    on: Queryable = None,
) -> str | None:
    """The keys of Secret $2 (source) for namespace $1: $3 the sealed current key, $4 the sealed previous
    one (null: none), $5 their fingerprint.
    """
    return cast(
        "str | None",
        await fetchval(
            db, "replace_signing_key", (namespace, source, sealed_current, sealed_previous, fingerprint), on
        ),
    )


async def remove_signing_key(db: Db, *, source: str, on: Queryable = None) -> str:
    """Secret $1 (source) is gone or no longer labelled: its keys are removed; answers how many rows went."""
    return await execute(db, "remove_signing_key", (source,), on)


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
    namespace: str | None,
    role: str,
    token_hashes: Sequence[str | None],
    on: Queryable = None,
) -> int:
    """The tokens of one Secret: $1 source, $2 namespace (null: the cluster), $3 role, $4 sha256 hex of
    each token.
    """
    return cast("int", await fetchval(db, "replace_api_tokens", (source, namespace, role, token_hashes), on))
