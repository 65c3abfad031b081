"""The generated CRD: no drift from the models, a structural schema, and every CEL rule exercised.

kmock does not enforce a CRD's schema, so this checks documents against it directly: jsonschema for the
structure (types, bounds, patterns) and the ``common-expression-language`` evaluator for each
``x-kubernetes-validations`` rule, with the object's keys escaped as Kubernetes does for CEL (``if`` is
``__if__``). Each refused case is refused by the pydantic model too, with the same message.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import jsonschema
import pydantic
import pytest
import yaml
from stepline.crd import function_crd
from stepline.manifest import parse_function
from stepline_cli.kube import crd_files, crds_yaml
from stepline_cli.main import main
from stepline_operator.checks import check_function
from stepline_operator.errors import InvalidSpec

ROOT = Path(__file__).parents[2]
CRD_FILE = ROOT / "crds" / "functions.stepline.dev.yaml"
# CEL's reserved words: Kubernetes exposes a property with such a name as __name__.
_CEL_RESERVED = {
    "true", "false", "null", "in", "as", "break", "const", "continue", "else", "for", "function", "if",
    "import", "let", "loop", "package", "namespace", "return", "var", "void", "while",
}  # fmt: skip


def schema() -> dict[str, Any]:
    crd = function_crd()
    result: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def _escape(value: Any) -> Any:
    if isinstance(value, dict):
        return {(f"__{k}__" if k in _CEL_RESERVED else k): _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def cel_failures(node: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every x-kubernetes-validations rule that applies to ``value``; answer the failed messages."""
    failures = []
    for rule in node.get("x-kubernetes-validations", []):
        if cel.compile(rule["rule"]).execute({"self": _escape(value)}) is not True:
            failures.append(f"{path or '.'}: {rule['message']}")
    if isinstance(value, dict):
        for name, sub in (node.get("properties") or {}).items():
            if name in value:
                failures += cel_failures(sub, value[name], f"{path}.{name}")
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            failures += cel_failures(node["items"], item, f"{path}[{index}]")
    return failures


def structure_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


BASE: dict[str, Any] = {
    "apiVersion": "stepline.dev/v1alpha1",
    "kind": "Function",
    "metadata": {"name": "process-new-order", "namespace": "shop"},
    "spec": {
        "app": "shop",
        "endpoint": {"serviceRef": {"name": "shop-api", "port": "http"}},
        "triggers": [{"event": "order/created", "if": "event.data.amount > 100"}],
    },
}


def variant(**spec: Any) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document["spec"].update(spec)
    return document


def test_the_checked_in_crds_are_what_the_models_generate() -> None:
    files = crd_files()
    assert sorted(files) == sorted(p.name for p in CRD_FILE.parent.iterdir())
    for name, text in files.items():
        assert (CRD_FILE.parent / name).read_text() == text, f"crds/{name} drifted: run scripts/generate-crds"


def test_stepline_crds_prints_them(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    main(["crds"])
    printed = capsys.readouterr().out
    assert printed == crds_yaml()
    assert [d["metadata"]["name"] for d in yaml.safe_load_all(printed)] == [
        "functions.stepline.dev",
        "webhooks.stepline.dev",
    ]
    main(["crds", "--out-dir", str(tmp_path)])
    assert (tmp_path / "functions.stepline.dev.yaml").read_text() == CRD_FILE.read_text()


def test_the_crd_declares_names_status_and_printer_columns() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "functions.stepline.dev"
    assert (spec["group"], spec["scope"]) == ("stepline.dev", "Namespaced")
    assert spec["names"]["shortNames"] == ["fn"]
    assert spec["names"]["categories"] == ["stepline"]
    [version] = spec["versions"]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["App", "Endpoint", "Triggers", "Ready", "Running", "Queued", "Failed", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "endpointURL", "conditions", "stats"} <= set(status)
    assert set(status["stats"]["properties"]) == {
        "running",
        "queued",
        "completedLastHour",
        "failedLastHour",
        "completedLastDay",
        "failedLastDay",
        "lastRunTime",
    }
    assert status["conditions"]["x-kubernetes-list-type"] == "map"
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    condition = status["conditions"]["items"]
    assert condition["required"] == ["type", "status", "lastTransitionTime", "reason", "message"]
    assert condition["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _nodes(sub, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")


def test_the_schema_is_structural_with_defaults_and_bounds() -> None:
    for path, node in _nodes(schema()):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "additionalProperties"} & set(node), path
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["retries"] == {**spec["retries"], "default": 4, "minimum": 0, "maximum": 20}
    assert spec["paused"]["default"] is False
    assert spec["endpoint"]["properties"]["path"]["default"] == "/api/inngest"
    assert (spec["triggers"]["minItems"], spec["triggers"]["maxItems"]) == (1, 10)
    assert spec["endpoint"]["properties"]["serviceRef"]["properties"]["port"] == {
        "description": spec["endpoint"]["properties"]["serviceRef"]["properties"]["port"]["description"],
        "x-kubernetes-int-or-string": True,
    }


