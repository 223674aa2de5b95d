"""What the contract tests share: the cluster under test (the stand-in or a real one), and the bodies of the
nodes and pods they create. The fixtures that make them are in conftest.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import AsyncClient, Client, KubeConfig
from lightkube.config.client_adapter import verify_cluster

from standins.kube import KubeStandin
from tests.contract.kubelet_endpoint import KubeletEndpoint

KUBECTL = Path(sys.executable).parent / "kubectl"
# Pods no scheduler acts on: nothing changes them behind a test's back (no binding, no Unschedulable condition).
NO_SCHEDULER = {"schedulerName": "slurmlink-contract-nobody"}
CONTRACT_TAINT = {"key": "slurmlink.io/contract", "value": "true", "effect": "NoSchedule"}



@dataclass
class Cluster:
    kubeconfig: Path
    workdir: Path
    standin: KubeStandin | None

    @property
    def is_real(self) -> bool:
        return self.standin is None

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
                ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "KUBECACHEDIR": str(self.workdir / "kubecache")}
        result = subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True, env=env,
                                timeout=timeout)
        if check and result.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def raw(self, token: str | None = None, cert: tuple[str, str] | None = None) -> httpx.Client:
        """An httpx client to the same server with the kubeconfig's TLS trust and, by default, its credentials."""
        config = KubeConfig.from_file(self.kubeconfig).get()
        user = config.user
        if cert is not None or token is not None:
            user = type(user)()  # anonymous as far as the kubeconfig goes; the caller's credentials instead
        context = verify_cluster(config.cluster, user, config.abs_file)
        if cert is not None:
            context.load_cert_chain(*cert)
        bearer = token if token is not None else (config.user.token if cert is None else None)
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        return httpx.Client(base_url=config.cluster.server, verify=context, headers=headers, timeout=15)

    def client(self) -> Client:
        return Client(config=KubeConfig.from_file(self.kubeconfig), field_manager="slurmlink-contract")

    def async_client(self) -> AsyncClient:
        return AsyncClient(config=KubeConfig.from_file(self.kubeconfig), field_manager="slurmlink-contract")


def node_body(name: str, kubelet_address: str, kubelet_port: int) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "metadata": {"name": name, "labels": {"slurmlink.io/contract-node": name, "kubernetes.io/hostname": name}},
        "spec": {"taints": [CONTRACT_TAINT]},
        "status": {
            "capacity": {"cpu": "8", "memory": "16Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": kubelet_address}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
            "conditions": [{"type": "Ready", "status": "True", "reason": "ContractReady", "message": "test node",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        },
    }


@dataclass
class ContractNode:
    name: str
    kubelet: KubeletEndpoint


def pod_body(name: str = "", *, node: str | None = None, labels: dict[str, str] | None = None,
             containers: tuple[str, ...] = ("main",), tolerate: bool = True, **spec: Any) -> dict[str, Any]:
    """A pod; `tolerate` lets the scheduler put it on the contract node (tests that need it unbound say False)."""
    meta: dict[str, Any] = {"name": name} if name else {"generateName": "contract-"}
    if labels:
        meta["labels"] = labels
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
        "containers": [{"name": c, "image": "busybox:1.36", "command": ["true"]} for c in containers],
        **spec}}
    if tolerate:
        body["spec"]["tolerations"] = [{"key": CONTRACT_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}]
    if node:
        body["spec"]["nodeName"] = node
    return body
