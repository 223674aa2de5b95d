"""What SLURM prints while it fails or requeues a job, as slurmlink reads it (the words seen on 22.05 and 24.11;
tests/integration/test_slurm_failures.py makes these happen on the real SLURM)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from slurmlink.api.poller import StatusPoller
from slurmlink.api.registry import PodEntry, Registry
from slurmlink.core.records import ContainerRecord, JobInfo
from slurmlink.slurm import rest_shapes
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.commands import SEP, sbatch, squeue
from slurmlink.slurm.runner import CommandResult, error_from
from slurmlink.translate.status import container_statuses, pod_phase
from tests.harness.memory_slurm import MemorySlurm

MUNGE_DOWN_SBATCH = (  # 24.11.5 (22.05.8 says slurm_send_node_msg where 24.11 says slurm_buffers_pack_msg)
    "sbatch: error: If munged is up, restart with --num-threads=10\n"
    'sbatch: error: Munge encode failed: Failed to access "/x/munge.socket": No such file or directory '
    "(Did you start munged?)\n"
    "sbatch: error: slurm_buffers_pack_msg: auth_g_create: REQUEST_SUBMIT_BATCH_JOB has authentication error\n"
    "sbatch: error: Batch job submission failed: Protocol authentication error\n"
)
MUNGE_DOWN_SQUEUE = (
    'squeue: error: Munge encode failed: Failed to access "/x/munge.socket": No such file or directory '
    "(Did you start munged?)\n"
    "squeue: error: slurm_send_node_msg: auth_g_create: REQUEST_JOB_INFO has authentication error\n"
    "slurm_load_jobs error: Protocol authentication error\n"
)
NO_CONTROLLER_SQUEUE = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"


def squeue_line(state: str, end: str) -> str:
    fields = ["7", "slurmlink-u1", "sltest1", state, "None", "0:0", "1795929871", "1795929872", end, "/w", "ns/p"]
    return SEP.join(fields) + "\n"


def result(err: str, rc: int = 1) -> CommandResult:
    return CommandResult(("cmd",), rc, b"", err.encode())


@pytest.mark.parametrize("stderr", [MUNGE_DOWN_SQUEUE, NO_CONTROLLER_SQUEUE])
def test_squeue_without_munge_or_controller_is_a_transient_error(stderr: str) -> None:
    error = error_from(result(stderr), "squeue")
    assert error.transient  # the poller keeps every pod's last state and tries again


def test_sbatch_without_munge_is_transient_and_names_munge() -> None:
    with pytest.raises(SlurmError) as info:
        sbatch.parse(result(MUNGE_DOWN_SBATCH))
    assert info.value.transient  # the API answers 503: the caller retries, the pod is not Failed
    assert "Munge encode failed" in info.value.message


def test_a_job_being_requeued_is_told_from_one_ending() -> None:
    # squeue says COMPLETING for both; only the one that ends has an end time (22.05 and 24.11 alike).
    [requeued] = squeue.parse(squeue_line("COMPLETING", "NONE"))
    [ending] = squeue.parse(squeue_line("COMPLETING", "1795929899"))
    assert (requeued.state, ending.state) == ("REQUEUED", "COMPLETING")


def test_rest_v0038_job_being_requeued() -> None:
    raw = {"job_id": 7, "name": "slurmlink-u1", "job_state": "COMPLETING", "end_time": 0, "start_time": 1795929872}
    assert rest_shapes.parse_jobs({"jobs": [raw]})[0].state == "REQUEUED"
    assert rest_shapes.parse_jobs({"jobs": [{**raw, "end_time": 1795929899}]})[0].state == "COMPLETING"


POD = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1"}, "spec": {"containers": [{"name": "main"}]}}
# What the run SLURM requeued left in the pod's directory: killed by the requeue's SIGTERM.
EARLIER_RUN = {"main": ContainerRecord("main", started_at=datetime(2026, 12, 4, tzinfo=UTC),
                                       finished_at=datetime(2026, 12, 4, 0, 1, tzinfo=UTC), exit_code=143,
                                       reason="Killed")}


@pytest.mark.parametrize(("state", "reason", "shown"), [
    ("REQUEUED", "", "Requeued"), ("PENDING", "BeginTime", "BeginTime"), ("PENDING", "", "Pending"),
    ("REQUEUE_HOLD", "JobHeldAdmin", "JobHeldAdmin"),
])
def test_a_requeued_pod_is_pending_whatever_its_last_run_left(state: str, reason: str, shown: str) -> None:
    job = JobInfo(job_id="7", name="slurmlink-u1", user="sltest1", state=state, reason=reason)
    containers, inits = container_statuses(POD, job, EARLIER_RUN)
    phase = pod_phase(containers, inits)
    assert (phase.phase, phase.reason) == ("Pending", shown)
    assert containers[0]["state"]["waiting"]["reason"] == shown


def test_records_of_a_running_job_still_count() -> None:
    job = JobInfo(job_id="7", name="slurmlink-u1", user="sltest1", state="RUNNING",
                  start_time=datetime(2026, 12, 4, tzinfo=UTC))
    ended = {"main": replace(EARLIER_RUN["main"], exit_code=3, reason="")}
    containers, inits = container_statuses(POD, job, ended)
    assert pod_phase(containers, inits).phase == "Failed"  # a container of this run that ended by itself


def test_a_container_stopped_by_slurm_waits_for_slurm_to_say_how_the_job_ended() -> None:
    # The requeue's SIGTERM stopped the container; the file watch reads that before the next poll shows the
    # job requeued (seen on 24.11 in mode 1): the pod must not be Failed meanwhile.
    running = JobInfo(job_id="7", name="slurmlink-u1", user="sltest1", state="RUNNING",
                      start_time=datetime(2026, 12, 4, tzinfo=UTC))
    containers, inits = container_statuses(POD, running, EARLIER_RUN)
    assert pod_phase(containers, inits).phase == "Running"
    assert "running" in containers[0]["state"] and containers[0]["ready"] is False
    cancelled = replace(running, state="CANCELLED", end_time=datetime(2026, 12, 4, 0, 1, tzinfo=UTC))
    containers, inits = container_statuses(POD, cancelled, EARLIER_RUN)
    phase = pod_phase(containers, inits)
    assert (phase.phase, containers[0]["state"]["terminated"]["exitCode"]) == ("Failed", 143)


def test_a_requeued_job_running_again_is_not_judged_by_its_earlier_run() -> None:
    # The second run started; its script has not yet cleared what the requeued run left (seen on 22.05).
    job = JobInfo(job_id="7", name="slurmlink-u1", user="sltest1", state="RUNNING",
                  start_time=datetime(2026, 12, 4, 0, 2, tzinfo=UTC))
    containers, inits = container_statuses(POD, job, EARLIER_RUN)
    assert pod_phase(containers, inits).phase == "Pending"
    assert "terminated" not in containers[0]["state"]


def test_a_job_id_given_to_another_pods_job_is_not_this_pods_job() -> None:
    registry = Registry()
    registry.entries["u1"] = PodEntry(uid="u1", namespace="ns", name="p", user="sltest1", workdir="/j/ns-u1",
                                      job_id="7", created=0.0)
    # A slurmctld restarted from state saved before job 7 was submitted: it gave id 7 to another pod's job.
    slurm = MemorySlurm()
    slurm.put(JobInfo(job_id="7", name="slurmlink-other", user="sltest1", state="RUNNING", workdir="/j/ns-other"))
    poller = StatusPoller(registry, slurm, 1.0, lambda ns, uid: f"/j/{ns}-{uid}")
    asyncio.run(poller.poll_once())
    job = registry.entries["u1"].job
    assert job is not None and job.state == "FAILED" and "no longer known to SLURM" in job.reason
