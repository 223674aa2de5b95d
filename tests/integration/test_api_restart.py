"""kill -9 of the API with pods pending, running and finished: nothing lost, nothing submitted twice."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.pods import Client, exit_codes, make_pod, squeue_jobs
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.waiting import wait_until


@pytest.fixture()
def own_api(slurm_cluster: DevCluster, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(api_config(slurm_cluster, free_port()), tmp_path)
    process.start()
    yield process
    process.stop()


def sh(script: str) -> dict[str, object]:
    return {"name": "main", "command": ["sh", "-c", script]}


def test_restart_recovers_every_pod_from_slurm(own_api: ApiProcess, slurm_cluster: DevCluster) -> None:
    client = Client(own_api.url)
    finished = make_pod([sh("echo done; exit 4")])
    running = make_pod([sh("echo up; sleep 8; echo bye")])
    pending = make_pod([sh("echo late")])
    pending["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--begin=now+1hour"}
    jobs = {p["metadata"]["uid"]: client.submit(p) for p in (finished, running, pending)}
    client.finish(finished)
    client.wait_phase(running, ("Running",))
    assert client.phase(pending).phase == "Pending"

    own_api.kill()
    own_api.start()
    client = Client(own_api.url)

    # Right after the restart, before anyone re-sends the pods, the API knows them from SLURM.
    for pod in (finished, running, pending):
        assert client.status(pod).jid == jobs[pod["metadata"]["uid"]]
    phase, status = client.finish(finished)
    assert (phase.phase, exit_codes(status)) == ("Failed", {"main": 4})
    phase, status = client.finish(running, timeout=60)
    assert (phase.phase, exit_codes(status)) == ("Succeeded", {"main": 0})
    assert client.logs(running, "main") == b"up\nbye\n"
    pending_phase = client.phase(pending)
    assert pending_phase.phase == "Pending" and pending_phase.reason == "BeginTime"

    # The virtual kubelet re-sending its creates after the restart must not make new jobs.
    for pod in (finished, running, pending):
        assert client.submit(pod) == jobs[pod["metadata"]["uid"]]
    env = {**os.environ, **slurm_cluster.env}
    for pod in (finished, running, pending):
        assert len(squeue_jobs(env, f"slurmlink-{pod['metadata']['uid']}")) == 1
    client.delete(pending)
    wait_until(lambda: client.phase(pending).phase == "Failed", 30, "the pending pod to end after delete")
