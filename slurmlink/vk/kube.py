"""The Kubernetes client of the vk: lightkube, with every object as a plain dict.

Pods travel on to the interLink API as JSON and are read by pure functions over dicts, so typed models would
only be converted back and forth (and their datetime handling is the MicroTime trap). lightkube's generic
resources are dicts: we declare the few kinds the vk touches.
"""

from __future__ import annotations

from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient, KubeConfig
from lightkube.core.exceptions import ConfigError as KubeConfigError
from lightkube.generic_resource import create_global_resource, create_namespaced_resource

from slurmlink.config import ConfigError
from slurmlink.vk.config import KubeConfigSection

Obj = dict[str, Any]

Pod = create_namespaced_resource("", "v1", "Pod", "pods")
Node = create_global_resource("", "v1", "Node", "nodes")
ConfigMap = create_namespaced_resource("", "v1", "ConfigMap", "configmaps")
Secret = create_namespaced_resource("", "v1", "Secret", "secrets")
Event = create_namespaced_resource("", "v1", "Event", "events")
Lease = create_namespaced_resource("coordination.k8s.io", "v1", "Lease", "leases")

FIELD_MANAGER = "slurmlink-vk"


def make_client(config: KubeConfigSection) -> AsyncClient:
    try:
        kube = KubeConfig.from_file(config.kubeconfig) if config.kubeconfig else KubeConfig.from_env()
        single = kube.get(context_name=config.context)
    except Exception as exc:  # any failure to read it is a configuration error: exit 2 and one line, no trace
        why = str(exc) if isinstance(exc, KubeConfigError) else f"not a usable kubeconfig ({type(exc).__name__}: {exc})"
        raise ConfigError(f"kube.kubeconfig (or $KUBECONFIG, or the in-cluster account): {why}") from exc
    return AsyncClient(config=single, timeout=httpx2.Timeout(config.timeout_seconds), field_manager=FIELD_MANAGER)


def status_code(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes API error, None for anything else (connection errors, timeouts)."""
    if not isinstance(exc, ApiError):
        return None
    code = exc.status.code if exc.status is not None else None
    if not code and exc.response is not None:
        code = exc.response.status_code
    return int(code) if code else None


async def raw(client: AsyncClient, method: str, path: str, body: Any = None,
              params: dict[str, str] | None = None) -> Obj:
    """A request lightkube has no verb for (a DELETE with preconditions, a TokenRequest), on the same
    connection, credentials and TLS trust. Errors raise lightkube's ApiError like its own calls."""
    generic = client._client  # lightkube keeps its configured httpx client there; no public accessor exists
    request = generic._client.build_request(method, path, json=body, params=params)
    response = await generic.send(request)
    generic.raise_for_status(response)
    return dict(response.json()) if response.content else {}


async def confirm_pod_deletion(client: AsyncClient, namespace: str, name: str, uid: str) -> None:
    """The kubelet's last word on a pod: delete now (grace 0), but only the pod with this uid."""
    await raw(client, "DELETE", f"/api/v1/namespaces/{namespace}/pods/{name}",
              {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}})


async def request_token(client: AsyncClient, namespace: str, account: str, pod_name: str, pod_uid: str,
                        audiences: list[str], expiration_seconds: int) -> Obj:
    """A ServiceAccount token bound to the pod (it dies with the pod), for a projected volume."""
    spec: Obj = {"expirationSeconds": expiration_seconds,
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": pod_uid}}
    if audiences:
        spec["audiences"] = audiences
    return await raw(client, "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                     {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec})