def _examples() -> list[dict[str, Any]]:
    documents = []
    for file in [ROOT / "examples" / "k8s" / "functions.yaml", ROOT / "examples" / "manifests" / "shop.yaml"]:
        documents += [d for d in yaml.safe_load_all(file.read_text()) if d and d.get("kind") == "Function"]
    return documents


@pytest.mark.parametrize("document", _examples(), ids=lambda d: d["metadata"]["name"])
def test_the_examples_pass_the_schema_and_every_rule(document: dict[str, Any]) -> None:
    assert structure_errors(document) == []
    assert cel_failures(schema(), document) == []
    parse_function(document)


@pytest.mark.parametrize(
    "cron", ["0 8 * * *", "*/15 9-17 * * MON-FRI", "@daily", "TZ=Europe/Paris 0 8 * * 1-5", "0 0 8 * * *"]
)
def test_cron_lines_the_rule_accepts(cron: str) -> None:
    assert cel_failures(schema(), variant(triggers=[{"cron": cron}])) == []


EXACTLY_ONE_ENDPOINT = "exactly one of endpoint.serviceRef or endpoint.url must be set"
EXACTLY_ONE_TRIGGER = "each trigger needs exactly one of event or cron"


@pytest.mark.parametrize(
    ("spec", "messages"),
    [
        (
            {"endpoint": {"url": "http://x/api", "serviceRef": {"name": "a", "port": 80}}},
            [f".spec.endpoint: {EXACTLY_ONE_ENDPOINT}"],
        ),
        ({"endpoint": {"path": "/api"}}, [f".spec.endpoint: {EXACTLY_ONE_ENDPOINT}"]),
        (
            {"triggers": [{"event": "a/b", "cron": "0 8 * * *"}]},
            [f".spec.triggers[0]: {EXACTLY_ONE_TRIGGER}"],
        ),
        (
            {"triggers": [{"event": "a/b"}, {"if": "true"}]},
            [
                f".spec.triggers[1]: {EXACTLY_ONE_TRIGGER}",
                ".spec.triggers[1]: 'if' applies to event triggers only",
            ],
        ),
        (
            {"triggers": [{"cron": "0 8 * * *", "if": "true"}]},
            [".spec.triggers[0]: 'if' applies to event triggers only"],
        ),
        (
            {"triggers": [{"event": "a/b", "timezone": "Europe/Paris"}]},
            [".spec.triggers[0]: 'timezone' applies to cron triggers only"],
        ),
        (
            {"cancelOn": [{"event": "order/cancelled", "if": "true", "match": "data.id"}]},
            [".spec.cancelOn[0]: give at most one of 'if' or 'match'"],
        ),
        (
            {"concurrency": [{"limit": 5, "scope": "account"}]},
            [".spec.concurrency[0]: a concurrency limit of scope env or account needs a key"],
        ),
    ],
    ids=[
        "both-endpoints",
        "no-endpoint",
        "event-and-cron",
        "neither",
        "if-on-cron",
        "tz-on-event",
        "if-and-match",
        "shared-scope-without-key",
    ],
)
def test_each_rule_refuses_with_its_message_as_the_model_does(
    spec: dict[str, Any], messages: list[str]
) -> None:
    document = variant(**spec)
    assert structure_errors(document) == []  # a schema alone cannot tell
    assert cel_failures(schema(), document) == messages
    with pytest.raises(pydantic.ValidationError) as refused:
        parse_function(document)
    assert messages[0].split(": ", 1)[1] in str(refused.value)  # the model stops at the first


