"""Fixtures for the chart tests: real helm binaries (3 and 4) and the chart rendered for each value set.

scripts/fetch-helm puts the binaries in .tools/ when they are missing. ``Chart.render`` runs
``helm template`` and answers the documents; renders of the value sets below are made once per session.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[2]
CHART = ROOT / "helm" / "stepline"
RELEASE = "stepline"
NAMESPACE = "stepline"
SIGNING_KEY = "signkey-prod-" + "5e" * 32

# The value sets every test renders: the defaults and the installations the docs describe.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "default": {},
    # External database and keys from Secrets made beforehand: the chart makes no Secret and no Postgres.
    "external-database": {
        "database": {"existingSecret": "stepline-database", "existingSecretKey": "url"},
        "auth": {"existingSecret": "stepline-keys"},
    },
    "namespaced": {
        "operator": {"scope": "Namespaced", "namespaces": ["shop", "billing"]},
        "database": {"url": "postgresql://stepline:secret@db.example.com:5432/stepline"},
        "auth": {"eventKeys": ["key-one", "key-two"], "signingKey": SIGNING_KEY, "apiToken": "token"},
    },
    "ha": {
        "database": {"url": "postgresql://stepline:secret@db.example.com:5432/stepline"},
        "gateway": {"autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 12}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    },
    # A CloudNativePG Cluster with a PgBouncer Pooler, read replicas and the Prometheus Operator's monitors.
    "cnpg": {
        "cnpg": {
            "enabled": True,
            "instances": 3,
            "imageName": "ghcr.io/cloudnative-pg/postgresql:18",
            "storage": {"size": "50Gi", "storageClassName": "fast"},
            "parameters": {"max_connections": "300"},
            "pooler": {"enabled": True, "instances": 3, "defaultPoolSize": 40},
            "tolerations": [{"key": "db", "operator": "Exists", "effect": "NoSchedule"}],
            "affinity": {
                "podAntiAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "topologyKey": "topology.kubernetes.io/zone",
                            "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "postgres"}},
                        }
                    ]
                }
            },
        },
        "serviceMonitor": {"enabled": True},
        "imagePullSecrets": [{"name": "registry"}],
    },
    # Monitoring and autoscaling: KEDA scales the gateway on its queue, alerts and a Grafana dashboard.
    "observability": {
        "database": {"url": "postgresql://stepline:secret@db.example.com:5432/stepline"},
        "gateway": {"keda": {"enabled": True, "minReplicas": 2, "maxReplicas": 8, "callsDuePerReplica": 50}},
        "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}, "queueAgeSeconds": 120},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Stepline"}},
    },
    # Every other option at once, so that each branch of the templates is rendered and validated.
    "everything": {
        "fullnameOverride": "sl",
        "image": {"repository": "registry.example.com/stepline", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "registry"}],
        "crds": {"enabled": False},
        "database": {"url": "postgres://stepline:secret@db:5432/stepline"},
        "auth": {
            "eventKeys": ["k1"],
            "signingKey": SIGNING_KEY,
            "signingKeyFallback": "signkey-prod-" + "a1" * 32,
            "noApiToken": True,
        },
        "gateway": {
            "replicas": 3,
            "concurrency": 256,
            "poolSize": 20,
            "retentionHours": 72,
            "shutdownGraceSeconds": 25.5,
            "extraEnv": [
                {"name": "STEPLINE_LEASE_S", "value": "20"},
                {"name": "HTTP_PROXY", "valueFrom": {"secretKeyRef": {"name": "proxy", "key": "url"}}},
            ],
            "podAnnotations": {"example.com/team": "platform"},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "stepline", "effect": "NoSchedule"}
            ],
            "affinity": {
                "podAntiAffinity": {
                    "preferredDuringSchedulingIgnoredDuringExecution": [
                        {
                            "weight": 100,
                            "podAffinityTerm": {
                                "topologyKey": "kubernetes.io/hostname",
                                "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "gateway"}},
                            },
                        }
                    ]
                }
            },
            "service": {"type": "LoadBalancer", "port": 80, "annotations": {"example.com/lb": "internal"}},
            "podDisruptionBudget": {"maxUnavailable": 2},
        },
        "operator": {
            "clusterDomain": "cluster.example",
            "extraEnv": [{"name": "STEPLINE_SERVICE_RETRY_S", "value": "10"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
        "webhookIngress": {
            "enabled": True,
            "className": "nginx",
            "host": "hooks.example.com",
            "annotations": {"example.com/limit": "10r/s"},
            "tls": {"secretName": "hooks-tls"},
        },
        "serviceAccount": {
            "annotations": {"example.com/role": "stepline"},
            "gatewayName": "gw",
            "operatorName": "op",
        },
        "migrations": {"backoffLimit": 2},
        "tests": {"timeoutSeconds": 60},
    },
}


class HelmFailed(Exception):
    """helm exited non-zero; the message is its stderr."""


@dataclass
class Helm:
    """One helm binary, run on the chart."""

    binary: Path

    def run(self, *args: str, values: dict[str, Any] | None = None, folder: Path) -> str:
        command = [str(self.binary), *args]
        if values is not None:
            file = folder / f"values-{uuid.uuid4().hex}.yaml"
            file.write_text(yaml.safe_dump(values))
            command += ["-f", str(file)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise HelmFailed(done.stderr.strip())
        return done.stdout

    def template(self, values: dict[str, Any], folder: Path) -> str:
        return self.run("template", RELEASE, str(CHART), "-n", NAMESPACE, values=values, folder=folder)

    def render(self, values: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
        return [d for d in yaml.safe_load_all(self.template(values, folder)) if d]


def _helm(name: str) -> Path:
    binary = ROOT / ".tools" / name / "helm"
    if not binary.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch-helm"), name], check=True)
    return binary


@pytest.fixture(scope="session")
def helm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


@pytest.fixture(scope="session")
def helm() -> Helm:
    """helm 4, the newest."""
    return Helm(_helm("helm4"))


@pytest.fixture(scope="session")
def helm3() -> Helm:
    return Helm(_helm("helm3"))


@pytest.fixture(scope="session")
def renders(helm: Helm, helm_folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Each value set's documents, rendered by helm 4."""
    return {name: helm.render(values, helm_folder) for name, values in VALUE_SETS.items()}


def of_kind(documents: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in documents if d["kind"] == kind]


def named(documents: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [document] = [d for d in of_kind(documents, kind) if d["metadata"]["name"] == name]
    return document


def pod_specs(documents: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(kind/name, pod spec) of every workload."""
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in documents
        if d["kind"] in ("Deployment", "StatefulSet", "Job", "DaemonSet")
    ]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}
