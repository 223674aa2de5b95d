"""Node status and heartbeats as a kubelet keeps them: strategic-merge status patches and a Lease in
kube-node-lease renewed with MicroTime stamps (the format trap: exactly six fraction digits)."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
from lightkube import ApiError, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node

from tests.contract.cluster import Cluster, ContractNode, node_body

LEASE_NS = "kube-node-lease"


def _micro(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def spare_node(kube: Client) -> Iterator[str]:
    name = f"contract-spare-{secrets.token_hex(3)}"
    kube.create(Node.from_dict(node_body(name, "127.0.0.1", 10250)))
    yield name
    with contextlib.suppress(ApiError):
        kube.delete(Node, name)


def test_node_keeps_status_sent_on_create(kube: Client, node: ContractNode) -> None:
    got = kube.get(Node, node.name)
    assert got.status.daemonEndpoints.kubeletEndpoint.Port == node.kubelet.port
    assert {a.type for a in got.status.addresses} >= {"InternalIP", "Hostname"}
    assert got.status.allocatable is not None  # defaulted from capacity when absent


def test_node_status_patch_merges_conditions_and_addresses(kube: Client, spare_node: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    kube.patch(Node.Status, spare_node, {"status": {
        "conditions": [{"type": "SlurmlinkReachable", "status": "True", "reason": "Ping", "message": "ok",
                        "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.2"}]}})
    got = kube.get(Node, spare_node)
    conditions = {c.type: c.status for c in got.status.conditions}
    assert conditions == {"Ready": "True", "SlurmlinkReachable": "True"}
    addresses = {a.type: a.address for a in got.status.addresses}
    assert addresses["InternalIP"] == "127.0.0.2" and addresses["Hostname"] == spare_node


def test_node_status_patch_leaves_spec(kube: Client, spare_node: str) -> None:
    kube.patch(Node.Status, spare_node, {"spec": {"unschedulable": True}, "status": {"phase": "Running"}})
    assert not kube.get(Node, spare_node).spec.unschedulable


def test_kubectl_shows_node_ready(cluster: Cluster, node: ContractNode) -> None:
    table = cluster.kubectl("get", "node", node.name).stdout
    assert node.name in table and " Ready " in table


def test_node_delete(kube: Client) -> None:
    name = f"contract-gone-{secrets.token_hex(3)}"
    kube.create(Node.from_dict(node_body(name, "127.0.0.1", 10250)))
    kube.delete(Node, name)
    with pytest.raises(ApiError) as missing:
        kube.get(Node, name)
    assert missing.value.status.code == 404


@pytest.fixture
def lease_name(kube: Client) -> Iterator[str]:
    name = f"contract-lease-{secrets.token_hex(3)}"
    yield name
    with contextlib.suppress(ApiError):
        kube.delete(Lease, name, namespace=LEASE_NS)


def _lease(name: str, renew: str) -> dict:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": LEASE_NS},
            "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}}


def test_lease_create_and_renew_with_micro_time(cluster: Cluster, lease_name: str) -> None:
    first = dt.datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=dt.UTC)  # microsecond 0: the trap's case
    with cluster.raw() as http:
        created = http.post(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases",
                            json=_lease(lease_name, _micro(first)))
        assert created.status_code == 201, created.text
        assert created.json()["spec"]["renewTime"] == "2026-01-02T03:04:05.000000Z"
        renewed = created.json()
        renewed["spec"]["renewTime"] = _micro(first + dt.timedelta(seconds=10, microseconds=123456))
        answer = http.put(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{lease_name}", json=renewed)
        assert answer.status_code == 200, answer.text
        assert answer.json()["spec"]["renewTime"] == "2026-01-02T03:04:15.123456Z"
        stale = http.put(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases/{lease_name}", json=renewed)
        assert stale.status_code == 409


@pytest.mark.parametrize("renew", ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.123Z",
                                   "2026-01-02T03:04:05.123456789Z"])
def test_lease_refuses_other_time_shapes(cluster: Cluster, lease_name: str, renew: str) -> None:
    with cluster.raw() as http:
        answer = http.post(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases",
                           json=_lease(lease_name, renew))
    assert answer.status_code == 400 and answer.json()["reason"] == "BadRequest"


def test_lease_patch_renewal(cluster: Cluster, kube: Client, lease_name: str) -> None:
    with cluster.raw() as http:
        http.post(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases",
                  json=_lease(lease_name, _micro(dt.datetime.now(dt.UTC))))
    renew = _micro(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1))
    lease = kube.patch(Lease, lease_name, {"spec": {"renewTime": renew}}, namespace=LEASE_NS)
    assert lease.spec.renewTime is not None
    assert _micro(lease.spec.renewTime) == renew
