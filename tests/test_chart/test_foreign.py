"""The custom resources the chart renders for other operators are valid for those operators.

CloudNativePG's ``Cluster`` and ``Pooler``, the Prometheus Operator's ``ServiceMonitor`` and
``PrometheusRule`` and KEDA's ``ScaledObject`` and ``TriggerAuthentication`` are checked with the npm
packages ``@kubernetes-models/cloudnative-pg``, ``@kubernetes-models/prometheus-operator`` and
``@kubernetes-models/keda``
(generated from those projects' CRDs and Go types): values against their JSON schemas, field names against
their TypeScript declarations (tests/test_chart/foreign_schemas/validate.js).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from tests.test_chart.conftest import ROOT
from tests.test_chart.test_render import FOREIGN_KINDS

VALIDATOR = ROOT / "tests" / "test_chart" / "foreign_schemas"


def check(objects: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    node = shutil.which("node")
    assert node, "Node.js is needed: scripts/test installs what these tests use"
    assert (VALIDATOR / "node_modules").is_dir(), "run `npm ci` in tests/test_chart/foreign_schemas"
    return subprocess.run(
        [node, str(VALIDATOR / "validate.js")],
        input=json.dumps(objects),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_every_foreign_resource_rendered_is_valid(renders: dict[str, list[dict[str, Any]]]) -> None:
    objects = [d for documents in renders.values() for d in documents if d["kind"] in FOREIGN_KINDS]
    assert {d["kind"] for d in objects} == FOREIGN_KINDS, "every foreign kind is rendered by some value set"
    done = check(objects)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("broken", "problem"),
    [
        ({"instances": "three"}, "instances must be integer"),
        ({"storage": {"size": "1Gi", "storageClassName": "fast"}}, "'\"storageClassName\"' does not exist"),
    ],
    ids=["wrong-type", "misspelt-field"],
)
def test_the_check_refuses_what_the_operator_would(
    renders: dict[str, list[dict[str, Any]]], broken: dict[str, Any], problem: str
) -> None:
    [cluster] = [d for d in renders["cnpg"] if d["kind"] == "Cluster"]
    done = check([{**cluster, "spec": {**cluster["spec"], **broken}}])
    assert done.returncode == 1
    assert problem in done.stdout, done.stdout
