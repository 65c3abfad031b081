"""Durations and instants as the protocol writes them: ``1h30m``, ``10s``, ``500ms``; ISO 8601 times."""

from __future__ import annotations

import datetime
import re

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> datetime.timedelta:
    """``1h30m`` -> 5400 s; raise ValueError for anything else."""
    compact = text.strip().replace(" ", "")
    parts = _PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"{text!r} is not a duration like 10s, 5m, 1h30m or 2d")
    try:
        return datetime.timedelta(seconds=sum(float(n) * _UNIT_S[u] for n, u in parts))
    except OverflowError:
        raise ValueError(f"{text!r} is too long a duration: give at most a few years") from None


def parse_instant(text: str) -> datetime.datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    parsed = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
