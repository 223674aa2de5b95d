"""Services and their EndpointSlices, as kube-controller-manager keeps them: the pods a Service selects, by
their podIP, ready as their Ready condition says, on the resolved targetPort (issue 15, item 3: the cluster
side of a pod's ports on the virtual node). Pods here have their status written by the test, as a kubelet
would write it."""

from __future__ import annotations

import json
from typing import Any

from lightkube import Client
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import Pod

from tests.contract.cluster import Cluster, ContractNode, pod_body
from tests.harness.waiting import wait_until

EndpointSlice = create_namespaced_resource("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices")


def _service(name: str, selector: dict[str, str], ports: list[dict[str, Any]]) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"selector": selector, "ports": ports}})


def _serving_pod(kube: Client, ns: str, node: str, name: str, labels: dict[str, str], address: str,
                 ready: bool) -> None:
    body = pod_body(name, node=node, labels=labels)
    body["spec"]["containers"][0]["ports"] = [{"name": "http", "containerPort": 8000}]
    kube.create(Pod.from_dict(body), namespace=ns)
    kube.patch(Pod.Status, name, {"status": {
        "phase": "Running", "podIP": address, "podIPs": [{"ip": address}],
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}, namespace=ns)


def _endpoints(kube: Client, ns: str, service: str) -> list[tuple[str, bool, list[tuple[str, int]]]]:
    """(address, ready, [(port name, number)]) of every endpoint of the Service's slices, sorted."""
    found = []
    for item in kube.list(EndpointSlice, namespace=ns, labels={"kubernetes.io/service-name": service}):
        slice_ = item.to_dict()
        ports = sorted((p.get("name") or "", p["port"]) for p in slice_.get("ports") or [])
        for endpoint in slice_.get("endpoints") or []:
            found.append((endpoint["addresses"][0], bool(endpoint["conditions"].get("ready")), ports))
    return sorted(found)


def test_a_service_lists_its_pods_by_address_and_readiness(cluster: Cluster, kube: Client, ns: str,
                                                            node: ContractNode) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_service(
        "web", {"app": "web"}, [{"name": "http", "port": 80, "targetPort": "http"},
                                {"name": "alt", "port": 81, "targetPort": 9000}]))
    service = cluster.kubectl("get", "service", "web", "-n", ns, "-o", "json")
    spec = json.loads(service.stdout)["spec"]
    assert spec["type"] == "ClusterIP" and spec["clusterIP"] and spec["ports"][0]["protocol"] == "TCP"
    table = cluster.kubectl("get", "service", "web", "-n", ns).stdout.split()
    assert table[:6] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert table[6:11] == ["web", "ClusterIP", spec["clusterIP"], "<none>", "80/TCP,81/TCP"]

    _serving_pod(kube, ns, node.name, "web-ready", {"app": "web"}, "10.244.7.1", ready=True)
    _serving_pod(kube, ns, node.name, "web-unready", {"app": "web"}, "10.244.7.2", ready=False)
    _serving_pod(kube, ns, node.name, "other", {"app": "other"}, "10.244.7.3", ready=True)
    ports = [("alt", 9000), ("http", 8000)]
    expected = [("10.244.7.1", True, ports), ("10.244.7.2", False, ports)]
    wait_until(lambda: _endpoints(kube, ns, "web") == expected, 30, f"the slices to list {expected}")
    slice_ = next(iter(kube.list(EndpointSlice, namespace=ns, labels={"kubernetes.io/service-name": "web"})))
    assert slice_.to_dict()["addressType"] == "IPv4"
    assert slice_.metadata.labels["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    assert slice_.metadata.ownerReferences[0].kind == "Service"

    kube.patch(Pod.Status, "web-unready", {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
               namespace=ns)
    expected = [("10.244.7.1", True, ports), ("10.244.7.2", True, ports)]
    wait_until(lambda: _endpoints(kube, ns, "web") == expected, 30, "the pod that became Ready to be ready")

    kube.patch(Pod.Status, "web-ready", {"status": {"phase": "Succeeded"}}, namespace=ns)
    expected = [("10.244.7.2", True, ports)]
    wait_until(lambda: _endpoints(kube, ns, "web") == expected, 30, "the finished pod to leave the slices")


def test_a_pod_without_an_address_is_not_listed(cluster: Cluster, kube: Client, ns: str,
                                                node: ContractNode) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_service("bare", {"app": "bare"}, [{"port": 80}]))
    body = pod_body("no-address", node=node.name, labels={"app": "bare"})
    kube.create(Pod.from_dict(body), namespace=ns)
    kube.patch(Pod.Status, "no-address", {"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}}, namespace=ns)

    def one_empty_slice() -> bool:
        slices = list(kube.list(EndpointSlice, namespace=ns, labels={"kubernetes.io/service-name": "bare"}))
        return len(slices) == 1 and not slices[0].to_dict().get("endpoints")
    wait_until(one_empty_slice, 30, "one EndpointSlice without endpoints")
    _serving_pod(kube, ns, node.name, "with-address", {"app": "bare"}, "10.244.8.1", ready=True)
    wait_until(lambda: _endpoints(kube, ns, "bare") == [("10.244.8.1", True, [("", 80)])], 30,
               "the addressed pod, on the Service's port (targetPort defaults to port)")


def _conditions(kube: Client, ns: str, service: str) -> dict[str, tuple[bool, bool, bool]]:
    """{address: (ready, serving, terminating)} of the Service's endpoints."""
    found = {}
    for item in kube.list(EndpointSlice, namespace=ns, labels={"kubernetes.io/service-name": service}):
        for endpoint in item.to_dict().get("endpoints") or []:
            conditions = endpoint["conditions"]
            found[endpoint["addresses"][0]] = (bool(conditions.get("ready")), bool(conditions.get("serving")),
                                               bool(conditions.get("terminating")))
    return found


def test_terminating_pods_are_serving_not_ready_unless_not_ready_ones_are_published(
        cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "elsewhere"},
        "spec": {"type": "ExternalName", "externalName": "example.org", "selector": {"app": "going"},
                 "ports": [{"port": 80}]}}))
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=_service("going", {"app": "going"}, [{"port": 80}]))
    published = json.loads(_service("published", {"app": "going"}, [{"port": 80}]))
    published["spec"]["publishNotReadyAddresses"] = True
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(published))
    _serving_pod(kube, ns, node.name, "going-ready", {"app": "going"}, "10.244.9.1", ready=True)
    _serving_pod(kube, ns, node.name, "going-unready", {"app": "going"}, "10.244.9.2", ready=False)
    wait_until(lambda: _conditions(kube, ns, "going") == {"10.244.9.1": (True, True, False),
                                                          "10.244.9.2": (False, False, False)}, 30,
               "a ready and a not-ready endpoint")
    wait_until(lambda: _conditions(kube, ns, "published") == {"10.244.9.1": (True, True, False),
                                                              "10.244.9.2": (True, False, False)}, 30,
               "both ready where not-ready addresses are published")

    for name in ("going-ready", "going-unready"):
        kube.delete(Pod, name, namespace=ns)  # bound to a node: they terminate, waiting for its kubelet
    wait_until(lambda: _conditions(kube, ns, "going") == {"10.244.9.1": (False, True, True),
                                                          "10.244.9.2": (False, False, True)}, 30,
               "terminating endpoints: not ready, serving as their Ready condition says")
    wait_until(lambda: _conditions(kube, ns, "published") == {"10.244.9.1": (True, True, True),
                                                              "10.244.9.2": (True, False, True)}, 30,
               "terminating endpoints still ready where not-ready addresses are published")
    assert list(kube.list(EndpointSlice, namespace=ns, labels={"kubernetes.io/service-name": "elsewhere"})) == []
