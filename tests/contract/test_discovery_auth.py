"""Discovery documents and authentication, as kubectl and a kubelet see them."""

from __future__ import annotations

from lightkube.resources.core_v1 import Pod

from tests.contract.cluster import Cluster


def test_version_and_core_discovery(cluster: Cluster) -> None:
    with cluster.raw() as http:
        version = http.get("/version").json()
        assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
        assert "v1" in http.get("/api").json()["versions"]
        core = {r["name"]: r for r in http.get("/api/v1").json()["resources"]}
    for name in ("pods", "pods/status", "pods/log", "pods/binding", "nodes", "nodes/status", "events",
                 "configmaps", "secrets", "serviceaccounts", "serviceaccounts/token", "namespaces"):
        assert name in core, name
    assert core["pods"]["namespaced"] and not core["nodes"]["namespaced"]
    assert {"get", "list", "watch", "create", "delete", "patch"} <= set(core["pods"]["verbs"])


def test_group_discovery(cluster: Cluster) -> None:
    with cluster.raw() as http:
        groups = {g["name"]: g for g in http.get("/apis").json()["groups"]}
        for group in ("coordination.k8s.io", "events.k8s.io", "certificates.k8s.io"):
            assert group in groups
            assert any(v["version"] == "v1" for v in groups[group]["versions"])
        leases = http.get("/apis/coordination.k8s.io/v1").json()
    assert any(r["name"] == "leases" and r["namespaced"] for r in leases["resources"])


def test_aggregated_discovery(cluster: Cluster) -> None:
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    with cluster.raw() as http:
        answer = http.get("/apis", headers={"Accept": accept})
    assert "as=APIGroupDiscoveryList" in answer.headers["content-type"]
    body = answer.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    names = {item["metadata"].get("name") for item in body["items"]}
    assert "coordination.k8s.io" in names


def test_kubectl_api_resources(cluster: Cluster) -> None:
    out = cluster.kubectl("api-resources", "-o", "name").stdout.split()
    for name in ("pods", "nodes", "leases.coordination.k8s.io", "events.events.k8s.io",
                 "certificatesigningrequests.certificates.k8s.io"):
        assert name in out, name


def test_bad_token_is_401(cluster: Cluster) -> None:
    with cluster.raw(token="not-a-valid-token") as http:  # noqa: S106
        answer = http.get("/api/v1/namespaces/default/pods")
    assert answer.status_code == 401
    assert answer.json()["kind"] == "Status" and answer.json()["reason"] == "Unauthorized"


def test_kubeconfig_identity_lists_pods(cluster: Cluster) -> None:
    with cluster.client() as client:
        assert isinstance(list(client.list(Pod, namespace="default")), list)
