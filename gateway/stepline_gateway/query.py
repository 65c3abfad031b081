"""The API's query and path parameters: page sizes, times, cursors and names, read for the route handlers.

Each reader answers a value the store can take, or raises BadRequest (NotFound for ids in a path) naming the
parameter and saying what it must be: a parameter never reaches Postgres in a form it refuses (a NUL
character, a time outside the calendar, a cursor the API never gave out).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import re
import uuid

from starlette.datastructures import QueryParams

from stepline_gateway import storable
from stepline_gateway.errors import BadRequest, NotFound

MAX_PAGE = 500
DEFAULT_PAGE = 50
# Longer names and ids than the gateway stores (events.MAX_NAME_LENGTH, MAX_ID_LENGTH) match nothing anyway.
MAX_TEXT = 1024
_DIGITS = re.compile(r"[0-9]{1,4}")


def limit(params: QueryParams) -> int:
    raw = params.get("limit", str(DEFAULT_PAGE))
    if not _DIGITS.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)


def _utc(at: datetime.datetime, what: str) -> datetime.datetime:
    if at.tzinfo is None:
        at = at.replace(tzinfo=datetime.UTC)
    try:
        return at.astimezone(datetime.UTC)
    except OverflowError:
        raise BadRequest(f"{what} is outside the years 1 to 9999 once in UTC") from None


def time(params: QueryParams, name: str) -> datetime.datetime | None:
    """An ISO 8601 time (UTC when it has no offset), or None when the parameter is absent or empty."""
    raw = params.get(name)
    if not raw:
        return None
    try:
        at = datetime.datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an ISO 8601 time, e.g. 2025-01-31T08:00:00Z") from None
    return _utc(at, name)


def text(params: QueryParams, name: str) -> str | None:
    """A name or id to filter by, or None when absent."""
    raw = params.get(name)
    if raw is None:
        return None
    problem = storable.text_problem(raw)
    if problem is not None:
        raise BadRequest(f"{name} contains {problem}: no {name} can hold one")
    if len(raw) > MAX_TEXT:
        raise BadRequest(f"{name} is longer than {MAX_TEXT} characters: no {name} is that long")
    return raw


def path_id(value: str, what: str) -> str:
    """An id from the path (an event's): one that cannot exist is not found rather than looked up."""
    if storable.text_problem(value) is not None or len(value) > MAX_TEXT:
        raise NotFound(f"no {what} with that id: ids hold no NUL characters and are at most 256 characters")
    return value


def run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"no run {value!r}: run ids are UUIDs") from None


def cursor_out(at: datetime.datetime, key: str) -> str:
    """The ``next_cursor`` of a page whose last row is (``at``, ``key``)."""
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{key}".encode()).decode()


_NOT_OURS = "the cursor is not one this API gave out: start again without it"


def cursor_in(params: QueryParams) -> tuple[datetime.datetime, str] | None:
    """The position a ``cursor`` parameter stands for, or None when there is none."""
    cursor = params.get("cursor")
    if not cursor:
        return None
    try:
        decoded = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
        at_text, separator, key = decoded.partition("|")
        at = datetime.datetime.fromisoformat(at_text)
    except (ValueError, binascii.Error):
        raise BadRequest(_NOT_OURS) from None
    if not separator or not key or at.tzinfo is None or storable.text_problem(key) is not None:
        raise BadRequest(_NOT_OURS)
    return _utc(at, "the cursor"), key


def run_cursor(params: QueryParams) -> tuple[datetime.datetime, uuid.UUID] | None:
    """A cursor of the runs list: its key is a run id."""
    position = cursor_in(params)
    if position is None:
        return None
    at, key = position
    try:
        return at, uuid.UUID(key)
    except ValueError:
        raise BadRequest(_NOT_OURS) from None
