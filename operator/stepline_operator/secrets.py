"""Reading the Secrets that Webhooks name, with the ``kubernetes`` client: a ``get`` of exactly that Secret.

The operator watches no Secret (that would need ``list`` and ``watch`` on every Secret it may see): it reads
the one a Webhook names when the Webhook is reconciled, and again every ``secret_refresh_s`` (a kopf timer),
which is how a changed Secret is picked up. The client is synchronous, so each read runs in a thread.
In a pod it uses the service account; elsewhere the kubeconfig of ``KUBECONFIG`` (read at the first call).
"""

from __future__ import annotations

import asyncio
import base64
import os
import threading
from typing import Any

from stepline_operator.errors import ReconcileError

_TIMEOUT_S = 10


class SecretsUnavailable(ReconcileError):
    """The Kubernetes API did not answer the read of a Secret (retried)."""

    reason = "KubernetesUnavailable"


class SecretReader:
    """``get`` of one Secret by namespace and name; its data decoded, None when there is no such Secret."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _core(self) -> Any:
        from kubernetes import client, config

        with self._lock:
            if self._client is None:
                if os.environ.get("KUBERNETES_SERVICE_HOST"):
                    configuration = client.Configuration()
                    config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
                    self._client = client.ApiClient(configuration)
                else:
                    self._client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=os.environ.get("KUBECONFIG")
                    )
            return client.CoreV1Api(self._client)

    def _read(self, namespace: str, name: str) -> dict[str, bytes] | None:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self._core().read_namespaced_secret(name, namespace, _request_timeout=_TIMEOUT_S)
        except ApiException as err:
            if err.status == 404:
                return None
            if err.status == 403:
                raise SecretsUnavailable(
                    f"the operator may not read Secret {name} in namespace {namespace}: grant it get on "
                    "secrets there (the chart's Role does, in the namespaces it watches)",
                    reason="SecretForbidden",
                ) from None
            raise SecretsUnavailable(
                f"the Kubernetes API answered {err.status} to the read of Secret {namespace}/{name}"
            ) from None
        except Exception as err:  # urllib3's connection errors, a kubeconfig that cannot be read...
            raise SecretsUnavailable(
                f"cannot read Secret {namespace}/{name} from the Kubernetes API: {type(err).__name__}"
            ) from None
        data = secret.data or {}
        return {str(key): base64.b64decode(value) for key, value in data.items()}

    async def read(self, namespace: str, name: str) -> dict[str, bytes] | None:
        return await asyncio.to_thread(self._read, namespace, name)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
