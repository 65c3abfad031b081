"""Fresh databases made ahead of the tests that take them, and dropped after them, off their way.

Copying the migrated template costs a few tenths of a second of Postgres's time (hundreds of relations: the
day partitions of history and their indexes), and about 500 tests take a database of their own. A thread
keeps ``AHEAD`` copies ready and drops the used ones, so that a test waits for a database only when the
copies run out; each is still made from the template and used by one test alone.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid

import asyncpg

AHEAD = 2
# How long a test waits for its database before it fails (the thread makes one in well under a second).
WAIT_S = 120


class DatabaseSupply:
    """Copies of ``template`` on the server at ``admin_uri``, made and dropped by a thread of its own."""

    def __init__(self, admin_uri: str, template: str) -> None:
        self._admin_uri = admin_uri
        self._template = template
        self._ready: queue.Queue[str | BaseException] = queue.Queue(maxsize=AHEAD)
        self._used: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="database-supply", daemon=True)
        self._stopping = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def take(self) -> str:
        """The name of a database made for the caller alone (blocks until one is ready)."""
        item = self._ready.get(timeout=WAIT_S)
        if isinstance(item, BaseException):
            raise RuntimeError(f"the databases for the tests cannot be made: {item}") from item
        return item

    def give_back(self, name: str) -> None:
        """The caller is done with ``name``: it is dropped (and its connections ended) in the background."""
        self._used.put(name)

    def stop(self) -> None:
        self._stopping.set()
        self._used.put(None)
        self._thread.join(timeout=60)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        admin = await asyncpg.connect(self._admin_uri)
        try:
            while not self._stopping.is_set():
                await self._drop_used(admin, wait=self._ready.full())
                if not self._ready.full() and not self._stopping.is_set():
                    name = f"t_{uuid.uuid4().hex[:16]}"
                    try:
                        await admin.execute(f"CREATE DATABASE {name} TEMPLATE {self._template}")
                    except Exception as err:  # reported to the test that takes it
                        self._ready.put(err)
                        return
                    self._ready.put(name)
            await self._drop_used(admin, wait=False)
        finally:
            await admin.close()

    async def _drop_used(self, admin: asyncpg.Connection, *, wait: bool) -> None:
        """Drop the databases given back; with ``wait``, wait a little for one (nothing else to do)."""
        while True:
            try:
                name = self._used.get(timeout=0.05) if wait else self._used.get_nowait()
            except queue.Empty:
                return
            if name is None:
                return
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            wait = False
