"""The operator's pure parts: spec checks, endpoint resolution, conditions, settings and its command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from stepline.manifest import parse_function
from stepline_cli.main import main
from stepline_gateway.registry import function_from_resource
from stepline_operator import OperatorSettings
from stepline_operator.checks import check_function
from stepline_operator.conditions import Verdict, merge
from stepline_operator.endpoints import ServiceInfo, resolve_endpoint
from stepline_operator.errors import EndpointUnresolved, InvalidSpec

EXAMPLES = Path(__file__).parents[2] / "examples" / "k8s" / "functions.yaml"


def functions() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(EXAMPLES.read_text()) if d and d["kind"] == "Function"]


@pytest.mark.parametrize("document", functions(), ids=lambda d: d["metadata"]["name"])
def test_the_route_matches_what_the_gateway_makes_of_the_same_resource(document: dict[str, Any]) -> None:
    checked = check_function(document)
    gateway = function_from_resource(parse_function(document), "http://x/api", "kubernetes:shop/x")
    assert checked.resource.full_id == gateway.id
    assert checked.triggers == gateway.triggers
    assert checked.cancel_on == gateway.cancel_on


def service(*ports: dict[str, Any], headless: bool = False) -> ServiceInfo:
    spec: dict[str, Any] = {"ports": list(ports)}
    if headless:
        spec["clusterIP"] = "None"
    return ServiceInfo.from_body({"metadata": {"name": "shop-api", "namespace": "shop"}, "spec": spec})


def resource(port: int | str) -> Any:
    document = functions()[0]
    document["spec"]["endpoint"] = {"serviceRef": {"name": "shop-api", "port": port}, "path": "/api/x"}
    return parse_function(document)


@pytest.mark.parametrize(
    ("port", "svc", "url"),
    [
        ("http", service({"name": "http", "port": 80, "targetPort": 8000}), "http://shop-api.shop.svc.k8s:80/api/x"),
        (80, service({"name": "http", "port": 80}), "http://shop-api.shop.svc.k8s:80/api/x"),
        ("http", service({"name": "http", "port": 80, "targetPort": 8000}, headless=True), "http://shop-api.shop.svc.k8s:8000/api/x"),
    ],
    ids=["by-name", "by-number", "headless-uses-the-target-port"],
)  # fmt: skip
def test_service_ports_resolve(port: int | str, svc: ServiceInfo, url: str) -> None:
    assert resolve_endpoint(resource(port), svc, cluster_domain="k8s").url == url


def test_a_missing_service_or_port_is_unresolved_with_what_to_fix() -> None:
    with pytest.raises(EndpointUnresolved) as missing:
        resolve_endpoint(resource("http"), None, cluster_domain="cluster.local")
    assert missing.value.reason == "ServiceNotFound"
    assert "Service shop-api not found in namespace shop" in missing.value.message
    with pytest.raises(EndpointUnresolved) as port:
        resolve_endpoint(
            resource("grpc"), service({"name": "http", "port": 80}), cluster_domain="cluster.local"
        )
    assert port.value.reason == "PortNotFound"
    assert "has no port named 'grpc' (it has http (80))" in port.value.message


@pytest.mark.parametrize(
    ("trigger", "reason", "text"),
    [
        ({"event": "a/b", "if": "event.data.x >"}, "InvalidExpression", "spec.triggers[0].if"),
        ({"cron": "0 8 * * *", "timezone": "Mars/Olympus"}, "UnknownTimeZone", "Mars/Olympus"),
        ({"cron": "TZ=Nowhere/Place 0 8 * * *"}, "UnknownTimeZone", "Nowhere/Place"),
        ({"cron": "0 25 * * *"}, "InvalidSchedule", "'0 25 * * *'"),
    ],
)
def test_what_only_the_operator_checks(trigger: dict[str, Any], reason: str, text: str) -> None:
    document = functions()[0]
    document["spec"]["triggers"] = [trigger]
    with pytest.raises(InvalidSpec) as refused:
        check_function(document)
    assert refused.value.reason == reason
    assert text in refused.value.message


def test_a_cancel_rule_with_a_bad_match_is_refused() -> None:
    document = functions()[0]
    document["spec"]["cancelOn"] = [{"event": "order/cancelled", "match": "data..id"}]
    with pytest.raises(InvalidSpec) as refused:
        check_function(document)
    assert "spec.cancelOn[0].match" in refused.value.message


def test_a_condition_keeps_its_transition_time_while_its_status_stays() -> None:
    first = merge([], [Verdict("Ready", False, "ServiceNotFound", "no Service")], generation=1)
    again = merge(first, [Verdict("Ready", False, "PortNotFound", "no port")], generation=2)
    assert again[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert (again[0]["reason"], again[0]["observedGeneration"]) == ("PortNotFound", 2)
    flipped = merge(
        [{**again[0], "lastTransitionTime": "2020-01-01T00:00:00Z"}],
        [Verdict("Ready", True, "Routed", "ok")],
        generation=2,
    )
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"  # fmt: skip


def test_settings_come_from_the_environment_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "STEPLINE_DATABASE_URL": "postgresql://db/stepline",
        "STEPLINE_NAMESPACES": "shop, billing",
        "STEPLINE_CLUSTER_DOMAIN": "corp.internal",
        "STEPLINE_LIVENESS": "0.0.0.0:8080",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = OperatorSettings.from_env(cluster_domain="cluster.local")
    assert settings.namespaces == ("shop", "billing")
    assert not settings.clusterwide
    assert settings.cluster_domain == "cluster.local"
    assert settings.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    monkeypatch.delenv("STEPLINE_NAMESPACES")
    assert OperatorSettings.from_env().clusterwide
    with pytest.raises(ValueError, match="host:port"):
        OperatorSettings(liveness="8080")


def test_the_operator_command_fails_in_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STEPLINE_DATABASE_URL", raising=False)
    with pytest.raises(SystemExit):
        main(["operator"])
    assert (
        capsys.readouterr().err
        == "stepline: error: no database: give --database-url or set STEPLINE_DATABASE_URL\n"
    )
    with pytest.raises(SystemExit):
        main(
            [
                "operator",
                "--database-url",
                "postgresql://stepline@127.0.0.1:1/stepline",
                "--namespace",
                "shop",
            ]
        )
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("stepline: error: cannot connect to the database:")
