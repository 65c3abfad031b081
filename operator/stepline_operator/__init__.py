"""``stepline_operator``: the kopf operator that routes ``Function`` resources to the gateways and publishes
``Webhook`` resources (``webhooks``, with their Secrets read by ``secrets``).

Layers, each module naming its role in its docstring: ``settings`` (flags and ``STEPLINE_*`` variables),
``checks`` (what the CRD cannot check: CEL compiles, cron and time zones), ``endpoints`` (``serviceRef`` to a
URL), ``routes`` (the routing table in Postgres, through the named queries of ``stepline_store.sql``),
``conditions`` (the status the resource shows), ``stats`` (the live counts of ``status.stats``),
``handlers`` (the kopf registry tying them together) and ``run`` (the entry point). It depends on the SDK
package's models and SQL only, never on the gateway.
"""

from __future__ import annotations

from stepline_operator.run import run
from stepline_operator.settings import OperatorSettings

__all__ = ["OperatorSettings", "run"]
