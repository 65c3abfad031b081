"""Events as the gateway accepts them: parsing and validating what ``POST /e/{key}`` receives.

An event is ``{name, data?, id?, ts?, user?, v?}``. Anything else is refused with a message naming the
event and the field, before anything is stored: malformed JSON, unknown fields, wrong types, values Postgres
cannot store (NUL characters, lone surrogates, NaN and infinities, nesting past ``storable.MAX_DEPTH``), a
``ts`` outside ``[0, MAX_TS]`` and events over the size limit. Outside dev mode, names under ``inngest/``
are the gateway's own (``refuse_reserved``): a client that could send them could run failure handlers,
invoke functions or fake cron ticks with data of its choosing.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from stepline_gateway import storable
from stepline_gateway.errors import BadRequest

MAX_NAME_LENGTH = 256
MAX_ID_LENGTH = 256
# The last millisecond of the year 9999 (9999-12-31T23:59:59.999Z): later times have no calendar date the
# gateway can schedule a run at.
MAX_TS = 253_402_300_799_999
_FIELDS = {"name", "data", "id", "ts", "user", "v"}
# Names only the gateway emits (inngest/function.failed, .finished, .cancelled, .invoked, scheduled.timer).
RESERVED_PREFIX = "inngest/"


@dataclass(frozen=True)
class Event:
    id: str
    name: str
    data: dict[str, Any]
    # Milliseconds since the epoch; None until stored: the store stamps the database's now.
    ts: int | None
    user: dict[str, Any] | None = None
    v: str | None = None

    def payload(self) -> dict[str, Any]:
        """The event as functions receive it."""
        body: dict[str, Any] = {"id": self.id, "name": self.name, "data": self.data, "ts": self.ts}
        if self.user is not None:
            body["user"] = self.user
        if self.v is not None:
            body["v"] = self.v
        return body


def new_event_id() -> str:
    return uuid.uuid4().hex


def parse_events(body: bytes, *, max_event_bytes: int) -> list[Event]:
    """Parse one event or a JSON array of events; raise BadRequest saying what is wrong. An event without a
    ``ts`` keeps None: the store stamps it with the database's now, not this replica's clock."""
    try:
        document = storable.parse_document(body)
    except storable.InvalidJson as err:
        raise BadRequest(f"the body is not valid JSON: {err}") from None
    value = document.value
    items = value if isinstance(value, list) else [value]
    if not items:
        raise BadRequest("the body is an empty array: send at least one event")
    return [
        _parse_one(item, index, max_event_bytes, clean=document.clean) for index, item in enumerate(items)
    ]


def _parse_one(item: Any, index: int, max_event_bytes: int, *, clean: bool) -> Event:
    where = f"event {index}"
    if not isinstance(item, dict):
        raise BadRequest(f'{where} is not a JSON object: send {{"name": ..., "data": {{...}}}}')
    found = None if clean else storable.problem(item)
    if found is not None:
        raise BadRequest(f"{where} contains {found}: Postgres cannot store it")
    unknown = sorted(set(item) - _FIELDS)
    if unknown:
        raise BadRequest(f"{where} has unknown fields {unknown}: an event has name, data, id, ts, user and v")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise BadRequest(f"{where} has no name: 'name' must be a non-empty string")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest(f"{where} has a name longer than {MAX_NAME_LENGTH} characters")
    where = f"event {index} ({name})"
    data = item.get("data")
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadRequest(f"{where}: 'data' must be a JSON object, not {type(data).__name__}")
    event_id = item.get("id") or new_event_id()
    if not isinstance(event_id, str) or len(event_id) > MAX_ID_LENGTH:
        raise BadRequest(f"{where}: 'id' must be a string of at most {MAX_ID_LENGTH} characters")
    ts = item.get("ts") or None
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool) or not 0 <= ts <= MAX_TS):
        raise BadRequest(
            f"{where}: 'ts' must be a timestamp in milliseconds since the epoch, from 0 to {MAX_TS} "
            "(9999-12-31T23:59:59.999Z)"
        )
    user = item.get("user")
    if user is not None and not isinstance(user, dict):
        raise BadRequest(f"{where}: 'user' must be a JSON object")
    version = item.get("v")
    if version is not None and not isinstance(version, str):
        raise BadRequest(f"{where}: 'v' (the event's version) must be a string, e.g. \"2024-01-01.1\"")
    size = len(json.dumps(item, separators=(",", ":")).encode("utf-8"))
    if size > max_event_bytes:
        raise BadRequest(f"{where} is {size} bytes, over the limit of {max_event_bytes} bytes", status=413)
    return Event(id=event_id, name=name, data=data, ts=ts, user=user, v=version)


def refuse_reserved(events: list[Event]) -> None:
    """Refuse a batch holding an event whose name is reserved for the gateway (``inngest/...``)."""
    for index, event in enumerate(events):
        if event.name.startswith(RESERVED_PREFIX):
            raise BadRequest(
                f"event {index} ({event.name}): names under {RESERVED_PREFIX} are emitted by Stepline "
                "itself and cannot be sent: give the event a name of your own (e.g. shop/order.created)",
                status=403,
            )
