"""An app written with the official Inngest Python SDK, as a user would write it for ``stepline dev -u``.

Run it with ``python -m tests.test_cli.inngest_app --port PORT --gateway URL [--more]``; ``--more`` serves
one more function, to show that ``stepline dev`` syncs an app again when it restarts with new code.
"""

from __future__ import annotations

import argparse
from typing import Any

import fastapi
import inngest
import inngest.fast_api
import uvicorn


def create_app(gateway_url: str, *, more: bool = False) -> fastapi.FastAPI:
    client = inngest.Inngest(
        app_id="greeter",
        is_production=False,
        api_base_url=gateway_url,
        event_api_base_url=gateway_url,
    )

    @client.create_function(fn_id="greet", trigger=inngest.TriggerEvent(event="greeter/hello"))
    async def greet(ctx: inngest.Context) -> dict[str, Any]:
        async def shout() -> str:
            return f"HELLO {ctx.event.data['name']}".upper()

        async def count() -> int:
            return len(ctx.event.data["name"])

        return {"greeting": await ctx.step.run("shout", shout), "letters": await ctx.step.run("count", count)}

    functions = [greet]
    if more:

        @client.create_function(fn_id="wave", trigger=inngest.TriggerEvent(event="greeter/wave"))
        async def wave(ctx: inngest.Context) -> str:
            return "bye"

        functions.append(wave)

    app = fastapi.FastAPI()
    inngest.fast_api.serve(app, client, functions)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--more", action="store_true")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.gateway, more=args.more), host="127.0.0.1", port=args.port, log_level="warning"
    )


if __name__ == "__main__":
    main()
