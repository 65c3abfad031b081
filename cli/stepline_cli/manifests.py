"""``stepline manifests APP:OBJECT``: print the ``Function`` resources of an SDK app's functions.

APP is a module to import (from the current directory, as uvicorn does), OBJECT what serves the functions
there: the app an adapter serves them on (``stepline.asgi.serve_app``, a FastAPI, Flask app, Django
``urlpatterns``) or the ``stepline.Handler`` itself. The endpoint comes from the command line: the app's
Service (``--service NAME --port N [--path]``) or its complete URL (``--url``). The documents themselves
are built by ``stepline.resources``; ``main`` registers this command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

from stepline_cli.main import CommandError


def add_manifests_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print a Function resource for each function an SDK app serves, to apply with kubectl or keep in "
        "git: the code stays the single source of its triggers, retries and cancel rules."
    )
    parser.add_argument(
        "target",
        metavar="APP:OBJECT",
        help="module and object serving the functions, e.g. shop.main:app (imported from the current "
        "directory)",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--service", metavar="NAME", help="the app's Service, in the Functions' namespace")
    where.add_argument("--url", help="the app's complete serve URL, e.g. http://shop.shop:8000/api/inngest")
    parser.add_argument("--port", metavar="PORT", help="the Service's port, by number or name")
    parser.add_argument("--path", help="the serve path on the Service (default /api/inngest)")
    parser.add_argument("--namespace", "-n", help="metadata.namespace of the resources (default: none set)")


def _endpoint(args: argparse.Namespace) -> Any:
    from stepline.protocol import DEFAULT_SERVE_PATH
    from stepline.resources import ServiceEndpoint, UrlEndpoint

    if args.url is not None:
        if args.port is not None or args.path is not None:
            raise CommandError("--port and --path go with --service; --url is the complete serve URL")
        return UrlEndpoint(args.url)
    if args.port is None:
        raise CommandError("--service needs --port: the Service's port, by number or name")
    port: int | str = int(args.port) if args.port.isdigit() else args.port
    return ServiceEndpoint(args.service, port, args.path or DEFAULT_SERVE_PATH)


def load_object(target: str) -> Any:
    """Import ``module:attribute`` (dotted attributes allowed), as uvicorn and gunicorn do."""
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise CommandError(f"{target!r} is not APP:OBJECT: give a module and an object, e.g. shop.main:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        found: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise CommandError(f"cannot import {module_name!r}: {err}") from None
    for part in attribute.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no {attribute!r}") from None
    return found


def run_manifests(args: argparse.Namespace) -> None:
    import pydantic
    import yaml
    from stepline.handler import handlers_of
    from stepline.resources import function_resources

    endpoint = _endpoint(args)
    served = load_object(args.target)
    handlers = handlers_of(served)
    if not handlers:
        raise CommandError(
            f"{args.target} serves no Stepline functions: name the app an adapter serves them on "
            "(stepline.asgi.serve_app, stepline.fastapi.serve, stepline.flask.serve, stepline.django.serve) "
            "or the stepline.Handler"
        )
    documents = []
    for handler in handlers:
        try:
            documents += function_resources(
                handler.functions, app_id=handler.app_id, endpoint=endpoint, namespace=args.namespace
            )
        except (ValueError, pydantic.ValidationError) as err:
            raise CommandError(" ".join(str(err).split())) from None
    print(yaml.safe_dump_all(documents, sort_keys=False, width=110), end="")
