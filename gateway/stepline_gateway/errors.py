"""The gateway's errors.

GatewayError         base
  BadRequest         the client sent something we refuse (answered 4xx with its message)
    FunctionIdTaken  a sync would take over functions another owner published (409)
  NotFound           what was asked for does not exist (404)
  Unauthorized       a key or token is missing or wrong (401)
  Forbidden          the token is valid but its role or namespace does not allow this (403)
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class BadRequest(GatewayError):
    """Refused input; ``status`` is the HTTP code to answer with."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class FunctionIdTaken(BadRequest):
    """A sync would take over a function id published by a Function resource, a manifest, another app or
    the same app from another URL; the message names the owner."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=409)


class NotFound(GatewayError):
    """The named event, run or function does not exist."""


class Unauthorized(GatewayError):
    """The request lacks a valid event key or token."""


class Forbidden(GatewayError):
    """The API token is known, but its role or its namespace does not allow what was asked."""
