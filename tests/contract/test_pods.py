"""Pods: create with defaults, get/list with selectors, optimistic concurrency, Status errors, status patches."""

from __future__ import annotations

import pytest
from lightkube import ApiError, Client
from lightkube.resources.core_v1 import Pod
from lightkube.types import PatchType

from tests.contract.cluster import NO_SCHEDULER, Cluster, ContractNode, pod_body


def _error(exc: pytest.ExceptionInfo[ApiError]) -> dict:
    return exc.value.response.json()


def test_create_sets_identity_and_defaults(kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("defaults")), namespace=ns)
    meta, spec = pod.metadata, pod.spec
    assert meta.uid and meta.resourceVersion and meta.creationTimestamp
    assert pod.status.phase == "Pending"
    assert spec.restartPolicy == "Always"
    assert spec.terminationGracePeriodSeconds == 30
    assert spec.dnsPolicy == "ClusterFirst"
    assert spec.schedulerName == "default-scheduler"
    assert spec.serviceAccountName == "default"
    assert spec.containers[0].terminationMessagePath == "/dev/termination-log"
    assert spec.containers[0].imagePullPolicy == "IfNotPresent"
    assert pod.status.qosClass == "BestEffort"
    # The ServiceAccount admission mounts the API-access volume into every container.
    mounts = [m.mountPath for m in spec.containers[0].volumeMounts]
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts


def test_generate_name(kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body()), namespace=ns)
    assert pod.metadata.name.startswith("contract-") and len(pod.metadata.name) == len("contract-") + 5


def test_create_ignores_client_status(kube: Client, ns: str) -> None:
    body = pod_body("status-on-create")
    body["status"] = {"phase": "Running"}
    assert kube.create(Pod.from_dict(body), namespace=ns).status.phase == "Pending"


def test_not_found_and_already_exists_are_status_objects(kube: Client, ns: str) -> None:
    with pytest.raises(ApiError) as missing:
        kube.get(Pod, "no-such-pod", namespace=ns)
    body = _error(missing)
    assert (body["kind"], body["status"], body["reason"], body["code"]) == ("Status", "Failure", "NotFound", 404)
    assert body["details"] == {"name": "no-such-pod", "kind": "pods"}
    assert body["message"] == 'pods "no-such-pod" not found'
    kube.create(Pod.from_dict(pod_body("twice")), namespace=ns)
    with pytest.raises(ApiError) as twice:
        kube.create(Pod.from_dict(pod_body("twice")), namespace=ns)
    assert (_error(twice)["reason"], _error(twice)["code"]) == ("AlreadyExists", 409)


def test_invalid_name_is_422(kube: Client, ns: str) -> None:
    with pytest.raises(ApiError) as bad:
        kube.create(Pod.from_dict(pod_body("Not_A_Name")), namespace=ns)
    assert (_error(bad)["reason"], _error(bad)["code"]) == ("Invalid", 422)
    assert any(c["field"] == "metadata.name" for c in _error(bad)["details"]["causes"])


def test_missing_container_image_is_422(kube: Client, ns: str) -> None:
    body = pod_body("no-image")
    del body["spec"]["containers"][0]["image"]
    with pytest.raises(ApiError) as bad:
        kube.create(Pod.from_dict(body), namespace=ns)
    assert _error(bad)["code"] == 422


def test_list_with_label_and_field_selectors(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("on-node", node=node.name, labels={"app": "a"})), namespace=ns)
    kube.create(Pod.from_dict(pod_body("elsewhere", labels={"app": "b"}, tolerate=False)), namespace=ns)
    names = {p.metadata.name for p in kube.list(Pod, namespace=ns, fields={"spec.nodeName": node.name})}
    assert names == {"on-node"}
    assert {p.metadata.name for p in kube.list(Pod, namespace=ns, labels={"app": "b"})} == {"elsewhere"}
    assert {p.metadata.name for p in kube.list(Pod, namespace=ns, fields={"metadata.name": "elsewhere"})} == {
        "elsewhere"}
    across = {p.metadata.name for p in kube.list(Pod, namespace="*", fields={"metadata.namespace": ns})}
    assert across == {"on-node", "elsewhere"}


def test_list_carries_a_resource_version(kube: Client, ns: str) -> None:
    listing = kube.list(Pod, namespace=ns)
    list(listing)
    assert int(listing.resourceVersion) > 0


def test_unknown_field_selector_is_400(cluster: Cluster, ns: str) -> None:
    with cluster.raw() as http:
        answer = http.get(f"/api/v1/namespaces/{ns}/pods", params={"fieldSelector": "spec.noSuchField=x"})
    assert answer.status_code == 400 and answer.json()["reason"] == "BadRequest"


def test_stale_put_is_409(kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("cas", labels={"v": "1"}, **NO_SCHEDULER)), namespace=ns)
    pod.metadata.labels["v"] = "2"
    kube.replace(pod)
    pod.metadata.labels["v"] = "3"  # still carries the old resourceVersion
    with pytest.raises(ApiError) as stale:
        kube.replace(pod)
    assert (_error(stale)["reason"], _error(stale)["code"]) == ("Conflict", 409)
    assert "the object has been modified" in _error(stale)["message"]


def test_bound_pod_cannot_move(kube: Client, ns: str, node: ContractNode) -> None:
    pod = kube.create(Pod.from_dict(pod_body("pinned", node=node.name)), namespace=ns)
    with pytest.raises(ApiError) as moved:
        kube.patch(Pod, "pinned", {"spec": {"nodeName": "another-node"}}, namespace=ns)
    assert _error(moved)["code"] == 422
    assert kube.get(Pod, "pinned", namespace=ns).spec.nodeName == pod.spec.nodeName


