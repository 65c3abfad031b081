"""Keeping ``stepline dev``'s functions current: manifest files reloaded on change, SDK apps synced again.

``ManifestWatcher`` republishes the ``-f`` manifests when one of them changes; ``AppWatcher`` polls one ``-u``
app and asks it to sync again when it comes back after being unreachable (it restarted) or when its
inspection (``GET`` on its serve URL) changes. Both only log what goes wrong: ``stepline dev`` keeps serving.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import watchfiles
from stepline_gateway.calls import SyncError
from stepline_gateway.errors import BadRequest

log = logging.getLogger("stepline.dev")

MANIFEST_SUFFIXES = (".yaml", ".yml")


class ManifestWatcher:
    """Calls ``reload`` whenever a manifest file under ``paths`` (files or folders) is written or removed."""

    def __init__(self, paths: list[Path], reload: Callable[[], Awaitable[None]]) -> None:
        self._files = {p.resolve() for p in paths if not p.is_dir()}
        self._folders = {p.resolve() for p in paths if p.is_dir()}
        self._reload = reload
        self._stop = threading.Event()

    def _relevant(self, change: watchfiles.Change, path: str) -> bool:
        changed = Path(path)
        if changed in self._files:
            return True
        return changed.suffix in MANIFEST_SUFFIXES and any(changed.is_relative_to(f) for f in self._folders)

    async def _watch(self, root: Path, *, recursive: bool) -> None:
        # A file is watched through its folder: editors often replace a file rather than write into it.
        async for _ in watchfiles.awatch(
            root, watch_filter=self._relevant, recursive=recursive, stop_event=self._stop, step=50
        ):
            try:
                await self._reload()
            except (BadRequest, OSError, asyncpg.PostgresError) as err:
                log.error("manifests not reloaded (the functions loaded before stay): %s", err)

    async def run(self) -> None:
        roots = [(f, True) for f in self._folders] + [
            (parent, False) for parent in {f.parent for f in self._files} if parent not in self._folders
        ]
        await asyncio.gather(*(self._watch(root, recursive=recursive) for root, recursive in roots))

    def stop(self) -> None:
        """Make ``run`` return within a few milliseconds (cancelling it alone waits for the watch thread)."""
        self._stop.set()


class AppWatcher:
    """Polls one SDK app's serve URL and calls ``sync`` when the app is back or its inspection changed."""

    def __init__(
        self,
        url: str,
        sync: Callable[[str], Awaitable[None]],
        *,
        interval_s: float,
        http: httpx.AsyncClient,
    ) -> None:
        self.url = url
        self._sync = sync
        self._interval_s = interval_s
        self._http = http

    async def inspect(self) -> Any:
        """The app's answer to ``GET``, or None when it cannot be reached."""
        try:
            response = await self._http.get(self.url)
        except httpx.HTTPError:
            return None
        try:
            return (response.status_code, response.json())
        except ValueError:
            return (response.status_code, response.text)

    async def run(self, *, last_seen: Any) -> None:
        """Poll forever; ``last_seen`` is the inspection seen when the app was last synced."""
        reachable, synced, last_error = True, True, ""
        while True:
            await asyncio.sleep(self._interval_s)
            seen = await self.inspect()
            if seen is None:
                if reachable:
                    log.warning("app at %s is unreachable; it will be synced again when it is back", self.url)
                reachable = False
                continue
            if reachable and synced and seen == last_seen:
                continue
            why = "changed" if reachable else "is back"
            reachable = True
            try:
                await self._sync(self.url)
            except SyncError as err:
                if str(err) != last_error:
                    log.warning("app at %s %s but did not sync (will retry): %s", self.url, why, err)
                synced, last_error = False, str(err)
                continue
            log.info("app at %s %s: synced it again", self.url, why)
            synced, last_seen, last_error = True, seen, ""
