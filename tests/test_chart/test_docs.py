"""What surrounds the chart: the generated tables of docs/operations.md, the release notes, the Dockerfile
(hadolint) and the kind set-up that the README points to.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import subprocess
import sys
import types
from pathlib import Path

import yaml

from tests.test_chart.conftest import CHART, NAMESPACE, RELEASE, ROOT, Helm

HADOLINT = Path(sys.executable).with_name("hadolint")


def generator() -> types.ModuleType:
    """scripts/generate-operations-doc, imported (its name has no .py)."""
    path = ROOT / "scripts" / "generate-operations-doc"
    loader = importlib.machinery.SourceFileLoader("generate_operations_doc", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_the_tables_of_operations_md_are_up_to_date() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    assert generator().document(text) == text, (
        "docs/operations.md is out of date: run scripts/generate-operations-doc"
    )


def test_the_values_table_names_every_key() -> None:
    rows = generator().values_table()
    keys = {row.split("`", 2)[1] for row in rows[2:]}
    assert {
        "database.existingSecret",
        "gateway.autoscaling.enabled",
        "operator.scope",
        "postgres.enabled",
    } <= keys
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(value: object, path: str) -> set[str]:
        if isinstance(value, dict) and value:
            found: set[str] = set()
            for key, sub in value.items():
                found |= leaves(sub, f"{path}.{key}" if path else key)
            return found
        return {path}

    documented = {key for key in leaves(values, "") if not any(key.startswith(k + ".") for k in keys)}
    assert documented <= keys


def test_the_release_notes_tell_how_to_send_a_first_event(helm: Helm, helm_folder: Path) -> None:
    output = helm.run(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client", values={}, folder=helm_folder
    )
    notes = output.split("NOTES:", 1)[1]
    assert "helm test stepline -n stepline" in notes
    assert "port-forward svc/stepline-gateway 8288:8288" in notes
    assert "jsonpath='{.data.event-keys}'" in notes
    assert 'POST "http://127.0.0.1:8288/e/$EVENT_KEY"' in notes
    existing = helm.run(
        "install", RELEASE, str(CHART), "-n", NAMESPACE, "--dry-run=client",
        values={"auth": {"existingSecret": "keys"}, "database": {"existingSecret": "db"}}, folder=helm_folder,
    )  # fmt: skip
    assert "get secret keys -o jsonpath='{.data.event-keys}'" in existing


def test_the_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [str(HADOLINT), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_image_runs_stepline_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    final = stages[-1]
    assert final.startswith("base AS stepline"), "the chart's image is the default (last) target"
    assert 'ENTRYPOINT ["stepline"]' in final
    assert "USER 10001:10001" in final
    assert "COPY --from=build " in final
    # Only the build stage installs: the final images get no compilers and no pip.
    assert all(
        "pip install" not in stage for stage in stages if not stage.startswith("${PYTHON_IMAGE} AS build")
    )
    assert "pip uninstall" in next(stage for stage in stages if stage.startswith("${PYTHON_IMAGE} AS base"))


def test_the_kind_setup_is_what_the_readme_describes() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    script = (ROOT / "scripts" / "kind-up").read_text()
    for step in ("kind create cluster", "docker build", "kind load docker-image", "helm upgrade --install",
                 "examples/k8s/demo-service.yaml", "examples/k8s/functions.yaml", "/v1/runs"):  # fmt: skip
        assert step in script, step
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## On Kubernetes", 1)[1].split("\n## ", 1)[0]
    for need in ("Docker", "kind", "helm", "kubectl", "scripts/kind-up", "docs/operations.md"):
        assert need in section, need
