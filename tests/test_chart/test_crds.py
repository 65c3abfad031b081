"""The chart's CRDs are crds/ byte for byte and kept on uninstall; the example Functions fit their schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.test_chart.conftest import CHART, ROOT, Helm, of_kind

CRDS = ["functions.stepline.dev.yaml", "webhooks.stepline.dev.yaml"]


@pytest.mark.parametrize("crd", CRDS)
def test_the_chart_carries_the_same_bytes_as_crds(crd: str) -> None:
    assert (CHART / "files" / "crds" / crd).read_bytes() == (ROOT / "crds" / crd).read_bytes(), (
        f"the chart's {crd} drifted from crds/: run scripts/generate-crds"
    )
    assert sorted(p.name for p in (CHART / "files" / "crds").iterdir()) == sorted(
        p.name for p in (ROOT / "crds").iterdir()
    )


@pytest.mark.parametrize("crd", CRDS)
def test_the_rendered_crd_is_the_file_kept_on_uninstall(
    crd: str, renders: dict[str, list[dict[str, Any]]]
) -> None:
    source = yaml.safe_load((ROOT / "crds" / crd).read_text())
    [rendered] = [
        d
        for d in of_kind(renders["default"], "CustomResourceDefinition")
        if d["metadata"]["name"] == source["metadata"]["name"]
    ]
    metadata = rendered["metadata"]
    assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert metadata["labels"].items() >= source["metadata"]["labels"].items()
    assert {**rendered, "metadata": {}} == {**source, "metadata": {}}


def test_crds_can_be_left_out(helm: Helm, helm_folder: Path) -> None:
    assert not of_kind(helm.render({"crds": {"enabled": False}}, helm_folder), "CustomResourceDefinition")


def _schema(renders: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    [crd] = [
        d
        for d in of_kind(renders["default"], "CustomResourceDefinition")
        if d["metadata"]["name"] == "functions.stepline.dev"
    ]
    [version] = crd["spec"]["versions"]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


def _examples() -> list[dict[str, Any]]:
    documents = []
    for file in sorted((ROOT / "examples" / "k8s").glob("*.yaml")):
        documents += [d for d in yaml.safe_load_all(file.read_text()) if d and d["kind"] == "Function"]
    return documents


@pytest.mark.parametrize("function", _examples(), ids=lambda d: d["metadata"]["name"])
def test_the_example_functions_fit_the_installed_schema(
    function: dict[str, Any], renders: dict[str, list[dict[str, Any]]]
) -> None:
    assert function["apiVersion"] == "stepline.dev/v1alpha1"
    jsonschema.Draft7Validator(_schema(renders)).validate(function)


def test_the_schema_refuses_what_a_typo_makes(renders: dict[str, list[dict[str, Any]]]) -> None:
    [function, *_] = _examples()
    broken = {**function, "spec": {**function["spec"], "retries": 99}}
    with pytest.raises(jsonschema.ValidationError, match="99 is greater than the maximum"):
        jsonschema.Draft7Validator(_schema(renders)).validate(broken)
