"""Handling of the secrets clients present: constant-time comparison, and paths made fit for a log line.

Every comparison of a key, token or session with what the gateway holds goes through ``matches_any``
(``hmac.compare_digest`` against every candidate, so that neither the position of a match nor a common
prefix shows in the time taken). ``redacted_path`` is the only form of a request's path that log lines
use: the event key of ``/e/{event_key}`` is replaced, so that no error log ever carries a key.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from starlette.requests import Request

REDACTED = "[redacted]"
_EVENT_KEY_PATH = re.compile(r"^/e/[^/]*")


def matches_any(given: str, expected: Iterable[str]) -> bool:
    """Whether ``given`` equals one of ``expected``; every candidate is compared, each in constant time."""
    given_bytes = given.encode("utf-8", "surrogateescape")
    found = False
    for candidate in expected:
        found |= hmac.compare_digest(given_bytes, candidate.encode("utf-8", "surrogateescape"))
    return found


def redact_path(path: str) -> str:
    """``/e/<key>...`` -> ``/e/[redacted]...``; other paths carry no secret and stay as they are."""
    return _EVENT_KEY_PATH.sub(f"/e/{REDACTED}", path, count=1)


def redacted_path(request: Request) -> str:
    return redact_path(request.url.path)
