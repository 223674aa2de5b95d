"""Pods as interLink users and kubectl users write them, through the whole chain: interLink's usual annotations
(the flags options slurmlink owns are dropped with a Warning event; identity-changing ones fail the pod), the
Node authorizer's lag right after binding (retried quietly: no Warning event), a command that is not found
(exit 127, as Kubernetes' runtimes), and the kubectl-ready example pod."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from slurmlink import examples
from slurmlink.devcluster import DevCluster
from tests.harness.pods import pod_manifest
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, VkProcess, api_config, node_kubeconfig, vk_config
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain, open_chain, wait_node_ready

pytestmark = pytest.mark.timeout(120)
EXAMPLE = examples.pod_path("kubectl-pod")


@pytest.fixture(scope="module")
def site_chain(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """An API whose site runs `slurm-job.vk.io/pre-exec` (as interLink's SLURM plugin does), behind its own vk."""
    workdir = Path(tmp_path_factory.mktemp("vk-interlink"))
    config = api_config(slurm_cluster, free_port())
    config["site"] = {**config["site"], "allow_pre_exec": True}
    api = ApiProcess(config, workdir)
    api.start()
    try:
        with open_chain(slurm_cluster, api, workdir) as opened:
            wait_node_ready(opened)
            yield opened
    finally:
        api.stop()


def _events(chain: Chain, pod: str) -> list[dict]:
    out = chain.kubectl("get", "events", "--field-selector", f"involvedObject.name={pod}", "-o", "json").stdout
    return list(json.loads(out)["items"])


def _terminated(pod: dict) -> dict:
    return dict(pod["status"]["containerStatuses"][0]["state"].get("terminated") or {})


def test_pod_with_interlinks_usual_annotations_runs_and_is_told_what_was_dropped(site_chain: Chain) -> None:
    manifest = pod_manifest("interlink-usual", "echo ran as a SLURM job")
    manifest["metadata"]["annotations"] = {
        "slurm-job.vk.io/flags": "--job-name=test-pod-cfg -t 30 --ntasks=1 --nodes=1 --mem-per-cpu=200",
        "slurm-job.vk.io/pre-exec": "export IL_PRE_EXEC=1",
        "slurm-job.vk.io/singularity-options": "--nv",  # read by interLink's plugin only; ignored here
        "slurm-job.vk.io/image-root": "docker://",
    }
    site_chain.apply(manifest)
    pod = site_chain.wait_phase("interlink-usual", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert site_chain.kubectl("logs", "interlink-usual").stdout == "ran as a SLURM job\n"
    assert len(site_chain.jobs(pod["metadata"]["uid"])) <= 1  # named slurmlink-<uid>, not test-pod-cfg
    warnings = [e for e in _events(site_chain, "interlink-usual") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["FlagsDropped"], warnings
    assert "--job-name (slurmlink names the job slurmlink-<pod uid>" in warnings[0]["message"]
    described = site_chain.kubectl("describe", "pod", "interlink-usual").stdout
    assert "FlagsDropped" in described


def test_an_identity_changing_flag_still_fails_the_pod(site_chain: Chain) -> None:
    manifest = pod_manifest("interlink-uid", "echo never")
    manifest["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--job-name=x --uid=0"}
    site_chain.apply(manifest)
    pod = site_chain.wait_phase("interlink-uid", ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["reason"] == "FlagNotAllowed", pod["status"]
    assert "--uid is not allowed: it would change who runs the job" in pod["status"]["message"]
    assert site_chain.jobs(pod["metadata"]["uid"]) == []
    assert "FlagsDropped" not in {e["reason"] for e in _events(site_chain, "interlink-uid")}


def test_node_authorizer_lag_after_binding_is_retried_quietly(site_chain: Chain) -> None:
    faults = site_chain.standin.faults
    site_chain.apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "lag-config"},
                      "data": {"greeting": "hello after the lag"}})
    container = {"name": "main", "image": "debian", "command": ["sh", "-c", "echo $GREETING; test -s /run/sa/token"],
                 "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "lag-config",
                                                                                "key": "greeting"}}}],
                 "volumeMounts": [{"name": "sa", "mountPath": "/run/sa", "readOnly": True}]}
    token_volume = {"name": "sa", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    # The ConfigMap read is refused three times (then the TokenRequest goes through)...
    before = faults.node_reads_refused
    faults.refuse_node_reads(3)
    site_chain.apply(pod_manifest("lag-configmap", "", containers=[container], volumes=[token_volume]))
    pod = site_chain.wait_phase("lag-configmap", ("Succeeded", "Failed"))
    assert faults.node_reads_refused - before == 3
    # ... and for a pod with only a token, the TokenRequest twice.
    token_only = {**container, "env": [], "command": ["sh", "-c", "test -s /run/sa/token && echo token"]}
    faults.refuse_node_reads(2)
    site_chain.apply(pod_manifest("lag-token", "", containers=[token_only], volumes=[token_volume]))
    token_pod = site_chain.wait_phase("lag-token", ("Succeeded", "Failed"))
    assert faults.node_reads_refused - before == 5
    for ended, name, log in ((pod, "lag-configmap", "hello after the lag\n"), (token_pod, "lag-token", "token\n")):
        assert ended["status"]["phase"] == "Succeeded", ended["status"]
        assert site_chain.kubectl("logs", name).stdout == log
        assert [e for e in _events(site_chain, name) if e["type"] == "Warning"] == []


@pytest.mark.parametrize(("runtime", "command", "code"), [
    ("bwrap", ["no-such-command"], 127), ("bwrap", ["/usr/bin/no-such-command"], 127),
    ("bwrap", ["/etc/passwd"], 126), ("host", ["no-such-command"], 127), ("host", ["/etc/passwd"], 126)])
def test_a_command_that_cannot_run_exits_127_or_126(site_chain: Chain, runtime: str, command: list[str],
                                                    code: int) -> None:
    name = f"exec-{runtime}-{code}-{len(command[0])}"
    manifest = pod_manifest(name, "", containers=[{"name": "main", "image": "debian", "command": command}])
    manifest["metadata"]["annotations"] = {"slurmlink.io/runtime": runtime}
    site_chain.apply(manifest)
    pod = site_chain.wait_phase(name, ("Succeeded", "Failed"))
    assert pod["status"]["phase"] == "Failed"
    assert _terminated(pod)["exitCode"] == code, pod["status"]


def test_the_kubectl_example_pod_runs_on_its_virtual_node(site_chain: Chain) -> None:
    """The kubectl-pod example as shipped, on a vk named like the vk example's node (hpc-site-a)."""
    documents = [d for d in yaml.safe_load_all(EXAMPLE.read_text()) if d]
    pod = next(d for d in documents if d["kind"] == "Pod")
    node = pod["spec"]["nodeSelector"]["kubernetes.io/hostname"]
    workdir = site_chain.workdir / "example-node"
    workdir.mkdir()
    standin = site_chain.standin
    config = vk_config(standin, node_kubeconfig(standin, workdir / "kubeconfig", node), site_chain.api.url)
    config["node"]["name"] = node
    vk = VkProcess(config, workdir, standin.kubelet_client_cert)
    vk.start()
    try:
        site_chain.kubectl("apply", "-f", str(EXAMPLE))
        name = pod["metadata"]["name"]
        ended = site_chain.wait_phase(name, ("Succeeded", "Failed"))
        assert ended["spec"]["nodeName"] == node
        assert ended["status"]["phase"] == "Succeeded", ended["status"]
        wait_until(lambda: site_chain.kubectl("logs", name).stdout.startswith("Hello from SLURM job "), 10,
                   "the example's log")
    finally:
        vk.stop()
