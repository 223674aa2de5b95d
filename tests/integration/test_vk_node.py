"""The node's identity: `kubectl delete node` (the vk registers again within one lease interval, the Lease's
owner follows the new Node, running pods go on), the pod garbage collector deleting the node's pods (their jobs
are cancelled), and the kubeletVersion that follows the cluster's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster
from standins.kube.gc import POD_GC_QUARANTINE
from tests.harness.pods import NODE, pod_manifest
from tests.harness.services import ApiProcess
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain, open_chain, wait_node_ready

pytestmark = pytest.mark.timeout(120)
LEASE_SECONDS = 20  # renewed every 5 s: the watch must bring the node back well before the next renewal
RENEW_INTERVAL = LEASE_SECONDS / 4


@pytest.fixture(scope="module")
def node_chain(slurm_cluster: DevCluster, api: ApiProcess, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[Chain]:
    """A stand-in and a vk of their own: these tests delete the node."""
    with open_chain(slurm_cluster, api, Path(tmp_path_factory.mktemp("vk-node")),
                    lease_duration_seconds=LEASE_SECONDS) as opened:
        yield opened


def _node(chain: Chain) -> dict | None:
    return chain.standin.get("nodes", NODE)


def _lease(chain: Chain) -> dict | None:
    return chain.standin.get("leases", NODE, "kube-node-lease", "coordination.k8s.io")


def _owner_uid(lease: dict | None) -> str:
    owners = ((lease or {}).get("metadata") or {}).get("ownerReferences") or []
    return str(owners[0]["uid"]) if len(owners) == 1 and owners[0]["kind"] == "Node" else ""


def _node_uid(chain: Chain) -> str:
    return str(((_node(chain) or {}).get("metadata") or {}).get("uid") or "")


def _back_with_new_uid(chain: Chain, old: str, timeout: float) -> str:
    return str(wait_until(lambda: _node_uid(chain) not in ("", old) and _node_uid(chain), timeout,
                          "the node to be registered again"))


def test_deleted_node_comes_back_within_a_lease_interval_and_owns_its_lease(node_chain: Chain) -> None:
    chain = node_chain
    wait_node_ready(chain)
    first = _node_uid(chain)
    wait_until(lambda: _owner_uid(_lease(chain)) == first, 10, "the lease to be owned by the node")
    chain.apply(pod_manifest("survivor", "sleep 12; echo still here"))
    chain.wait_phase("survivor", ("Running",))

    chain.kubectl("delete", "node", NODE, "--wait=false")
    second = _back_with_new_uid(chain, first, RENEW_INTERVAL)

    node = _node(chain)
    assert node is not None
    taints = {(t["key"], t.get("value"), t["effect"]) for t in node["spec"]["taints"]}
    assert ("virtual-node.interlink/no-schedule", "true", "NoSchedule") in taints
    assert ("slurmlink.io/test", "yes", "PreferNoSchedule") in taints
    assert node["metadata"]["labels"]["slurmlink.io/site"] == "test"
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == chain.vk.port
    wait_node_ready(chain, RENEW_INTERVAL)
    # The garbage collector deleted the Lease owned by the old uid; the new one names the new Node...
    wait_until(lambda: _owner_uid(_lease(chain)) == second, RENEW_INTERVAL, "the lease to be owned by the new node")
    lease_uid = _lease(chain)["metadata"]["uid"]  # type: ignore[index]
    # ... and survives its renewals (a Lease owned by a deleted uid would be deleted at each one).
    for _ in range(2):
        renewed = _lease(chain)["spec"]["renewTime"]  # type: ignore[index]
        wait_until(lambda r=renewed: (_lease(chain) or {}).get("spec", {}).get("renewTime") != r, RENEW_INTERVAL + 5,
                   "the lease to be renewed")
    assert _lease(chain)["metadata"]["uid"] == lease_uid  # type: ignore[index]
    assert _owner_uid(_lease(chain)) == second

    # The pod GC would wait 40 s for the node: it never saw a node missing that long, the pod went on.
    pod = chain.wait_phase("survivor", ("Succeeded", "Failed"), timeout=40)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert chain.kubectl("logs", "survivor").stdout == "still here\n"
    assert len(chain.jobs(pod["metadata"]["uid"])) <= 1


def test_pods_the_pod_gc_deletes_have_their_jobs_cancelled(node_chain: Chain) -> None:
    chain = node_chain
    wait_node_ready(chain)
    chain.apply(pod_manifest("collected", "sleep 300"))
    pod = chain.wait_phase("collected", ("Running",))
    uid = pod["metadata"]["uid"]
    wait_until(lambda: [state for _id, state, _user in chain.jobs(uid)] == ["RUNNING"], 20, "the job to run")
    # Make the pod GC act before the vk is back: no quarantine, and the vk's requests slowed down.
    chain.standin.gc.pod_quarantine = 0
    chain.standin.latency = 0.5
    try:
        chain.kubectl("delete", "node", NODE, "--wait=false")
        chain.wait_gone("collected", timeout=20)
    finally:
        chain.standin.latency = 0
        chain.standin.gc.pod_quarantine = POD_GC_QUARANTINE
    wait_until(lambda: all(state != "RUNNING" for _id, state, _user in chain.jobs(uid)), 30,
               "the collected pod's job to be cancelled")
    assert len(chain.jobs(uid)) <= 1
    wait_node_ready(chain)
    assert "collected" not in chain.kubectl("get", "pods", "-o", "name").stdout


def test_kubelet_version_follows_the_apiserver(node_chain: Chain) -> None:
    wait_node_ready(node_chain)
    version = _node(node_chain)["status"]["nodeInfo"]["kubeletVersion"]  # type: ignore[index]
    assert version.startswith("v1.36.0+slurmlink."), version  # the stand-in answers /version as v1.36
    listed = node_chain.kubectl("get", "node", NODE, "-o", "wide").stdout
    assert version in listed
