"""The contract suite runs against any kubeconfig: the stand-in by default, a real cluster when
SLURMLINK_TEST_KUBECONFIG names one (the same checks then prove the stand-in has not drifted from the real thing).

Against a real cluster the identity must be allowed to manage namespaces, pods, nodes, leases, events and CSRs,
and the apiserver must reach this machine at SLURMLINK_TEST_KUBELET_ADDRESS (default 127.0.0.1) for pods/log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from lightkube import ApiError, AsyncClient, Client, KubeConfig
from lightkube.config.client_adapter import verify_cluster
from lightkube.resources.core_v1 import Namespace, Node, ServiceAccount

from standins.kube import KubeStandin
from tests.contract.kubelet_endpoint import KubeletEndpoint

KUBECTL = Path(sys.executable).parent / "kubectl"
# Pods no scheduler acts on: nothing changes them behind a test's back (no binding, no Unschedulable condition).
NO_SCHEDULER = {"schedulerName": "slurmlink-contract-nobody"}
CONTRACT_TAINT = {"key": "slurmlink.io/contract", "value": "true", "effect": "NoSchedule"}


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll until `predicate` returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


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


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("contract")
    real = os.environ.get("SLURMLINK_TEST_KUBECONFIG")
    if real:
        yield Cluster(Path(real), workdir, None)
        return
    with KubeStandin(workdir / "standin", bookmark_interval=1.0) as standin:
        yield Cluster(standin.kubeconfig, workdir, standin)


@pytest.fixture
def standin(cluster: Cluster) -> KubeStandin:
    """For tests of the stand-in's fault injection: skipped against a real cluster."""
    if cluster.standin is None:
        pytest.skip("needs the stand-in's fault injection")
    return cluster.standin


@pytest.fixture(scope="session")
def kube(cluster: Cluster) -> Iterator[Client]:
    client = cluster.client()
    yield client
    client.close()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ns(cluster: Cluster, kube: Client) -> Iterator[str]:
    """A fresh namespace, with its "default" ServiceAccount (a real controller-manager adds it a moment later)."""
    name = f"contract-{secrets.token_hex(4)}"
    kube.create(Namespace.from_dict({"metadata": {"name": name}}))

    def has_default_account() -> bool:
        try:
            kube.get(ServiceAccount, "default", namespace=name)
        except ApiError:
            return False
        return True
    wait_for(has_default_account, f"the default ServiceAccount in {name}")
    yield name
    with contextlib.suppress(ApiError):
        kube.delete(Namespace, name)


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


@pytest.fixture(scope="session")
def node(cluster: Cluster, kube: Client, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContractNode]:
    """A Ready node, tainted so only contract pods land on it, whose kubelet endpoint is a test server."""
    address = os.environ.get("SLURMLINK_TEST_KUBELET_ADDRESS", "127.0.0.1")
    client_ca = cluster.standin.ca_path if cluster.standin else None
    bind = "0.0.0.0" if address != "127.0.0.1" else address  # noqa: S104 (a remote apiserver must reach it)
    kubelet = KubeletEndpoint(tmp_path_factory.mktemp("kubelet"), bind=bind, client_ca=client_ca).start()
    name = f"contract-node-{secrets.token_hex(3)}"
    created = kube.create(Node.from_dict(node_body(name, address, kubelet.port)))
    # A real apiserver keeps the status sent on create for nodes; set it again in case an admission dropped it.
    kube.patch(Node.Status, name, {"status": node_body(name, address, kubelet.port)["status"]})
    assert created.metadata.name == name
    yield ContractNode(name, kubelet)
    with contextlib.suppress(ApiError):
        kube.delete(Node, name)
    kubelet.stop()


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
