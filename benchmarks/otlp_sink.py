"""An OTLP/HTTP trace receiver that keeps nothing: the other end of the gateway's exporter in the benchmark.

``python -m benchmarks.otlp_sink --port P`` answers every ``POST /v1/traces`` with an empty (valid)
``ExportTraceServiceResponse`` and counts the requests and the bytes it was sent, printed on exit. It stands
for an OpenTelemetry collector on the same machine, without a collector's own cost.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from aiohttp import web


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.otlp_sink")
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    received = {"requests": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        received["requests"] += 1
        received["bytes"] += len(body)
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", traces)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        await runner.cleanup()
        print(f"otlp sink: {received['requests']} requests, {received['bytes']} bytes", flush=True)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
