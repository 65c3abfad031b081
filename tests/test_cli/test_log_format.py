"""``--log-format json``: one JSON object per line, and every line about a run names the run, its function and
its namespace; plain text stays the default. Offered by ``stepline gateway``, ``operator`` and ``dev``."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator

import pytest
import stepline
import stepline.asgi
from stepline_cli.logs import JsonFormatter
from stepline_cli.main import build_parser

from tests.support import route, running_gateway, serve


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def json_lines() -> Iterator[Lines]:
    lines = Lines()
    logger = logging.getLogger("stepline_gateway")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)


async def test_every_line_about_a_run_names_it_with_its_function_and_namespace(
    database_url: str, json_lines: Lines
) -> None:
    client = stepline.Client("logs", dev=True, checkpoint=False)
    tries: list[int] = []

    @client.function(id="flaky", trigger="logs/go", retries=1)
    async def flaky(ctx: stepline.Context) -> str:
        def once() -> str:
            tries.append(1)
            if len(tries) == 1:
                raise KeyError("user_id")
            return "ok"

        return await ctx.step.run("lookup", once)

    async with (
        serve(stepline.asgi.serve_app(client, [flaky])) as app_url,
        running_gateway(database_url, retry_base_s=0.01, retry_max_s=0.02) as gw,
    ):
        await gw.publish(route("logs-flaky", f"{app_url}/api/inngest", {"event": "logs/go"}, retries=1))
        [event_id] = await gw.send({"name": "logs/go", "data": {}})
        [run] = await gw.finished_runs(event_id)
        assert run["status"] == "Completed"

    entries = [json.loads(line) for line in json_lines.lines]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    about_run = [entry for entry in entries if run["id"] in entry["message"]]
    # The retry and the run's end, at least.
    assert len(about_run) >= 2, entries
    for entry in about_run:
        assert entry["run_id"] == run["id"], entry
        assert entry["function"] == "logs-flaky", entry
        assert entry["namespace"] == "default", entry
    assert any("attempt 1 failed (KeyError" in entry["message"] for entry in about_run)
    # Lines about no run carry no run.
    assert all("run_id" not in entry for entry in entries if "received" in entry["message"])


def test_the_formatter_keeps_the_traceback_in_a_field() -> None:
    try:
        raise ValueError("broken")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed: %s", ("here",), sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed: here"
    assert entry["level"] == "ERROR"
    assert "ValueError: broken" in entry["exception"]
    assert entry["time"].endswith("+00:00")


@pytest.mark.parametrize("command", ["gateway", "operator", "dev"])
def test_the_commands_take_the_flag_and_refuse_other_formats(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    args = parser.parse_args([command, "--log-format", "json"])
    assert args.log_format == "json"
    assert parser.parse_args([command]).log_format is None, "text unless asked"
    if command == "operator":
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--log-format", "xml"])
        assert "invalid choice: 'xml'" in capsys.readouterr().err
