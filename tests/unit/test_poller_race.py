"""Two races between a status poll and the statuses it serves, each seen with the real SLURM:

- a poll whose job list was taken while a pod's job was being submitted took that job for gone (1 pod in
  1,000 in bench/vk_scale.py reported Failed two seconds after its submission);
- a restarted API showed an adopted, just-finished job before it had read its records (a kill -9 test of the
  API in CI): the pod came out Failed with exit code 1.

Kubernetes never lets a Failed pod run again, so both were for good. The timing cannot be forced with the
real sbatch and squeue, so these tests order the steps with the in-memory SLURM (tests/harness/memory_slurm.py),
held at the one point tested: a job is listed only once its submission has returned; reading records takes time.
"""

from __future__ import annotations

import asyncio

from slurmlink.api.config import ApiConfig
from slurmlink.api.service import PodService
from slurmlink.core.records import ContainerRecord, JobInfo, PodDirectory
from slurmlink.translate.job import BatchJob
from slurmlink.translate.status import pod_phase
from slurmlink.wire.interlink import parse_create
from tests.harness.memory_slurm import MemorySlurm
from tests.harness.pods import make_pod


class OrderedSlurm(MemorySlurm):
    """Lists the jobs that exist when `jobs()` is called; the submission ends while that list is on its way."""

    def __init__(self) -> None:
        super().__init__(first_job_id=7)
        self.submitting = asyncio.Event()
        self.listed = asyncio.Event()

    async def submit(self, job: BatchJob, user: str) -> str:
        self.submitting.set()
        await self.listed.wait()  # the poll has taken its list without this job
        return await super().submit(job, user)

    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        listing = await super().jobs(fresh=fresh)
        self.listed.set()
        await asyncio.sleep(0.05)  # meanwhile the submission returns and the pod enters the registry
        return listing


def test_a_job_submitted_during_a_poll_is_not_taken_for_gone() -> None:
    async def scenario() -> str:
        backend = OrderedSlurm()
        service = PodService(ApiConfig.model_validate({"users": {"default": "nobody"}, "job_root": "/tmp/jobs"}),
                             backend)
        service.recovered.set()
        pod = make_pod([{"name": "main", "image": "x", "command": ["true"]}], name="p", uid="u-1",
                       restart_policy=None)
        create = asyncio.create_task(service.create(parse_create({"pod": pod})))
        await backend.submitting.wait()
        await service.poller.poll_once()  # its list was taken before the job existed
        assert await create == "7"
        status = service.statuses([pod])[0]
        return pod_phase(status.containers, status.init_containers).phase

    assert asyncio.run(scenario()) == "Pending"


class RestartedSlurm(MemorySlurm):
    """After an API restart: a job that has just completed, whose pod the API must adopt; reading its records
    takes a while, during which a status is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.put(JobInfo(job_id="8", name="slurmlink-u-2", user="nobody", state="COMPLETED", exit_code=0,
                         workdir="/tmp/jobs/default-u-2", comment="default/q"))
        self.write_records("8", ContainerRecord(name="main", exit_code=0))
        self.reading = asyncio.Event()
        self.read = asyncio.Event()

    async def containers(self, pod: PodDirectory) -> dict[str, ContainerRecord]:
        self.reading.set()
        await self.read.wait()
        return await super().containers(pod)


def test_an_adopted_pod_is_never_shown_finished_without_its_records() -> None:
    async def scenario() -> list[str]:
        backend = RestartedSlurm()
        service = PodService(ApiConfig.model_validate({"users": {"default": "nobody"}, "job_root": "/tmp/jobs"}),
                             backend)
        pod = make_pod([{"name": "main", "image": "x", "command": ["true"]}], name="q", uid="u-2",
                       restart_policy=None)
        poll = asyncio.create_task(service.poller.poll_once())
        await backend.reading.wait()
        phases = []
        status = service.statuses([pod])[0]  # asked while the adopted job's records are being read
        phases.append(pod_phase(status.containers, status.init_containers).phase)
        backend.read.set()
        await poll
        status = service.statuses([pod])[0]
        phases.append(pod_phase(status.containers, status.init_containers).phase)
        return phases

    # Unknown for a moment (the caller keeps what it had), then Succeeded: never a made-up Failed.
    assert asyncio.run(scenario()) == ["Pending", "Succeeded"]
