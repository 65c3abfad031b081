"""Gateway processes for tests that need real OS processes (kill -9, several replicas)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import eventually, free_port


class GatewayProcesses:
    """`stepline gateway` processes started by a test on one database, all killed at its end."""

    def __init__(self, database_url: str, folder: Path) -> None:
        self.database_url = database_url
        self.folder = folder
        self.manifest = folder / "functions.yaml"
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
        """Start one more gateway with the manifest file; answer the process and its URL."""
        port = free_port()
        log = (self.folder / f"gateway-{len(self.processes)}.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "stepline_cli",
            "gateway",
            "--dev",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            self.database_url,
            "-f",
            str(self.manifest),
            *extra,
        ]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process, f"http://127.0.0.1:{port}"

    def logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.folder.glob("gateway-*.log")))

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


async def wait_ready(url: str) -> None:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(f"{url}/readyz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(ready, timeout=30)


@pytest.fixture
def gateway_processes(database_url: str, tmp_path: Path) -> Iterator[GatewayProcesses]:
    manager = GatewayProcesses(database_url, tmp_path)
    try:
        yield manager
    finally:
        manager.stop_all()


# The apps written with the official TypeScript SDK (`npm ci` there: scripts/test runs it).
TS_APP = Path(__file__).parent / "test_checkpoint" / "ts_app"


@contextlib.asynccontextmanager
async def typescript_app(
    script: str, log: Path, *, ready_path: str = "/ready", **env: str
) -> AsyncIterator[str]:
    """Node running ``script`` of the TypeScript apps on a free port, its output in ``log``; answers its URL
    once ``ready_path`` answers 200, and kills it at the end. ``env`` adds to its environment."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["node", script], cwd=TS_APP, env={**os.environ, "PORT": str(port), **env}, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:

        async def ready() -> bool:
            assert process.poll() is None, log.read_text()
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}{ready_path}")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(ready, timeout=30)
        yield url
    finally:
        process.kill()
        process.wait(timeout=10)
