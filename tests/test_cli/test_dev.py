"""``stepline dev`` as a user runs it: the real console script in a subprocess, real apps, real Postgres.

Each test starts the command in its own session, as a terminal would, so that stopping it with SIGINT to
the process group is what Ctrl-C does; every process a test starts is killed in a ``finally``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
STEPLINE = shutil.which("stepline", path=str(Path(sys.executable).parent)) or shutil.which("stepline")
MANIFESTS = ROOT / "examples" / "manifests"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's Stepline or Inngest settings, which would change what runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def wait_for(check: Callable[[], Any], *, timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not met within {timeout} s; last value: {last!r}")


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """The Postgres server processes running on ``data_dir`` (its command line names the directory)."""
    marker = str((data_dir / "postgres").resolve())
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if any(marker in part for part in cmdline):
            found.append(process)
    return found


def lock_is_free(data_dir: Path) -> bool:
    with (data_dir / "dev.lock").open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle, fcntl.LOCK_UN)
        return True


@dataclass
class Dev:
    proc: subprocess.Popen[bytes]
    url: str
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> Any:
        response = httpx.get(f"{self.url}{path}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def functions(self) -> dict[str, dict[str, Any]]:
        return {f["id"]: f for f in self.get("/v1/functions")["data"]}

    def finished_run(self, event_id: str, timeout: float = 20.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            runs = self.get(f"/v1/events/{event_id}")["runs"]
            if len(runs) == 1 and runs[0]["status"] in ("Completed", "Failed", "Cancelled"):
                run: dict[str, Any] = self.get(f"/v1/runs/{runs[0]['id']}")
                return run
            return None

        result: dict[str, Any] = wait_for(check, timeout=timeout, what="the event's run finished")
        return result

    def stop(self, sig: signal.Signals = signal.SIGINT) -> int:
        """Stop as Ctrl-C does (the signal goes to the whole process group); answer the exit code."""
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=30)


@contextlib.contextmanager
def stepline_dev(
    tmp_path: Path, *args: str, port: int | None = None, data_dir: Path | None = None
) -> Iterator[Dev]:
    """Run ``stepline dev`` until it says where its API is; kill it and its Postgres if a test fails."""
    assert STEPLINE, "the stepline console script is not installed next to this Python"
    port = port or free_port()
    data_dir = data_dir or tmp_path / "data"
    log_path = tmp_path / f"dev-{port}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [STEPLINE, "dev", "--port", str(port), "--data-dir", str(data_dir), *args],
            stdout=log,
            stderr=log,
            env=clean_env(),
            cwd=tmp_path,
            start_new_session=True,
        )
    dev = Dev(proc, f"http://127.0.0.1:{port}", data_dir, log_path)
    try:
        started = f"API and dashboard at {dev.url}"

        def ready() -> bool:
            assert proc.poll() is None, f"stepline dev exited with {proc.returncode}:\n{dev.log()}"
            return started in dev.log()

        wait_for(ready, timeout=60, what="stepline dev started")
        yield dev
    finally:
        kill_group(proc)
        for process in postgres_processes(data_dir):  # left running only if stepline dev was killed
            with contextlib.suppress(psutil.NoSuchProcess):
                process.terminate()


@contextlib.contextmanager
def app_process(*module_and_args: str, port: int, gateway_url: str) -> Iterator[str]:
    """Run an SDK app (``python -m ...``) on loopback until its serve URL answers; yield that URL."""
    url = f"http://127.0.0.1:{port}/api/inngest"
    proc = subprocess.Popen(
        [sys.executable, "-m", *module_and_args, "--port", str(port)],
        env=clean_env(STEPLINE_GATEWAY_URL=gateway_url),
        cwd=ROOT,
        start_new_session=True,
    )
    try:

        def answers() -> bool:
            assert proc.poll() is None, f"the app exited with {proc.returncode}"
            try:
                return httpx.get(url, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=30, what="the app answered")
        yield url
    finally:
        kill_group(proc)


def stepline(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert STEPLINE
    return subprocess.run(
        [STEPLINE, *args], capture_output=True, text=True, env=clean_env(), cwd=cwd, timeout=60, check=False
    )


def test_dev_runs_the_demo_stops_cleanly_and_keeps_runs_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port = free_port()  # the demo must know the gateway's URL before the gateway starts
    gateway_url = f"http://127.0.0.1:{port}"
    with (
        app_process("examples.demo_service", port=free_port(), gateway_url=gateway_url) as app_url,
        stepline_dev(tmp_path, "-u", app_url, "--retry-base-s", "0.1", port=port, data_dir=data_dir) as dev,
    ):
        assert "shop-process-new-order" in dev.functions()
        order = '{"order_id": "o-1", "amount": 120}'
        sent = stepline("send", "order/created", "--data", order, "--gateway", gateway_url, cwd=tmp_path)
        assert sent.returncode == 0, sent.stderr
        run = dev.finished_run(sent.stdout.strip())
        assert run["status"] == "Completed", run
        assert run["output"] == {
            "charge": "ch_o-1",
            "fulfillment": "ful_o-1",
            "confirmation": "confirmation sent for ful_o-1",
        }
        assert [(s["name"], s["attempts"]) for s in run["steps"]] == [
            ("charge-card", 1),
            ("create-fulfillment", 2),
            ("send-confirmation", 1),
        ]
        log = dev.log()
        assert 'received 1 event(s): ["order/created"], started 1 run(s)' in log, log

        # An event no function listens to is accepted, and `send` says that it started nothing.
        stray = stepline("send", "order/creatd", "--gateway", gateway_url, cwd=tmp_path)
        assert stray.returncode == 0, stray.stderr
        assert len(stray.stdout.split()) == 1
        assert stray.stderr.strip() == (
            "stepline: no run started: no function's trigger matches 'order/creatd' "
            f"(the functions and their triggers: {gateway_url}/v1/functions)"
        )
        assert sent.stderr == ""
        assert f"run {run['id']} of shop-process-new-order completed" in log, log

        # A second `stepline dev` on the same data directory is refused while this one runs.
        second = stepline("dev", "--port", str(free_port()), "--data-dir", str(data_dir), cwd=tmp_path)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines() == [
            f"stepline: error: the data directory {data_dir} is in use by another `stepline dev` "
            f"(pid {dev.proc.pid}): stop that one first, or give this one another --data-dir"
        ]

        assert dev.stop(signal.SIGINT) == 0, dev.log()
        assert "stopped the embedded Postgres" in dev.log()
        assert "Traceback" not in dev.log()
        assert postgres_processes(data_dir) == []
        assert lock_is_free(data_dir)

    with stepline_dev(tmp_path, data_dir=data_dir) as again:
        runs = again.get("/v1/runs")["data"]
        assert [(r["id"], r["status"]) for r in runs] == [(run["id"], "Completed")]
        assert again.stop(signal.SIGTERM) == 0, again.log()
    assert postgres_processes(data_dir) == []


def test_dev_discovers_an_inngest_sdk_app_and_syncs_it_again_when_it_restarts(
    tmp_path: Path, database_url: str
) -> None:
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    app, app_port = "tests.test_cli.inngest_app", free_port()
    with contextlib.ExitStack() as first_app:
        app_url = first_app.enter_context(
            app_process(app, "--gateway", gateway_url, port=app_port, gateway_url=gateway_url)
        )
        args = ["--database-url", database_url, "-u", app_url, "--poll-interval", "0.2"]
        with stepline_dev(tmp_path, *args, port=port) as dev:
            assert set(dev.functions()) == {"greeter-greet"}
            response = httpx.post(
                f"{gateway_url}/e/dev", json={"name": "greeter/hello", "data": {"name": "ada"}}, timeout=10
            )
            assert response.status_code == 200, response.text
            [event_id] = response.json()["ids"]
            run = dev.finished_run(event_id)
            assert run["status"] == "Completed", run
            assert run["output"] == {"greeting": "HELLO ADA", "letters": 3}
            assert {s["name"] for s in run["steps"]} == {"shout", "count"}

            # The app restarts with one more function: stepline dev notices and syncs it again.
            first_app.close()
            more = (app, "--gateway", gateway_url, "--more")
            with app_process(*more, port=app_port, gateway_url=gateway_url):
                wait_for(
                    lambda: set(dev.functions()) == {"greeter-greet", "greeter-wave"},
                    what="the restarted app synced again",
                )
            # "is back" when a poll found it down, "changed" when it restarted between two polls (0.2 s).
            resynced = re.compile(rf"app at {re.escape(app_url)} (is back|changed): synced it again")
            wait_for(lambda: resynced.search(dev.log()) is not None, what="the watcher's line")
            assert dev.stop(signal.SIGTERM) == 0, dev.log()
            assert "Traceback" not in dev.log()


MANIFEST = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {{name: nightly-report, namespace: reports}}
spec:
  app: reports
  endpoint: {{url: "http://127.0.0.1:9/api/inngest"}}
  triggers: [{{event: {event}}}]
  retries: {retries}
"""


