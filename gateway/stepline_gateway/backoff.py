"""When a failed attempt is tried again: exponential backoff with jitter, capped.

Defaults are of Inngest's order of magnitude (seconds, then minutes, capped at an hour); tests and
``stepline dev`` may shorten them. The delay is added to the database's clock when the retry is recorded
(``retry_call``), where a ``retry-after`` instant from the service is the floor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    base_s: float = 10.0
    max_s: float = 3600.0

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based): half fixed, half random."""
        ceiling = min(self.max_s, self.base_s * float(2 ** min(attempt, 32)))
        jitter: float = (rng or random).uniform(0, ceiling / 2)
        return ceiling / 2 + jitter
