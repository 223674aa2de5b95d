"""Defaulting on create, per type, as the real apiserver's SetDefaults_* and PrepareForCreate do it."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from typing import Any


def _image_pull_policy(image: str) -> str:
    # The real default: Always for ":latest" or an untagged image, IfNotPresent otherwise.
    name = image.rsplit("/", 1)[-1]
    if "@" in name:
        return "IfNotPresent"
    tag = name.split(":", 1)[1] if ":" in name else "latest"
    return "Always" if tag == "latest" else "IfNotPresent"


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("imagePullPolicy", _image_pull_policy(container.get("image", "")))
    resources = container.setdefault("resources", {})
    if resources.get("limits") and not resources.get("requests"):
        resources["requests"] = dict(resources["limits"])  # requests default to limits
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")


def _default_volume(volume: dict[str, Any]) -> None:
    for source in ("configMap", "secret", "projected", "downwardAPI"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", 420)  # 0644


def qos_class(pod: dict[str, Any]) -> str:
    containers = (pod["spec"].get("containers") or []) + (pod["spec"].get("initContainers") or [])
    resources = [container.get("resources") or {} for container in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        all(name in (r.get("limits") or {}) for name in ("cpu", "memory"))
        and (r.get("requests") or {}) == {k: v for k, v in (r.get("limits") or {}).items() if k in ("cpu", "memory")}
        for r in resources)
    return "Guaranteed" if guaranteed else "Burstable"


# The DefaultTolerationSeconds admission plugin adds these unless the pod tolerates the taints already.
DEFAULT_TOLERATIONS = (
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
)


def readd_default_tolerations(pod: dict[str, Any]) -> None:
    tolerations = pod["spec"].setdefault("tolerations", [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") == default["key"] and t.get("effect") in (None, "", "NoExecute")
                   for t in tolerations):
            tolerations.append(dict(default))


def default_pod(pod: dict[str, Any]) -> None:
    spec = pod.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        _default_container(container)
    for volume in spec.get("volumes") or []:
        _default_volume(volume)
    readd_default_tolerations(pod)
    # PrepareForCreate: a new pod's status is reset to Pending with its QoS class, whatever the client sent.
    pod["status"] = {"phase": "Pending", "qosClass": qos_class(pod)}
    pod["metadata"]["generation"] = 1


def default_node(node: dict[str, Any]) -> None:
    node.setdefault("spec", {})
    status = node.setdefault("status", {})
    if status.get("capacity") and not status.get("allocatable"):
        status["allocatable"] = dict(status["capacity"])  # allocatable defaults to capacity
    status.setdefault("daemonEndpoints", {"kubeletEndpoint": {"Port": 0}})
    status.setdefault("nodeInfo", {"machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": "",
                                   "osImage": "", "containerRuntimeVersion": "", "kubeletVersion": "",
                                   "kubeProxyVersion": "", "operatingSystem": "", "architecture": ""})


def default_namespace(namespace: dict[str, Any]) -> None:
    name = namespace["metadata"]["name"]
    namespace["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    namespace["spec"] = {"finalizers": ["kubernetes"]}
    namespace["status"] = {"phase": "Active"}


def default_secret(secret: dict[str, Any]) -> None:
    secret.setdefault("type", "Opaque")
    # stringData is write-only: merged into data (base64) and never stored.
    for key, value in (secret.pop("stringData", None) or {}).items():
        secret.setdefault("data", {})[key] = base64.b64encode(str(value).encode()).decode()


SERVICE_CIDR = ipaddress.ip_network("10.96.0.0/12")  # kubeadm's default --service-cluster-ip-range


def default_service(service: dict[str, Any]) -> None:
    """A ClusterIP Service as the real registry stores it. The cluster IP is only a value here: no kube-proxy
    makes it answer (it is picked from the Service's name, where the real allocator picks at random)."""
    spec = service.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] in ("ClusterIP", "NodePort", "LoadBalancer") and not spec.get("clusterIP"):
        meta = service["metadata"]
        digest = hashlib.sha256(f"{meta.get('namespace')}/{meta['name']}".encode()).digest()
        offset = 1 + int.from_bytes(digest[:4], "big") % (SERVICE_CIDR.num_addresses - 2)
        spec["clusterIP"] = str(SERVICE_CIDR.network_address + offset)
    if spec.get("clusterIP"):
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    service["status"] = {"loadBalancer": {}}


DEFAULTERS = {"Service": default_service,
              "Pod": default_pod, "Node": default_node, "Namespace": default_namespace, "Secret": default_secret}