def test_dev_loads_manifests_and_reloads_one_edited_while_it_runs(tmp_path: Path, database_url: str) -> None:
    extra = tmp_path / "manifests" / "reports.yaml"
    extra.parent.mkdir()
    extra.write_text(MANIFEST.format(event="report/requested", retries=2))
    with stepline_dev(
        tmp_path, "--database-url", database_url, "-f", str(MANIFESTS), "-f", str(extra)
    ) as dev:
        functions = dev.functions()
        assert {f for f in functions if f.startswith("shop-")} == {
            "shop-send-welcome-email",
            "shop-add-to-crm",
            "shop-start-trial",
            "shop-process-new-order",
            "shop-score-lead",
            "shop-sync-inventory",
        }
        assert functions["shop-process-new-order"]["source"] == "manifest"
        assert functions["reports-nightly-report"]["triggers"] == [{"event": "report/requested"}]

        extra.write_text(MANIFEST.format(event="report/scheduled", retries=5))
        changed = wait_for(
            lambda: (
                dev.functions()["reports-nightly-report"]["triggers"] == [{"event": "report/scheduled"}]
                and dev.functions()["reports-nightly-report"]
            ),
            what="the edited manifest reloaded",
        )
        assert changed["retries"] == 5

        # A broken edit is reported with its file and field, and changes nothing.
        extra.write_text(MANIFEST.format(event="report/broken", retries=99))
        wait_for(lambda: "manifests not reloaded" in dev.log(), what="the broken manifest reported")
        line = next(line for line in dev.log().splitlines() if "manifests not reloaded" in line)
        assert f"{extra}: Function nightly-report: spec.retries: Input should be" in line, line
        assert dev.functions()["reports-nightly-report"]["triggers"] == [{"event": "report/scheduled"}]
        assert len(dev.functions()) == 7
        assert dev.stop() == 0, dev.log()


