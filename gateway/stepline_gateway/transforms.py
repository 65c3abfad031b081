"""From a webhook's request to events: the body read by its type, then the webhook's CEL transform.

``read_body`` gives the ``body`` a transform sees: a JSON type's body parsed (and refused when it is not
JSON), a form's fields as a map, any other body parsed as JSON when it is JSON and else kept as text.
``Transform`` runs ``spec.transform`` (compiled once per reload) over ``body``, ``headers`` (lower-case
names), ``query`` and ``method``, or the default: one event ``webhook/<namespace>.<name>`` with the body as
its data and, where the scheme names a delivery, that delivery as the event's id, so that a provider's
retry starts nothing new. The result is checked as ``POST /e`` checks events.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from stepline.webhook import default_event_name

from stepline_gateway.errors import BadRequest
from stepline_gateway.events import MAX_ID_LENGTH, Event, parse_events
from stepline_gateway.routing import compile_expression

_JSON_TYPES = ("application/json", "text/json")
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Incoming:
    """A webhook request as a transform sees it."""

    body: Any
    headers: Mapping[str, str]
    query: Mapping[str, str]
    method: str

    def variables(self) -> dict[str, Any]:
        return {
            "body": self.body,
            "headers": dict(self.headers),
            "query": dict(self.query),
            "method": self.method,
        }


def read_body(raw: bytes, content_type: str) -> Any:
    """The ``body`` variable; raise ``BadRequest`` for a body that its own type says is malformed."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media in _JSON_TYPES or media.endswith("+json"):
        try:
            return json.loads(raw)
        except ValueError as err:  # UnicodeDecodeError included
            raise BadRequest(f"the body is not valid JSON ({err}), yet its Content-Type is {media}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(
            "the body is not UTF-8 text: Stepline's webhooks take JSON, forms and text"
        ) from None
    if media == _FORM:
        # A field given more than once keeps its last value.
        return dict(parse_qsl(text, keep_blank_values=True))
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _bounded_id(namespace: str, name: str, delivery: str) -> str:
    # No "/" in it: event ids appear in URL paths (GET /v1/events/{id}).
    event_id = f"webhook:{namespace}.{name}:{delivery}"
    if len(event_id) <= MAX_ID_LENGTH and "/" not in delivery:
        return event_id
    digest = hashlib.sha256(delivery.encode()).hexdigest()
    return f"webhook:{namespace}.{name}:sha256:{digest}"[:MAX_ID_LENGTH]


def delivery_id(scheme: str, incoming: Incoming) -> str | None:
    """The provider's id of this delivery, the same on its retries, where the scheme has one."""
    body = incoming.body if isinstance(incoming.body, dict) else {}
    candidates = {
        "github": incoming.headers.get("x-github-delivery"),
        "standardWebhooks": incoming.headers.get("webhook-id"),
        "stripe": body.get("id"),
        "slack": body.get("event_id"),
    }
    found = candidates.get(scheme)
    return found if isinstance(found, str) and found else None


class Transform:
    """A webhook's ``spec.transform``, compiled once; ``ExpressionError`` when it does not compile."""

    def __init__(self, source: str | None, *, namespace: str, name: str, scheme: str) -> None:
        self.source = source
        self._program = compile_expression(source) if source else None
        self._name = default_event_name(namespace, name)
        self._namespace, self._webhook = namespace, name
        self._scheme = scheme

    def _run(self, incoming: Incoming) -> Any:
        if self._program is None:
            event: dict[str, Any] = {"name": self._name, "data": incoming.body}
            delivery = delivery_id(self._scheme, incoming)
            if delivery is not None:
                event["id"] = _bounded_id(self._namespace, self._webhook, delivery)
            return event
        try:
            return self._program.execute(incoming.variables())
        except KeyError as err:
            raise BadRequest(f"the transform failed on this request: no such key: {err}") from None
        except (ValueError, TypeError, RuntimeError, ArithmeticError) as err:
            first_line = (str(err).splitlines() or [type(err).__name__])[0]
            raise BadRequest(f"the transform failed on this request: {first_line}") from None

    def events(self, incoming: Incoming, *, max_event_bytes: int) -> list[Event]:
        """The events of this request (none when the transform gives an empty list); ``BadRequest`` (400,
        or 413 for an event over the size limit) when the transform fails or gives something else."""
        result = self._run(incoming)
        items = result if isinstance(result, list) else [result]
        if not items:
            return []
        try:
            encoded = json.dumps(items).encode()
        except (TypeError, ValueError) as err:
            raise BadRequest(f"the transform gave a value that is not JSON: {err}") from None
        try:
            return parse_events(encoded, max_event_bytes=max_event_bytes)
        except BadRequest as err:
            hint = (
                ""
                if self._program is not None
                else (
                    "; the default transform takes a JSON object body as the event's data: for another body "
                    'give the Webhook a spec.transform such as {"name": "...", "data": {"body": body}}'
                )
            )
            raise BadRequest(
                f"the transform gave what is not an event: {err}{hint}", status=err.status
            ) from None
