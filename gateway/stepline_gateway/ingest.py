"""Ingest: store events and start the runs they trigger, in one statement and one transaction.

Each new event is matched against the routing table in memory; the events, one run per matching function
(fan-out: each run has its own retry state) and each run's first call are written together, and the
workers are woken by NOTIFY when the transaction commits. An event id already stored starts nothing.
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stepline_gateway.clock import Clock
from stepline_gateway.events import Event
from stepline_gateway.routing import RoutingTable
from stepline_gateway.store import Executor, Store


@dataclass(frozen=True)
class Ingested:
    ids: list[str]
    new_ids: list[str]
    runs_created: int


class Ingestor:
    def __init__(self, store: Store, routes: Callable[[], RoutingTable], clock: Clock) -> None:
        self._store = store
        self._routes = routes
        self._clock = clock

    async def ingest(self, events: list[Event], *, on: Executor = None) -> Ingested:
        now = self._clock.now()
        unique: dict[str, Event] = {}
        for event in events:
            unique.setdefault(event.id, event)
        table = self._routes()
        runs: list[tuple[uuid.UUID, str, str, str, str, int, None, datetime.datetime]] = []
        for event in unique.values():
            for function in table.match(event.payload()):
                runs.append(
                    (
                        uuid.uuid4(),
                        event.id,
                        function.id,
                        function.name,
                        function.url,
                        function.max_attempts,
                        None,
                        now,
                    )
                )
        columns: list[list[Any]] = [list(column) for column in zip(*runs, strict=True)] if runs else [[]] * 8
        row = await self._store.fetchrow(
            "ingest",
            [e.id for e in unique.values()],
            [e.name for e in unique.values()],
            [e.data for e in unique.values()],
            [e.user for e in unique.values()],
            [e.ts for e in unique.values()],
            [now] * len(unique),
            *columns,
            on=on,
        )
        assert row is not None
        return Ingested(
            ids=[event.id for event in events],
            new_ids=list(row["new_event_ids"] or []),
            runs_created=row["runs_created"],
        )


def describe(events: list[Event]) -> str:
    """A short log form of a batch of events."""
    names = sorted({event.name for event in events})
    return f"{len(events)} event(s): {json.dumps(names)}"
