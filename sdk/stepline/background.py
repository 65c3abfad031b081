"""The SDK's event loop for synchronous code: one loop in a daemon thread, shared by the process.

The handler, the client's pooled connections and the checkpoint poster are async and belong to the loop
they were made on. Sync frameworks (wsgi.py, flask.py, django.py) and ``Client.send_sync`` therefore run
their coroutines here, each calling thread waiting for its result, rather than on a new loop per request.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")


class LoopThread:
    """An event loop in a daemon thread, started on first use."""

    def __init__(self, name: str = "stepline-loop") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=self._name, daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, operation: Coroutine[Any, Any, _T]) -> _T:
        """Run ``operation`` on the loop thread; the calling thread waits for its result."""
        return asyncio.run_coroutine_threadsafe(operation, self.loop).result()


LOOP = LoopThread()


async def on_loop(loop: asyncio.AbstractEventLoop | None, operation: Coroutine[Any, Any, _T]) -> _T:
    """Await ``operation`` on ``loop`` (the one that owns what it touches), from whatever loop runs now."""
    if loop is None or loop is asyncio.get_running_loop() or not loop.is_running():
        return await operation
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(operation, loop))
