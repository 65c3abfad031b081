"""Run ids: UUIDv7 (RFC 9562), whose first 48 bits are the creation time in milliseconds.

History is partitioned by day on the run id (migration 0014): every run id must come from ``new_run_id``
(or from ``stepline_uuid7`` in SQL), or its row has no partition to go to.
"""

from __future__ import annotations

import datetime
import secrets
import uuid


def new_run_id(at: datetime.datetime) -> uuid.UUID:
    """A UUIDv7 of the millisecond ``at`` (aware), with 74 random bits."""
    ms = int(at.timestamp() * 1000)
    random = secrets.randbits(74)
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | (random >> 62) << 64 | 0b10 << 62 | (random & (2**62 - 1))
    return uuid.UUID(int=value)


def run_id_time(run_id: uuid.UUID) -> datetime.datetime:
    """When a run id was made (to the millisecond)."""
    return datetime.datetime.fromtimestamp((run_id.int >> 80) / 1000, datetime.UTC)
