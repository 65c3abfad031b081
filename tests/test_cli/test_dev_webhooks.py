"""``stepline dev -f`` with Webhook and Secret documents beside the Functions: published sealed, reloaded
when a file changes, and refused in one line naming the file when a Webhook's Secret is missing."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import httpx

from tests.test_cli.test_dev import stepline, stepline_dev, wait_for
from tests.webhook_senders import github_headers

WEBHOOK = """\
apiVersion: stepline.dev/v1alpha1
kind: Webhook
metadata: {name: github, namespace: shop}
spec:
  verify:
    github: {secretRef: {name: github-webhook, key: secret}}
  transform: '{"name": "github/" + headers["x-github-event"], "data": body}'
"""

SECRET = """\
---
apiVersion: v1
kind: Secret
metadata: {{name: github-webhook, namespace: shop}}
{data}
"""


def post(url: str, secret: str) -> int:
    body = b'{"ref": "refs/heads/main"}'
    return httpx.post(
        f"{url}/webhooks/shop/github", content=body, headers=github_headers(secret, body)
    ).status_code


def test_dev_publishes_webhooks_from_manifests_and_reloads_their_secrets(
    tmp_path: Path, database_url: str
) -> None:
    manifest = tmp_path / "hooks.yaml"
    manifest.write_text(WEBHOOK + SECRET.format(data="stringData: {secret: first-value}"))
    data_dir = tmp_path / "data"
    with stepline_dev(
        tmp_path, "--database-url", database_url, "-f", str(manifest), data_dir=data_dir
    ) as dev:
        assert post(dev.url, "first-value") == 200
        assert post(dev.url, "wrong") == 401
        [listed] = dev.get("/v1/webhooks")["data"]
        assert (listed["url"], listed["verify"], listed["source"]) == (
            "/webhooks/shop/github",
            "github",
            "manifest",
        )

        encoded = base64.b64encode(b"second-value").decode()
        manifest.write_text(WEBHOOK + SECRET.format(data=f"data: {{secret: {encoded}}}"))
        wait_for(lambda: post(dev.url, "second-value") == 200, what="the changed Secret reloaded")
        assert post(dev.url, "first-value") == 401
        assert "first-value" not in dev.log()
        assert "second-value" not in dev.log()
        assert dev.stop() == 0, dev.log()

    key_file = data_dir / "secrets.key"
    key = key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with stepline_dev(
        tmp_path, "--database-url", database_url, "-f", str(manifest), data_dir=data_dir
    ) as dev:
        assert post(dev.url, "second-value") == 200
        assert dev.stop() == 0, dev.log()
    assert key_file.read_text() == key, "the key is kept across restarts"


def test_dev_refuses_a_webhook_whose_secret_is_missing_naming_the_file(tmp_path: Path) -> None:
    manifest = tmp_path / "hooks.yaml"
    manifest.write_text(WEBHOOK)
    result = stepline("dev", "--data-dir", str(tmp_path / "data"), "-f", str(manifest), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line == (
        f"stepline: error: {manifest}: Webhook github: spec.verify.github.secretRef names Secret "
        "github-webhook, "
        "which no manifest file holds in namespace shop: add a Secret document (stringData: {secret: ...}) "
        "beside the Webhook"
    )
    assert not (tmp_path / "data" / "postgres").exists(), "nothing should have been started"
