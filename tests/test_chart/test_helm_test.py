"""The script of the chart's `helm test`, run against a real gateway process in production mode.

In the cluster it runs in the Stepline image with the release's keys; here with the same variables, the
gateway on loopback and the test function served on loopback too.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.processes import wait_ready
from tests.support import free_port
from tests.test_chart.conftest import CHART, SIGNING_KEY

SCRIPT = CHART / "files" / "helm_test.py"
EVENT_KEYS = "first-key,second-key"
API_TOKEN = "helm-test-token"


@pytest.fixture
def gateway(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A production gateway (keys, signing key, API token), as the chart runs it."""
    port = free_port()
    log = (tmp_path / "gateway.log").open("wb")
    env = {**clean_env(), "STEPLINE_DATABASE_URL": database_url, "STEPLINE_EVENT_KEYS": EVENT_KEYS,
           "STEPLINE_SIGNING_KEY": SIGNING_KEY, "STEPLINE_API_TOKEN": API_TOKEN,
           "STEPLINE_RETRY_BASE_S": "0.1"}  # fmt: skip
    command = [sys.executable, "-m", "stepline_cli", "gateway", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.kill()
        process.wait(timeout=10)


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("STEPLINE_", "INNGEST_"))}


async def run_script(gateway: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {
        **clean_env(),
        "STEPLINE_GATEWAY_URL": gateway,
        "STEPLINE_EVENT_KEYS": EVENT_KEYS,
        "STEPLINE_SIGNING_KEY": SIGNING_KEY,
        "STEPLINE_API_TOKEN": API_TOKEN,
        "STEPLINE_TEST_SERVE_HOST": "127.0.0.1",
        "STEPLINE_TEST_LISTEN": "127.0.0.1",
        "STEPLINE_TEST_PORT": str(free_port()),
        "STEPLINE_TEST_TIMEOUT_S": "30",
        **overrides,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(SCRIPT), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return subprocess.CompletedProcess([str(SCRIPT)], process.returncode, out.decode(), err.decode())


async def test_a_run_completes_end_to_end_and_the_function_is_removed_after(gateway: str) -> None:
    await wait_ready(gateway)
    done = await run_script(gateway)
    assert done.returncode == 0, done.stderr
    assert "of stepline-helm-test-echo Completed in" in done.stdout
    async with httpx.AsyncClient(base_url=gateway, headers={"authorization": f"Bearer {API_TOKEN}"}) as api:
        runs = (await api.get("/v1/runs", params={"function": "stepline-helm-test-echo"})).json()["data"]
        assert [run["status"] for run in runs] == ["Completed"]
        run = (await api.get(f"/v1/runs/{runs[0]['id']}")).json()
        assert [step["name"] for step in run["steps"]] == ["greet"]
        functions = (await api.get("/v1/functions")).json()["data"]
        assert not [f for f in functions if f["app_id"] == "stepline-helm-test"]


async def test_a_wrong_signing_key_fails_in_one_line(gateway: str) -> None:
    await wait_ready(gateway)
    done = await run_script(gateway, STEPLINE_SIGNING_KEY="signkey-prod-" + "a1" * 32)
    assert done.returncode == 1
    assert done.stderr.startswith("helm test failed: the gateway refused the sync"), done.stderr
    assert "Traceback" not in done.stderr


async def test_an_unreachable_gateway_fails_in_one_line() -> None:
    done = await run_script(f"http://127.0.0.1:{free_port()}", STEPLINE_TEST_TIMEOUT_S="5")
    assert done.returncode == 1
    assert done.stderr.startswith("helm test failed:"), done.stderr
    assert "Traceback" not in done.stderr
