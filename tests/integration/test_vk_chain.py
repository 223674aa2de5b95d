# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""The full chain: kubectl → stand-in apiserver → slurmlink vk → slurmlink api (mode 2) → the test SLURM."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from tests.harness.pods import NODE, pod_manifest
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import KUBECTL, Chain, wait_node_ready

pytestmark = pytest.mark.timeout(120)


def _conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _terminated(pod: dict, name: str = "main") -> dict:
    for status in (pod["status"].get("containerStatuses") or []) + (pod["status"].get("initContainerStatuses") or []):
        if status["name"] == name:
            return status["state"].get("terminated") or {}
    raise KeyError(name)


def test_node_registers_with_taints_capacity_and_a_lease(chain: Chain) -> None:
    wait_node_ready(chain)
    node = chain.standin.get("nodes", NODE)
    assert node is not None
    taints = {(t["key"], t.get("value"), t["effect"]) for t in node["spec"]["taints"]}
    assert ("virtual-node.interlink/no-schedule", "true", "NoSchedule") in taints
    assert ("slurmlink.io/test", "yes", "PreferNoSchedule") in taints
    assert node["metadata"]["labels"]["slurmlink.io/site"] == "test"
    status = node["status"]
    assert int(status["capacity"]["cpu"]) >= 1 and status["capacity"]["memory"].endswith("Mi")
    assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == chain.vk.port
    assert {"type": "InternalIP", "address": "127.0.0.1"} in status["addresses"]
    conditions = _conditions(node)
    assert conditions["InterLinkReachable"]["status"] == "True"
    first = chain.standin.get("leases", NODE, "kube-node-lease", "coordination.k8s.io")
    assert first is not None and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["spec"]["renewTime"])
    wait_until(lambda: chain.standin.get("leases", NODE, "kube-node-lease", "coordination.k8s.io")["spec"]
               ["renewTime"] != first["spec"]["renewTime"], 10, "the lease to be renewed")


def test_pods_end_succeeded_and_failed_with_their_exit_codes(chain: Chain) -> None:
    chain.apply(pod_manifest("chain-ok", "echo hello from slurm; echo second line"),
                pod_manifest("chain-fails", "echo about to fail >&2; exit 3"))
    ok = chain.wait_phase("chain-ok", ("Succeeded", "Failed"))
    failed = chain.wait_phase("chain-fails", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", json.dumps(ok["status"], indent=1)
    assert _terminated(ok)["exitCode"] == 0
    assert failed["status"]["phase"] == "Failed"
    assert _terminated(failed)["exitCode"] == 3
    conditions = _conditions(ok)
    assert conditions["PodScheduled"]["status"] == "True" and conditions["Initialized"]["status"] == "True"
    assert conditions["Ready"]["status"] == "False" and conditions["Ready"]["reason"] == "PodCompleted"
    job = conditions["slurmlink.io/SlurmJob"]["message"]
    job_id = job.split()[-1]
    assert job_id.isdigit()
    [[seen_id, _state, _user]] = chain.jobs(ok["metadata"]["uid"])
    assert seen_id == job_id
    assert chain.kubectl("logs", "chain-ok").stdout == "hello from slurm\nsecond line\n"
    assert chain.kubectl("logs", "chain-ok", "--tail=1").stdout == "second line\n"
    described = chain.kubectl("describe", "pod", "chain-fails").stdout
    assert "Submitted" in described and re.search(r"Submitted to SLURM as job \d+", described), described
    assert "Failed" in described
    events = chain.kubectl("get", "events", "--field-selector", "involvedObject.name=chain-ok", "-o",
                           "jsonpath={.items[*].reason}").stdout.split()
    assert {"Submitted", "Started", "Finished"} <= set(events), events


def test_kubectl_logs_follow_streams_until_the_container_ends(chain: Chain) -> None:
    chain.apply(pod_manifest("chain-follow", "for i in 1 2 3 4; do echo line $i; sleep 0.7; done"))
    chain.wait_phase("chain-follow", ("Running", "Succeeded"))
    env = {**os.environ, "KUBECONFIG": str(chain.standin.kubeconfig), "KUBECACHEDIR": str(chain.workdir / "kc")}
    started = time.monotonic()
    with subprocess.Popen([str(KUBECTL), "logs", "-f", "chain-follow"], stdout=subprocess.PIPE, text=True,
                          env=env) as follow:
        assert follow.stdout is not None
        first = follow.stdout.readline()
        assert first.startswith("line ")
        rest = follow.stdout.read()
        assert follow.wait(timeout=30) == 0
    assert (first + rest).splitlines()[-1] == "line 4"
    assert time.monotonic() - started < 30


def test_kubectl_delete_cancels_the_job_and_the_pod_goes_away(chain: Chain) -> None:
    chain.apply(pod_manifest("chain-delete", "echo started; sleep 300"))
    pod = chain.wait_phase("chain-delete", ("Running",))
    uid = pod["metadata"]["uid"]
    wait_until(lambda: chain.jobs(uid) and chain.jobs(uid)[0][1] == "RUNNING", 20, "the job to run")
    started = time.monotonic()
    chain.kubectl("delete", "pod", "chain-delete", "--wait=true", timeout=60)
    assert chain.pod("chain-delete") is None
    assert time.monotonic() - started < 40
    wait_until(lambda: all(state != "RUNNING" for _id, state, _user in chain.jobs(uid)), 20,
               "the job to be cancelled")
    assert len(chain.jobs(uid)) <= 1
