"""A Kubernetes API server for the operator tests: kmock's emulator plus what a real API server adds.

kmock 0.8 keeps objects, serves list and watch, merges patches and honours finalizers. kopf and kubectl also
rely on: uid/creationTimestamp/resourceVersion (bumped on every write, inside the same write, so that kopf's
consistency checks see it)/generation (bumped when the spec changes); ``generateName``; 422 for a failed
JSON-patch ``test``; the status subresource's split (writes to the object ignore ``status``, and the reverse);
defaults from the CRD's schema; a Secret's ``stringData`` written into its ``data``, base64;
``kind``/``apiVersion`` on lists; a watch that neither loses nor repeats what its list gave; a JSON content
type on watch streams; ``v1`` (not ``/v1``) as the core group's version; and server-side tables from a CRD's
printer columns, which ``kubectl get`` asks for.
CEL rules are not enforced here (tests/test_operator/test_crd.py evaluates them on their own).
"""

from __future__ import annotations

import base64
import copy
import datetime
import itertools
import re
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs
import jsonpatch
import kmock
from kmock._internal import dicts, rendering

_FILTER = re.compile(r"^\[\?\(@\.(\w+)==[\"'](.*)[\"']\)\]")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def jsonpath(obj: Any, path: str) -> Any:
    """The subset of JSONPath that printer columns use: ``.a.b`` and ``.a[?(@.k=="v")].b``."""
    rest = path
    while rest and obj is not None:
        if rest.startswith("."):
            match = re.match(r"^\.([A-Za-z0-9_]+)", rest)
            assert match, path
            obj = obj.get(match.group(1)) if isinstance(obj, Mapping) else None
            rest = rest[match.end() :]
        else:
            match = _FILTER.match(rest)
            assert match, path
            key, value = match.groups()
            obj = next((i for i in obj or [] if isinstance(i, Mapping) and str(i.get(key)) == value), None)
            rest = rest[match.end() :]
    return obj


def with_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in, as the API server defaults a custom resource."""
    if isinstance(value, dict):
        result = dict(value)
        for name, sub in (schema.get("properties") or {}).items():
            if name not in result and "default" in sub:
                result[name] = copy.deepcopy(sub["default"])
            if name in result:
                result[name] = with_defaults(result[name], sub)
        return result
    if isinstance(value, list) and "items" in schema:
        return [with_defaults(item, schema["items"]) for item in value]
    return value


def human_age(timestamp: str) -> str:
    """Kubernetes' HumanDuration, as ``kubectl get`` shows an Age."""
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    return f"{minutes // 60}h"


def _string_data_into_data(body: Any) -> None:
    """A Secret's ``stringData`` is write-only: the API server stores it base64-encoded in ``data``."""
    if isinstance(body, dict) and isinstance(body.get("stringData"), dict):
        data = body.get("data") or {}
        for key, value in body.pop("stringData").items():
            data[key] = base64.b64encode(str(value).encode()).decode()
        body["data"] = data


