"""The benchmark's function service: one function of three sequential steps, served by uvicorn.

``bench-three-steps`` is triggered by ``bench/go``; each of its steps returns a small dict. In checkpoint
mode (the SDK's default; ``STEPLINE_CHECKPOINT=false`` turns it off) a run costs one call, its three steps
posted to the gateway at ``STEPLINE_GATEWAY_URL`` as they end; without, four calls (three steps, then the
function's return). ``BENCH_BUFFERED_STEPS=N`` checkpoints every N steps instead of after each (steps
still buffered at the end come with the function's result). Run it alone with ``python -m
benchmarks.service --port 8001 [--workers N]``; ``benchmarks.e2e`` starts it for you. With
``STEPLINE_SIGNING_KEY`` set it runs in cloud mode and checks the gateway's signatures; else dev mode.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

import stepline
import stepline.asgi
import uvicorn
from starlette.applications import Starlette

APP_ID = "bench"
FUNCTION_ID = "three-steps"
TRIGGER = "bench/go"
SERVE_PATH = "/api/inngest"


def create_app() -> Starlette:
    """The ASGI app serving the benchmark function at ``SERVE_PATH``."""
    signing_key = os.environ.get("STEPLINE_SIGNING_KEY") or None
    gateway_url = os.environ.get("STEPLINE_GATEWAY_URL") or "http://127.0.0.1:8288"
    buffered = int(os.environ.get("BENCH_BUFFERED_STEPS") or 1)
    client = stepline.Client(
        APP_ID, dev=signing_key is None, signing_key=signing_key, gateway_url=gateway_url
    )
    # Absent: the client's setting (STEPLINE_CHECKPOINT). An SDK from before checkpointing has neither, and
    # then the function makes one call per step (so that older commits can be measured too).
    options: dict[str, Any] = {}
    if buffered > 1 and getattr(client.config, "checkpoint", False):
        options["checkpoint"] = stepline.Checkpoint(buffered_steps=buffered)

    @client.function(id=FUNCTION_ID, trigger=TRIGGER, **options)
    async def three_steps(ctx: stepline.Context) -> dict[str, Any]:
        n = ctx.event.data.get("i", 0)

        async def first() -> dict[str, Any]:
            return {"step": 1, "i": n}

        async def second() -> dict[str, Any]:
            return {"step": 2, "i": n}

        async def third() -> dict[str, Any]:
            return {"step": 3, "i": n}

        a = await ctx.step.run("a", first)
        b = await ctx.step.run("b", second)
        c = await ctx.step.run("c", third)
        return {"steps": [a["step"], b["step"], c["step"]], "i": n}

    return stepline.asgi.serve_app(client, [three_steps], serve_path=SERVE_PATH)


app = create_app()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    args = parser.parse_args()
    uvicorn.run(
        "benchmarks.service:app",
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
