"""The chart and the code agree: the commands the pods run parse, every STEPLINE_* variable they set is a
setting the process reads, every Secret key they need is in the Secret, and probes hit routes that exist.
"""

from __future__ import annotations

from typing import Any

import pytest
from stepline_cli.main import build_parser
from stepline_gateway.api import routes
from stepline_gateway.settings import Settings
from stepline_operator import OperatorSettings

from tests.test_chart.conftest import CHART, VALUE_SETS, containers, env_of, of_kind, pod_specs

GATEWAY_VARIABLES = {f"STEPLINE_{name.upper()}" for name in Settings.model_fields}
OPERATOR_VARIABLES = {f"STEPLINE_{name.upper()}" for name in OperatorSettings.model_fields}
HELM_TEST = (CHART / "files" / "helm_test.py").read_text()


def stepline_containers(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{workload} {c['name']}", c)
        for workload, spec in pod_specs(documents)
        for c in containers(spec)
        if not c["image"].startswith("postgres:")
    ]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_commands_parse_and_variables_are_read(
    value_set: str, renders: dict[str, list[dict[str, Any]]]
) -> None:
    for where, container in stepline_containers(renders[value_set]):
        names = {name for name in env_of(container) if name.startswith("STEPLINE_")}
        if "command" in container:  # the helm test's script
            assert container["command"] == ["python", "/test/helm_test.py"], where
            assert all(name in HELM_TEST for name in names), where
            continue
        command = container["args"][0]
        build_parser().parse_args(container["args"])
        known = {
            "gateway": GATEWAY_VARIABLES,
            "operator": OPERATOR_VARIABLES,
            "migrate": {"STEPLINE_DATABASE_URL"},
        }
        assert names <= known[command], f"{where}: {names - known[command]} are read by no one"


@pytest.mark.parametrize("value_set", [n for n, v in VALUE_SETS.items() if "existingSecret" not in str(v)])
def test_every_secret_key_referenced_is_in_the_secret(
    value_set: str, renders: dict[str, list[dict[str, Any]]]
) -> None:
    documents = renders[value_set]
    secrets = {d["metadata"]["name"]: set(d["data"]) for d in of_kind(documents, "Secret")}
    # The Secret CloudNativePG makes for a Cluster's application user (its documented keys).
    for cluster in of_kind(documents, "Cluster"):
        app = f"{cluster['metadata']['name']}-app"
        secrets[app] = {"username", "password", "host", "port", "dbname", "uri"}
    for workload, spec in pod_specs(documents):
        for container in containers(spec):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref is None or ref.get("optional") or ref["name"] == "proxy":
                    continue
                assert ref["key"] in secrets.get(ref["name"], set()), f"{workload}: {variable['name']}"


def test_probes_hit_what_the_processes_serve(
    renders: dict[str, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    documents = renders["default"]
    paths = {route.path for route in routes()}
    gateway, operator = (
        next(
            c
            for _, s in pod_specs(of_kind(documents, "Deployment"))
            for c in s["containers"]
            if c["name"] == name
        )
        for name in ("gateway", "operator")
    )
    ports = {p["name"]: p["containerPort"] for p in gateway["ports"]}
    for name, variable in env_of(gateway).items():
        if "value" in variable:
            monkeypatch.setenv(name, variable["value"])
    settings = Settings.from_env()
    assert ports["http"] == settings.port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert gateway[probe]["httpGet"]["path"] in paths
        assert gateway[probe]["httpGet"]["port"] == "http"
    for name, variable in env_of(operator).items():
        if "value" in variable:
            monkeypatch.setenv(name, variable["value"])
    operator_settings = OperatorSettings.from_env(database_url="postgresql://x")
    port = {p["name"]: p["containerPort"] for p in operator["ports"]}[
        operator["livenessProbe"]["httpGet"]["port"]
    ]
    assert (
        operator_settings.liveness_endpoint
        == f"http://0.0.0.0:{port}{operator['livenessProbe']['httpGet']['path']}"
    )
