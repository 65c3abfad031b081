"""Errors a function raises to steer its retries, and the errors the SDK raises to its callers.

StepError            a step failed for good (retries exhausted or non-retriable); catchable in the function
NonRetriableError    raise it to fail the step (or the run) at once, without further attempts
RetryAfterError      raise it to retry no sooner than a given time
SendEventError       the gateway refused or did not answer an event sent with Client.send
ConfigError          the client is missing a setting it needs
"""

from __future__ import annotations

import datetime


class SteplineError(Exception):
    """Base of every error the SDK raises itself."""


class StepError(SteplineError):
    """A step failed for good; ``name``, ``message`` and ``stack`` describe the original error."""

    def __init__(self, message: str, *, name: str = "Error", stack: str | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.message = message
        self.stack = stack


class NonRetriableError(SteplineError):
    """Fail at once: raised in a step it fails the step; raised in the function it fails the run."""


class RetryAfterError(SteplineError):
    """Retry no sooner than ``retry_after`` (seconds from now, a timedelta, or an aware datetime)."""

    def __init__(self, message: str, retry_after: float | datetime.timedelta | datetime.datetime) -> None:
        super().__init__(message)
        if isinstance(retry_after, int | float):
            retry_after = datetime.timedelta(seconds=retry_after)
        if isinstance(retry_after, datetime.timedelta):
            retry_after = datetime.datetime.now(datetime.UTC) + retry_after
        self.retry_after: datetime.datetime = retry_after


class SendEventError(SteplineError):
    """The gateway did not accept the events."""


class ConfigError(SteplineError):
    """A required setting is missing or invalid."""
