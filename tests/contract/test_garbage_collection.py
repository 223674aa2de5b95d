"""What kube-controller-manager does after `kubectl delete node` that a kubelet must live with: the garbage
collector deletes a Lease owned by a Node uid that no longer exists (also one made afterwards with that uid),
and keeps one whose owner is the Node of now."""

from __future__ import annotations

import contextlib
import datetime as dt
import secrets
from collections.abc import Iterator

import pytest
from lightkube import ApiError, Client
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Node

from tests.contract.cluster import node_body
from tests.harness.waiting import wait_until

LEASE_NS = "kube-node-lease"


def _lease(name: str, owner_uid: str) -> Lease:
    renew = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Lease.from_dict({"metadata": {"name": name, "namespace": LEASE_NS, "ownerReferences": [
        {"apiVersion": "v1", "kind": "Node", "name": name, "uid": owner_uid}]},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}})


def _gone(kube: Client, name: str) -> bool:
    try:
        kube.get(Lease, name, namespace=LEASE_NS)
    except ApiError as exc:
        return exc.status.code == 404
    return False


@pytest.fixture
def node_name(kube: Client) -> Iterator[str]:
    name = f"contract-gc-{secrets.token_hex(3)}"
    yield name
    with contextlib.suppress(ApiError):
        kube.delete(Node, name)
    with contextlib.suppress(ApiError):
        kube.delete(Lease, name, namespace=LEASE_NS)


def test_lease_of_a_deleted_node_is_collected_and_follows_the_new_one(kube: Client, node_name: str) -> None:
    first = kube.create(Node.from_dict(node_body(node_name, "127.0.0.1", 10250)))
    kube.create(_lease(node_name, str(first.metadata.uid)))
    kube.delete(Node, node_name)
    wait_until(lambda: _gone(kube, node_name), 30, "the lease of the deleted node to be collected", 0.05)

    second = kube.create(Node.from_dict(node_body(node_name, "127.0.0.1", 10250)))
    kube.create(_lease(node_name, str(first.metadata.uid)))  # still naming the old uid: collected again
    wait_until(lambda: _gone(kube, node_name), 30, "a lease naming the old uid to be collected", 0.05)
    kept = kube.create(_lease(node_name, str(second.metadata.uid)))
    with pytest.raises(AssertionError, match="timed out"):  # owned by the Node of now: never collected
        wait_until(lambda: _gone(kube, node_name), 2, "the lease to stay", 0.05)
    assert kube.get(Lease, node_name, namespace=LEASE_NS).metadata.uid == kept.metadata.uid