def _running(name: str, ready: bool = False) -> dict:
    return {"name": name, "ready": ready, "restartCount": 0, "image": "busybox:1.36", "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}


def test_status_patch_merges_conditions_by_type(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("conditions", node=node.name)), namespace=ns)
    kube.patch(Pod.Status, "conditions", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}}, namespace=ns)
    pod = kube.patch(Pod.Status, "conditions", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                     namespace=ns)
    assert {c.type: c.status for c in pod.status.conditions} == {"Ready": "True", "Initialized": "True"}
    assert pod.status.phase == "Running"


def test_status_patch_replaces_container_statuses_whole(cluster: Cluster, kube: Client, ns: str,
                                                        node: ContractNode) -> None:
    # containerStatuses has no patch strategy (+listType=atomic): a kubelet must send the complete list.
    kube.create(Pod.from_dict(pod_body("statuses", node=node.name, containers=("a", "b"))), namespace=ns)
    kube.patch(Pod.Status, "statuses", {"status": {"phase": "Running",
                                                   "containerStatuses": [_running("a"), _running("b")]}},
               namespace=ns)
    pod = kube.patch(Pod.Status, "statuses", {"status": {"containerStatuses": [_running("b", ready=True)]}},
                     namespace=ns)
    assert [(s.name, s.ready) for s in pod.status.containerStatuses] == [("b", True)]
    # The element is replaced too: a state left as null is simply absent afterwards.
    finished = {**_running("a"), "state": {"waiting": None, "running": None, "terminated": {
        "exitCode": 0, "reason": "Completed", "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:05Z"}}}
    kube.patch(Pod.Status, "statuses", {"status": {"containerStatuses": [finished, _running("b", ready=True)]}},
               namespace=ns)
    with cluster.raw() as http:
        stored = http.get(f"/api/v1/namespaces/{ns}/pods/statuses").json()["status"]["containerStatuses"]
    assert [s["name"] for s in stored] == ["a", "b"]
    assert list(stored[0]["state"]) == ["terminated"] and stored[0]["state"]["terminated"]["exitCode"] == 0


def test_status_and_main_resource_are_separate(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("separate", node=node.name)), namespace=ns)
    kube.patch(Pod.Status, "separate", {"spec": {"activeDeadlineSeconds": 5}, "status": {"phase": "Running"}},
               namespace=ns)
    pod = kube.get(Pod, "separate", namespace=ns)
    assert pod.status.phase == "Running" and pod.spec.activeDeadlineSeconds is None
    kube.patch(Pod, "separate", {"metadata": {"labels": {"x": "y"}}, "status": {"phase": "Failed"}}, namespace=ns)
    pod = kube.get(Pod, "separate", namespace=ns)
    assert pod.status.phase == "Running" and pod.metadata.labels == {"x": "y"}


def test_merge_and_json_patches(kube: Client, ns: str) -> None:
    kube.create(Pod.from_dict(pod_body("patches", labels={"keep": "1", "drop": "1"})), namespace=ns)
    pod = kube.patch(Pod, "patches", {"metadata": {"labels": {"drop": None, "new": "1"}}}, namespace=ns,
                     patch_type=PatchType.MERGE)
    assert pod.metadata.labels == {"keep": "1", "new": "1"}
    pod = kube.patch(Pod, "patches", [{"op": "test", "path": "/metadata/labels/keep", "value": "1"},
                                      {"op": "replace", "path": "/metadata/labels/keep", "value": "2"}],
                     namespace=ns, patch_type=PatchType.JSON)
    assert pod.metadata.labels["keep"] == "2"
    with pytest.raises(ApiError) as failed:
        kube.patch(Pod, "patches", [{"op": "test", "path": "/metadata/labels/keep", "value": "nope"}],
                   namespace=ns, patch_type=PatchType.JSON)
    assert _error(failed)["code"] == 422


def test_noop_patch_keeps_resource_version(kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("noop", labels={"a": "1"}, **NO_SCHEDULER)), namespace=ns)
    again = kube.patch(Pod, "noop", {"metadata": {"labels": {"a": "1"}}}, namespace=ns)
    assert again.metadata.resourceVersion == pod.metadata.resourceVersion


def test_times_are_stored_in_whole_seconds(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("seconds", node=node.name)), namespace=ns)
    kube.patch(Pod.Status, "seconds", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-02T03:04:05.678901Z"}]}}, namespace=ns)
    pod = kube.get(Pod, "seconds", namespace=ns)
    stamp = next(c.lastTransitionTime for c in pod.status.conditions if c.type == "Ready")
    assert stamp.microsecond == 0 and stamp.second == 5


def test_apiserver_lets_a_finished_pod_run_again(kube: Client, ns: str, node: ContractNode) -> None:
    # Only kubelets refuse to move a pod out of Succeeded/Failed; the apiserver's validation accepts it.
    kube.create(Pod.from_dict(pod_body("done", node=node.name, restartPolicy="Never")), namespace=ns)
    kube.patch(Pod.Status, "done", {"status": {"phase": "Succeeded"}}, namespace=ns)
    assert kube.patch(Pod.Status, "done", {"status": {"phase": "Running"}}, namespace=ns).status.phase == "Running"


def test_terminated_container_may_not_run_again_under_never(kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("once", node=node.name, restartPolicy="Never")), namespace=ns)
    ended = {**_running("main"), "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}
    kube.patch(Pod.Status, "once", {"status": {"phase": "Failed", "containerStatuses": [ended]}}, namespace=ns)
    with pytest.raises(ApiError) as back:
        kube.patch(Pod.Status, "once", {"status": {"containerStatuses": [_running("main")]}}, namespace=ns)
    assert _error(back)["code"] == 422
