"""What an answer may carry before it is recorded: JSON Postgres can store, within the size limits.

A service's answer (calls.py), a step reported through the checkpoint API (checkpoint.py) and a run's
output are checked here before anything of them is written. A problem found is a message for the step's
error ("output contains a NUL character at data.note: Postgres cannot store it"); the executor records it as
a failed attempt, so a poison answer spends the retry budget instead of being retried without end. The
limits are settings, like Inngest's: a step's output (and a run's) 4 MiB, a run's state (the memos a call
carries) 32 MiB, an answer's body 8 MiB.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stepline.protocol import RAN_OPCODES

from stepline_gateway import storable

MIB = 1024 * 1024
# A step's id is its hash (40 hex digits, with ":n" for repeats): anything much longer is not one, and
# Postgres cannot index a key past about 2,700 bytes.
MAX_STEP_ID = 256
# Step names are shown, not indexed; kept to a length the dashboard can show.
MAX_STEP_NAME = 1024
# An operation's output is checked on its own (to name it as the output), its error is cleaned, never
# refused: refusing it would hide the error it reports (outcomes.op_error).
_REPORTED_ELSEWHERE = frozenset({"data", "error"})


@dataclass(frozen=True)
class Problem:
    """Why an answer cannot be recorded; ``too_large`` for a size limit (HTTP 413 where one is answered)."""

    message: str
    too_large: bool = False

    def error(self) -> dict[str, Any]:
        """The problem as a step's or a run's error."""
        name = "AnswerTooLarge" if self.too_large else "UnstorableAnswer"
        return {"name": name, "message": self.message, "stack": None}


@dataclass(frozen=True)
class AnswerLimits:
    max_output_bytes: int = 4 * MIB
    max_state_bytes: int = 32 * MIB
    max_answer_bytes: int = 8 * MIB

    def output_problem(
        self, value: Any, *, what: str = "output", document: storable.Document | None = None
    ) -> Problem | None:
        """A step's or a run's output: storable, and at most ``max_output_bytes`` as JSON. ``document``,
        the body it came in, may show it clean and small enough without looking at the value itself."""
        if document is not None and document.clean and document.size <= self.max_output_bytes:
            return None
        return self._output(value, what=what, path=None)[0]

    def _output(self, value: Any, *, what: str, path: str | None) -> tuple[Problem | None, int]:
        found = storable.problem(value if path is None else {path: value})
        if found is not None:
            return Problem(f"{what} contains {found}: Postgres cannot store it"), 0
        size = storable.size(value)
        if size > self.max_output_bytes:
            message = (
                f"{what} is {size} bytes, over the limit of {self.max_output_bytes} bytes: return less "
                "(store large results elsewhere and return a reference)"
            )
            return Problem(message, too_large=True), size
        return None, size

    def op_problem(self, op: dict[str, Any], *, document: storable.Document | None = None) -> Problem | None:
        """One operation of a 206 answer or of a checkpoint: its id, name, options and output."""
        quick = document is not None and document.clean and document.size <= self.max_output_bytes
        return self._op(op, quick=quick)[0]

    def _op(self, op: dict[str, Any], *, quick: bool) -> tuple[Problem | None, int]:
        """The problem of one operation and the size of its output; ``quick`` when its body is known clean
        and no larger than an output may be, so that only the id and names need a look."""
        step_id = op.get("id")
        if step_id is not None and (
            not isinstance(step_id, str) or len(step_id) > MAX_STEP_ID or storable.text_problem(step_id)
        ):
            message = f"the operation's id is not a step hash (a string of {MAX_STEP_ID} characters at most)"
            return Problem(message), 0
        for field in ("name", "displayName"):
            value = op.get(field)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_STEP_NAME):
                message = f"the step's {field} must be a string of {MAX_STEP_NAME} characters at most"
                return Problem(message), 0
        if quick:
            return None, 0
        rest = {key: value for key, value in op.items() if key not in _REPORTED_ELSEWHERE}
        found = storable.problem(rest)
        if found is not None:
            return Problem(f"the operation contains {found}: Postgres cannot store it"), 0
        if "data" not in op:
            return None, 0
        return self._output(op["data"], what="output", path="data")

    def first_problem(
        self, ops: list[dict[str, Any]], *, state_bytes: int, document: storable.Document | None = None
    ) -> tuple[int, Problem] | None:
        """The first operation of an answer that cannot be recorded, with why; the outputs of the steps
        that ran count towards the run's state, which holds ``state_bytes`` already. ``document``, the body
        of the answer: when it is clean and so small that all its outputs together stay within both limits,
        the outputs need no look of their own (the common case: a scan of the body's bytes, no walk)."""
        quick = (
            document is not None
            and document.clean
            and document.size <= self.max_output_bytes
            and state_bytes + document.size <= self.max_state_bytes
        )
        for index, op in enumerate(ops):
            problem, size = self._op(op, quick=quick)
            if problem is None and not quick and op.get("op") in RAN_OPCODES:
                state_bytes += size
                problem = self.state_problem(state_bytes)
            if problem is not None:
                return index, problem
        return None

    def state_problem(self, state_bytes: int) -> Problem | None:
        """A run's state (its memos) of ``state_bytes`` bytes."""
        if state_bytes > self.max_state_bytes:
            return Problem(
                f"the run's state (the outputs of its steps) would be {state_bytes} bytes, over the limit of "
                f"{self.max_state_bytes} bytes: return less from steps (store large results elsewhere and "
                "return a reference)",
                too_large=True,
            )
        return None
