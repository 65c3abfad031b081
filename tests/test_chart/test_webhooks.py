"""What the chart adds for Webhooks: the key that seals their secrets, shared by the gateway and the
operator (generated and kept unless given), and an Ingress, off by default, for the /webhooks/ prefix only.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from stepline_store.sealing import Sealer, new_key

from tests.test_chart.conftest import Helm, HelmFailed, env_of, named, of_kind


def _container(documents: list[dict[str, Any]], name: str) -> dict[str, Any]:
    [container] = named(documents, "Deployment", name)["spec"]["template"]["spec"]["containers"]
    return container


def test_no_ingress_unless_asked(renders: dict[str, list[dict[str, Any]]]) -> None:
    for value_set in ("default", "external-database", "namespaced", "ha"):
        assert not of_kind(renders[value_set], "Ingress"), value_set


def test_the_ingress_routes_the_webhooks_prefix_and_nothing_else(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    documents = renders["everything"]
    ingress = named(documents, "Ingress", "sl-webhooks")
    spec = ingress["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "hooks-tls", "hosts": ["hooks.example.com"]}]
    assert ingress["metadata"]["annotations"] == {"example.com/limit": "10r/s"}
    [rule] = spec["rules"]
    assert rule["host"] == "hooks.example.com"
    [path] = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/", "Prefix")
    service = named(documents, "Service", "sl-gateway")
    assert path["backend"]["service"] == {"name": "sl-gateway", "port": {"name": "http"}}
    assert "http" in {p["name"] for p in service["spec"]["ports"]}


def test_an_ingress_without_host_or_tls_takes_any_host(helm: Helm, helm_folder: Path) -> None:
    [ingress] = of_kind(helm.render({"webhookIngress": {"enabled": True}}, helm_folder), "Ingress")
    assert "tls" not in ingress["spec"]
    assert "ingressClassName" not in ingress["spec"]
    [rule] = ingress["spec"]["rules"]
    assert "host" not in rule
    assert rule["http"]["paths"][0]["path"] == "/webhooks/"


def test_the_gateway_and_the_operator_share_a_generated_secrets_key(
    renders: dict[str, list[dict[str, Any]]],
) -> None:
    documents = renders["default"]
    secret = named(documents, "Secret", "stepline")
    key = base64.b64decode(secret["data"]["secrets-key"]).decode()
    sealer = Sealer.from_setting(key)  # a usable Fernet key
    assert sealer.open(sealer.seal(b"x")) == b"x"
    for name in ("stepline-gateway", "stepline-operator"):
        variable = env_of(_container(documents, name))["STEPLINE_SECRETS_KEY"]
        assert variable["valueFrom"]["secretKeyRef"] == {"name": "stepline", "key": "secrets-key"}


def test_a_given_secrets_key_is_used_and_an_existing_secret_may_lack_it(
    helm: Helm, helm_folder: Path, renders: dict[str, list[dict[str, Any]]]
) -> None:
    key = f"{new_key()},{new_key()}"
    documents = helm.render({"auth": {"secretsKey": key}}, helm_folder)
    assert base64.b64decode(named(documents, "Secret", "stepline")["data"]["secrets-key"]).decode() == key
    existing = renders["external-database"]
    variable = env_of(_container(existing, "stepline-operator"))["STEPLINE_SECRETS_KEY"]
    assert variable["valueFrom"]["secretKeyRef"] == {
        "name": "stepline-keys",
        "key": "secrets-key",
        "optional": True,
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth": {"secretsKey": "not a key"}}, "secretsKey"),
        ({"auth": {"existingSecret": "keys", "secretsKey": new_key()}}, "auth.existingSecret holds the keys"),
        ({"webhookIngress": {"enabled": True, "host": "Not A Host"}}, "host"),
        ({"webhookIngress": {"enabled": True, "paths": ["/"]}}, "paths"),
    ],
    ids=["bad-key", "key-twice", "bad-host", "unknown-key"],
)
def test_wrong_webhook_values_are_refused(
    helm: Helm, helm_folder: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmFailed, match=message):
        helm.template(values, helm_folder)
