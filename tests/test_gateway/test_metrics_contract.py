"""docs/metrics.md is the contract: every series it lists is exported with its type and labels, and every
series exported is listed there. With ``--no-metrics`` nothing is served."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg
import stepline
import stepline.asgi
from prometheus_client.parser import text_string_to_metric_families
from stepline_gateway.queue import QueueGauges

from tests.support import RunningGateway, in_process_gateway, route, running_gateway, serve

DOC = Path(__file__).parents[2] / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `(stepline_[a-z_]+)` \| (counter|gauge|histogram) \|([^|]*)\|")


def documented() -> dict[str, tuple[str, set[str]]]:
    """Name -> (type, label names) of each row of the table of series."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = _ROW.match(line)
        if match:
            name, kind, labels = match.groups()
            rows[name] = (kind, set(re.findall(r"`([a-z_]+)`", labels)))
    return rows


def exported(text: str) -> dict[str, tuple[str, set[str] | None]]:
    """Name (as documented: counters with ``_total``) -> (type, label names; None when it has no sample)."""
    found: dict[str, tuple[str, set[str] | None]] = {}
    for family in text_string_to_metric_families(text):
        name = family.name + "_total" if family.type == "counter" else family.name
        labels = {key for sample in family.samples for key in sample.labels if key != "le"}
        found[name] = (family.type, labels if family.samples else None)
    return found


def checkpointing_app(gateway_url: str) -> tuple[stepline.Client, list[stepline.Function]]:
    """Two steps posted to the checkpoint API as they end (the strictest flush policy)."""
    client = stepline.Client(
        "contract", dev=True, gateway_url=gateway_url, checkpoint=stepline.Checkpoint.every_step()
    )

    @client.function(id="steps", trigger="contract/go")
    async def steps(ctx: stepline.Context) -> int:
        one = await ctx.step.run("one", lambda: 1)
        two = await ctx.step.run("two", lambda: 2)
        return one + two

    return client, [steps]


async def test_every_documented_series_is_exported_and_every_exported_one_documented(
    database_url: str,
) -> None:
    async with running_gateway(database_url) as gw:
        client, functions = checkpointing_app(gw.url)
        async with serve(stepline.asgi.serve_app(client, functions)) as app_url:
            await gw.publish(route("contract-steps", f"{app_url}/api/inngest", {"event": "contract/go"}))
            [event_id] = await gw.send({"name": "contract/go", "data": {}})
            [run] = await gw.finished_runs(event_id)
            assert run["status"] == "Completed"
            assert [step["checkpointed"] for step in run["steps"]] == [True, True]
            text = (await gw.http.get("/metrics")).text

    docs = documented()
    seen = exported(text)
    assert len(docs) >= 20, "the table of docs/metrics.md is read"
    assert sorted(set(seen) - set(docs)) == [], "exported but not in docs/metrics.md"
    assert sorted(set(docs) - set(seen)) == [], "in docs/metrics.md but not exported"
    for name, (kind, labels) in docs.items():
        seen_kind, seen_labels = seen[name]
        assert seen_kind == kind, name
        if seen_labels is not None:
            assert seen_labels == labels, name
    # The workload gave samples to the per-function series, so that their labels were checked.
    for name in ("stepline_runs_started_total", "stepline_steps_total", "stepline_call_duration_seconds"):
        assert seen[name][1] is not None, name
    assert "# HELP stepline_runs_waiting " in text
    values = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values[("stepline_checkpoint_posts_total", (("outcome", "recorded"),))] == 2
    assert values[("stepline_checkpointed_steps_total", ())] == 2
    labels = (("function", "contract-steps"), ("namespace", "default"), ("outcome", "completed"))
    assert values[("stepline_steps_total", labels)] == 2
    # --pool-size (10) shared out: half takes in events, the rest runs the calls.
    assert values[("stepline_db_pool_max_connections", (("pool", "primary"),))] == 5
    assert values[("stepline_db_pool_max_connections", (("pool", "ingest"),))] == 5


async def test_no_metrics_keeps_nothing_and_answers_404(database_url: str) -> None:
    async with running_gateway(database_url, no_metrics=True) as gw:
        response = await gw.http.get("/metrics")
        assert response.status_code == 404
        assert "--no-metrics" in response.json()["error"]
        # The queue is still there for autoscalers.
        assert (await gw.http.get("/v1/queue")).json()["calls_due"] == 0


async def test_metrics_answer_without_the_queue_while_it_cannot_be_read(database_url: str) -> None:
    async with in_process_gateway(database_url) as gw:
        gw.gateway.queue = QueueGauges(gw.gateway.store, gw.gateway.clock, max_age_s=0)
        before = _errors(await _text(gw))
        conn = await asyncpg.connect(database_url)
        try:
            # The queue's table gone: its statement fails with an error that is not the database away.
            await conn.execute("ALTER TABLE work RENAME TO work_elsewhere")
            try:
                text = await _text(gw)
                assert "# HELP stepline_calls_due " in text
                assert not any(line.startswith("stepline_calls_due{") for line in text.splitlines())
                assert _errors(text) > before
                assert (await gw.http.get("/v1/queue")).status_code == 500
            finally:
                await conn.execute("ALTER TABLE work_elsewhere RENAME TO work")
        finally:
            await conn.close()
        assert (await gw.http.get("/v1/queue")).json()["calls_due"] == 0


async def _text(gw: RunningGateway) -> str:
    response = await gw.http.get("/metrics")
    assert response.status_code == 200
    return response.text


def _errors(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "stepline_db_errors_total" and sample.labels == {
                "pool": "primary",
                "kind": "permanent",
            }:
                return sample.value
    raise AssertionError("no stepline_db_errors_total{pool=primary, kind=permanent}")
