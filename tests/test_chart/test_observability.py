"""Monitoring and autoscaling in the chart, all off by default: KEDA's ScaledObject (and the
TriggerAuthentication that gives it the API token) scales the gateway on the calls due; a PrometheusRule of
a few alerts; a Grafana dashboard as a ConfigMap for the sidecar. Their queries use only the series of
docs/metrics.md, and the ScaledObject of docs/autoscaling.md is valid for KEDA."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_chart.conftest import NAMESPACE, VALUE_SETS, Helm, HelmFailed, named, of_kind
from tests.test_chart.test_foreign import check
from tests.test_gateway.test_metrics_contract import documented

ROOT = Path(__file__).parents[2]
ADDED = ("ScaledObject", "TriggerAuthentication", "PrometheusRule")


def dashboards(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in of_kind(documents, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


@pytest.mark.parametrize("value_set", [name for name in VALUE_SETS if name != "observability"])
def test_nothing_of_it_is_rendered_unless_enabled(
    renders: dict[str, list[dict[str, Any]]], value_set: str
) -> None:
    documents = renders[value_set]
    assert [d["kind"] for d in documents if d["kind"] in ADDED] == []
    assert dashboards(documents) == []


def test_keda_scales_the_gateway_on_the_calls_due_with_the_api_token(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    documents = renders["observability"]
    scaled = named(documents, "ScaledObject", "stepline-gateway")
    spec = scaled["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "stepline-gateway",
    }
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 8)
    [trigger] = spec["triggers"]
    assert trigger["type"] == "metrics-api"
    assert trigger["metricType"] == "AverageValue"
    service = named(documents, "Service", "stepline-gateway")
    port = service["spec"]["ports"][0]["port"]
    assert trigger["metadata"] == {
        "url": f"http://stepline-gateway.{NAMESPACE}.svc.cluster.local:{port}/v1/queue",
        "valueLocation": "calls_due",
        "targetValue": "50",
        "authMode": "bearer",
    }
    auth = named(documents, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    secret = named(documents, "Secret", "stepline")
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "token", "name": "stepline", "key": "api-token"}]
    assert "api-token" in secret["data"]
    # KEDA owns the replica count: the Deployment has none, and there is no HorizontalPodAutoscaler of ours.
    assert "replicas" not in named(documents, "Deployment", "stepline-gateway")["spec"]
    assert of_kind(documents, "HorizontalPodAutoscaler") == []
    assert named(documents, "PodDisruptionBudget", "stepline-gateway")


def test_without_an_api_token_keda_sends_none(helm: Helm, helm_folder: Path) -> None:
    values = {**VALUE_SETS["observability"], "auth": {"noApiToken": True}}
    documents = helm.render(values, helm_folder)
    [trigger] = named(documents, "ScaledObject", "stepline-gateway")["spec"]["triggers"]
    assert "authMode" not in trigger["metadata"]
    assert "authenticationRef" not in trigger
    assert of_kind(documents, "TriggerAuthentication") == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"keda": {"enabled": True}, "autoscaling": {"enabled": True}}, "enable one of them"),
        ({"keda": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}, "maxReplicas must be at least"),
    ],
    ids=["both-autoscalers", "max-below-min"],
)
def test_contradictory_scaling_is_refused(
    helm: Helm, helm_folder: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed, match=message):
        helm.render({**VALUE_SETS["observability"], "gateway": values}, helm_folder)


def _metric_names(expression: str) -> set[str]:
    names = set(re.findall(r"\b(stepline_[a-z_]+|kube_[a-z_]+)\b", expression))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def test_alerts_and_dashboard_use_only_documented_series(renders: dict[str, list[dict[str, Any]]]) -> None:
    documents = renders["observability"]
    known = set(documented())
    rule = named(documents, "PrometheusRule", "stepline")
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert {"SteplineFunctionFailing", "SteplineQueueBacklog", "SteplineGatewayReplicasNotReady"} <= set(
        alerts
    )
    assert "> 120" in alerts["SteplineQueueBacklog"]["expr"]
    assert 'deployment="stepline-gateway"' in alerts["SteplineGatewayReplicasNotReady"]["expr"]
    used = set()
    for alert in alerts.values():
        used |= _metric_names(alert["expr"])
    [config] = dashboards(documents)
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "Stepline"}
    dashboard = json.loads(config["data"]["stepline.json"])
    assert dashboard["uid"] == "stepline"
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(exprs) >= 10
    for expr in exprs:
        used |= _metric_names(expr)
    stepline = {name for name in used if name.startswith("stepline_")}
    assert stepline - known == set(), "every series queried is in docs/metrics.md"
    assert {"stepline_runs_finished_total", "stepline_oldest_due_call_age_seconds"} <= stepline
    assert {name for name in used if not name.startswith("stepline_")} == {
        "kube_deployment_status_replicas_available",
        "kube_deployment_spec_replicas",
    }


def test_the_scaled_object_of_the_docs_is_valid_for_keda() -> None:
    text = (ROOT / "docs" / "autoscaling.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "kind:" in b]
    objects = [d for block in blocks for d in yaml.safe_load_all(block) if d]
    keda = [o for o in objects if o["apiVersion"].startswith("keda.sh/")]
    assert {o["kind"] for o in keda} == {"ScaledObject", "TriggerAuthentication"}
    [scaled] = [o for o in keda if o["kind"] == "ScaledObject"]
    assert "/v1/queue?function=" in scaled["spec"]["triggers"][0]["metadata"]["url"]
    done = check(keda)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = {**scaled, "spec": {**scaled["spec"], "minReplicaCount": "one"}}
    assert check([broken]).returncode == 1
