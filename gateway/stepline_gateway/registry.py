"""Publishing functions into the routing table: from SDK syncs and from Function manifest files.

An SDK app's sync (``POST /fn/register``, read by sync.py) replaces that app's functions, unless it would take
over a function another owner published (``sync_app``: 409, as the operator's ``FunctionIdConflict``); a set
of manifests replaces every function published from manifests. Either way the change is one transaction
followed by a NOTIFY, so every gateway replica reloads its routing table. ``Registry.load`` reads the table
back: a row it cannot route (written by another version, or by hand) is left out with one error log, so that
no stored row ever stops a gateway from starting or reloading.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import logging
from pathlib import Path
from typing import Annotated, Any, Self

import pydantic
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from stepline.durations import parse_duration
from stepline.flow import FlowControl, RetryPolicy, known_fields
from stepline.manifest import FunctionResource, describe_error, parse_function
from stepline.protocol import match_expression
from stepline_store import queries
from stepline_store.functions import PublishedFunction, publish_functions, remove_functions
from stepline_store.identity import DEFAULT_NAMESPACE, IdentityError, qualified_function_id
from stepline_store.pool import Queryable, Store
from stepline_store.queries import FunctionOwnersRow, LoadFunctionsRow, SyncOwnersRow

from stepline_gateway.errors import BadRequest, FunctionIdTaken
from stepline_gateway.routing import ExpressionError, Function, compile_expression
from stepline_gateway.scheduler import CronError, parse_schedule

log = logging.getLogger(__name__)

SDK_SOURCE = "sdk"
MANIFEST_SOURCE = "manifest"

# The kinds `stepline dev -f` reads; a document of another kind is skipped (kubectl manifests may share the
# folder), with a warning when it looks like a mistyped Stepline kind.
KNOWN_KINDS = ("Function", "Webhook", "Secret")

# Stands in for the function whose cron triggers are checked before it exists.
_PROBE = Function(id="", app_id="", name="", url="", triggers=[], retries=0, paused=True, source="")


def _check_triggers(triggers: list[dict[str, Any]]) -> None:
    """Compile every ``if`` and cron once now, so that a bad one is refused before it is published."""
    for index, trigger in enumerate(triggers):
        if trigger.get("if"):
            try:
                compile_expression(trigger["if"])
            except ExpressionError as err:
                raise BadRequest(f"spec.triggers[{index}].if: {err}") from None
        if trigger.get("cron"):
            try:
                parse_schedule(_PROBE, trigger).next_after(datetime.datetime.now(datetime.UTC))
            except CronError as err:
                raise BadRequest(f"spec.triggers[{index}].cron: {err}") from None
            except (ValueError, KeyError, OverflowError):
                raise BadRequest(f"spec.triggers[{index}].cron: {trigger['cron']!r} never fires") from None


def check_flow(flow: FlowControl | None, *, prefix: str = "spec.") -> None:
    """Compile every CEL key and condition of the flow-control settings, so that a bad one is refused."""
    for path, source in flow.expressions() if flow is not None else ():
        try:
            compile_expression(source)
        except ExpressionError as err:
            raise BadRequest(f"{prefix}{path}: {err}") from None


def _cancel_rules(function_id: str, raw: Any) -> list[dict[str, Any]]:
    rules = []
    for index, rule in enumerate(raw or []):
        if not isinstance(rule, dict) or not isinstance(rule.get("event"), str):
            raise BadRequest(f"function {function_id}: cancel rule {index} needs an event name")
        clean = {"event": rule["event"]}
        expression = rule.get("if") or (match_expression(rule["match"]) if rule.get("match") else None)
        if expression:
            try:
                compile_expression(expression)
            except ExpressionError as err:
                raise BadRequest(f"function {function_id}: cancel rule {index}: {err}") from None
            clean["if"] = expression
        if rule.get("timeout"):
            try:
                parse_duration(str(rule["timeout"]))
            except ValueError as err:
                raise BadRequest(f"function {function_id}: cancel rule {index}: {err}") from None
            clean["timeout"] = str(rule["timeout"])
        rules.append(clean)
    return rules


def function_from_resource(resource: FunctionResource, url: str, source: str) -> Function:
    spec = resource.spec
    triggers = [trigger.model_dump(by_alias=True, exclude_none=True) for trigger in spec.triggers]
    cancel_on = _cancel_rules(
        resource.full_id, [r.model_dump(by_alias=True, exclude_none=True) for r in spec.cancel_on]
    )
    flow = resource.flow
    return Function(
        id=resource.full_id,
        app_id=spec.app,
        name=resource.function_id,
        url=url,
        triggers=triggers,
        retries=spec.retries,
        paused=spec.paused,
        source=source,
        cancel_on=cancel_on,
        flow=None if flow.is_empty() else flow,
        retry_policy=spec.retry_policy,
    )


def load_manifests(paths: list[Path]) -> list[Function]:
    """Read Function manifests (files, or folders of *.yaml/*.yml); errors name the file and the field."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.exists():
            files.append(path)
        else:
            raise BadRequest(f"{path}: no such file or folder")
    functions: list[Function] = []
    defined_in: dict[str, tuple[Path, str]] = {}
    for file in files:
        try:
            documents = [d for d in yaml.safe_load_all(file.read_text("utf-8")) if d]
        except yaml.YAMLError as err:
            raise BadRequest(f"{file}: not valid YAML: {err}".replace("\n", " ")) from None
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") != "Function":
                _warn_unknown_kind(file, document)
                continue
            try:
                resource = parse_function(document)
            except pydantic.ValidationError as err:
                name = (document.get("metadata") or {}).get("name", "?")
                raise BadRequest(f"{file}: Function {name}: {describe_error(err)}") from None
            url = resource.spec.endpoint.url
            if url is None:
                raise BadRequest(
                    f"{file}: Function {resource.metadata.name}: spec.endpoint.serviceRef needs the "
                    "Kubernetes operator; outside a cluster give spec.endpoint.url"
                )
            function = function_from_resource(resource, url, MANIFEST_SOURCE)
            try:
                qualified_function_id(DEFAULT_NAMESPACE, function.id)
            except IdentityError as err:
                raise BadRequest(f"{file}: Function {resource.metadata.name}: {err}") from None
            try:
                _check_triggers(function.triggers)
                check_flow(function.flow)
            except BadRequest as err:
                raise BadRequest(f"{file}: Function {resource.metadata.name}: {err}") from None
            if function.id in defined_in:
                first_file, first_name = defined_in[function.id]
                raise BadRequest(
                    f"{file}: Function {resource.metadata.name}: the function {function.id} is defined "
                    f"twice, here and in {first_file} (Function {first_name}): give each Function its own "
                    "metadata.name (or spec.functionId), or remove one of them"
                )
            defined_in[function.id] = (file, resource.metadata.name)
            functions.append(function)
    return functions


def _warn_unknown_kind(file: Path, document: object) -> None:
    """Warn of a document that looks meant for Stepline (its apiVersion, or a kind close to one of ours)
    but is of no kind Stepline reads; other Kubernetes kinds are skipped without a word."""
    if not isinstance(document, dict):
        return
    kind, api_version = document.get("kind"), str(document.get("apiVersion") or "")
    if kind in KNOWN_KINDS:
        return
    close = difflib.get_close_matches(str(kind), KNOWN_KINDS, n=1, cutoff=0.6)
    if not close and not api_version.startswith("stepline.dev/"):
        return
    metadata = document.get("metadata")
    name = metadata.get("name", "?") if isinstance(metadata, dict) else "?"
    hint = (
        f": did you mean kind: {close[0]}?"
        if close
        else f": the kinds Stepline reads are {', '.join(KNOWN_KINDS)}"
    )
    log.warning("%s: skipped the document %s of unknown kind %r%s", file, name, kind, hint)


class _Stored(BaseModel):
    # Fields a later version may add are ignored: a gateway rolled back still routes what it understands.
    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True)


class StoredTrigger(_Stored):
    event: Annotated[str, Field(min_length=1)] | None = None
    if_: str | None = Field(default=None, alias="if")
    cron: Annotated[str, Field(min_length=1)] | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _schedulable(self) -> Self:
        if (self.event is None) == (self.cron is None):
            raise ValueError("a trigger needs exactly one of event or cron")
        if self.cron is not None:
            trigger = {"cron": self.cron, **({"timezone": self.timezone} if self.timezone else {})}
            try:
                parse_schedule(_PROBE, trigger).next_after(datetime.datetime.now(datetime.UTC))
            except (ValueError, KeyError, OverflowError) as err:
                raise ValueError(f"cron {self.cron!r} cannot be scheduled: {err}") from None
        return self


class StoredCancelRule(_Stored):
    event: Annotated[str, Field(min_length=1)]
    if_: str | None = Field(default=None, alias="if")
    timeout: str | None = None


class StoredFunction(_Stored):
    """A row of ``functions`` as the routing table needs it."""

    id: str
    app_id: str
    name: str
    url: str
    triggers: list[StoredTrigger]
    retries: Annotated[int, Field(ge=0)]
    paused: bool
    source: str
    cancel_on: list[StoredCancelRule]
    checkpoint: dict[str, Any] | None
    flow: dict[str, Any] | None = None
    retry_policy: dict[str, Any] | None = None
    created_at: datetime.datetime | None = None


def _takeover(row: SyncOwnersRow, app_id: str, url: str, urls: set[str]) -> str | None:
    """Why a sync of ``app_id`` from ``url`` may not replace the stored ``row``: None when it may."""
    if row["source"] != SDK_SOURCE:
        return (
            f"function id {row['id']} is already published by {row['source']}: an SDK app cannot take "
            "it over; give the function another id (or the app another id), or remove the other one"
        )
    if row["app_id"] != app_id:
        return (
            f"function id {row['id']} is already synced by the app {row['app_id']} from {row['url']}: "
            "give the function (or the app) another id"
        )
    if row["url"] not in urls:
        return (
            f"the app {app_id} is already synced from {row['url']}, and a sync from {url} would take over "
            f"its functions: give this app another id, or, to move the app to this URL, remove it first "
            f"(DELETE /v1/apps/{app_id}) and sync again"
        )
    return None


def _manifest_takeover(row: FunctionOwnersRow) -> str:
    """Why a manifest may not replace the stored ``row`` of another owner."""
    if row["source"] == SDK_SOURCE:
        return (
            f"function id {row['id']} is already synced by the app {row['app_id']} from {row['url']}: a "
            "manifest cannot take it over; give the Function another metadata.name (or spec.functionId), or "
            f"remove the app first (DELETE /v1/apps/{row['app_id']}) and load the manifests again"
        )
    return (
        f"function id {row['id']} is already published by {row['source']}: a manifest cannot take it over; "
        "give the Function another metadata.name (or spec.functionId), or remove the other one"
    )


def function_from_row(row: LoadFunctionsRow) -> Function:
    """The routed function of a ``functions`` row; ValueError when the row holds what cannot be routed."""
    stored = StoredFunction.model_validate(dict(row))
    flow = None if stored.flow is None else FlowControl.model_validate(known_fields(FlowControl, stored.flow))
    return Function(
        id=stored.id,
        app_id=stored.app_id,
        name=stored.name,
        url=stored.url,
        triggers=row["triggers"],
        retries=stored.retries,
        paused=stored.paused,
        source=stored.source,
        cancel_on=row["cancel_on"],
        checkpoint=stored.checkpoint,
        flow=flow,
        retry_policy=None
        if stored.retry_policy is None
        else RetryPolicy.model_validate(known_fields(RetryPolicy, stored.retry_policy)),
        created_at=stored.created_at,
    )


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store
        # (function id, updated_at) of the rows reported as unroutable: each is logged once, not per reload.
        self._reported: set[tuple[str, Any]] = set()

    async def publish(
        self, functions: list[Function], *, replace_app: str | None = None, replace_source: str
    ) -> None:
        """Upsert ``functions`` and remove the others of the same app (or of the same source)."""
        async with self._store.transaction() as conn:
            await self._publish(conn, functions, replace_app=replace_app, replace_source=replace_source)

    async def sync_app(
        self, app_id: str, url: str, functions: list[Function], *, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        """Publish an SDK app's sync from its serve ``url`` into ``namespace`` (the namespace of the key it
        synced with; ``functions`` carry their wire ids), unless it would take over functions that another
        owner published there: a Function resource or manifest, another app, or the same app served from
        another URL. ``FunctionIdTaken`` (409) names the owner; nothing is changed then."""
        functions = [dataclasses.replace(f, id=qualified_function_id(namespace, f.id)) for f in functions]
        ids = sorted(f.id for f in functions)
        urls = {url, *(f.url for f in functions)}
        app_lock = f"app:{qualified_function_id(namespace, app_id)}"
        async with self._store.transaction() as conn:
            await queries.lock_function_ids(self._store, function_ids=sorted({*ids, app_lock}), on=conn)
            owners = await queries.sync_owners(
                self._store, function_ids=ids, app_id=app_id, source=SDK_SOURCE, namespace=namespace, on=conn
            )
            for row in owners:
                owner = _takeover(row, app_id, url, urls)
                if owner is not None:
                    raise FunctionIdTaken(owner)
            await self._publish(
                conn, functions, replace_app=app_id, replace_source=SDK_SOURCE, namespace=namespace
            )

    async def publish_manifests(self, functions: list[Function]) -> None:
        """Make ``functions`` the functions of the manifest files, unless one would take over a function an
        SDK app synced or a Function resource published: ``FunctionIdTaken`` (409) names the owner, and
        nothing is changed then (the functions loaded before stay)."""
        ids = sorted(f.id for f in functions)
        async with self._store.transaction() as conn:
            await queries.lock_function_ids(self._store, function_ids=ids, on=conn)
            for row in await queries.function_owners(self._store, function_ids=ids, on=conn):
                if row["source"] != MANIFEST_SOURCE:
                    raise FunctionIdTaken(_manifest_takeover(row))
            await self._publish(conn, functions, replace_app=None, replace_source=MANIFEST_SOURCE)

    async def remove_app(self, app_id: str, namespace: str) -> int:
        """Remove every function an SDK app synced in ``namespace`` (so that it may sync from another URL);
        the same app id in another namespace is another app. Answer how many were removed."""
        async with self._store.transaction() as conn:
            return await remove_functions(
                self._store, source=SDK_SOURCE, app_id=app_id, namespace=namespace, on=conn
            )

    async def _publish(
        self,
        conn: Queryable,
        functions: list[Function],
        *,
        replace_app: str | None,
        replace_source: str,
        namespace: str | None = None,
    ) -> None:
        published = [
            PublishedFunction(
                id=f.id,
                app_id=f.app_id,
                name=f.name,
                url=f.url,
                triggers=f.triggers,
                retries=f.retries,
                paused=f.paused,
                source=f.source,
                cancel_on=f.cancel_on,
                checkpoint=f.checkpoint,
                flow=None if f.flow is None else f.flow.to_json(),
                retry_policy=None if f.retry_policy is None else f.retry_policy.to_json(),
            )
            for f in functions
        ]
        await publish_functions(
            self._store,
            published,
            replace_source=replace_source,
            replace_app=replace_app,
            namespace=namespace,
            on=conn,
        )

    async def load(self) -> list[Function]:
        """The routed functions; rows that cannot be routed are left out, each logged once as an error."""
        functions = []
        for row in await queries.load_functions(self._store):
            try:
                functions.append(function_from_row(row))
            except ValueError as err:  # pydantic's ValidationError is one
                key = (str(row["id"]), row["updated_at"])
                if key not in self._reported:
                    self._reported.add(key)
                    reason = describe_error(err) if isinstance(err, pydantic.ValidationError) else str(err)
                    log.error(
                        "function %s is not routed: its stored row cannot be read (%s); publish it again",
                        row["id"],
                        reason,
                    )
        return functions
