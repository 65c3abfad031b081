"""The gateway's errors.

GatewayError         base
  BadRequest         the client sent something we refuse (answered 4xx with its message)
  NotFound           what was asked for does not exist (404)
  Unauthorized       a key or token is missing or wrong (401)
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class BadRequest(GatewayError):
    """Refused input; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class NotFound(GatewayError):
    """The named event, run or function does not exist."""


class Unauthorized(GatewayError):
    """The request lacks a valid event key or token."""
