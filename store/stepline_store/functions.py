"""The routing table's writes: publishing functions and removing them, for every publisher alike.

An SDK app's sync, the manifests of ``stepline dev`` and the operator's Function resources all publish
through ``publish_functions`` in the caller's transaction (which first locks the ids and checks who owns
them: each publisher has its own rule for a take-over), so the rows they write are the same and every
change ends in one ``NOTIFY stepline_routes``, on which every gateway reloads its routing table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stepline_store import queries
from stepline_store.pool import Db, Queryable


@dataclass(frozen=True)
class PublishedFunction:
    """A row of the ``functions`` table as a publisher writes it (JSON settings as plain values)."""

    id: str
    app_id: str
    name: str
    url: str
    triggers: list[dict[str, Any]]
    retries: int
    paused: bool
    source: str
    cancel_on: list[dict[str, Any]]
    # What the sync asked of checkpointing; None when nothing was sent (Function resources send nothing).
    checkpoint: dict[str, Any] | None = None
    flow: dict[str, Any] | None = None
    retry_policy: dict[str, Any] | None = None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


async def publish_functions(
    db: Db,
    functions: Sequence[PublishedFunction],
    *,
    replace_source: str,
    replace_app: str | None = None,
    namespace: str | None = None,
    on: Queryable = None,
) -> None:
    """Upsert ``functions`` and remove the other functions of ``replace_source`` (of the app
    ``replace_app`` in ``namespace`` when given: an app's sync replaces what that app published before),
    then notify the gateways (at commit). Run it in the caller's transaction (``on``)."""
    ids = [f.id for f in functions]
    if functions:
        await queries.upsert_functions(
            db,
            ids=ids,
            app_ids=[f.app_id for f in functions],
            names=[f.name for f in functions],
            urls=[f.url for f in functions],
            triggers=[json.dumps(f.triggers) for f in functions],
            retries=[f.retries for f in functions],
            paused=[f.paused for f in functions],
            sources=[f.source for f in functions],
            on=on,
        )
    if replace_app is not None:
        await queries.delete_app_functions_except(
            db, app_id=replace_app, source=replace_source, keep_ids=ids, namespace=namespace, on=on
        )
    else:
        await queries.delete_functions_of_source_except(db, source=replace_source, keep_ids=ids, on=on)
    if functions:
        await queries.set_cancel_rules(
            db, function_ids=ids, cancel_rules=[json.dumps(f.cancel_on) for f in functions], on=on
        )
        await queries.set_checkpoint_settings(
            db, function_ids=ids, checkpoint_settings=[_json(f.checkpoint) for f in functions], on=on
        )
        await queries.set_flow_control(
            db,
            function_ids=ids,
            flows=[_json(f.flow) for f in functions],
            retry_policies=[_json(f.retry_policy) for f in functions],
            on=on,
        )
    await queries.notify_routes(db, on=on)


async def remove_functions(
    db: Db,
    *,
    source: str,
    app_id: str | None = None,
    namespace: str | None = None,
    on: Queryable = None,
) -> int:
    """Remove every function of ``source`` (of the app ``app_id`` in ``namespace`` when given); answer how
    many, and notify the gateways when there were any. Run it in the caller's transaction (``on``)."""
    if app_id is not None:
        status = await queries.delete_app_functions_except(
            db, app_id=app_id, source=source, keep_ids=[], namespace=namespace, on=on
        )
    else:
        status = await queries.delete_functions_of_source_except(db, source=source, keep_ids=[], on=on)
    removed = int(status.split()[-1])
    if removed:
        await queries.notify_routes(db, on=on)
    return removed
