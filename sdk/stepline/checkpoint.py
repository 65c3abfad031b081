"""Checkpoint mode: run a call's sequential steps back to back and report each result to the gateway.

Without it a call runs one new step and answers; the gateway records the step and calls again. With it
(the Inngest SDK spec, section 10; on by default) the call goes on to the next step, and the results are
buffered and posted to ``POST {gateway}/v1/checkpoint/{run_id}/async`` by the flush policy of
``stepline.Checkpoint``: by default once the buffered steps' own run time reaches ``max_at_risk``, and before
a step known (from its last run in this process) to take that long; after every step in the strictest mode
(``buffered_steps=1``); steps still buffered at the end come with the function's result, so a short function
makes one call and no post. What needs the gateway (a sleep, a wait, an invocation,
parallel steps, a failed attempt) ends the call as before, its 206 answer carrying whatever is still
buffered. When the checkpoint API fails, the buffered steps go back in the 206 answer instead, so no result
is lost; a 409 means the gateway no longer counts on this call (its lease was lost), and the call stops.

``Checkpointer`` holds the buffer of one call (``stepline.Checkpoint`` its settings) and context.py drives
it; ``StepDurations`` remembers how long each step last ran; ``Poster`` is the client's pooled HTTP
connection to the checkpoint API.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import httpx

from stepline.background import on_loop
from stepline.config import SDK_IDENTITY, ClientConfig
from stepline.function import Checkpoint
from stepline.protocol import Header, checkpoint_path, encode_json
from stepline.signing import bearer_token

try:
    import aiohttp
except ImportError:  # not one of the SDK's own dependencies: httpx serves instead
    aiohttp = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

# A checkpoint that fails for a transient reason (no connection, 5xx) is tried this often in all.
POST_ATTEMPTS = 3
POST_BACKOFF_S = 0.05
POST_TIMEOUT_S = 10.0
# The checkpoint connections are closed after this long without a call that checkpoints: a client that is
# dropped without ``aclose`` then leaves nothing open behind.
IDLE_CLOSE_S = 2.0


# Step ids whose last run time is remembered, per client: a function that makes ids in a loop
# ("item-1", "item-2", ...) forgets the oldest ones rather than grow without end.
REMEMBERED_STEPS = 4096


class StaleCall(Exception):
    """The gateway answered 409: the call's work item is no longer held (lease lost, run ended)."""


class _Refused(Exception):
    """The gateway refused a checkpoint for good (a 4xx other than 409, or 5xx until the last attempt)."""


