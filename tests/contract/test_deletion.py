"""Graceful deletion as a kubelet confirms it: deletionTimestamp first, gone on a grace-0 delete with a uid
precondition; pods no node has taken, or that have finished, go at once."""

from __future__ import annotations

from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from tests.contract.cluster import NO_SCHEDULER, Cluster, ContractNode, pod_body


def _gone(kube: Client, name: str, ns: str) -> bool:
    try:
        kube.get(Pod, name, namespace=ns)
    except ApiError as exc:
        return exc.status.code == 404
    return False


def _confirm(cluster: Cluster, ns: str, name: str, uid: str) -> int:
    """The kubelet's final delete: grace 0 with the pod's uid as precondition (a raw DeleteOptions body)."""
    with cluster.raw() as http:
        answer = http.request("DELETE", f"/api/v1/namespaces/{ns}/pods/{name}", json={
            "apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
    return answer.status_code


def test_graceful_delete_of_a_bound_pod(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    pod = kube.create(Pod.from_dict(pod_body("graceful", node=node.name)), namespace=ns)
    kube.delete(Pod, "graceful", namespace=ns)
    marked = kube.get(Pod, "graceful", namespace=ns)
    assert marked.metadata.deletionTimestamp is not None
    assert marked.metadata.deletionGracePeriodSeconds == 30
    kube.delete(Pod, "graceful", namespace=ns)  # again: nothing changes while it is pending
    assert kube.get(Pod, "graceful", namespace=ns).metadata.deletionTimestamp == marked.metadata.deletionTimestamp
    assert _confirm(cluster, ns, "graceful", "00000000-0000-0000-0000-000000000000") == 409
    assert not _gone(kube, "graceful", ns)
    assert _confirm(cluster, ns, "graceful", pod.metadata.uid) == 200
    assert _gone(kube, "graceful", ns)


def test_uid_precondition_names_both_uids(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    pod = kube.create(Pod.from_dict(pod_body("precondition", node=node.name)), namespace=ns)
    with cluster.raw() as http:
        answer = http.request("DELETE", f"/api/v1/namespaces/{ns}/pods/precondition", json={
            "gracePeriodSeconds": 0, "preconditions": {"uid": "not-the-uid"}})
    body = answer.json()
    assert answer.status_code == 409 and body["reason"] == "Conflict"
    assert "not-the-uid" in body["message"] and pod.metadata.uid in body["message"]


def test_custom_grace_period_and_shortening(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("shorter", node=node.name)), namespace=ns)
    kube.delete(Pod, "shorter", namespace=ns, grace_period=20)
    assert kube.get(Pod, "shorter", namespace=ns).metadata.deletionGracePeriodSeconds == 20
    kube.delete(Pod, "shorter", namespace=ns, grace_period=10)
    assert kube.get(Pod, "shorter", namespace=ns).metadata.deletionGracePeriodSeconds == 10
    kube.delete(Pod, "shorter", namespace=ns, grace_period=25)  # longer: ignored
    assert kube.get(Pod, "shorter", namespace=ns).metadata.deletionGracePeriodSeconds == 10
    kube.delete(Pod, "shorter", namespace=ns, grace_period=0)
    assert _gone(kube, "shorter", ns)


def test_unbound_pod_goes_at_once(kube: Client, ns: str) -> None:
    kube.create(Pod.from_dict(pod_body("unbound", **NO_SCHEDULER)), namespace=ns)
    kube.delete(Pod, "unbound", namespace=ns)
    assert _gone(kube, "unbound", ns)


def test_finished_pod_goes_at_once(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("finished", node=node.name, restartPolicy="Never")), namespace=ns)
    kube.patch(Pod.Status, "finished", {"status": {"phase": "Succeeded"}}, namespace=ns)
    kube.delete(Pod, "finished", namespace=ns)
    assert _gone(kube, "finished", ns)


def test_delete_answers_with_the_pod(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("answer", node=node.name)), namespace=ns)
    with cluster.raw() as http:
        answer = http.delete(f"/api/v1/namespaces/{ns}/pods/answer")
    assert answer.status_code == 200
    assert answer.json()["kind"] == "Pod" and answer.json()["metadata"]["deletionTimestamp"]


def test_kubectl_delete_wait_false_leaves_the_pod_terminating(cluster: Cluster, kube: Client, ns: str,
                                                              node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("terminating", node=node.name)), namespace=ns)
    cluster.kubectl("delete", "pod", "terminating", "-n", ns, "--wait=false")
    table = cluster.kubectl("get", "pod", "terminating", "-n", ns).stdout
    assert "Terminating" in table


def test_finalizers_hold_the_object(kube: Client, ns: str) -> None:
    body = pod_body("held", **NO_SCHEDULER)
    body["metadata"]["finalizers"] = ["slurmlink.io/contract"]
    kube.create(Pod.from_dict(body), namespace=ns)
    kube.delete(Pod, "held", namespace=ns)
    held = kube.get(Pod, "held", namespace=ns)
    assert held.metadata.deletionTimestamp is not None
    kube.patch(Pod, "held", {"metadata": {"finalizers": None}}, namespace=ns, patch_type=PatchType.MERGE)
    assert _gone(kube, "held", ns)

