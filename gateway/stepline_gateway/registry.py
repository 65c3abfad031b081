"""Publishing functions into the routing table: from SDK syncs and from Function manifest files.

An SDK app's sync (``POST /fn/register``) replaces that app's functions; a set of manifests replaces every
function published from manifests. Either way the change is one transaction followed by a NOTIFY, so every
gateway replica reloads its routing table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pydantic
import yaml
from stepline.durations import parse_duration
from stepline.manifest import FunctionResource, describe_error, parse_function
from stepline.protocol import match_expression
from stepline_store.pool import Store

from stepline_gateway.errors import BadRequest
from stepline_gateway.routing import ExpressionError, Function, compile_expression
from stepline_gateway.scheduler import CronError, parse_schedule

SDK_SOURCE = "sdk"
MANIFEST_SOURCE = "manifest"
DEFAULT_RETRIES = 4
MAX_RETRIES = 20

# Stands in for the function whose cron triggers are checked before it exists.
_PROBE = Function(id="", app_id="", name="", url="", triggers=[], retries=0, paused=True, source="")


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


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
                parse_schedule(_PROBE, trigger)
            except CronError as err:
                raise BadRequest(f"spec.triggers[{index}].cron: {err}") from None


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


def _checkpoint_settings(function_id: str, raw: Any) -> dict[str, Any] | None:
    """The sync's ``checkpoint`` object: ``batch_steps`` (a count), ``batch_interval`` and ``max_runtime``
    (durations such as ``3s``), each optional; kept as sent, once checked."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        message = "checkpoint must be an object of batch_steps, batch_interval and max_runtime"
        raise BadRequest(f"function {function_id}: {message}")
    steps = raw.get("batch_steps")
    if steps is not None and (not isinstance(steps, int) or isinstance(steps, bool) or steps < 0):
        raise BadRequest(f"function {function_id}: checkpoint.batch_steps must be a whole number, 0 or more")
    settings: dict[str, Any] = {} if steps is None else {"batch_steps": steps}
    for key in ("batch_interval", "max_runtime"):
        if raw.get(key) is not None:
            try:
                parse_duration(str(raw[key]))
            except ValueError as err:
                raise BadRequest(f"function {function_id}: checkpoint.{key}: {err}") from None
            settings[key] = str(raw[key])
    return settings


def functions_from_sync(payload: Any) -> tuple[str, list[Function]]:
    """Read the official SDKs' sync payload; answer (app id, functions)."""
    # The Python SDK writes "appname", the TypeScript SDK "appName" (the Inngest server reads keys
    # case-insensitively).
    app_id = payload.get("appname") or payload.get("appName") if isinstance(payload, dict) else None
    if not isinstance(app_id, str):
        raise BadRequest("the sync payload needs 'appname' and 'functions' (as the Inngest SDKs send)")
    functions = []
    for index, raw in enumerate(payload.get("functions") or []):
        try:
            function_id = raw["id"]
            step = raw["steps"]["step"]
            url = _strip_query(step["runtime"]["url"])
        except (KeyError, TypeError):
            raise BadRequest(
                f"function {index} of app {app_id} lacks an id or steps.step.runtime.url"
            ) from None
        retries = (step.get("retries") or {}).get("attempts", DEFAULT_RETRIES)
        if not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
            raise BadRequest(f"function {function_id}: retries must be between 0 and {MAX_RETRIES}")
        triggers = []
        for trigger in raw.get("triggers") or []:
            if trigger.get("event"):
                triggers.append(
                    {
                        "event": trigger["event"],
                        **({"if": trigger["expression"]} if trigger.get("expression") else {}),
                    }
                )
            elif trigger.get("cron"):
                triggers.append({"cron": trigger["cron"]})
        try:
            _check_triggers(triggers)
        except BadRequest as err:
            raise BadRequest(f"function {function_id}: {err}") from None
        functions.append(
            Function(
                id=function_id,
                app_id=app_id,
                name=raw.get("name") or function_id,
                url=url,
                triggers=triggers,
                retries=retries,
                paused=False,
                source=SDK_SOURCE,
                cancel_on=_cancel_rules(function_id, raw.get("cancel")),
                checkpoint=_checkpoint_settings(function_id, raw.get("checkpoint")),
            )
        )
    return app_id, functions


def function_from_resource(resource: FunctionResource, url: str, source: str) -> Function:
    spec = resource.spec
    triggers = [trigger.model_dump(by_alias=True, exclude_none=True) for trigger in spec.triggers]
    cancel_on = _cancel_rules(
        resource.full_id, [r.model_dump(by_alias=True, exclude_none=True) for r in spec.cancel_on]
    )
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
    for file in files:
        try:
            documents = [d for d in yaml.safe_load_all(file.read_text("utf-8")) if d]
        except yaml.YAMLError as err:
            raise BadRequest(f"{file}: not valid YAML: {err}".replace("\n", " ")) from None
        for document in documents:
            if not isinstance(document, dict) or document.get("kind") != "Function":
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
                _check_triggers(function.triggers)
            except BadRequest as err:
                raise BadRequest(f"{file}: Function {resource.metadata.name}: {err}") from None
            functions.append(function)
    return functions


class Registry:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def publish(
        self, functions: list[Function], *, replace_app: str | None = None, replace_source: str
    ) -> None:
        """Upsert ``functions`` and remove the others of the same app (or of the same source)."""
        ids = [f.id for f in functions]
        async with self._store.transaction() as conn:
            if functions:
                await self._store.execute(
                    "upsert_functions",
                    ids,
                    [f.app_id for f in functions],
                    [f.name for f in functions],
                    [f.url for f in functions],
                    [json.dumps(f.triggers) for f in functions],
                    [f.retries for f in functions],
                    [f.paused for f in functions],
                    [f.source for f in functions],
                    on=conn,
                )
            if replace_app is not None:
                await self._store.execute(
                    "delete_app_functions_except", replace_app, replace_source, ids, on=conn
                )
            else:
                await self._store.execute("delete_functions_of_source_except", replace_source, ids, on=conn)
            await self._store.execute(
                "set_cancel_rules", ids, [json.dumps(f.cancel_on) for f in functions], on=conn
            )
            await self._store.execute(
                "set_checkpoint_settings",
                ids,
                [None if f.checkpoint is None else json.dumps(f.checkpoint) for f in functions],
                on=conn,
            )
            await self._store.execute("notify_routes", on=conn)

    async def load(self) -> list[Function]:
        rows = await self._store.fetch("load_functions")
        return [
            Function(
                id=row["id"],
                app_id=row["app_id"],
                name=row["name"],
                url=row["url"],
                triggers=row["triggers"],
                retries=row["retries"],
                paused=row["paused"],
                source=row["source"],
                cancel_on=row["cancel_on"],
                checkpoint=row["checkpoint"],
                created_at=row["created_at"],
            )
            for row in rows
        ]
