"""When a failed attempt is tried again: the function's retry policy, or exponential backoff with jitter.

A function that declares ``retryPolicy`` (stepline.flow.RetryPolicy: Exponential, Linear or Constant from
its initial delay, capped by its maximum, with its share of jitter) is retried on it; the others on the
gateway's defaults, of Inngest's order of magnitude (seconds, then minutes, capped at an hour), which tests
and ``stepline dev`` may shorten. The delay is added to the database's clock when the retry is recorded
(``retry_call``), where a ``retry-after`` instant from the service is the floor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from stepline.flow import RetryPolicy


@dataclass(frozen=True)
class Backoff:
    base_s: float = 10.0
    max_s: float = 3600.0

    def delay(
        self, attempt: int, *, policy: RetryPolicy | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based): by ``policy`` when the
        function has one, else half fixed, half random."""
        draw = rng or random
        if policy is not None:
            return policy.delay(attempt, draw.random()).total_seconds()
        ceiling = min(self.max_s, self.base_s * float(2 ** min(attempt, 32)))
        jitter: float = draw.uniform(0, ceiling / 2)
        return ceiling / 2 + jitter
