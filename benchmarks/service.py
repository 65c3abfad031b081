"""The benchmark's function service: one function of three sequential steps, served by uvicorn.

``bench-three-steps`` is triggered by ``bench/go``; each of its steps returns a small dict. In checkpoint
mode (the SDK's default; ``STEPLINE_CHECKPOINT=false`` turns it off) a run costs one call, its three steps
posted to the gateway at ``STEPLINE_GATEWAY_URL`` as they end; without, four calls (three steps, then the
function's return). The SDK's default flush policy applies unless ``BENCH_BUFFERED_STEPS=N`` (post every
N steps, by count alone; 1: after each) or ``BENCH_MAX_AT_RISK=S`` (the threshold of buffered step run
time) say otherwise; steps still buffered at the end come with the function's result. ``--app`` picks how
the SDK is served (``APPS``): its own ASGI app, or a Starlette or FastAPI app with the route inside the
framework's middleware stack, or in front of it. ``BENCH_JSON=stdlib`` makes the SDK use the standard
library's json where it would use orjson. Run it alone with ``python -m benchmarks.service --port 8001
[--workers N] [--app A]``; ``benchmarks.e2e`` starts it for you. With ``STEPLINE_SIGNING_KEY`` set it runs
in cloud mode and checks the gateway's signatures; else dev mode.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from typing import Any

import stepline
import stepline.asgi
import stepline.protocol
import uvicorn

APP_ID = "bench"
FUNCTION_ID = "three-steps"
TRIGGER = "bench/go"
SERVE_PATH = "/api/inngest"
APPS = ("asgi", "starlette", "fastapi", "fastapi-lean")


def _policy() -> dict[str, Any]:
    """The function's checkpoint setting from BENCH_BUFFERED_STEPS and BENCH_MAX_AT_RISK (empty: the
    client's). An SDK without a flush policy by run time takes ``buffered_steps`` alone (1: its default)."""
    buffered = int(os.environ.get("BENCH_BUFFERED_STEPS") or 0) or None
    at_risk = os.environ.get("BENCH_MAX_AT_RISK") or None
    if buffered is None and at_risk is None:
        return {}
    fields = {field.name for field in dataclasses.fields(stepline.Checkpoint)}
    settings: dict[str, Any] = {"buffered_steps": buffered or 1} if "max_at_risk" not in fields else {}
    if "max_at_risk" in fields:
        settings = {"buffered_steps": buffered, "max_at_risk": float(at_risk) if at_risk else None}
    return {"checkpoint": stepline.Checkpoint(**settings)}


def create_app(kind: str = "asgi") -> Any:
    """The ASGI app serving the benchmark function at ``SERVE_PATH``, served as ``kind`` says (APPS)."""
    signing_key = os.environ.get("STEPLINE_SIGNING_KEY") or None
    gateway_url = os.environ.get("STEPLINE_GATEWAY_URL") or "http://127.0.0.1:8288"
    if os.environ.get("BENCH_JSON") == "stdlib":
        # The SDK's hot-path JSON without orjson, as when it is not installed.
        stepline.protocol.orjson = None
    client = stepline.Client(
        APP_ID, dev=signing_key is None, signing_key=signing_key, gateway_url=gateway_url
    )
    # Absent: the client's setting (STEPLINE_CHECKPOINT). An SDK from before checkpointing has neither, and
    # then the function makes one call per step (so that older commits can be measured too).
    options = _policy() if getattr(client.config, "checkpoint", False) else {}

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

    if kind == "asgi":
        return stepline.asgi.serve_app(client, [three_steps], serve_path=SERVE_PATH)
    if kind == "starlette":
        from starlette.applications import Starlette
        from stepline.starlette import serve_route

        return Starlette(routes=[serve_route(client, [three_steps], serve_path=SERVE_PATH)])
    import fastapi
    from stepline.fastapi import serve

    api = fastapi.FastAPI()
    if kind == "fastapi":
        serve(api, client, [three_steps], serve_path=SERVE_PATH)
        return api
    return stepline.asgi.serve_app(client, [three_steps], serve_path=SERVE_PATH, fallback=api)


def app_factory() -> Any:
    """For uvicorn's ``--factory``: the app ``BENCH_APP`` names (each worker process builds its own)."""
    return create_app(os.environ.get("BENCH_APP") or "asgi")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--app", choices=APPS, default="asgi", help="how the SDK is served")
    args = parser.parse_args()
    os.environ["BENCH_APP"] = args.app
    uvicorn.run(
        "benchmarks.service:app_factory",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