def test_the_cron_rule_refuses_what_is_not_a_cron_line_and_the_operator_too() -> None:
    document = variant(triggers=[{"cron": "every day at 8"}])
    assert structure_errors(document) == []
    [failure] = cel_failures(schema(), document)
    assert failure.startswith(".spec.triggers[0]: cron needs five fields")
    with pytest.raises(InvalidSpec) as refused:
        check_function(document)
    assert refused.value.reason == "InvalidSchedule"


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"retries": 21}, "retries: 21 is greater than the maximum of 20"),
        ({"triggers": []}, "triggers: [] should be non-empty"),
        ({"triggers": [{"event": f"e/{i}"} for i in range(11)]}, "is too long"),
        ({"endpoint": {"serviceRef": {"name": "Shop_API", "port": 80}}}, "does not match"),
        ({"endpoint": {"url": "ftp://x"}}, "does not match '^https?://'"),
        ({"app": ""}, "should be non-empty"),
        ({"concurrency": [{"limit": 1}, {"limit": 2}, {"limit": 3}]}, "is too long"),
        ({"throttle": {"limit": 0, "period": "1s"}}, "0 is less than the minimum of 1"),
        ({"rateLimit": {"limit": 1, "period": "an hour"}}, "does not match"),
        ({"batchEvents": {"maxSize": 101, "timeout": "5s"}}, "101 is greater than the maximum of 100"),
        ({"singleton": {"mode": "replace"}}, "'replace' is not one of ['skip', 'cancel']"),
        ({"retryPolicy": {"backoff": "Fibonacci"}}, "is not one of ['Exponential', 'Linear', 'Constant']"),
        ({"retryPolicy": {"jitterPercent": 150}}, "150 is greater than the maximum of 100"),
    ],
    ids=[
        "retries",
        "no-trigger",
        "eleven-triggers",
        "service-name",
        "url-scheme",
        "empty-app",
        "three-concurrency-limits",
        "throttle-limit",
        "rate-limit-period",
        "batch-size",
        "singleton-mode",
        "backoff",
        "jitter",
    ],
)
def test_the_schema_refuses_what_is_out_of_bounds(spec: dict[str, Any], error: str) -> None:
    errors = structure_errors(variant(**spec))
    assert errors, spec
    assert error in errors[0], errors
    with pytest.raises(pydantic.ValidationError):
        parse_function(variant(**spec))


FLOW = {
    "concurrency": [{"limit": 2, "key": "event.data.account_id", "scope": "env"}, {"limit": 10}],
    "throttle": {"limit": 10, "period": "1m", "burst": 2, "key": "event.data.account_id"},
    "rateLimit": {"limit": 1, "period": "1h", "key": "event.data.user_id"},
    "debounce": {"period": "10s", "timeout": "1m"},
    "priority": {"run": "event.data.plan == 'enterprise' ? 120 : 0"},
    "idempotency": "event.data.order_id",
    "singleton": {"key": "event.data.user_id", "mode": "cancel"},
    "timeouts": {"start": "10m", "finish": "1h"},
    "retryPolicy": {
        "backoff": "Linear",
        "initialDelay": "5s",
        "maxDelay": "5m",
        "jitterPercent": 10,
        "timeout": "30s",
    },
}


def test_flow_control_and_retry_policy_pass_the_schema_the_rules_and_the_model() -> None:
    document = variant(**FLOW)
    assert structure_errors(document) == []
    assert cel_failures(schema(), document) == []
    resource = parse_function(document)
    assert resource.flow.to_json() == {k: v for k, v in FLOW.items() if k != "retryPolicy"}
    assert resource.spec.retry_policy is not None
    assert resource.spec.retry_policy.backoff == "Linear"
    batched = variant(batchEvents={"maxSize": 50, "timeout": "5s", "key": "event.data.a", "if": "true"})
    assert structure_errors(batched) == []
    assert parse_function(batched).flow.batch_events is not None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"throttle": {"limit": 1, "period": "30d"}}, "throttle.period must be at most 7d, not 30d"),
        ({"rateLimit": {"limit": 1, "period": "500ms"}}, "rateLimit.period must be at least 1s"),
        ({"debounce": {"period": "1m", "timeout": "10s"}}, "debounce.timeout must be at least 1m"),
        ({"batchEvents": {"maxSize": 5, "timeout": "5m"}}, "batchEvents.timeout must be at most 60s"),
        (
            {"retryPolicy": {"initialDelay": "1m", "maxDelay": "10s"}},
            "retryPolicy.maxDelay must be at least 1m",
        ),
    ],
    ids=["throttle-period", "rate-limit-period", "debounce-timeout", "batch-timeout", "max-below-initial"],
)
def test_bounds_the_schema_cannot_say_are_refused_by_the_model_and_the_operator(
    spec: dict[str, Any], message: str
) -> None:
    document = variant(**spec)
    assert structure_errors(document) == []
    with pytest.raises(InvalidSpec) as refused:
        check_function(document)
    assert message in refused.value.message
