"""The contract suite runs against any kubeconfig: the stand-in by default, a real cluster when
SLURMLINK_TEST_KUBECONFIG names one (the same checks then prove the stand-in has not drifted from the real thing).

Against a real cluster the identity must be allowed to manage namespaces, pods, nodes, leases, events and CSRs,
and the apiserver must reach this machine at SLURMLINK_TEST_KUBELET_ADDRESS (default 127.0.0.1) for pods/log.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Namespace, Node, ServiceAccount

from standins.kube import KubeStandin
from tests.contract.cluster import Cluster, ContractNode, node_body
from tests.contract.kubelet_endpoint import KubeletEndpoint
from tests.harness.waiting import wait_until


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
    wait_until(has_default_account, 10, f"the default ServiceAccount in {name}", 0.05)
    yield name
    with contextlib.suppress(ApiError):
        kube.delete(Namespace, name)


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


