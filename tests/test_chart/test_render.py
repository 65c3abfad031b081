"""The chart lints and renders with helm 3 and 4, and what it renders is valid Kubernetes for every version
it claims (Chart.yaml ``kubeVersion``), checked by kubernetes-validate --strict; each value set renders the
resources the docs promise.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.test_chart.conftest import (
    CHART,
    NAMESPACE,
    ROOT,
    VALUE_SETS,
    Helm,
    HelmFailed,
    containers,
    env_of,
    named,
    of_kind,
    pod_specs,
)

KUBERNETES_VALIDATE = Path(sys.executable).with_name("kubernetes-validate")
# Kinds outside Kubernetes itself, which kubernetes-validate has no schema for (test_foreign.py checks them
# against their own projects' models).
FOREIGN_KINDS = {
    "ServiceMonitor",
    "Cluster",
    "Pooler",
    "PrometheusRule",
    "ScaledObject",
    "TriggerAuthentication",
}


def chart_yaml() -> dict[str, Any]:
    chart: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return chart


def claimed_versions() -> tuple[str, str]:
    """The oldest and the newest Kubernetes version of Chart.yaml's kubeVersion (">=1.29.0-0 <1.38.0-0")."""
    match = re.fullmatch(r">=(\d+)\.(\d+)\.0-0 <(\d+)\.(\d+)\.0-0", chart_yaml()["kubeVersion"])
    assert match, "kubeVersion should read '>=A.B.0-0 <C.D.0-0'"
    major, minor, end_major, end_minor = map(int, match.groups())
    assert end_major == major
    return f"{major}.{minor}.0", f"{end_major}.{end_minor - 1}.0"


def test_versions_follow_the_package() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = chart_yaml()
    assert chart["appVersion"] == version
    assert chart["version"] == version
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == "", "an empty tag means appVersion: keep it so"


@pytest.mark.parametrize("helm_name", ["helm3", "helm4"])
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_lint_and_template_pass(
    value_set: str, helm_name: str, request: pytest.FixtureRequest, helm_folder: Path
) -> None:
    helm: Helm = request.getfixturevalue("helm" if helm_name == "helm4" else "helm3")
    values = VALUE_SETS[value_set]
    output = helm.run("lint", "--strict", str(CHART), "-n", NAMESPACE, values=values, folder=helm_folder)
    assert "0 chart(s) failed" in output
    assert helm.render(values, helm_folder)


