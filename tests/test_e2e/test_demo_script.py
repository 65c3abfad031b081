"""``scripts/demo`` as a user runs it: SIGINT or SIGTERM to its pid stops everything it started (the demo
service, ``stepline dev`` and its Postgres), and a restart does not install again.

It runs in this checkout, on ports and a data directory of its own (STEPLINE_DEMO_PORT, STEPLINE_PORT,
STEPLINE_DATA_DIR), so it never needs the demo's fixed ports.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support import free_port
from tests.test_cli.test_dev import clean_env, postgres_processes

ROOT = Path(__file__).resolve().parents[2]
INSTALLING = "demo: installing Stepline"


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def start(tmp_path: Path, ports: tuple[int, int], name: str) -> tuple[subprocess.Popen[bytes], Path]:
    demo_port, gateway_port = ports
    log = tmp_path / f"{name}.log"
    env = clean_env(
        STEPLINE_DEMO_PORT=str(demo_port),
        STEPLINE_PORT=str(gateway_port),
        STEPLINE_DATA_DIR=str(tmp_path / "data"),
    )
    env.pop("VIRTUAL_ENV", None)
    with log.open("wb") as out:
        # A session of its own, as a terminal gives; the signals below go to the script's pid alone.
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "demo")],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"scripts/demo stopped: {log.read_text()[-3000:]}"
        try:
            if httpx.get(f"http://127.0.0.1:{gateway_port}/v1/functions", timeout=2).json()["data"]:
                return proc, log
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"scripts/demo did not come up: {log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> int:
    os.kill(proc.pid, sig)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"scripts/demo did not stop on {sig.name}: {log.read_text()[-3000:]}") from None


@pytest.mark.timeout(600)
def test_signals_to_the_script_stop_everything_and_a_restart_does_not_install(tmp_path: Path) -> None:
    ports = (free_port(), free_port())
    data = tmp_path / "data"
    for number, sig in enumerate((signal.SIGINT, signal.SIGTERM)):
        proc, log = start(tmp_path, ports, f"run-{number}")
        try:
            functions = httpx.get(f"http://127.0.0.1:{ports[1]}/v1/functions").json()["data"]
            assert "shop-process-new-order" in {f["id"] for f in functions}
            assert postgres_processes(data), "stepline dev runs its Postgres"
            code = stop(proc, sig, log)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        text = log.read_text()
        assert code == (130 if sig == signal.SIGINT else 143), text[-3000:]
        assert "stopped the embedded Postgres" in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(port_is_free(p) for p in ports):
            time.sleep(0.1)
        assert all(port_is_free(p) for p in ports), "something still listens on the demo's ports"
        assert postgres_processes(data) == []
        if number == 1:
            assert INSTALLING not in text, "a restart with the same pyproject.toml installs nothing"