def failing_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MANIFEST.format(event="report/requested", retries=99))
    unreachable = f"http://127.0.0.1:{free_port()}/api/inngest"
    twin = tmp_path / "twin"
    twin.mkdir()
    for name in ("a.yaml", "b.yaml"):
        (twin / name).write_text(MANIFEST.format(event="report/requested", retries=1))
    return {
        "bad flag": (["--bogus"], "stepline dev: error: unrecognized arguments: --bogus"),
        # dev mode has no API token: the flag is not offered.
        "bad token flag": (
            ["--api-token", "t"],
            "stepline dev: error: unrecognized arguments: --api-token t",
        ),
        "duplicate functions": (
            ["-f", str(twin)],
            f"stepline: error: {twin / 'b.yaml'}: Function nightly-report: the function "
            f"reports-nightly-report is defined twice, here and in {twin / 'a.yaml'}",
        ),
        "bad port": (["--port", "http"], "stepline dev: error: argument --port: 'http' is not a port number"),
        "unreachable app": (
            ["-u", unreachable],
            f"stepline: error: cannot reach the app at {unreachable} (",
        ),
        "invalid manifest": (
            ["-f", str(bad)],
            f"stepline: error: {bad}: Function nightly-report: spec.retries: Input should be less than",
        ),
        "missing manifest": (
            ["-f", str(tmp_path / "nope.yaml")],
            f"stepline: error: {tmp_path / 'nope.yaml'}",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "bad flag",
        "bad token flag",
        "bad port",
        "unreachable app",
        "invalid manifest",
        "duplicate functions",
        "missing manifest",
        "port in use",
    ],
)
def test_dev_refuses_bad_input_in_one_line(tmp_path: Path, case: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        busy_port = busy.getsockname()[1]
        if case == "port in use":
            args = ["--port", str(busy_port)]
            expected = f"stepline: error: port {busy_port} on 127.0.0.1 is already in use"
        else:
            args, expected = failing_cases(tmp_path)[case]
            args = ["--port", str(free_port()), *args]
        result = stepline("dev", "--data-dir", str(tmp_path / "data"), *args, cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    if case.startswith("bad"):  # argparse shows the usage line first: dev's own
        assert lines[0].startswith("usage: stepline dev "), lines[0]
        lines = lines[1:]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(expected), result.stderr
    if case == "unreachable app":
        assert "the app must be running" in lines[0]
    assert not (tmp_path / "data" / "postgres").exists(), "nothing should have been started"
