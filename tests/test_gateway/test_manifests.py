"""Function manifests outside Kubernetes: loaded, validated with the file and field named, published."""

from __future__ import annotations

from pathlib import Path

import pytest
from stepline_gateway.errors import BadRequest
from stepline_gateway.registry import load_manifests

GOOD = """\
apiVersion: stepline.dev/v1alpha1
kind: Function
metadata: {name: process-new-order, namespace: shop}
spec:
  app: shop
  endpoint: {url: "http://127.0.0.1:8000/api/inngest"}
  triggers:
    - event: order/created
      if: "event.data.amount > 100"
    - cron: "0 8 * * *"
  retries: 2
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unrelated}
"""


def write(tmp_path: Path, text: str, name: str = "fn.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_good_manifest_becomes_a_route(tmp_path: Path) -> None:
    [function] = load_manifests([write(tmp_path, GOOD)])
    assert function.id == "shop-process-new-order"
    assert function.url == "http://127.0.0.1:8000/api/inngest"
    assert function.retries == 2
    assert function.max_attempts == 3
    assert function.triggers == [
        {"event": "order/created", "if": "event.data.amount > 100"},
        {"cron": "0 8 * * *"},
    ]


def test_a_folder_is_read_recursively(tmp_path: Path) -> None:
    (tmp_path / "nested").mkdir()
    write(tmp_path / "nested", GOOD.replace("process-new-order", "b"), "b.yml")
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, "not: a manifest", "notes.txt")
    assert sorted(f.id for f in load_manifests([tmp_path])) == ["shop-b", "shop-process-new-order"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("retries: 2", "retries: 99"), "spec.retries: Input should be less than or equal to 20"),
        (("  app: shop\n", ""), "spec.app: Field required"),
        (
            (
                'endpoint: {url: "http://127.0.0.1:8000/api/inngest"}',
                'endpoint: {url: "http://x/", serviceRef: {name: a, port: 80}}',
            ),
            "exactly one of endpoint.serviceRef or endpoint.url",
        ),
        (
            ("    - event: order/created\n", "    - event: order/created\n      cron: '* * * * *'\n"),
            "spec.triggers[0]: Value error, each trigger needs exactly one of event or cron".replace(
                "Value error, ", ""
            ),
        ),
        (("event.data.amount > 100", "event.data.amount >"), "is not valid CEL"),
        (("retries: 2", "retries: 2\n  colour: red"), "spec.colour: Extra inputs are not permitted"),
        (
            (
                'endpoint: {url: "http://127.0.0.1:8000/api/inngest"}',
                "endpoint: {serviceRef: {name: a, port: 80}}",
            ),
            "spec.endpoint.serviceRef needs the Kubernetes operator",
        ),
    ],
)
def test_an_invalid_manifest_names_the_file_and_the_field(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    assert change[0] in GOOD
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(BadRequest) as caught:
        load_manifests([path])
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert expected in message


def test_a_missing_file_and_broken_yaml_are_reported(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="no such file"):
        load_manifests([tmp_path / "missing.yaml"])
    with pytest.raises(BadRequest, match="not valid YAML"):
        load_manifests([write(tmp_path, "a: [unclosed")])


def test_two_functions_of_the_same_id_name_both_files_and_the_function(tmp_path: Path) -> None:
    first = write(tmp_path, GOOD, "a.yaml")
    second = write(tmp_path, GOOD.replace("retries: 2", "retries: 3"), "b.yaml")
    with pytest.raises(BadRequest) as caught:
        load_manifests([tmp_path])
    message = str(caught.value)
    assert str(first) in message
    assert str(second) in message
    assert "shop-process-new-order is defined twice" in message


def test_the_same_function_id_under_another_name_is_a_duplicate_too(tmp_path: Path) -> None:
    other = GOOD.replace("metadata: {name: process-new-order, namespace: shop}", "metadata: {name: other}")
    other = other.replace("  app: shop\n", "  app: shop\n  functionId: process-new-order\n")
    write(tmp_path, GOOD, "a.yaml")
    write(tmp_path, other, "b.yaml")
    with pytest.raises(
        BadRequest, match=r"defined twice, here and in .*a\.yaml \(Function process-new-order\)"
    ):
        load_manifests([tmp_path])


def test_a_mistyped_kind_is_skipped_with_a_warning_naming_the_file_and_the_kind_meant(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, GOOD.replace("kind: Function", "kind: Functon"))
    with caplog.at_level("WARNING", logger="stepline_gateway.registry"):
        assert load_manifests([path]) == []
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith(str(path))
    assert "'Functon'" in warning
    assert "did you mean kind: Function?" in warning


def test_other_kubernetes_kinds_are_skipped_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="stepline_gateway.registry"):
        [function] = load_manifests([write(tmp_path, GOOD)])  # GOOD holds a ConfigMap too
        stray = GOOD.replace("kind: Function", "kind: Schedule")
        assert load_manifests([write(tmp_path, stray, "stray.yaml")]) == []
    assert function.id == "shop-process-new-order"
    [warning] = [r.getMessage() for r in caplog.records]
    assert "stray.yaml" in warning
    assert "'Schedule'" in warning
    assert "the kinds Stepline reads are Function, Webhook, Secret" in warning
