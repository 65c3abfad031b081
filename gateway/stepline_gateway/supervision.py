"""Supervision of the gateway's long-lived tasks: each one fails, backs off, and comes back by itself.

Every background loop of the gateway (dispatcher, heartbeat, NOTIFY listener, cron, route refresh, pruning)
runs as a ``Supervisor`` task. A task's body loops forever, starts with its unit of work (so that a retry
does it again at once) and calls ``Health.ok()`` after each unit that succeeded. Any exception but
cancellation ends the body; the supervisor logs it once per failure streak (what failed, with the traceback
when the error is not a database or network one), waits a capped exponential backoff with jitter, and runs
the body again. A body that returns is run again too: a loop that stops by itself is a fault like any other.
``wake()`` cuts every backoff short: the gateway calls it when the listener is back, so that no loop waits
out its timer after a database restart.

Each task's ``Health`` feeds ``GET /readyz`` (``problems()``): a task failing makes the gateway unready, with
the reason. A task that fails for ``exit_after_s`` on end with errors that are not database or network ones
(a bug, a schema changed under the gateway: restarting the process may help, waiting does not) makes the
supervisor call ``on_unrecoverable``; ``stepline gateway`` then stops and exits 1, and Kubernetes restarts the
pod. An outage of the database never does: every replica shares it, and restarts would only crash-loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from stepline_store.errors import is_transient

log = logging.getLogger(__name__)

Body = Callable[["Health"], Awaitable[None]]


@dataclass(frozen=True)
class RetryDelay:
    """Capped exponential backoff with jitter: ``base_s * 2**n``, at most ``max_s``, times 0.5 to 1.

    The cap is short: a loop waiting for the database is back within a second of it, and an attempt a
    second per task is nothing for a server that is up."""

    base_s: float = 0.05
    max_s: float = 1.0

    def after(self, failures: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.max_s, self.base_s * float(2 ** min(failures - 1, 30)))
        return ceiling * (rng or random).uniform(0.5, 1.0)


@dataclass
class Health:
    """What one supervised task reports: running, failing (since when, why) or stopped."""

    name: str
    state: str = "running"
    error: str | None = None
    failures: int = 0
    failing_since: float | None = None
    # When the current streak's first error that is not a database or network one happened.
    broken_since: float | None = None

    def ok(self) -> None:
        """The task did a unit of work: a failure streak, if any, is over."""
        if self.state == "running":
            return
        if self.failures:
            took = time.monotonic() - (self.failing_since or time.monotonic())
            log.info("%s is back after %d failed attempt(s) in %.1f s", self.name, self.failures, took)
        self.state, self.error, self.failures = "running", None, 0
        self.failing_since = self.broken_since = None

    def failed(self, error: BaseException) -> bool:
        """Count a failure; answer whether it is news (the streak's first, or its first that is not a database
        or network error), which is logged."""
        now = time.monotonic()
        news = self.failures == 0
        self.failures += 1
        self.state, self.error = "failing", describe(error)
        if self.failing_since is None:
            self.failing_since = now
        if not is_transient(error) and self.broken_since is None:
            self.broken_since = now
            news = True
        return news

    def problem(self) -> str | None:
        """Why this task makes the gateway unready, or None."""
        if self.state == "running":
            return None
        if self.state == "failing":
            return f"{self.name} is failing ({self.failures} attempt(s)): {self.error}"
        return f"{self.name} is {self.state}"


def describe(error: BaseException) -> str:
    """An error in one line for logs and ``/readyz``: its type and message."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Supervisor:
    def __init__(
        self,
        *,
        exit_after_s: float,
        on_unrecoverable: Callable[[str], None],
        delay: RetryDelay | None = None,
    ) -> None:
        self._exit_after_s = exit_after_s
        self._on_unrecoverable = on_unrecoverable
        self._delay = delay or RetryDelay()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.health: dict[str, Health] = {}
        self._wake = asyncio.Event()
        self._stopping = False
        self._gave_up = False

    def start(self, name: str, body: Body) -> Health:
        """Run ``body`` under supervision as the task ``name``."""
        health = Health(name)
        self.health[name] = health
        self._tasks[name] = asyncio.create_task(self._supervise(health, body), name=name)
        return health

    def wake(self) -> None:
        """Cut every backoff short: what they wait for (the database) is back."""
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def problems(self) -> list[str]:
        return [p for p in (h.problem() for h in self.health.values()) if p is not None]

    async def _supervise(self, health: Health, body: Body) -> None:
        while True:
            try:
                await body(health)
                raise LoopEnded(f"{health.name} stopped by itself")
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if self._stopping:
                    return
                if health.failed(err):
                    self._log_failure(health, err)
                else:
                    log.debug("%s failed again: %s", health.name, health.error)
                self._check_unrecoverable(health)
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._delay.after(health.failures))

    def _log_failure(self, health: Health, err: Exception) -> None:
        if is_transient(err):
            log.error(
                "%s failed: %s; retrying with backoff until the database answers", health.name, health.error
            )
        else:
            log.error("%s failed; retrying with backoff", health.name, exc_info=err)

    def _check_unrecoverable(self, health: Health) -> None:
        if self._exit_after_s <= 0 or health.broken_since is None or self._gave_up:
            return
        if time.monotonic() - health.broken_since < self._exit_after_s:
            return
        self._gave_up = True
        reason = (
            f"{health.name} kept failing for {self._exit_after_s:g} s with errors that are not database or "
            f"network ones (last: {health.error})"
        )
        log.critical("%s: stopping the gateway so that it is restarted", reason)
        self._on_unrecoverable(reason)

    async def stop(self) -> None:
        """Cancel every task and wait for them; nothing is restarted from now on."""
        self._stopping = True
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for health in self.health.values():
            health.state = "stopped"

    def stopping(self) -> None:
        """The gateway is shutting down: a body that returns or fails from now on is not run again."""
        self._stopping = True


class LoopEnded(RuntimeError):
    """A supervised body returned: it is run again like one that failed."""
