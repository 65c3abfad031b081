"""The generated Webhook CRD: names, printer columns, a structural schema, and its CEL rule exercised.

As in test_crd.py, kmock does not enforce a CRD's schema: documents are checked with jsonschema and each
``x-kubernetes-validations`` rule with the CEL evaluator; what the rules refuse, the models refuse too.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml
from stepline.crd import webhook_crd
from stepline.webhook import parse_webhook
from stepline_operator.checks import check_webhook

from tests.test_operator.test_crd import cel_failures

ROOT = Path(__file__).parents[2]
CRD_FILE = ROOT / "crds" / "webhooks.stepline.dev.yaml"
EXACTLY_ONE = "exactly one of verify.github, verify.stripe, verify.slack, verify.standardWebhooks"


def schema() -> dict[str, Any]:
    result: dict[str, Any] = webhook_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return result


def structure_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(schema())
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


BASE: dict[str, Any] = {
    "apiVersion": "stepline.dev/v1alpha1",
    "kind": "Webhook",
    "metadata": {"name": "github", "namespace": "shop"},
    "spec": {
        "verify": {"github": {"secretRef": {"name": "github-webhook", "key": "secret"}}},
        "transform": '{"name": "github/" + headers["x-github-event"], "data": body}',
    },
}


def with_verify(verify: dict[str, Any]) -> dict[str, Any]:
    document = copy.deepcopy(BASE)
    document["spec"]["verify"] = verify
    return document


def test_the_crd_declares_names_status_and_printer_columns() -> None:
    crd = yaml.safe_load(CRD_FILE.read_text())
    spec = crd["spec"]
    assert crd["metadata"]["name"] == "webhooks.stepline.dev"
    assert (spec["group"], spec["scope"]) == ("stepline.dev", "Namespaced")
    assert spec["names"]["kind"] == "Webhook"
    assert spec["names"]["plural"] == "webhooks"
    assert spec["names"]["shortNames"] == ["wh"]
    assert spec["names"]["categories"] == ["stepline"]
    [version] = spec["versions"]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["URL", "Verify", "Ready", "Age"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert {"observedGeneration", "url", "verify", "conditions"} <= set(status)
    assert status["conditions"]["x-kubernetes-list-map-keys"] == ["type"]


def test_the_schema_is_structural_with_defaults() -> None:
    def nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
        found = [(path, node)]
        for name, sub in (node.get("properties") or {}).items():
            found += nodes(sub, f"{path}.{name}")
        if "items" in node:
            found += nodes(node["items"], f"{path}[]")
        return found

    for path, node in nodes(schema()):
        assert "type" in node, path
        assert not {"$ref", "anyOf", "oneOf", "allOf", "title", "additionalProperties"} & set(node), path
    verify = schema()["properties"]["spec"]["properties"]["verify"]["properties"]
    assert verify["stripe"]["properties"]["tolerance"]["default"] == "5m"
    assert verify["hmac"]["properties"]["algorithm"]["enum"] == ["sha1", "sha256", "sha512"]
    assert verify["token"]["properties"]["header"]["default"] == "Authorization"
    assert verify["hmac"]["required"] == ["secretRef", "header"]


@pytest.mark.parametrize(
    "verify",
    [
        {"github": {"secretRef": {"name": "gh", "key": "secret"}}},
        {"stripe": {"secretRef": {"name": "st", "key": "whsec"}, "tolerance": "10m"}},
        {"slack": {"secretRef": {"name": "sl", "key": "signing-secret"}}},
        {"standardWebhooks": {"secretRef": {"name": "sw", "key": "secret"}}},
        {"hmac": {"secretRef": {"name": "h", "key": "k"}, "header": "X-Signature", "prefix": "sha256="}},
        {"token": {"secretRef": {"name": "t", "key": "token"}, "header": "X-Gitlab-Token"}},
        {"none": {}},
        {
            "github": {
                "secretRef": {"name": "gh", "key": "next"},
                "previousSecretRef": {"name": "gh", "key": "current"},
            }
        },
    ],
    ids=["github", "stripe", "slack", "standard", "hmac", "token", "none", "rotation"],
)
def test_each_scheme_passes_the_schema_the_rule_and_the_model(verify: dict[str, Any]) -> None:
    document = with_verify(verify)
    assert structure_errors(document) == []
    assert cel_failures(schema(), document) == []
    assert parse_webhook(document).spec.verify.scheme == next(iter(verify))


@pytest.mark.parametrize(
    "verify",
    [
        {},
        {"github": {"secretRef": {"name": "a", "key": "b"}}, "none": {}},
        {
            "stripe": {"secretRef": {"name": "a", "key": "b"}},
            "slack": {"secretRef": {"name": "a", "key": "b"}},
        },
    ],
    ids=["none-said", "github-and-none", "two-signed"],
)
def test_exactly_one_scheme_or_the_rule_and_the_model_refuse(verify: dict[str, Any]) -> None:
    document = with_verify(verify)
    assert structure_errors(document) == []  # a schema alone cannot tell
    [failure] = cel_failures(schema(), document)
    assert failure.startswith(f".spec.verify: {EXACTLY_ONE}")
    with pytest.raises(pydantic.ValidationError, match=EXACTLY_ONE):
        parse_webhook(document)


@pytest.mark.parametrize(
    ("verify", "error"),
    [
        ({"stripe": {"secretRef": {"name": "a", "key": "b"}, "tolerance": "five minutes"}}, "does not match"),
        ({"github": {"secretRef": {"name": "Not_A_Name", "key": "b"}}}, "does not match"),
        ({"github": {}}, "'secretRef' is a required property"),
        ({"hmac": {"secretRef": {"name": "a", "key": "b"}}}, "'header' is a required property"),
        (
            {"hmac": {"secretRef": {"name": "a", "key": "b"}, "header": "X", "algorithm": "md5"}},
            "is not one of",
        ),
    ],
    ids=["tolerance", "secret-name", "no-secret", "hmac-header", "md5"],
)
def test_the_schema_refuses_what_is_out_of_bounds(verify: dict[str, Any], error: str) -> None:
    errors = structure_errors(with_verify(verify))
    assert errors
    assert error in errors[0], errors
    with pytest.raises(pydantic.ValidationError):
        parse_webhook(with_verify(verify))


def _examples() -> list[dict[str, Any]]:
    documents = yaml.safe_load_all((ROOT / "examples" / "k8s" / "webhooks.yaml").read_text())
    return [d for d in documents if d and d["kind"] == "Webhook"]


@pytest.mark.parametrize("document", _examples(), ids=lambda d: d["metadata"]["name"])
def test_the_examples_pass_the_schema_every_rule_and_the_operator(document: dict[str, Any]) -> None:
    assert structure_errors(document) == []
    assert cel_failures(schema(), document) == []
    assert check_webhook(document).spec.transform


def test_a_tolerance_over_a_day_is_refused_by_the_model() -> None:
    with pytest.raises(pydantic.ValidationError, match="at most 24h"):
        parse_webhook(with_verify({"slack": {"secretRef": {"name": "a", "key": "b"}, "tolerance": "25h"}}))
