"""A service of one function of four sequential steps, in checkpoint mode, run as its own process so that
a test can kill it in the middle of a call.

Run it with ``python -m tests.test_checkpoint.four_steps_app --port PORT --gateway URL --log FILE
[--hang-at STEP] [--slow STEP] [--every-step]``: each step appends its name to FILE when it starts;
``--hang-at`` makes that step wait forever (until the process is killed), ``--slow`` makes that step take
``SLOW_S`` (more than the default flush policy's ``max_at_risk``); ``--every-step`` checkpoints after every
step (the strictest policy) instead of the SDK's default.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import stepline
import stepline.asgi
import uvicorn

SLOW_S = 0.3


def create_app(
    gateway_url: str, log: Path, hang_at: str | None, *, slow: str | None = None, every_step: bool = False
) -> stepline.asgi.ServeApp:
    policy = stepline.Checkpoint.every_step() if every_step else stepline.Checkpoint()
    client = stepline.Client("killable", gateway_url=gateway_url, dev=True, checkpoint=policy)

    async def step(name: str) -> str:
        with log.open("a") as out:
            out.write(f"{name}\n")
        if name == hang_at:
            await asyncio.Event().wait()
        if name == slow:
            await asyncio.sleep(SLOW_S)
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
    parser.add_argument("--slow")
    parser.add_argument("--every-step", action="store_true")
    args = parser.parse_args()
    app = create_app(args.gateway, args.log, args.hang_at, slow=args.slow, every_step=args.every_step)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
