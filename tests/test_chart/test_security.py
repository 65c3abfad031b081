"""Least privilege: restricted pods everywhere, RBAC no wider than a written list, values checked strictly.

The list of what the operator may do is written here and in docs/operator.md; both must agree with the
chart. Every container of every value set runs as the restricted Pod Security Standard requires.
"""

from __future__ import annotations

import json
import re
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
    of_kind,
    pod_specs,
)

# What the operator may do, and nothing more: (API group, resource, verb).
NAMESPACED_GRANTS = {
    *{("stepline.dev", "functions", verb) for verb in ("get", "list", "watch", "patch", "update")},
    *{("stepline.dev", "functions/status", verb) for verb in ("get", "patch", "update")},
    *{("stepline.dev", "webhooks", verb) for verb in ("get", "list", "watch", "patch", "update")},
    *{("stepline.dev", "webhooks/status", verb) for verb in ("get", "patch", "update")},
    *{("", "services", verb) for verb in ("get", "list", "watch")},
    # The Secrets that Webhooks name, read one by one; list and watch for the namespaces' event keys (the
    # Secrets labelled stepline.dev/event-key=true), in the watched namespaces only (a Role in each).
    *{("", "secrets", verb) for verb in ("get", "list", "watch")},
    ("", "events", "create"),
    ("events.k8s.io", "events", "create"),
}
# Cluster-wide, kopf also follows namespaces and CRDs as they appear.
CLUSTER_GRANTS = {
    *NAMESPACED_GRANTS,
    ("", "namespaces", "list"),
    ("", "namespaces", "watch"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
    ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
}


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    result = set()
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"no resourceNames or URLs expected: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), rule
                    result.add((group, resource, verb))
    return result


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_container_is_restricted(value_set: str, renders: dict[str, list[dict[str, Any]]]) -> None:
    for workload, spec in pod_specs(renders[value_set]):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, workload
        assert pod["runAsUser"] > 0, workload
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, workload
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(spec), workload
        for volume in spec.get("volumes", []):
            assert set(volume) & {"emptyDir", "configMap", "secret", "persistentVolumeClaim"}, volume
        for container in containers(spec):
            where = f"{workload} {container['name']}"
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["readOnlyRootFilesystem"] is True, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            assert "privileged" not in security, where
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: a read-only root needs a writable /tmp"
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"]["memory"], where


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_rbac_grants_nothing_beyond_the_written_list(
    value_set: str, renders: dict[str, list[dict[str, Any]]]
) -> None:
    documents = renders[value_set]
    namespaced = VALUE_SETS[value_set].get("operator", {}).get("scope") == "Namespaced"
    roles = of_kind(documents, "Role" if namespaced else "ClusterRole")
    assert roles
    assert not of_kind(documents, "ClusterRole" if namespaced else "Role")
    for role in roles:
        assert grants(role) == (NAMESPACED_GRANTS if namespaced else CLUSTER_GRANTS)
    operator_account = next(
        d["spec"]["template"]["spec"]["serviceAccountName"]
        for d in of_kind(documents, "Deployment")
        if d["metadata"]["name"].endswith("-operator")
    )
    for binding in of_kind(documents, "RoleBinding") + of_kind(documents, "ClusterRoleBinding"):
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": operator_account, "namespace": NAMESPACE}
        ]
        assert binding["roleRef"]["name"] in {r["metadata"]["name"] for r in roles}
    # Nothing else talks to the API server: the other pods get no token at all.
    for workload, spec in pod_specs(documents):
        if spec.get("serviceAccountName") != operator_account:
            assert spec["automountServiceAccountToken"] is False, workload


def test_docs_list_the_same_rules() -> None:
    text = (ROOT / "docs" / "operator.md").read_text()
    block = re.search(r"```yaml\nrules:\n(.*?)```", text, re.S)
    assert block, "docs/operator.md should show the Role's rules in a yaml block"
    assert grants(yaml.safe_load("rules:\n" + block.group(1))) == NAMESPACED_GRANTS


def test_rbac_can_be_left_to_the_cluster_admin(helm: Helm, helm_folder: Path) -> None:
    documents = helm.render({"rbac": {"create": False}, "serviceAccount": {"create": False}}, helm_folder)
    assert not {d["kind"] for d in documents} & {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"}
    assert not of_kind(documents, "ServiceAccount")


# Objects whose keys are Kubernetes' own, passed through to the pod spec and validated after rendering.
PASS_THROUGH = {".global", ".definitions.affinity.nodeAffinity", ".definitions.affinity.podAffinity",
                ".definitions.affinity.podAntiAffinity"}  # fmt: skip


def _objects(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)] if node.get("type") == "object" else []
    for name, sub in {**node.get("properties", {}), **node.get("definitions", {})}.items():
        prefix = ".definitions" if name in node.get("definitions", {}) else ""
        found += _objects(sub, f"{path}{prefix}.{name}")
    if isinstance(node.get("items"), dict):
        found += _objects(node["items"], f"{path}[]")
    return found


def test_the_schema_closes_every_object() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for path, node in _objects(schema):
        if path in PASS_THROUGH:
            continue
        closed = node.get("additionalProperties")
        # Either no unknown key at all, or a map whose values are typed (labels, annotations, selectors).
        assert closed is False or (isinstance(closed, dict) and closed.get("type") == "string"), path
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def described(node: dict[str, Any], value: Any, path: str) -> None:
        if isinstance(value, dict) and "properties" in node:
            for key, sub_value in value.items():
                assert key in node["properties"], f"{path}.{key} is in values.yaml but not in the schema"
                described(node["properties"][key], sub_value, f"{path}.{key}")

    described(schema, values, "")


@pytest.mark.parametrize(
    "values",
    [
        {"replicas": 3},
        {"gateway": {"replicass": 3}},
        {"gateway": {"autoscaling": {"enable": True}}},
        {"gateway": {"resources": {"requests": {"gpu": 1}}}},
        {"postgres": {"storage": {"class": "fast"}}},
        {"gateway": {"tolerations": [{"key": "a", "effects": "NoSchedule"}]}},
        {"operator": {"extraEnv": [{"name": "A", "valu": "1"}]}},
    ],
    ids=["top", "gateway", "autoscaling", "resources", "storage", "toleration", "env"],
)
def test_unknown_values_keys_are_refused(
    helm: Helm, helm3: Helm, helm_folder: Path, values: dict[str, Any]
) -> None:
    for binary in (helm, helm3):
        with pytest.raises(HelmFailed, match=r"(?i)additional propert"):
            binary.template(values, helm_folder)


@pytest.mark.parametrize(
    "values",
    [
        {"operator": {"scope": "Everywhere"}},
        {"gateway": {"replicas": 0}},
        {"gateway": {"retentionHours": 12}},
        {"auth": {"signingKey": "not-hex"}},
        {"auth": {"eventKeys": ["a,b"]}},
        {"database": {"url": "mysql://db"}},
    ],
    ids=["scope", "replicas", "retention", "signing-key", "event-key-comma", "database-scheme"],
)
def test_wrong_values_are_refused(helm: Helm, helm_folder: Path, values: dict[str, Any]) -> None:
    with pytest.raises(HelmFailed, match="schema"):
        helm.template(values, helm_folder)
