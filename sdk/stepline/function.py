"""A durable function as the SDK holds it: its id, triggers, retries and the user's handler.

``Client.function`` builds these; the handler looks them up by id to answer calls, and ``config`` renders
one the way a sync (PUT) reports it to the gateway, exactly as the official SDKs do.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from stepline.protocol import DISCOVERY_STEP_ID, QueryParam, full_function_id

if TYPE_CHECKING:
    from stepline.context import Context

FunctionHandler: TypeAlias = "Callable[[Context], Coroutine[Any, Any, Any]]"

MAX_RETRIES = 20


class TriggerEvent(BaseModel):
    """Start a run for each event named ``event`` (for which the CEL ``expression``, if any, is true)."""

    model_config = ConfigDict(frozen=True)

    event: str = Field(min_length=1, max_length=256)
    expression: str | None = None


class TriggerCron(BaseModel):
    """Start a run on a cron schedule, e.g. ``"0 * * * *"`` or ``"TZ=Europe/Paris 0 9 * * *"``."""

    model_config = ConfigDict(frozen=True)

    cron: str = Field(min_length=1)


Trigger: TypeAlias = TriggerEvent | TriggerCron
TriggerSpec: TypeAlias = "str | Trigger | Sequence[str | Trigger]"


def parse_triggers(spec: TriggerSpec) -> tuple[Trigger, ...]:
    """Accept one trigger or a list; a plain string is an event name."""
    items = [spec] if isinstance(spec, str | TriggerEvent | TriggerCron) else list(spec)
    if not items:
        raise ValueError("a function needs at least one trigger")
    return tuple(TriggerEvent(event=item) if isinstance(item, str) else item for item in items)


class Function:
    """A function registered with a client; it is not callable itself, the gateway calls it."""

    def __init__(
        self,
        *,
        id: str,
        handler: FunctionHandler,
        triggers: Sequence[Trigger],
        retries: int = 4,
        name: str | None = None,
    ) -> None:
        if not id:
            raise ValueError("a function id must not be empty")
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"retries must be between 0 and {MAX_RETRIES}, not {retries}")
        self.id = id
        self.name = name or id
        self.handler = handler
        self.triggers = tuple(triggers)
        self.retries = retries

    def __repr__(self) -> str:
        return f"Function(id={self.id!r})"

    def full_id(self, app_id: str) -> str:
        return full_function_id(app_id, self.id)

    def config(self, *, app_id: str, serve_url: str) -> dict[str, Any]:
        """The function's entry in a sync payload (``functions[]`` of ``POST /fn/register``)."""
        full_id = self.full_id(app_id)
        query = urllib.parse.urlencode(
            {QueryParam.FUNCTION_ID.value: full_id, QueryParam.STEP_ID.value: DISCOVERY_STEP_ID}
        )
        return {
            "id": full_id,
            "name": self.name,
            "triggers": [trigger.model_dump(exclude_none=True) for trigger in self.triggers],
            "steps": {
                DISCOVERY_STEP_ID: {
                    "id": DISCOVERY_STEP_ID,
                    "name": DISCOVERY_STEP_ID,
                    "retries": {"attempts": self.retries},
                    "runtime": {"type": "http", "url": f"{serve_url}?{query}"},
                }
            },
        }
