"""The README's two set-up commands work as written, in a fresh clone: the run command brings up Stepline
with the demo service and the sample event completes; the test command is exactly what CI runs."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def code_after(heading: str) -> list[str]:
    """The lines of the first ```sh block after the paragraph that starts with ``heading``."""
    start = README.index(heading)
    block = re.search(r"```sh\n(.*?)```", README[start:], re.S)
    assert block is not None, f"no command block after {heading!r}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_test_command_is_what_ci_runs() -> None:
    [command] = code_after("**Run the whole test suite**")
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"exec {command}" in ci


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def wait_for(url: str, timeout: float, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the run command stopped: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.mark.timeout(600)
def test_the_run_command_in_a_fresh_clone_completes_the_sample_event(tmp_path: Path) -> None:
    [run_command] = code_after("**Run Stepline**")
    send_command, look_command = code_after("Then, from another terminal")
    for port in (8000, 8288):
        assert port_is_free(port), f"port {port} is taken: the README's command needs it"
    clone = tmp_path / "stepline"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    log = (tmp_path / "demo.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "VIRTUAL_ENV"))}
    demo = subprocess.Popen(
        shlex.split(run_command),
        cwd=clone,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        wait_for("http://127.0.0.1:8288/readyz", 420, demo, tmp_path / "demo.log")
        sent = subprocess.run(shlex.split(send_command), cwd=clone, capture_output=True, text=True, env=env)
        assert sent.returncode == 0, sent.stderr
        [event_id] = sent.stdout.split()
        assert look_command.startswith("curl -s ")
        url = shlex.split(look_command)[-1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [run] = httpx.get(url).json()["data"]
            if run["status"] == "Completed":
                break
            time.sleep(0.5)
        assert run["event_id"] == event_id
        assert run["function"]["id"] == "shop-process-new-order"
        assert run["status"] == "Completed", run
    finally:
        os.killpg(demo.pid, signal.SIGINT)
        try:
            demo.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode in (0, -signal.SIGINT, 130), (tmp_path / "demo.log").read_text()[-3000:]
