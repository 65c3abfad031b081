"""What a log line is about: the run, its function and namespace, set where a run's work starts.

The executor (for each claimed call, in the task that makes it) and the checkpoint API (for each post) call
``about_run``; every line logged afterwards in that task carries the run. The JSON log format
(``--log-format json``) writes these as fields of each line; the plain text format leaves them out (its
lines name the run already where it matters).
"""

from __future__ import annotations

import contextvars

_run: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("stepline_log_run", default=None)


def about_run(run_id: str, function_id: str | None, namespace: str | None) -> None:
    """Lines logged from now on in this task (and the tasks it starts) are about this run."""
    fields = {"run_id": run_id}
    if function_id:
        fields["function"] = function_id
    if namespace:
        fields["namespace"] = namespace
    _run.set(fields)


def current() -> dict[str, str]:
    """The fields of the run the current task works on (empty when none)."""
    return _run.get() or {}