def _without_generated(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents with the generated values of Secrets (random at each render) blanked."""
    for document in documents:
        if document["kind"] == "Secret":
            document["data"] = dict.fromkeys(document["data"], "")
    return documents


def test_helm_3_and_4_render_the_same(
    helm: Helm, helm3: Helm, helm_folder: Path, renders: dict[str, list[dict[str, Any]]]
) -> None:
    for name, values in VALUE_SETS.items():
        older = _without_generated(helm3.render(values, helm_folder))
        assert older == _without_generated(helm.render(values, helm_folder)), name


def test_every_manifest_is_valid_for_the_oldest_and_newest_kubernetes(
    renders: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    oldest, newest = claimed_versions()
    examples = [
        d for d in yaml.safe_load_all((ROOT / "examples" / "k8s" / "demo-service.yaml").read_text()) if d
    ]
    files = []
    for name, documents in {**renders, "demo-service": examples}.items():
        file = tmp_path / f"{name}.yaml"
        file.write_text(yaml.safe_dump_all([d for d in documents if d["kind"] not in FOREIGN_KINDS]))
        files.append(str(file))
    done = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", "-k", oldest, "-k", newest, *files],
        capture_output=True,
        text=True,
        check=False,
    )
    # A kind it has no schema for is only a warning, with exit 0: none must be left unchecked.
    assert done.returncode == 0, done.stdout + done.stderr
    assert not done.stdout.strip(), done.stdout


def test_the_claimed_versions_are_ones_kubernetes_validate_knows() -> None:
    from kubernetes_validate.utils import all_versions

    known = {version.rsplit(".", 1)[0] for version in all_versions()}
    oldest, newest = claimed_versions()
    assert {oldest.rsplit(".", 1)[0], newest.rsplit(".", 1)[0]} <= known


def test_an_unsupported_kubernetes_is_refused(helm: Helm, helm_folder: Path) -> None:
    for version in ("1.28.9", "1.38.0"):
        with pytest.raises(HelmFailed, match="kubeVersion"):
            helm.run("template", "x", str(CHART), "--kube-version", version, folder=helm_folder)


def kinds(documents: list[dict[str, Any]]) -> set[str]:
    return {f"{d['kind']}/{d['metadata']['name']}" for d in documents}


def test_the_defaults_install_everything_with_the_bundled_postgres(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    documents = renders["default"]
    assert kinds(documents) == {
        "ServiceAccount/stepline-gateway",
        "ServiceAccount/stepline-operator",
        "Secret/stepline",
        "CustomResourceDefinition/functions.stepline.dev",
        "CustomResourceDefinition/webhooks.stepline.dev",
        "ClusterRole/stepline-operator",
        "ClusterRoleBinding/stepline-operator",
        "Service/stepline-gateway",
        "Service/stepline-postgres",
        "Deployment/stepline-gateway",
        "Deployment/stepline-operator",
        "StatefulSet/stepline-postgres",
        "Job/stepline-migrate",
        "ConfigMap/stepline-test",
        "Job/stepline-test",
    }
    secret = named(documents, "Secret", "stepline")
    assert set(secret["data"]) == {
        "database-url",
        "postgres-password",
        "event-keys",
        "signing-key",
        "api-token",
        "secrets-key",
    }
    operator = named(documents, "Deployment", "stepline-operator")
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"] == {"type": "Recreate"}
    assert "STEPLINE_NAMESPACES" not in env_of(operator["spec"]["template"]["spec"]["containers"][0])
    # Cluster-scoped API token Secrets are honoured only in the release's own namespace.
    operator_env = env_of(operator["spec"]["template"]["spec"]["containers"][0])
    assert operator_env["STEPLINE_CLUSTER_TOKEN_NAMESPACE"]["value"] == NAMESPACE
    gateway = named(documents, "Deployment", "stepline-gateway")
    assert gateway["spec"]["replicas"] == 1
    [container] = gateway["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"stepline:{chart_yaml()['appVersion']}"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert not of_kind(documents, "PodDisruptionBudget")
    assert not of_kind(documents, "HorizontalPodAutoscaler")


def hook(document: dict[str, Any]) -> str:
    return str(document["metadata"].get("annotations", {}).get("helm.sh/hook", ""))


def test_migrations_run_before_the_pods_that_need_them(renders: dict[str, list[dict[str, Any]]]) -> None:
    # External database: a pre-install and pre-upgrade hook, with the URL in a Secret made just before it.
    documents = renders["namespaced"]
    job = named(documents, "Job", "stepline-migrate")
    assert hook(job) == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    secret = named(documents, "Secret", "stepline-migrate")
    assert hook(secret) == "pre-install,pre-upgrade"
    assert int(secret["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    url = env_of(job["spec"]["template"]["spec"]["containers"][0])["STEPLINE_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "stepline-migrate", "key": "database-url"}
    for _, spec in pod_specs(of_kind(documents, "Deployment")):
        assert "initContainers" not in spec
    # An existing Secret exists before the install: the Job reads it.
    job = named(renders["external-database"], "Job", "stepline-migrate")
    assert hook(job) == "pre-install,pre-upgrade"
    url = env_of(job["spec"]["template"]["spec"]["containers"][0])["STEPLINE_DATABASE_URL"]
    assert url["valueFrom"]["secretKeyRef"] == {"name": "stepline-database", "key": "url"}
    # The bundled Postgres starts after the pre-install hooks: the pods migrate then, the Job on upgrades.
    documents = renders["default"]
    assert hook(named(documents, "Job", "stepline-migrate")) == "pre-upgrade"
    for name, spec in pod_specs(of_kind(documents, "Deployment")):
        [init] = spec["initContainers"]
        assert init["args"] == ["migrate"], name


def test_external_database_and_existing_secrets(renders: dict[str, list[dict[str, Any]]]) -> None:
    documents = renders["external-database"]
    assert not of_kind(documents, "Secret")
    assert not of_kind(documents, "StatefulSet")
    gateway = env_of(
        named(documents, "Deployment", "stepline-gateway")["spec"]["template"]["spec"]["containers"][0]
    )
    assert gateway["STEPLINE_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "stepline-database",
        "key": "url",
    }
    for name in ("STEPLINE_EVENT_KEYS", "STEPLINE_SIGNING_KEY", "STEPLINE_API_TOKEN"):
        assert gateway[name]["valueFrom"]["secretKeyRef"]["name"] == "stepline-keys"


def test_namespaced_mode_watches_only_its_namespaces(renders: dict[str, list[dict[str, Any]]]) -> None:
    documents = renders["namespaced"]
    assert not of_kind(documents, "ClusterRole")
    assert not of_kind(documents, "ClusterRoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in of_kind(documents, "Role")) == ["billing", "shop"]
    bindings = of_kind(documents, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["billing", "shop"]
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "stepline-operator", "namespace": NAMESPACE}
        ]
    operator = named(documents, "Deployment", "stepline-operator")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert env_of(operator)["STEPLINE_NAMESPACES"]["value"] == "shop,billing"


def test_namespaced_mode_defaults_to_the_release_namespace(helm: Helm, helm_folder: Path) -> None:
    documents = helm.render({"operator": {"scope": "Namespaced"}}, helm_folder)
    assert [r["metadata"]["namespace"] for r in of_kind(documents, "Role")] == [NAMESPACE]
    operator = named(documents, "Deployment", "stepline-operator")["spec"]["template"]["spec"]["containers"][
        0
    ]
    assert env_of(operator)["STEPLINE_NAMESPACES"]["value"] == NAMESPACE


def test_ha_gateway_scales_with_an_autoscaler_and_a_disruption_budget(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    documents = renders["ha"]
    gateway = named(documents, "Deployment", "stepline-gateway")
    assert "replicas" not in gateway["spec"], "the autoscaler owns the replica count"
    assert gateway["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    hpa = named(documents, "HorizontalPodAutoscaler", "stepline-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "stepline-gateway",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 12)
    pdb = named(documents, "PodDisruptionBudget", "stepline-gateway")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]
    monitor = named(documents, "ServiceMonitor", "stepline-gateway")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "honorLabels": True}
    ]
    service = named(documents, "Service", "stepline-gateway")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The operator stays one replica whatever the gateway does.
    assert named(documents, "Deployment", "stepline-operator")["spec"]["replicas"] == 1


def test_a_disruption_budget_comes_with_several_fixed_replicas_too(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    documents = renders["everything"]
    assert named(documents, "Deployment", "sl-gateway")["spec"]["replicas"] == 3
    assert named(documents, "PodDisruptionBudget", "sl-gateway")["spec"]["maxUnavailable"] == 2
    assert not of_kind(documents, "HorizontalPodAutoscaler")
    assert not of_kind(documents, "CustomResourceDefinition")


def test_placement_and_extra_settings_reach_the_pods(renders: dict[str, list[dict[str, Any]]]) -> None:
    documents = renders["everything"]
    values = VALUE_SETS["everything"]["gateway"]
    spec = named(documents, "Deployment", "sl-gateway")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == values["nodeSelector"]
    assert spec["tolerations"] == values["tolerations"]
    assert spec["affinity"] == values["affinity"]
    assert spec["imagePullSecrets"] == [{"name": "registry"}]
    assert spec["serviceAccountName"] == "gw"
    assert spec["terminationGracePeriodSeconds"] == 26 + 20
    [gateway] = spec["containers"]
    env = env_of(gateway)
    assert gateway["image"] == "registry.example.com/stepline:0.1.0-rc1"
    assert env["STEPLINE_LEASE_S"] == {"name": "STEPLINE_LEASE_S", "value": "20"}
    assert env["STEPLINE_NO_API_TOKEN"]["value"] == "true"
    assert env["STEPLINE_SHUTDOWN_GRACE_S"]["value"] == "25.5"
    assert (env["STEPLINE_CONCURRENCY"]["value"], env["STEPLINE_POOL_SIZE"]["value"]) == ("256", "20")
    assert named(documents, "Secret", "sl")["data"].keys() >= {"signing-key-fallback"}
    operator = named(documents, "Deployment", "sl-operator")["spec"]["template"]["spec"]
    assert operator["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert operator["serviceAccountName"] == "op"
    assert env_of(operator["containers"][0])["STEPLINE_CLUSTER_DOMAIN"]["value"] == "cluster.example"
    service = named(documents, "Service", "sl-gateway")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert all(c["imagePullPolicy"] == "Always" for _, s in pod_specs(documents) for c in containers(s))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"database": {"url": "postgresql://db/x", "existingSecret": "db"}},
            "give one of database.url or database.existingSecret",
        ),
        ({"postgres": {"enabled": False}}, "no database: set database.url or database.existingSecret"),
        ({"operator": {"namespaces": ["shop"]}}, "operator.namespaces applies to operator.scope=Namespaced"),
        (
            {"gateway": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}},
            "maxReplicas must be at least",
        ),
        ({"auth": {"existingSecret": "keys", "apiToken": "t"}}, "auth.existingSecret holds the keys"),
        (
            {"cnpg": {"enabled": True}, "database": {"url": "postgresql://db/x"}},
            "cnpg.enabled creates the database",
        ),
    ],
    ids=[
        "two-databases",
        "no-database",
        "namespaces-in-cluster-scope",
        "max-below-min",
        "keys-twice",
        "cnpg-and-url",
    ],
)
def test_contradictory_values_fail_with_what_to_change(
    helm: Helm, helm_folder: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed, match=re.escape(message)):
        helm.template(values, helm_folder)


def test_generated_keys_have_the_shapes_the_gateway_reads(renders: dict[str, list[dict[str, Any]]]) -> None:
    import base64

    data = {
        k: base64.b64decode(v).decode()
        for k, v in named(renders["default"], "Secret", "stepline")["data"].items()
    }
    assert re.fullmatch(r"signkey-prod-[0-9a-f]{64}", data["signing-key"])
    assert re.fullmatch(r"[0-9a-f]{64}", data["event-keys"])
    assert len(data["api-token"]) >= 32
    assert (
        data["database-url"]
        == f"postgresql://stepline:{data['postgres-password']}@stepline-postgres:5432/stepline"
    )
    # Values given are used as they are.
    data = {
        k: base64.b64decode(v).decode()
        for k, v in named(renders["namespaced"], "Secret", "stepline")["data"].items()
    }
    assert data["event-keys"] == "key-one,key-two"
    assert data["api-token"] == "token"


def test_cnpg_cluster_with_pooler_and_read_replicas(renders: dict[str, list[dict[str, Any]]]) -> None:
    documents = renders["cnpg"]
    cluster = named(documents, "Cluster", "stepline-db")
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["bootstrap"] == {"initdb": {"database": "stepline", "owner": "stepline"}}
    assert cluster["spec"]["storage"] == {"size": "50Gi", "storageClass": "fast"}
    # The values' parameters, and sequential scans off as Stepline's sessions have them.
    assert cluster["spec"]["postgresql"]["parameters"] == {"enable_seqscan": "off", "max_connections": "300"}
    assert cluster["spec"]["affinity"]["additionalPodAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert cluster["spec"]["monitoring"] == {"enablePodMonitor": True}
    pooler = named(documents, "Pooler", "stepline-db-pooler-rw")
    assert pooler["spec"]["cluster"] == {"name": "stepline-db"}
    assert pooler["spec"]["pgbouncer"]["poolMode"] == "transaction"
    # PgBouncer refuses startup parameters it cannot keep per client unless told to leave them out.
    assert pooler["spec"]["pgbouncer"]["parameters"]["ignore_startup_parameters"] == "enable_seqscan"
    # No bundled Postgres, and no database URL in the release's Secret: the credentials are CNPG's.
    assert not of_kind(documents, "StatefulSet")
    assert "database-url" not in named(documents, "Secret", "stepline")["data"]
    credentials = {
        "PGUSER": {"secretKeyRef": {"name": "stepline-db-app", "key": "username"}},
        "PGPASSWORD": {"secretKeyRef": {"name": "stepline-db-app", "key": "password"}},
    }
    gateway = named(documents, "Deployment", "stepline-gateway")["spec"]["template"]["spec"]
    env = env_of(gateway["containers"][0])
    assert {name: env[name]["valueFrom"] for name in credentials} == credentials
    # The pool through PgBouncer; LISTEN on a session connection; reads from the replicas.
    assert env["STEPLINE_DATABASE_URL"]["value"] == "postgresql://stepline-db-pooler-rw:5432/stepline"
    assert env["STEPLINE_SESSION_DATABASE_URL"]["value"] == "postgresql://stepline-db-rw:5432/stepline"
    assert env["STEPLINE_READ_DATABASE_URL"]["value"] == "postgresql://stepline-db-ro:5432/stepline"
    # The operator and the migrations connect to the primary directly, with the same credentials.
    direct = "postgresql://stepline-db-rw:5432/stepline"
    for name, spec in pod_specs(documents):
        for container in containers(spec):
            env = env_of(container)
            if "STEPLINE_DATABASE_URL" in env and container["name"] != "gateway":
                assert env["STEPLINE_DATABASE_URL"]["value"] == direct, f"{name} {container['name']}"
                assert {n: env[n]["valueFrom"] for n in credentials} == credentials
    # The Cluster comes with the release: the pods migrate at install, the Job before upgrades.
    assert hook(named(documents, "Job", "stepline-migrate")) == "pre-upgrade"
    for name, spec in pod_specs(of_kind(documents, "Deployment")):
        [init] = spec["initContainers"]
        assert init["args"] == ["migrate"], name


def test_cnpg_without_pooler_or_replica_reads(helm: Helm, helm_folder: Path) -> None:
    documents = helm.render({"cnpg": {"enabled": True, "readFromReplicas": False}}, helm_folder)
    assert not of_kind(documents, "Pooler")
    env = env_of(
        named(documents, "Deployment", "stepline-gateway")["spec"]["template"]["spec"]["containers"][0]
    )
    assert env["STEPLINE_DATABASE_URL"]["value"] == "postgresql://stepline-db-rw:5432/stepline"
    assert "STEPLINE_SESSION_DATABASE_URL" not in env
    assert "STEPLINE_READ_DATABASE_URL" not in env
