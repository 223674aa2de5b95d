"""With accounting (slurmdbd and MariaDB; `dev-cluster up --accounting`): a job that has left slurmctld's
memory is still known to sacct, to slurmrestd's /slurmdb/ and so to slurmlink (mode 2), on the release under
test (22.05, or 24.11 with SLURMLINK_TEST_SLURM=24.11).

One pod is run once for the whole module; its job is then waited out of slurmctld's memory (MinJobAge is 2 s
here, but slurmctld purges old jobs in a pass once a minute), so the module takes about a minute.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.slurm.cli import CliBackend, CliConfig
from tests.harness.cluster import TEST_REST_VERSION
from tests.harness.pods import Client, exit_codes, make_pod
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.waiting import wait_until

PURGE_DEADLINE = 150  # seconds: MinJobAge, then up to a minute until slurmctld's next purge pass


@dataclass
class OldJob:
    cluster: DevCluster
    api: ApiProcess
    pod: dict[str, object]
    job_id: str


def _known_to_controller(cluster: DevCluster, job_id: str) -> bool:
    proc = subprocess.run(["scontrol", "-o", "show", "job", job_id], env={**os.environ, **cluster.env},
                          capture_output=True, text=True, timeout=30)
    return proc.returncode == 0 and f"JobId={job_id} " in proc.stdout


@pytest.fixture(scope="module")
def old_job(slurm_accounting_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OldJob]:
    """A pod that failed with exit code 3, whose job slurmctld has since forgotten (slurmlink API running)."""
    cluster = slurm_accounting_cluster
    api = ApiProcess(api_config(cluster, free_port()), tmp_path_factory.mktemp("api-acct"))
    api.start()
    try:
        client = Client(api.url)
        pod = make_pod([{"name": "main", "command": ["sh", "-c", "echo done; exit 3"]}])
        job_id = client.submit(pod)
        phase, status = client.finish(pod)
        assert (phase.phase, exit_codes(status)) == ("Failed", {"main": 3})
        wait_until(lambda: not _known_to_controller(cluster, job_id), PURGE_DEADLINE,
                   f"job {job_id} to leave slurmctld's memory", interval=1)
        yield OldJob(cluster, api, pod, job_id)
    finally:
        api.stop()


def test_associations_of_the_test_users(slurm_accounting_cluster: DevCluster) -> None:
    found = set(slurm_accounting_cluster.associations())
    assert {(user, "slurmlink") for user in slurm_accounting_cluster.users} <= found


def test_sacct_knows_the_forgotten_job(old_job: OldJob) -> None:
    user = old_job.cluster.users[0]
    proc = subprocess.run(
        ["runuser", "-u", user, "--", "sacct", "-X", "-n", "-P", "-j", old_job.job_id,
         "--format=JobID,User,State,ExitCode"],
        env={**os.environ, **old_job.cluster.env}, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [f"{old_job.job_id}|{user}|FAILED|3:0"]


def test_slurmdb_rest_knows_the_forgotten_job(old_job: OldJob) -> None:
    cluster, user = old_job.cluster, old_job.cluster.users[0]
    response = httpx.get(f"{cluster.rest_url}/slurmdb/{TEST_REST_VERSION}/job/{old_job.job_id}", timeout=30,
                         headers={"X-SLURM-USER-NAME": user, "X-SLURM-USER-TOKEN": cluster.token(user)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not body.get("errors"), body["errors"]
    [job] = body["jobs"]
    assert (str(job["job_id"]), job["user"]) == (old_job.job_id, user)
    current = job["state"]["current"]  # "FAILED" up to v0.0.38; ["FAILED"] from v0.0.40
    assert (current if isinstance(current, list) else [current]) == ["FAILED"]
    if cluster.slurm != "22.05":  # 22.05's /slurmdb/ says 0 for every exit code (the database is right)
        assert job["exit_code"]["return_code"]["number"] == 3


def test_cli_backend_reads_the_forgotten_job_from_accounting(old_job: OldJob) -> None:
    cluster = old_job.cluster
    backend = CliBackend(CliConfig(job_root=str(cluster.job_root), bin_dir=str(cluster.bin_dir or ""),
                                   env={"SLURM_CONF": str(cluster.conf_path)}))
    found = asyncio.run(backend.finished([old_job.job_id]))
    job = found[old_job.job_id]
    assert (job.state, job.exit_code, job.user, backend.accounting) == ("FAILED", 3, cluster.users[0], True)
    assert Path(job.workdir).parent == cluster.job_root


def test_api_status_of_the_forgotten_job(old_job: OldJob) -> None:
    """The running API asked accounting once the job left squeue: the pod still ends as it did."""
    client = Client(old_job.api.url)
    phase, status = client.finish(old_job.pod)
    assert (phase.phase, exit_codes(status)) == ("Failed", {"main": 3})
    assert status.jid == old_job.job_id


def test_restarted_api_adopts_the_forgotten_job(old_job: OldJob) -> None:
    """An API restarted after the job left squeue finds it in accounting (cli.accounting_lookback_hours):
    it knows the pod before the virtual kubelet sends it again, and sending it again makes no second job."""
    old_job.api.kill()
    old_job.api.start()
    client = Client(old_job.api.url)
    status = client.status(old_job.pod)  # served only once the API recovered its pods from SLURM
    assert status.jid == old_job.job_id
    phase, status = client.finish(old_job.pod)
    assert (phase.phase, exit_codes(status)) == ("Failed", {"main": 3})
    assert client.submit(old_job.pod) == old_job.job_id
    # the API writes its log every 0.2 s (logs.BatchingStreamHandler)
    wait_until(lambda: "adopted pod" in old_job.api.log_text(), 5, "the adoption in the API's log")
