"""`kubectl logs` through the apiserver's pods/log proxy to the node's kubelet endpoint (a test server here)."""

from __future__ import annotations

import os
import subprocess

from lightkube import Client
from lightkube.resources.core_v1 import Pod

from tests.contract.cluster import KUBECTL, NO_SCHEDULER, Cluster, ContractNode, pod_body


def _pod_with_logs(kube: Client, ns: str, node: ContractNode, name: str, lines: list[str], **kwargs: object) -> None:
    kube.create(Pod.from_dict(pod_body(name, node=node.name, **kwargs)), namespace=ns)  # type: ignore[arg-type]
    for container in kwargs.get("containers", ("main",)):  # type: ignore[union-attr]
        node.kubelet.add(ns, name, container, lines)


def test_kubectl_logs_reaches_the_kubelet(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    _pod_with_logs(kube, ns, node, "talker", ["hello", "from", "slurm"])
    assert cluster.kubectl("logs", "talker", "-n", ns).stdout == "hello\nfrom\nslurm\n"
    request = node.kubelet.requests[-1]
    assert request["path"] == f"/containerLogs/{ns}/talker/main"
    if cluster.standin is not None:  # the stand-in's kubelet-client certificate is the one we can check
        assert request["client_user"] == "kube-apiserver-kubelet-client"


def test_log_options_are_forwarded(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    _pod_with_logs(kube, ns, node, "tail", ["one", "two", "three"])
    assert cluster.kubectl("logs", "tail", "-n", ns, "--tail=1").stdout == "three\n"
    assert node.kubelet.requests[-1]["params"]["tailLines"] == "1"
    stamped = cluster.kubectl("logs", "tail", "-n", ns, "--timestamps", "--limit-bytes=40").stdout
    params = node.kubelet.requests[-1]["params"]
    assert params["timestamps"] == "true" and params["limitBytes"] == "40"
    assert stamped.startswith("2026-01-01T00:00:00") and len(stamped) == 40


def test_kubectl_logs_follow_streams(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("follower", node=node.name)), namespace=ns)
    stream = node.kubelet.add(ns, "follower", "main", ["first"], finished=False)
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "KUBECACHEDIR": str(cluster.workdir / "kubecache")}
    with subprocess.Popen([str(KUBECTL), "logs", "-f", "follower", "-n", ns], stdout=subprocess.PIPE, text=True,
                          env=env) as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first\n"  # arrives before the container has finished
        stream.lines.append("second")
        assert follow.stdout.readline() == "second\n"
        stream.finished = True
        assert follow.wait(timeout=15) == 0
    assert node.kubelet.requests[-1]["params"]["follow"] == "true"


def test_lightkube_log(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    _pod_with_logs(kube, ns, node, "lightkube-log", ["a", "b"])
    assert list(kube.log("lightkube-log", namespace=ns)) == ["a\n", "b\n"]


def test_several_containers_need_a_name(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    _pod_with_logs(kube, ns, node, "pair", ["x"], containers=("left", "right"))
    with cluster.raw() as http:
        answer = http.get(f"/api/v1/namespaces/{ns}/pods/pair/log")
    assert answer.status_code == 400
    assert "a container name must be specified" in answer.json()["message"]
    assert cluster.kubectl("logs", "pair", "-n", ns, "-c", "right").stdout == "x\n"


def test_unbound_pod_has_an_empty_log(cluster: Cluster, kube: Client, ns: str) -> None:
    # No node, no location: the apiserver answers an empty success (204), not an error.
    kube.create(Pod.from_dict(pod_body("nowhere", **NO_SCHEDULER)), namespace=ns)
    with cluster.raw() as http:
        answer = http.get(f"/api/v1/namespaces/{ns}/pods/nowhere/log")
    assert answer.status_code in (200, 204) and answer.content == b""
    result = cluster.kubectl("logs", "nowhere", "-n", ns)
    assert result.stdout == ""


def test_kubelet_not_found_becomes_the_apiservers_own_message(cluster: Cluster, kube: Client, ns: str,
                                                               node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("unknown-to-kubelet", node=node.name)), namespace=ns)
    with cluster.raw() as http:
        answer = http.get(f"/api/v1/namespaces/{ns}/pods/unknown-to-kubelet/log")
    assert node.kubelet.requests[-1]["path"] == f"/containerLogs/{ns}/unknown-to-kubelet/main"
    body = answer.json()
    assert (answer.status_code, body["kind"], body["reason"]) == (404, "Status", "NotFound")
    assert body["message"] == "the server could not find the requested resource ( pods/log unknown-to-kubelet)"
    assert body["details"] == {"name": "unknown-to-kubelet", "kind": "pods/log"}
    result = cluster.kubectl("logs", "unknown-to-kubelet", "-n", ns, check=False)
    assert result.returncode != 0 and "is not known here" not in result.stderr
    assert "(NotFound): the server could not find the requested resource" in result.stderr
