"""What users see through kubectl: apply, get (table and JSON), describe with events in both Event APIs."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

from lightkube import Client
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret

from tests.contract.cluster import NO_SCHEDULER, Cluster, ContractNode, pod_body


def _core_event(ns: str, pod: Pod, reason: str, message: str) -> dict:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"generateName": f"{pod.metadata.name}.",
                                                                "namespace": ns},
            "involvedObject": {"kind": "Pod", "namespace": ns, "name": pod.metadata.name, "uid": pod.metadata.uid,
                               "apiVersion": "v1"},
            "reason": reason, "message": message, "type": "Normal", "count": 1,
            "source": {"component": "slurmlink-vk", "host": "contract"},
            "firstTimestamp": stamp, "lastTimestamp": stamp}


def _events_v1(ns: str, pod: Pod, reason: str, note: str) -> dict:
    # events.k8s.io/v1 checks generateName as a name prefix: "pod." would be refused, "pod-" is fine.
    return {"apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"generateName": f"{pod.metadata.name}-", "namespace": ns},
            "eventTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "reportingController": "slurmlink.io/vk", "reportingInstance": "contract", "action": "Submit",
            "reason": reason, "note": note, "type": "Normal",
            "regarding": {"kind": "Pod", "namespace": ns, "name": pod.metadata.name, "uid": pod.metadata.uid,
                          "apiVersion": "v1"}}


def test_events_show_in_kubectl_describe(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    pod = kube.create(Pod.from_dict(pod_body("described", node=node.name)), namespace=ns)
    with cluster.raw() as http:
        core = http.post(f"/api/v1/namespaces/{ns}/events", json=_core_event(ns, pod, "Submitted",
                                                                            "SLURM job 4242 submitted"))
        assert core.status_code == 201, core.text
        assert core.json()["metadata"]["name"].startswith("described.")
        new = http.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events",
                        json=_events_v1(ns, pod, "Started", "SLURM job 4242 started"))
        assert new.status_code == 201, new.text
    described = cluster.kubectl("describe", "pod", "described", "-n", ns).stdout
    assert "Submitted" in described and "SLURM job 4242 submitted" in described
    assert "Started" in described and "SLURM job 4242 started" in described
    assert node.name in described


def test_events_are_one_store_in_two_shapes(cluster: Cluster, kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("shapes", **NO_SCHEDULER)), namespace=ns)
    with cluster.raw() as http:
        created = http.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json=_events_v1(ns, pod, "Shaped",
                                                                                              "note"))
        assert created.status_code == 201, created.text
        core = http.get(f"/api/v1/namespaces/{ns}/events",
                        params={"fieldSelector": "involvedObject.name=shapes,reason=Shaped"}).json()["items"]
    assert len(core) == 1
    assert core[0]["message"] == "note" and core[0]["involvedObject"]["uid"] == pod.metadata.uid
    assert core[0]["reportingComponent"] == "slurmlink.io/vk"


def test_generate_name_is_a_name_prefix_only_for_events_v1(cluster: Cluster, kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("dotted", **NO_SCHEDULER)), namespace=ns)
    dotted = _events_v1(ns, pod, "Dotted", "note")
    dotted["metadata"]["generateName"] = "dotted."
    with cluster.raw() as http:
        refused = http.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json=dotted)
        legacy = http.post(f"/api/v1/namespaces/{ns}/events", json=_core_event(ns, pod, "Dotted", "note"))
    assert refused.status_code == 422, refused.text
    assert [c["field"] for c in refused.json()["details"]["causes"]] == ["metadata.generateName"]
    assert legacy.status_code == 201, legacy.text
    assert legacy.json()["metadata"]["name"].startswith("dotted.")


def test_events_v1_requires_its_fields(cluster: Cluster, kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("strict", **NO_SCHEDULER)), namespace=ns)
    body = _events_v1(ns, pod, "Incomplete", "note")
    del body["reportingController"]
    with cluster.raw() as http:
        answer = http.post(f"/apis/events.k8s.io/v1/namespaces/{ns}/events", json=body)
    assert answer.status_code == 422


def test_event_about_another_namespace_is_422(cluster: Cluster, kube: Client, ns: str) -> None:
    pod = kube.create(Pod.from_dict(pod_body("elsewhere", **NO_SCHEDULER)), namespace=ns)
    body = _core_event(ns, pod, "Wrong", "namespace")
    body["involvedObject"]["namespace"] = "default"
    with cluster.raw() as http:
        answer = http.post(f"/api/v1/namespaces/{ns}/events", json=body)
    assert answer.status_code == 422


def test_kubectl_apply_creates_then_configures(cluster: Cluster, tmp_path: Path, ns: str) -> None:
    manifest = tmp_path / "pod.json"
    body = pod_body("applied", labels={"rev": "1"}, **NO_SCHEDULER)
    manifest.write_text(json.dumps(body))
    assert "created" in cluster.kubectl("apply", "-n", ns, "-f", str(manifest)).stdout
    body["metadata"]["labels"]["rev"] = "2"
    manifest.write_text(json.dumps(body))
    assert "configured" in cluster.kubectl("apply", "-n", ns, "-f", str(manifest)).stdout
    listed = json.loads(cluster.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)
    assert listed["kind"] == "List"
    applied = next(item for item in listed["items"] if item["metadata"]["name"] == "applied")
    assert applied["metadata"]["labels"]["rev"] == "2"
    assert "kubectl.kubernetes.io/last-applied-configuration" in applied["metadata"]["annotations"]


def test_kubectl_get_table(cluster: Cluster, kube: Client, ns: str) -> None:
    kube.create(Pod.from_dict(pod_body("tabled", **NO_SCHEDULER)), namespace=ns)
    header, *rows = cluster.kubectl("get", "pods", "-n", ns).stdout.splitlines()
    assert header.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert any(row.split()[:3] == ["tabled", "0/1", "Pending"] for row in rows)


def test_kubectl_get_with_field_selector(cluster: Cluster, kube: Client, ns: str, node: ContractNode) -> None:
    kube.create(Pod.from_dict(pod_body("on-the-node", node=node.name)), namespace=ns)
    kube.create(Pod.from_dict(pod_body("off-the-node", **NO_SCHEDULER)), namespace=ns)
    out = cluster.kubectl("get", "pods", "-n", ns, "--field-selector", f"spec.nodeName={node.name}", "-o", "name")
    assert out.stdout.split() == ["pod/on-the-node"]


def test_configmaps_and_secrets(cluster: Cluster, kube: Client, ns: str) -> None:
    settings = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"key": "value"}}
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(settings))
    assert kube.get(ConfigMap, "settings", namespace=ns).data == {"key": "value"}
    with cluster.raw() as http:
        answer = http.post(f"/api/v1/namespaces/{ns}/secrets", json={
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token"},
            "stringData": {"access_token": "abc"}})
    assert answer.status_code == 201
    secret = kube.get(Secret, "token", namespace=ns)
    assert secret.type == "Opaque" and base64.b64decode(secret.data["access_token"]) == b"abc"
    assert not secret.stringData
    ca = kube.get(ConfigMap, "kube-root-ca.crt", namespace=ns)
    assert "BEGIN CERTIFICATE" in ca.data["ca.crt"]
