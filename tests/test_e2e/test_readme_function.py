"""The README's first function works as written: its code, served and synced by its commands, runs.

The commands run as the README gives them, in a folder holding the README's ``hello.py``, with two
changes only so that the test is parallel-safe: the ports (8001, 8288) are free ones, given through
``STEPLINE_PORT`` / ``STEPLINE_GATEWAY_URL`` where the README relies on the defaults, and the data folder is
the test's. ``.venv/bin/`` is this checkout's virtualenv, which ``./scripts/demo`` (the README's install)
provides: the test checks that the code imports nothing beyond what that install brings.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.support import free_port
from tests.test_cli.test_dev import clean_env, kill_group

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README[README.index("## A first function") :]
CODE = re.search(r"```python\n(.*?)```", SECTION, re.S)
COMMANDS = re.search(r"```sh\n(.*?)```", SECTION, re.S)
BIN = str(Path(sys.executable).parent)
# What `./scripts/demo` installs: the first function may import these, and Stepline's SDK.
DEMO_EXTRAS = ("server", "fastapi")


def command(line: str, app_port: int, gateway_port: int) -> list[str]:
    line = line.replace("8001", str(app_port)).replace("8288", str(gateway_port))
    return [part.replace(".venv/bin", BIN) for part in shlex.split(line)]


@contextlib.contextmanager
def running(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill_group(proc)


def wait_until(url: str, proc: subprocess.Popen[bytes], log: Path, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"{proc.args} stopped: {log.read_text()[-3000:]}"
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {log.read_text()[-3000:]}")


def test_the_code_needs_only_what_the_readme_installs() -> None:
    assert CODE is not None
    imported = set(re.findall(r"^(?:import|from) ([\w.]+)", CODE.group(1), re.M))
    assert imported <= {"stepline", "stepline.asgi"}, imported
    assert 'stepline.Client("shop")' not in CODE.group(1), "the demo's app id would collide with the demo"
    demo = (ROOT / "scripts" / "demo").read_text()
    assert f'extras="{",".join(DEMO_EXTRAS)}"' in demo


def test_the_first_function_runs_as_the_readme_says(tmp_path: Path) -> None:
    assert CODE is not None
    assert COMMANDS is not None
    (tmp_path / "hello.py").write_text(CODE.group(1))
    serve_line, dev_line, send_line = [line for line in COMMANDS.group(1).splitlines() if line.strip()]
    app_port, gateway_port = free_port(), free_port()
    gateway = f"http://127.0.0.1:{gateway_port}"
    env = clean_env(
        STEPLINE_GATEWAY_URL=gateway,
        STEPLINE_PORT=str(gateway_port),
        STEPLINE_DATA_DIR=str(tmp_path / "data"),
    )
    serve = command(serve_line, app_port, gateway_port)
    dev = command(dev_line, app_port, gateway_port)
    with (
        running(serve, tmp_path, env, tmp_path / "app.log") as app,
    ):
        wait_until(f"http://127.0.0.1:{app_port}/api/inngest", app, tmp_path / "app.log")
        with running(dev, tmp_path, env, tmp_path / "dev.log") as stepline_dev:
            wait_until(f"{gateway}/readyz", stepline_dev, tmp_path / "dev.log")
            sent = subprocess.run(
                command(send_line, app_port, gateway_port),
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert sent.returncode == 0, sent.stderr
            assert sent.stderr == "", "a function listens to the event"
            [event_id] = sent.stdout.split()
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                [run] = httpx.get(f"{gateway}/v1/events/{event_id}").json()["runs"]
                if run["status"] in ("Completed", "Failed"):
                    break
                time.sleep(0.2)
            detail = httpx.get(f"{gateway}/v1/runs/{run['id']}").json()
    assert detail["function"]["id"] == "hello-send-welcome-email"
    assert detail["status"] == "Completed", detail
    assert detail["output"] == "welcome email sent to ada@example.com"
    assert [s["name"] for s in detail["steps"]] == ["load-user", "send-email"]
