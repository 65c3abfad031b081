"""A service of one function of four sequential steps, in checkpoint mode, run as its own process so that
a test can kill it in the middle of a call.

Run it with ``python -m tests.test_checkpoint.four_steps_app --port PORT --gateway URL --log FILE
[--hang-at STEP]``: each step appends its name to FILE when it starts; ``--hang-at`` makes that step wait
forever (until the process is killed).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import stepline
import stepline.asgi
import uvicorn
from starlette.applications import Starlette


def create_app(gateway_url: str, log: Path, hang_at: str | None) -> Starlette:
    client = stepline.Client("killable", gateway_url=gateway_url, dev=True)

    async def step(name: str) -> str:
        with log.open("a") as out:
            out.write(f"{name}\n")
        if name == hang_at:
            await asyncio.Event().wait()
        return name.upper()

    @client.function(id="four", trigger="killable/go", retries=10)
    async def four(ctx: stepline.Context) -> list[str]:
        return [await ctx.step.run(name, step, name) for name in ("s1", "s2", "s3", "s4")]

    return stepline.asgi.serve_app(client, [four])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--hang-at")
    args = parser.parse_args()
    app = create_app(args.gateway, args.log, args.hang_at)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
