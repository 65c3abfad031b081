"""``stepline manifests APP:OBJECT``: the Function resources of an SDK app, round-tripped through the CRD.

The command runs as a user runs it (the console script, in the app's folder); its YAML is checked against
the checked-in CRD (crds/functions.stepline.dev.yaml: its schema, and its CEL rules), parsed by the API
models, and read back by ``stepline dev -f``'s loader into the same routes a sync of the app gives.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from stepline.manifest import FunctionResource
from stepline_gateway.registry import load_manifests
from stepline_gateway.sync import read_sync

from tests.test_cli.test_dev import STEPLINE, clean_env
from tests.test_operator.test_crd import cel_failures

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent(
    """
    import datetime
    import stepline
    import stepline.asgi

    client = stepline.Client("billing", dev=True)


    async def alert(ctx: stepline.Context) -> None:
        return None


    @client.function(
        id="charge-card",
        trigger=[
            stepline.TriggerEvent("invoice/due", expression="event.data.amount > 0"),
            stepline.TriggerCron(cron="0 8 * * *", timezone="Europe/Paris"),
        ],
        retries=7,
        cancel_on=[
            stepline.Cancel(
                event="invoice/voided", match="data.invoice_id", timeout=datetime.timedelta(hours=2)
            ),
            {"event": "account/closed", "if": "event.data.account == async.data.account"},
        ],
        on_failure=alert,
        concurrency=[
            stepline.Concurrency(limit=1, key="event.data.card"),
            stepline.Concurrency(limit=20, key='"psp"', scope="account"),
        ],
        throttle=stepline.Throttle(limit=10, period="1m", burst=3),
        rate_limit=stepline.RateLimit(limit=100, period="1h", key="event.data.account"),
        priority=stepline.Priority(run="event.data.amount > 1000 ? 60 : 0"),
        idempotency="event.data.invoice_id",
        singleton=stepline.Singleton(mode="skip", key="event.data.invoice_id"),
        timeouts=stepline.Timeouts(start="10m", finish="1h"),
        retry_policy=stepline.RetryPolicy(backoff="Linear", initial_delay="30s", timeout="20s"),
    )
    async def charge_card(ctx: stepline.Context) -> None:
        return None


    @client.function(
        id="Nightly_Report",
        trigger=stepline.TriggerCron(cron="30 2 * * *"),
        concurrency=1,
        debounce=stepline.Debounce(period="5m", timeout="1h"),
        batch_events=stepline.BatchEvents(max_size=5, timeout="10s", if_="event.data.small"),
    )
    def nightly_report(ctx: stepline.SyncContext) -> None:
        return None


    app = stepline.asgi.serve_app(client, [charge_card, nightly_report])
    """
)


def crd_schema() -> dict[str, Any]:
    crd = yaml.safe_load((ROOT / "crds" / "functions.stepline.dev.yaml").read_text())
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def manifests(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "billing_app.py").write_text(APP)
    assert STEPLINE
    return subprocess.run(
        [STEPLINE, "manifests", "billing_app:app", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )


def test_the_resources_pass_the_crd_schema_and_its_rules(tmp_path: Path) -> None:
    done = manifests(tmp_path, "--service", "billing-api", "--port", "http", "--namespace", "billing")
    assert done.returncode == 0, done.stderr
    documents = list(yaml.safe_load_all(done.stdout))
    schema = crd_schema()
    validator = jsonschema.Draft7Validator(schema)
    for document in documents:
        assert [e.message for e in validator.iter_errors(document)] == []
        assert cel_failures(schema, document) == []
        FunctionResource.model_validate(document)
    by_name = {d["metadata"]["name"]: d for d in documents}
    assert list(by_name) == ["charge-card", "charge-card-failure", "nightly-report"]
    charge = by_name["charge-card"]
    assert charge["metadata"] == {"name": "charge-card", "namespace": "billing"}
    assert charge["spec"] == {
        "app": "billing",
        "endpoint": {"serviceRef": {"name": "billing-api", "port": "http"}},
        "triggers": [
            {"event": "invoice/due", "if": "event.data.amount > 0"},
            {"cron": "0 8 * * *", "timezone": "Europe/Paris"},
        ],
        "retries": 7,
        "retryPolicy": {
            "backoff": "Linear",
            "initialDelay": "30s",
            "maxDelay": "1h",
            "jitterPercent": 50,
            "timeout": "20s",
        },
        "cancelOn": [
            {"event": "invoice/voided", "match": "data.invoice_id", "timeout": "2h"},
            {"event": "account/closed", "if": "event.data.account == async.data.account"},
        ],
        "concurrency": [
            {"limit": 1, "key": "event.data.card"},
            {"limit": 20, "key": '"psp"', "scope": "account"},
        ],
        "throttle": {"limit": 10, "period": "1m", "burst": 3},
        "rateLimit": {"limit": 100, "period": "1h", "key": "event.data.account"},
        "priority": {"run": "event.data.amount > 1000 ? 60 : 0"},
        "idempotency": "event.data.invoice_id",
        "singleton": {"key": "event.data.invoice_id", "mode": "skip"},
        "timeouts": {"start": "10m", "finish": "1h"},
    }
    # A function id that is no Kubernetes name keeps its id in spec.functionId.
    nightly = by_name["nightly-report"]["spec"]
    assert nightly["functionId"] == "Nightly_Report"
    assert (nightly["concurrency"], nightly["debounce"], nightly["batchEvents"]) == (
        [{"limit": 1}],
        {"period": "5m", "timeout": "1h"},
        {"maxSize": 5, "timeout": "10s", "if": "event.data.small"},
    )
    assert "retryPolicy" not in nightly
    failure = by_name["charge-card-failure"]["spec"]
    assert failure["triggers"] == [
        {"event": "inngest/function.failed", "if": "event.data.function_id == 'billing-charge-card'"}
    ]
    assert failure["retries"] == 0


def test_the_resources_route_what_a_sync_of_the_app_routes(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8123/api/inngest"
    done = manifests(tmp_path, "--url", url)
    assert done.returncode == 0, done.stderr
    (tmp_path / "functions.yaml").write_text(done.stdout)
    from_manifests = {f.id: f for f in load_manifests([tmp_path / "functions.yaml"])}

    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        app = importlib.import_module("billing_app")
    finally:
        sys.path.remove(str(tmp_path))
    payload = app.client.sync_payload(app.app.handler.functions, url, framework="asgi")
    _, from_sync = read_sync(payload)
    assert sorted(from_manifests) == sorted(f.id for f in from_sync)
    assert from_manifests["billing-charge-card"].flow is not None
    assert from_manifests["billing-charge-card"].retry_policy is not None
    for synced in from_sync:
        routed = from_manifests[synced.id]
        assert (routed.url, routed.retries, routed.app_id) == (synced.url, synced.retries, synced.app_id)
        assert routed.cancel_on == synced.cancel_on
        assert (routed.flow, routed.retry_policy) == (synced.flow, synced.retry_policy)
        # A cron's time zone is its own field in a manifest, a TZ= prefix in a sync.
        as_synced = [
            {"cron": f"TZ={t['timezone']} {t['cron']}"} if "timezone" in t else t for t in routed.triggers
        ]
        assert as_synced == synced.triggers


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--service", "billing-api"], "--service needs --port"),
        (["--url", "http://x/api/inngest", "--port", "80"], "--port and --path go with --service"),
    ],
)
def test_a_wrong_endpoint_is_refused_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    done = manifests(tmp_path, *args)
    assert done.returncode != 0
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_an_object_that_serves_nothing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "billing_app.py").write_text(APP)
    assert STEPLINE
    for target, message in [
        ("billing_app:client", "serves no Stepline functions"),
        ("billing_app:missing", "has no 'missing'"),
        ("no_such_module:app", "cannot import 'no_such_module'"),
    ]:
        done = subprocess.run(
            [STEPLINE, "manifests", target, "--url", "http://x/"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert done.returncode == 1
        assert message in done.stderr, done.stderr
