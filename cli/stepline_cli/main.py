"""The ``stepline`` command: parses flags and hands over to the gateway, the migrations or the SDK client.

It stays thin: every setting is a field of ``stepline_gateway.settings.Settings`` (flag ``--field-name``,
variable ``STEPLINE_FIELD_NAME``), and every failure a user can cause ends in one line on stderr and a
non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import httpx

from stepline_cli import __version__


class CommandError(Exception):
    """A failure to report in one line."""


def _fail(message: str) -> NoReturn:
    print(f"stepline: error: {message}", file=sys.stderr)
    raise SystemExit(1)


def setting_error(err: ValueError) -> str:
    """One line naming each wrong setting by its flag and variable, and what is wrong with it."""
    import pydantic

    if not isinstance(err, pydantic.ValidationError):
        return str(err)
    problems = []
    for error in err.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        message = error["msg"].removeprefix("Value error, ")
        where = f"--{name.replace('_', '-')} / STEPLINE_{name.upper()}: " if name else ""
        problems.append(where + message)
    return "; ".join(problems)


def _setting_flags(parser: argparse.ArgumentParser, skip: Sequence[str] = ()) -> None:
    from stepline_gateway.settings import Settings

    for name, info in Settings.model_fields.items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        env = f"STEPLINE_{name.upper()}"
        text = f"{info.description or ''} (env {env})"
        if info.annotation is bool:
            parser.add_argument(flag, action="store_true", default=None, help=text)
        elif info.annotation == list[str]:
            parser.add_argument(flag, type=lambda v: [k for k in v.split(",") if k], default=None, help=text)
        else:
            kind: type = info.annotation if info.annotation in (int, float) else str  # type: ignore[assignment]
            parser.add_argument(flag, type=kind, default=None, metavar=name.split("_")[-1].upper(), help=text)


def _settings(args: argparse.Namespace) -> Any:
    from stepline_gateway.settings import Settings

    overrides = {name: getattr(args, name, None) for name in Settings.model_fields}
    try:
        settings = Settings.from_env(**overrides)
    except ValueError as err:
        raise CommandError(f"a setting has a wrong value: {setting_error(err)}") from None
    if not settings.database_url:
        raise CommandError("no database: give --database-url or set STEPLINE_DATABASE_URL")
    return settings


def _check_port_free(host: str, port: int) -> None:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise CommandError(
                f"port {port} on {host} is already in use: stop what uses it or pick --port"
            ) from None


def _configure_logging(log_format: str = "text") -> None:
    from stepline_cli import logs

    logs.configure(
        os.environ.get("STEPLINE_LOG_LEVEL", "INFO").upper(),
        log_format,
        text="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )


async def _check_database(url: str, migrate: bool) -> None:
    from stepline_store import schema
    from stepline_store.errors import SchemaMismatch
    from stepline_store.pool import connect

    try:
        conn = await asyncio.wait_for(connect(url), timeout=15)
    except (OSError, TimeoutError, ValueError) as err:
        raise CommandError(f"cannot connect to the database: {err}") from None
    except Exception as err:  # asyncpg's errors for bad credentials or a missing database
        raise CommandError(f"cannot connect to the database: {err}") from None
    try:
        if migrate:
            applied = await schema.migrate(conn)
            for migration in applied:
                print(f"applied migration {migration.version:04d} {migration.name}", file=sys.stderr)
        else:
            await schema.verify(conn)
    except SchemaMismatch as err:
        raise CommandError(str(err)) from None
    finally:
        await conn.close()


def cmd_migrate(args: argparse.Namespace) -> None:
    url = args.database_url or os.environ.get("STEPLINE_DATABASE_URL")
    if not url:
        raise CommandError("no database: give --database-url or set STEPLINE_DATABASE_URL")
    asyncio.run(_check_database(url, migrate=True))
    print("database schema is up to date", file=sys.stderr)


def cmd_gateway(args: argparse.Namespace) -> None:
    import uvicorn
    from stepline_gateway.api import create_app
    from stepline_gateway.errors import BadRequest
    from stepline_gateway.registry import load_manifests
    from stepline_gateway.service import Gateway
    from stepline_gateway.webhook_manifests import load_webhook_manifests

    settings = _settings(args)
    manifests = [Path(p) for p in args.file or []]
    try:
        load_manifests(manifests)
        load_webhook_manifests(manifests, sealer=settings.sealer())
    except BadRequest as err:
        raise CommandError(str(err)) from None
    _check_port_free(settings.host, settings.port)
    asyncio.run(_check_database(settings.session_url, migrate=args.migrate))
    _configure_logging(settings.log_format)
    # A task that cannot come back stops the server the way a signal does (calls in flight get their grace),
    # and the command then exits non-zero: the pod's restart policy starts it afresh.
    gateway = Gateway(settings, manifests=manifests, on_unrecoverable=lambda _: _stop(server))
    config = uvicorn.Config(
        create_app(gateway),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 1,
    )
    server = uvicorn.Server(config)
    logging.getLogger("stepline").info(
        "Stepline gateway on http://%s:%d (API under /v1, events to /e/{key})", settings.host, settings.port
    )
    server.run()
    if gateway.unrecoverable:
        raise CommandError(f"the gateway stopped: {gateway.unrecoverable}")
    if not server.started:
        raise CommandError("the gateway did not start: see the error above")


def _stop(server: Any) -> None:
    server.should_exit = True


def cmd_send(args: argparse.Namespace) -> None:
    try:
        data = json.loads(args.data)
    except ValueError as err:
        raise CommandError(f"--data is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise CommandError("--data must be a JSON object, e.g. '{\"id\": 1}'")
    event: dict[str, Any] = {"name": args.name, "data": data}
    if args.id:
        event["id"] = args.id
    gateway = (args.gateway or os.environ.get("STEPLINE_GATEWAY_URL") or "http://127.0.0.1:8288").rstrip("/")
    key = args.key or os.environ.get("STEPLINE_EVENT_KEY") or "dev"
    try:
        response = httpx.post(f"{gateway}/e/{key}", json=event, timeout=30)
    except httpx.HTTPError as err:
        raise CommandError(f"cannot reach the gateway at {gateway}: {err}") from None
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise CommandError(f"the gateway refused the event ({response.status_code}): {message}")
    answer = response.json()
    for event_id in answer["ids"]:
        print(event_id)
    # An older gateway's answer has no count: then nothing can be said about the runs.
    if answer.get("runs_started") == 0:
        again = f", or an event with the id {args.id} was sent before" if args.id else ""
        print(
            f"stepline: no run started: no function's trigger matches {args.name!r}{again} "
            f"(the functions and their triggers: {gateway}/v1/functions)",
            file=sys.stderr,
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stepline", description="Durable functions made of checkpointed steps, on Postgres."
    )
    parser.add_argument("--version", action="version", version=f"stepline {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gateway = commands.add_parser("gateway", help="run the event gateway (production)")
    _setting_flags(gateway)
    gateway.add_argument(
        "-f",
        "--file",
        action="append",
        metavar="PATH",
        help="manifest file (Functions, Webhooks and their Secrets) or folder to publish at start "
        "(repeatable)",
    )
    gateway.add_argument("--migrate", action="store_true", help="apply missing migrations before serving")
    gateway.set_defaults(handler=cmd_gateway)

    migrate = commands.add_parser("migrate", help="apply the database migrations")
    migrate.add_argument("--database-url", help="Postgres URL (env STEPLINE_DATABASE_URL)")
    migrate.set_defaults(handler=cmd_migrate)

    from stepline_cli import dev as dev_command

    dev = commands.add_parser("dev", help="run the whole system on this machine (development)")
    dev_command.add_arguments(dev)
    dev.set_defaults(handler=dev_command.run)

    from stepline_cli import manifests as manifests_command

    manifests = commands.add_parser(
        "manifests", help="print Function resources for an SDK app's functions (kubectl apply -f -)"
    )
    manifests_command.add_manifests_arguments(manifests)
    manifests.set_defaults(handler=manifests_command.run_manifests)

    from stepline_cli import kube

    crds = commands.add_parser("crds", help="print the CRD YAML (kubectl apply -f -)")
    kube.add_crds_arguments(crds)
    crds.set_defaults(handler=kube.run_crds)

    operator = commands.add_parser("operator", help="run the Kubernetes operator (routes Function resources)")
    kube.add_operator_arguments(operator)
    operator.set_defaults(handler=kube.run_operator)

    send = commands.add_parser("send", help="send one event and print its id")
    send.add_argument("name", help="event name, e.g. order/created")
    send.add_argument("--data", default="{}", help="event data as a JSON object")
    send.add_argument("--id", help="event id (a repeated id starts nothing new)")
    send.add_argument(
        "--gateway", help="gateway URL (env STEPLINE_GATEWAY_URL, default http://127.0.0.1:8288)"
    )
    send.add_argument("--key", help="event key (env STEPLINE_EVENT_KEY, default 'dev')")
    send.set_defaults(handler=cmd_send)
    for command in commands.choices.values():
        command.set_defaults(parser=command)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:
        # The command's own usage, not the top-level one: the flag was meant for that command.
        args.parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        args.handler(args)
    except CommandError as err:
        _fail(str(err))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
