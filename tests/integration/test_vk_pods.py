# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""What the vk sends with a pod (ConfigMaps, Secrets, projected volumes), how it waits for missing ones, and
that status costs one batched API call per interval however many pods run."""

from __future__ import annotations

import base64

import pytest

from slurmlink.wire.names import CHANGES_ROUTE
from tests.harness.pods import pod_manifest
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain

pytestmark = pytest.mark.timeout(120)


def _waiting_reason(chain: Chain, name: str) -> str:
    statuses = ((chain.pod(name) or {}).get("status") or {}).get("containerStatuses") or []
    return str(((statuses[0].get("state") or {}).get("waiting") or {}).get("reason", "")) if statuses else ""


def test_pod_waits_for_a_missing_configmap_then_runs(chain: Chain) -> None:
    container = {"name": "main", "image": "debian", "command": ["sh", "-c", "echo $GREETING; cat /run/creds/key"],
                 "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "late-config",
                                                                                "key": "greeting"}}}],
                 "volumeMounts": [{"name": "creds", "mountPath": "/run/creds"}]}
    chain.apply(pod_manifest("refs-late", "", containers=[container],
                             volumes=[{"name": "creds", "secret": {"secretName": "late-secret"}}]))
    wait_until(lambda: _waiting_reason(chain, "refs-late") == "CreateContainerConfigError", 15,
               "the pod to say what it waits for")
    assert 'configmap "late-config" not found' in chain.kubectl("describe", "pod", "refs-late").stdout
    chain.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late-config"},
                 "data": {"greeting": "hello from a configmap"}},
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "late-secret"},
                 "data": {"key": base64.b64encode(b"s3cret\n").decode()}})
    pod = chain.wait_phase("refs-late", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert chain.kubectl("logs", "refs-late").stdout == "hello from a configmap\ns3cret\n"


def test_pod_fails_when_a_reference_never_appears(chain: Chain) -> None:
    container = {"name": "main", "image": "debian", "command": ["true"],
                 "envFrom": [{"configMapRef": {"name": "never-there"}}]}
    chain.apply(pod_manifest("refs-never", "", containers=[container]))
    pod = chain.wait_phase("refs-never", ("Failed",), timeout=30)  # missing_reference_timeout is 6 s here
    assert pod["status"]["reason"] == "CreateContainerConfigError"
    assert "never-there" in pod["status"]["message"]
    assert chain.jobs(pod["metadata"]["uid"]) == []


def test_projected_volume_with_token_ca_and_downward_api(chain: Chain) -> None:
    script = "test -s /run/sa/token && grep -q 'BEGIN CERTIFICATE' /run/sa/ca.crt && cat /run/sa/namespace"
    container = {"name": "main", "image": "debian", "command": ["sh", "-c", script],
                 "volumeMounts": [{"name": "api", "mountPath": "/run/sa", "readOnly": True}]}
    volume = {"name": "api", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}}
    chain.apply(pod_manifest("projected", "", containers=[container], volumes=[volume]))
    pod = chain.wait_phase("projected", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert chain.kubectl("logs", "projected").stdout == "default"


def test_status_is_one_batched_call_per_interval(chain: Chain) -> None:
    """However many pods run, one status round is one /status call, never one per pod. Counted against the
    vk's own count of rounds, not against time; the change feed (on by default) has a route of its own."""
    names = [f"batch-{i}" for i in range(5)]
    chain.apply(*(pod_manifest(name, "sleep 600") for name in names))  # running for the whole count
    try:
        for name in names:
            chain.wait_phase(name, ("Running",), timeout=60)
        rounds_before = _rounds(chain)  # the vk's count first, the API's after: every call the API counts from
        calls_before = _status_calls(chain)  # here on is of a round the vk counts by its reading below

        def four_calls() -> float:
            calls = _status_calls(chain) - calls_before
            return calls if calls >= 4 else 0.0
        calls = wait_until(four_calls, 60, "four /status calls")
        rounds = _rounds(chain) - rounds_before
        # one round may be on its way at the last reading; one call per pod would be five calls a round
        assert calls <= rounds + 1, (calls, rounds)
        assert chain.vk.metric("slurmlink_vk_api_calls_total", route=CHANGES_ROUTE, outcome="ok") >= 1
    finally:
        chain.kubectl("delete", "pod", *names, "--wait=false")
        for name in names:
            chain.wait_gone(name)


def _rounds(chain: Chain) -> float:
    return chain.vk.metric("slurmlink_vk_status_round_seconds_count")


def _status_calls(chain: Chain) -> float:
    total = 0.0
    for line in chain.api_metrics().splitlines():
        if line.startswith("slurmlink_api_requests_total{") and 'route="/status"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_per_pod_status_calls_for_upstream_interlink(chain: Chain) -> None:
    """api.batch_status false (upstream interLink): a second node whose vk asks about one pod per call."""
    from tests.harness.services import VkProcess, node_kubeconfig, vk_config

    name = "slurmlink-per-pod"
    workdir = chain.workdir / "per-pod"
    workdir.mkdir()
    config = vk_config(chain.standin, node_kubeconfig(chain.standin, workdir / "kubeconfig", name), chain.api.url,
                       api={"url": chain.api.url, "batch_status": False, "changes": False})
    config["node"]["name"] = name
    second = VkProcess(config, workdir, chain.standin.kubelet_client_cert)
    second.start()
    try:
        manifests = [pod_manifest(f"per-pod-{i}", f"exit {i}") for i in range(2)]
        for manifest in manifests:
            manifest["spec"]["nodeSelector"] = {"kubernetes.io/hostname": name}
        chain.apply(*manifests)
        ended = [chain.wait_phase(f"per-pod-{i}", ("Succeeded", "Failed")) for i in range(2)]
        assert [pod["status"]["phase"] for pod in ended] == ["Succeeded", "Failed"]
        assert {pod["spec"]["nodeName"] for pod in ended} == {name}
        assert second.metric("slurmlink_vk_api_calls_total", route="/status", outcome="ok") >= 2
    finally:
        second.stop()


def test_a_pod_finished_by_someone_else_stays_finished(chain: Chain) -> None:
    # The apiserver would accept Failed -> Running (kubernetes.md); a kubelet never sends it, nor may the vk.
    sleeper = {"image": "docker.io/library/debian:bookworm"}
    chain.apply(pod_manifest("finished-elsewhere", "", containers=[
        {**sleeper, "name": "short", "command": ["sleep", "3"]},
        {**sleeper, "name": "long", "command": ["sleep", "6"]}]))
    pod = chain.wait_phase("finished-elsewhere", ("Running",), timeout=30)
    with chain.standin.client() as http:
        answer = http.patch("/api/v1/namespaces/default/pods/finished-elsewhere/status",
                            headers={"Content-Type": "application/strategic-merge-patch+json"},
                            json={"status": {"phase": "Failed", "reason": "Evicted", "message": "by a test"}})
    assert answer.status_code == 200, answer.text
    # The job goes on (nothing cancels it here) and ends well; its end is not reported over the Failed phase.
    wait_until(lambda: "finished-elsewhere shows Failed, set by someone else: not patching it to Succeeded"
               in chain.vk.log_text(), 40, "the vk to leave the finished pod as it is")
    assert [state for _, state, _ in chain.jobs(pod["metadata"]["uid"])] == ["COMPLETED"]
    assert chain.phase("finished-elsewhere") == "Failed"