@attrs.define(kw_only=True)
class KubeAPI(kmock.KubernetesEmulator):
    """kmock's emulator with the API server behaviour listed in the module docstring."""

    _versions: itertools.count[int] = attrs.field(factory=lambda: itertools.count(1000), init=False)
    _crds: dict[kmock.resource, dict[str, Any]] = attrs.field(factory=dict, init=False)

    def install_crd(self, crd: Mapping[str, Any]) -> kmock.resource:
        """Serve the CRD's resource (discovery, status subresource, printer columns) and store the CRD."""
        spec = crd["spec"]
        version = next(v for v in spec["versions"] if v.get("storage"))
        names = spec["names"]
        resource = kmock.resource(spec["group"], version["name"], names["plural"])
        self.resources[resource] = kmock.ResourceInfo(
            kind=names["kind"],
            singular=names["singular"],
            namespaced=spec["scope"] == "Namespaced",
            shortnames=set(names.get("shortNames", [])),
            categories=set(names.get("categories", [])),
            subresources=set(version.get("subresources", {})),
            verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
        )
        self._crds[resource] = {
            "names": names,
            "version": version,
            "schema": version["schema"]["openAPIV3Schema"],
        }
        stored = copy.deepcopy(dict(crd))
        self._stamp(stored)
        self.objects["apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"]] = (
            stored
        )
        return resource

    def _stamp(self, obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta["resourceVersion"] = str(next(self._versions))
        meta["generation"] = 1

    def _has_status(self, request: rendering.Request) -> bool:
        resource = request.resource
        return resource in self._crds and "status" in self.resources[resource].subresources

    def _current(self, request: rendering.Request) -> dict[str, Any] | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:  # type: ignore[index, operator]
            return None
        return copy.deepcopy(self.objects[key].raw)  # type: ignore[index]

    async def _handle(self, request: rendering.Request) -> Any:
        if request.resource is not None and request.resource.plural == "secrets":
            _string_data_into_data(request.data)
        if request.resource is not None:
            if request.action == kmock.action.CREATE and isinstance(request.data, dict):
                self._stamp(request.data)
                if self._has_status(request):
                    request.data.pop("status", None)
                if request.resource in self._crds and "spec" in request.data:
                    schema = self._crds[request.resource]["schema"]["properties"]["spec"]
                    request.data["spec"] = with_defaults(request.data["spec"], schema)
            elif request.action == kmock.action.UPDATE and request.data is not None:
                self._prepare_update(request)
            elif request.action == kmock.action.DELETE and request.name is not None:
                await self._mark_deleted(request)
        return await super()._handle(request)

    def _prepare_update(self, request: rendering.Request) -> None:
        """Write the new resourceVersion (and generation) into the patch itself."""
        current = self._current(request)
        if current is None:
            return
        data = request.data
        version = str(next(self._versions))
        if self._has_status(request) and isinstance(data, dict):
            if request.subresource == "status":
                data.pop("spec", None)
            else:
                data.pop("status", None)
        try:
            patched = dicts.patch_dict(current, data)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, ValueError):
            return  # the emulator answers the failure
        spec = patched.get("spec")
        if request.resource in self._crds and spec is not None:
            spec = with_defaults(spec, self._crds[request.resource]["schema"]["properties"]["spec"])
        generation = current["metadata"].get("generation", 1)
        if spec != current.get("spec"):
            generation += 1
        if isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            meta["resourceVersion"] = version
            meta["generation"] = generation
            if spec != patched.get("spec"):
                data["spec"] = spec
        elif isinstance(data, list):
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
            data.append({"op": "add", "path": "/metadata/generation", "value": generation})
            if spec != patched.get("spec"):
                data.append({"op": "replace", "path": "/spec", "value": spec})

    async def _mark_deleted(self, request: rendering.Request) -> None:
        """A delete with finalizers sets deletionTimestamp, as a write with its own resourceVersion."""
        current = self._current(request)
        if current is None:
            return
        meta = current["metadata"]
        if meta.get("finalizers") and not meta.get("deletionTimestamp"):
            key = (request.resource, request.namespace, request.name)
            async with self._lock:
                self.objects[key].patch(  # type: ignore[index]
                    {"metadata": {"deletionTimestamp": _now(), "resourceVersion": str(next(self._versions))}}
                )
                raw = self.objects[key].raw  # type: ignore[index]
            await self._buses[request.resource].put({"type": "MODIFIED", "object": raw})

    async def _render_error(self, exc: Exception) -> Any:
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):
            exc = kmock.KubernetesError(
                status=422, reason="Invalid", message=f"the object has changed: {exc}"
            )
        return await super()._render_error(exc)

    async def _serve_version(self, request: rendering.Request) -> Any:
        answer = await super()._serve_version(request)
        if isinstance(answer, dict):
            answer["groupVersion"] = answer["groupVersion"].lstrip("/")
            for entry in answer.get("resources", []):
                if "/" in entry["name"]:  # a subresource has no short names or categories of its own
                    entry["shortNames"], entry["categories"] = [], []
        return answer

    def _wants_table(self, request: rendering.Request) -> bool:
        accept = request.headers.get("Accept", "")
        return "as=Table" in accept and request.resource in self._crds

    def _table(self, request: rendering.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
        crd = self._crds[request.resource]  # type: ignore[index]
        columns = crd["version"].get("additionalPrinterColumns", [])
        definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}]
        definitions += [
            {
                "name": c["name"],
                "type": c["type"],
                "format": c.get("format", ""),
                "description": c.get("description", ""),
                "priority": c.get("priority", 0),
            }
            for c in columns
        ]
        rows = []
        for item in items:
            cells: list[Any] = [item["metadata"]["name"]]
            for column in columns:
                value = jsonpath(item, column["jsonPath"])
                if value is not None and column["type"] == "date":
                    value = human_age(str(value))
                cells.append(value)
            rows.append(
                {
                    "cells": cells,
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": item["metadata"],
                    },
                }
            )
        return {
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": str(next(self._versions))},
            "columnDefinitions": definitions,
            "rows": rows,
        }

    def _kind(self, request: rendering.Request) -> tuple[str, str]:
        resource = request.resource
        assert resource is not None
        info = self.resources[resource] if resource in self.resources else kmock.ResourceInfo()
        group_version = f"{resource.group}/{resource.version}" if resource.group else str(resource.version)
        return group_version, info.kind or str(resource.plural).capitalize()

    async def _serve_list(self, request: rendering.Request) -> Any:
        answer = await super()._serve_list(request)
        if self._wants_table(request):
            return self._table(request, answer["items"])
        api_version, kind = self._kind(request)
        answer.update({"apiVersion": api_version, "kind": f"{kind}List"})
        answer["metadata"]["resourceVersion"] = str(next(self._versions))
        return answer

    async def _serve_fetch(self, request: rendering.Request) -> Any:
        answer = await super()._serve_fetch(request)
        if self._wants_table(request):
            return self._table(request, [answer])
        return answer

    def _serve_watch(self, request: rendering.Request) -> Any:  # type: ignore[override]
        return kmock.Response(headers={"Content-Type": "application/json"}, payload=self._watch(request))

    async def _watch(self, request: rendering.Request) -> AsyncIterator[Any]:
        """Like the emulator's watch, but nothing is lost or repeated between a list and its watch.

        The bus is marked before the objects are read (an event in between is not lost), and from a
        ``resourceVersion`` only newer objects are replayed (no duplicate of what the list gave).
        """
        yield b""
        assert request.resource is not None
        since = (
            int(request.params.get("resourceVersion") or 0)
            if request.params.get("resourceVersion", "").isdigit()
            else 0
        )
        bus = self._buses[request.resource]
        async with self._lock:
            mark = await bus.mark()
            objs = self._KubernetesEmulator__get_objs(request, strict=False)  # type: ignore[attr-defined]
            replay = [
                {"type": "ADDED", "object": obj.raw}
                for obj in objs
                if not obj.deleted and int(obj.raw["metadata"].get("resourceVersion", 0)) > since
            ]
        try:
            for event in replay:
                yield event
            async for event in bus.stream(since=mark):
                meta = event.get("object", {}).get("metadata", {})
                if self._KubernetesEmulator__check(  # type: ignore[attr-defined]
                    request, request.resource, meta.get("namespace"), meta.get("name"), strict=False
                ):
                    yield event
        finally:
            await bus.unmark(mark)
