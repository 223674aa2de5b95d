"""With 200 pods tracked, one status interval costs a constant number of SLURM commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.pods import Client, make_pod
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.waiting import wait_until

PODS = 200
COMMANDS = "slurmlink_slurm_commands_total"
POLLS = "slurmlink_api_poll_seconds_count"


@pytest.fixture()
def own_api(slurm_cluster: DevCluster, tmp_path: Path) -> Iterator[ApiProcess]:
    process = ApiProcess(api_config(slurm_cluster, free_port(), poll_interval=0.5), tmp_path)
    process.start()
    yield process
    process.stop()


def test_one_poll_costs_constant_slurm_commands(own_api: ApiProcess) -> None:
    client = Client(own_api.url)
    pods = []
    for _ in range(PODS):
        pod = make_pod([{"name": "main", "command": ["true"]}])
        # Held back by --begin, they stay pending: the poll has 200 live jobs to report on.
        pod["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--begin=now+1hour"}
        client.submit(pod)
        pods.append(pod)
    try:
        polls_before, commands_before = own_api.metric(POLLS), own_api.metric(COMMANDS)

        def four_polls_while_asked() -> bool:
            # The virtual kubelet asks about all pods, again and again, while we count.
            response = client.http.request("GET", "/status", content=json.dumps(pods))
            assert response.status_code == 200 and len(response.json()) == PODS
            return own_api.metric(POLLS) - polls_before >= 4

        wait_until(four_polls_while_asked, 60, "four status polls")
        polls = own_api.metric(POLLS) - polls_before
        commands = own_api.metric(COMMANDS) - commands_before
        # One squeue per poll (plus, at most, one sacct for jobs that left squeue): never one per pod.
        assert commands <= 2 * polls, f"{commands} SLURM commands for {polls} polls of {PODS} pods"
    finally:
        for pod in pods:
            client.delete(pod)