class Poster:
    """Posts checkpoints over pooled keep-alive connections: with aiohttp's client when it is installed
    (about ten times less CPU per request than httpx's under concurrency, docs/performance.md), else httpx's.
    The connections stay open while calls checkpoint, and close when none has for ``IDLE_CLOSE_S``, or at
    ``Client.aclose``."""

    def __init__(self) -> None:
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._httpx: httpx.AsyncClient | None = None
        self._users = 0
        self._idle: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None

    def hold(self) -> None:
        """A call may checkpoint: keep the connections until its ``release``."""
        self._users += 1
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def release(self) -> None:
        self._users -= 1
        if self._users == 0 and (self._session is not None or self._httpx is not None):
            self._idle = asyncio.get_running_loop().call_later(IDLE_CLOSE_S, self._close_idle)

    def _close_idle(self) -> None:
        self._idle = None
        if self._users == 0:
            # Held here: the task, and the poster it closes, live until the connections are closed.
            self._closing = asyncio.ensure_future(self.close())

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        """The answer's status and text; ConnectionError when the gateway cannot be reached in time."""
        if aiohttp is None:
            if self._httpx is None:
                self._httpx = httpx.AsyncClient(timeout=POST_TIMEOUT_S)
                self._loop = asyncio.get_running_loop()
            try:
                response = await self._httpx.post(url, content=body, headers=headers)
            except httpx.TransportError as err:
                raise ConnectionError(f"could not reach {url}: {err!r}") from err
            return response.status_code, response.text
        session, loop = self._session, asyncio.get_running_loop()
        if session is None or session.closed or self._loop is not loop:
            timeout = aiohttp.ClientTimeout(total=POST_TIMEOUT_S)
            session, self._loop = aiohttp.ClientSession(timeout=timeout), loop
            self._session = session
        try:
            async with session.post(url, data=body, headers=headers) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as err:
            raise ConnectionError(f"could not reach {url}: {err!r}") from err

    async def close(self) -> None:
        """Close the connections, on the loop that opened them."""
        await on_loop(self._loop, self._close())

    async def _close(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()
        client, self._httpx = self._httpx, None
        if client is not None:
            await client.aclose()


class StepDurations:
    """How long each step (by function and step id) took the last time it ran in this process: what makes
    a step "known to be long" for the flush policy."""

    def __init__(self, capacity: int = REMEMBERED_STEPS) -> None:
        self._capacity = capacity
        self._seconds: dict[tuple[str, str], float] = {}

    def last(self, fn_id: str, step_id: str) -> float | None:
        return self._seconds.get((fn_id, step_id))

    def record(self, fn_id: str, step_id: str, seconds: float) -> None:
        key = (fn_id, step_id)
        self._seconds.pop(key, None)
        self._seconds[key] = seconds
        if len(self._seconds) > self._capacity:
            del self._seconds[next(iter(self._seconds))]


class Checkpointer:
    """The steps one call ran and has not reported yet, and the posts that report them."""

    def __init__(
        self,
        poster: Poster,
        config: ClientConfig,
        settings: Checkpoint,
        *,
        run_id: str,
        fn_id: str,
        qi_id: str,
        durations: StepDurations | None = None,
    ) -> None:
        self._poster = poster
        poster.hold()
        self._durations = durations if durations is not None else StepDurations()
        # The buffered steps' own run time, in seconds: the work a crash before the next flush would redo.
        self._at_risk = 0.0
        self._config = config
        self._settings = settings
        self._run_id = run_id
        self._fn_id = fn_id
        self._qi_id = qi_id
        self._buffer: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self._added = 0
        # Set when a post failed (the steps went back to the buffer) or was refused with 409.
        self.broken = False
        self.stale = False

    async def unreported(self) -> list[dict[str, Any]]:
        """Steps not reported, once a post in flight has ended (its steps are back here if it failed):
        they go in the call's 206 answer. A post the interval timer has not started yet is not made."""
        self._cancel_timer()
        async with self._lock:
            return list(self._buffer)

    def runtime_exceeded(self) -> bool:
        """Whether the call has run steps for ``max_runtime`` (never before its first step: progress)."""
        limit = self._settings.runtime_s
        return limit is not None and self._added > 0 and time.monotonic() - self._started >= limit

    async def before_step(self, step_id: str) -> None:
        """A step is about to run: post what is buffered first if that step is known to be long."""
        limit = self._settings.at_risk_s
        if limit is None or not self._buffer:
            return
        last = self._durations.last(self._fn_id, step_id)
        if last is not None and last >= limit:
            await self.flush()

    async def add(self, op: dict[str, Any], *, step_id: str, seconds: float) -> None:
        """Buffer a StepRun that took ``seconds``; post the buffer once a limit of the flush policy is
        reached (the interval timer posts it otherwise)."""
        self._durations.record(self._fn_id, step_id, seconds)
        self._buffer.append(op)
        self._added += 1
        self._at_risk += seconds
        settings = self._settings
        count, at_risk = settings.buffered_steps, settings.at_risk_s
        if (count is not None and len(self._buffer) >= count) or (
            at_risk is not None and self._at_risk >= at_risk
        ):
            await self.flush()
        elif self._timer is None and settings.interval_s is not None:
            self._timer = asyncio.create_task(self._flush_after(settings.interval_s))

    async def flush(self) -> None:
        """Post the buffered steps; on failure keep them (``broken``) for the call's answer."""
        async with self._lock:
            self._cancel_timer()
            if not self._buffer or self.broken or self.stale:
                return
            steps, self._buffer = self._buffer, []
            at_risk, self._at_risk = self._at_risk, 0.0
            try:
                await self._post(steps)
            except StaleCall:
                self.stale = True
            except (ConnectionError, _Refused) as err:
                log.warning(
                    "run %s: checkpoint failed, answering with the steps instead: %s", self._run_id, err
                )
                self._buffer = steps + self._buffer
                self._at_risk += at_risk
                self.broken = True

    def close(self) -> None:
        """The call ends: nothing more is posted."""
        self._cancel_timer()
        self._poster.release()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    async def _flush_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        # From here on the post is not cancelled: a step it carries must end up recorded or answered.
        self._timer = None
        await self.flush()

    async def _post(self, steps: list[dict[str, Any]]) -> None:
        url = f"{self._config.gateway_url}{checkpoint_path(self._run_id)}"
        body = encode_json(
            {
                "run_id": self._run_id,
                "fn_id": self._fn_id,
                "qi_id": self._qi_id,
                "steps": steps,
                "ts": int(time.time() * 1000),
            }
        )
        attempt = 0
        while True:
            attempt += 1
            try:
                status, text = await self._send(url, body)
            except ConnectionError:
                if attempt >= POST_ATTEMPTS:
                    raise
            else:
                if status == 409:
                    raise StaleCall(text)
                if status < 300:
                    return
                if status < 500 or attempt >= POST_ATTEMPTS:
                    raise _Refused(f"{url} answered {status}: {text[:500]}")
            await asyncio.sleep(POST_BACKOFF_S * 2 ** (attempt - 1) * (1 + random.random()))

    async def _send(self, url: str, body: bytes) -> tuple[int, str]:
        """Post with the signing key's bearer token, then with the fallback key's if the first is refused."""
        keys: list[str | None] = [None] if self._config.dev else [*self._config.signing_keys] or [None]
        answer = await self._post_once(url, body, keys[0])
        for key in keys[1:]:
            if answer[0] != 401:
                break
            answer = await self._post_once(url, body, key)
        return answer

    async def _post_once(self, url: str, body: bytes, key: str | None) -> tuple[int, str]:
        headers = {"content-type": "application/json", Header.SDK.value: SDK_IDENTITY}
        if key is not None:
            headers[Header.AUTHORIZATION.value] = f"Bearer {bearer_token(key)}"
        return await self._poster.post(url, body, headers)
