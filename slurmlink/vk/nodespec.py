"""The Node object and its status, as pure functions: capacity from a ping, conditions, the body to create."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from slurmlink import __version__
from slurmlink.core.errors import PodRejected
from slurmlink.core.quantity import parse_quantity
from slurmlink.vk.config import UPSTREAM_TAINT_KEY, VkConfig
from slurmlink.wire.interlink import PingResponse
from slurmlink.wire.names import NODE_LABEL

Obj = dict[str, Any]
REACHABLE = "InterLinkReachable"
_BASIC_RESOURCES = ("cpu", "memory", "pods")
# Accelerator kinds an interLink plugin may report, as the extended resources Kubernetes knows them by.
_ACCELERATORS = {"nvidia.com/gpu", "amd.com/gpu", "intel.com/gpu", "xilinx.com/fpga", "intel.com/fpga"}


@dataclass(frozen=True)
class CapacityVerdict:
    capacity: dict[str, str]
    problems: list[str] = field(default_factory=list)  # what was refused, and what was kept instead


def _positive(value: str) -> bool:
    try:
        return parse_quantity(value, "capacity") > 0
    except PodRejected:
        return False


def judge_capacity(ping: PingResponse | None, raw: str, last_good: dict[str, str]) -> CapacityVerdict:
    """New capacity from a ping. A zero, negative or unreadable value never replaces a good one: a plugin
    reporting `cpu: 0` would otherwise drain the node silently (upstream interLink issue #558)."""
    if ping is None:
        if raw.strip().startswith("{"):
            return CapacityVerdict(dict(last_good), [f"the API's ping answer is not a PingResponse: {raw[:200]!r}; "
                                                     "keeping the last good capacity"])
        return CapacityVerdict(dict(last_good))  # `[]` or free text: a valid ping without numbers
    capacity = dict(last_good)
    problems = []
    reported = ping.resources
    for name in _BASIC_RESOURCES:
        value = str(getattr(reported, name) or "").strip()
        if not value:
            continue
        if _positive(value):
            capacity[name] = value
        else:
            problems.append(f"the API reported {name}={value!r}; keeping {name}={last_good.get(name, '?')}")
    for accelerator in reported.accelerators:
        kind = accelerator.resource_type
        if kind in _ACCELERATORS and accelerator.available:
            try:
                parse_quantity(accelerator.available, kind)
            except PodRejected:
                problems.append(f"the API reported {kind}={accelerator.available!r}, not a quantity")
                continue
            capacity[kind] = accelerator.available
    return CapacityVerdict(capacity, problems)


@dataclass(frozen=True)
class Health:
    reachable: bool
    detail: str  # the error when unreachable, the capacity problems when reachable
    capacity_problems: tuple[str, ...] = ()


def conditions(health: Health, previous: list[Obj], stamp: str,
               extra: dict[str, tuple[str, str, str]] | None = None) -> list[Obj]:
    """Ready, InterLinkReachable, and `extra` ({type: (status, reason, message)}, e.g. the serving
    certificate's). lastTransitionTime moves only when a condition's status changes."""
    if health.reachable:
        ready = ("True", "KubeletReady", "slurmlink vk is posting ready status; its interLink API answers")
        if health.capacity_problems:
            reach = ("True", "CapacityKept", "; ".join(health.capacity_problems))
        else:
            reach = ("True", "PingSucceeded", "the interLink API answered the last ping")
    else:
        ready = ("False", "InterLinkUnreachable", f"the interLink API does not answer: {health.detail}")
        reach = ("False", "PingFailed", health.detail)
    before = {c.get("type"): c for c in previous}
    out = []
    for kind, (status, reason, message) in (("Ready", ready), (REACHABLE, reach), *(extra or {}).items()):
        old = before.get(kind) or {}
        moved = old.get("status") != status or not old.get("lastTransitionTime")
        out.append({"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": stamp,
                    "lastTransitionTime": stamp if moved else old["lastTransitionTime"]})
    return out


def labels(config: VkConfig) -> dict[str, str]:
    name = config.node.name
    return {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "type": "virtual-kubelet",
            "virtual-node.interlink/type": "virtual-kubelet", NODE_LABEL: name,
            "node.kubernetes.io/exclude-from-external-load-balancers": "true", **config.node.labels}


def taints(config: VkConfig) -> list[Obj]:
    upstream = {"key": UPSTREAM_TAINT_KEY, "value": "true", "effect": "NoSchedule"}
    extra = [t.model_dump() for t in config.node.taints if t.key != UPSTREAM_TAINT_KEY]
    return [upstream, *extra]


# What the node reports when neither the configuration nor the apiserver's /version says better.
FALLBACK_CLUSTER_VERSION = "v1.30.0"
_SEMVER_CORE = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


def kubelet_version(configured: str | None, apiserver_git_version: str | None) -> str:
    """The node's kubeletVersion: the configured one as is; else the cluster's own version with slurmlink's as
    semver build metadata (`v1.36.0+slurmlink.0.1.0`, the k3s form), so that version-skew checks and
    `kubectl get nodes` see a kubelet of the cluster's version (build metadata does not change precedence)."""
    if configured:
        return configured
    match = _SEMVER_CORE.match(apiserver_git_version or "")
    core = f"v{match.group(1)}.{match.group(2)}.{match.group(3)}" if match else FALLBACK_CLUSTER_VERSION
    return f"{core}+slurmlink.{__version__}"


def node_status(config: VkConfig, capacity: dict[str, str], node_conditions: list[Obj], kubelet_port: int,
                version: str = "") -> Obj:
    return {
        "capacity": dict(capacity), "allocatable": dict(capacity), "conditions": node_conditions,
        "addresses": [{"type": "InternalIP", "address": config.node.internal_ip},
                      {"type": "Hostname", "address": config.node.hostname or config.node.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {"kubeletVersion": version or kubelet_version(config.node.kubelet_version, None),
                     "kubeProxyVersion": "",
                     "operatingSystem": "linux", "architecture": "amd64", "containerRuntimeVersion": "slurm://",
                     "osImage": "SLURM via interLink", "kernelVersion": "", "machineID": "", "systemUUID": "",
                     "bootID": ""},
    }


def node_body(config: VkConfig, status: Obj) -> Obj:
    """The Node as the vk creates it. Taints are only ever set here: NodeRestriction forbids a node to change
    its own taints later."""
    name = config.node.name
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels(config)},
            "spec": {"taints": taints(config), "providerID": f"slurmlink://{name}"},
            "status": status}
