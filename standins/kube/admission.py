"""The ServiceAccount admission plugin: a pod gets its service account and the projected API-access volume."""

from __future__ import annotations

import secrets
from typing import Any

from .errors import forbidden
from .store import Store

TOKEN_MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"  # noqa: S105 (a path)
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet of generateName suffixes


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(length))


def _api_access_volume(name: str) -> dict[str, Any]:
    # What the real plugin adds: a bound token (3607 s), the cluster CA from kube-root-ca.crt, the namespace.
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def admit_pod(store: Store, pod: dict[str, Any]) -> None:
    spec = pod["spec"]
    namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
    account_name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = account_name
    account = store.get("/serviceaccounts", namespace, account_name)
    if account is None:
        # Without the account the real plugin refuses the pod (e.g. a bare apiserver has no "default" account).
        raise forbidden("", "pods", name, f"error looking up service account {namespace}/{account_name}: "
                                          f'serviceaccount "{account_name}" not found')
    automount = spec.get("automountServiceAccountToken")
    if automount is None:
        automount = account.get("automountServiceAccountToken", True)
    if not automount:
        return
    containers = (spec.get("containers") or []) + (spec.get("initContainers") or [])
    if all(any(m.get("mountPath") == TOKEN_MOUNT_PATH for m in c.get("volumeMounts") or []) for c in containers):
        return
    volume_name = f"kube-api-access-{random_suffix()}"
    spec.setdefault("volumes", []).append(_api_access_volume(volume_name))
    for container in containers:
        mounts = container.setdefault("volumeMounts", [])
        if not any(mount.get("mountPath") == TOKEN_MOUNT_PATH for mount in mounts):
            mounts.append({"name": volume_name, "readOnly": True, "mountPath": TOKEN_MOUNT_PATH})
