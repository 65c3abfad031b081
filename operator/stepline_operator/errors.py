"""Why a Function cannot be routed, or a Webhook published (yet); each error carries a CamelCase reason
for its conditions.

ReconcileError            a reason and a message a platform engineer can act on
+-- InvalidSpec           the spec is wrong: fixed only by editing the resource (never retried)
+-- EndpointUnresolved    the Service or its port is missing: retried until it appears
+-- FunctionIdTaken       another resource or app already publishes this function id
+-- RoutingUnavailable    the database cannot be reached: retried
+-- SecretUnresolved      a Webhook's Secret, or its key, is missing or unusable: read again periodically
+-- SecretsUnavailable    (secrets.py) the Kubernetes API did not answer the read of a Secret: retried
"""

from __future__ import annotations


class ReconcileError(Exception):
    """A failure to route a Function, with the reason its conditions show."""

    reason = "ReconcileFailed"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


class InvalidSpec(ReconcileError):
    reason = "InvalidSpec"


class EndpointUnresolved(ReconcileError):
    reason = "ServiceNotFound"


class FunctionIdTaken(ReconcileError):
    reason = "FunctionIdConflict"


class RoutingUnavailable(ReconcileError):
    reason = "DatabaseUnavailable"


class SecretUnresolved(ReconcileError):
    reason = "SecretNotFound"
