"""A poll whose job list was taken while a pod's job was being submitted must not take that job for gone.

Seen once in 1,000 pods with the real SLURM (bench/vk_scale.py): the pod was reported Failed ("no longer
known to SLURM") two seconds after its submission, and Kubernetes never lets a Failed pod run again. The
timing cannot be forced with the real sbatch, so this test orders the two steps with a scheduler stand-in
that behaves like SLURM on the one point tested: a job is listed only once its submission has returned.
"""

from __future__ import annotations

import asyncio

from slurmlink.api.config import ApiConfig
from slurmlink.api.service import PodService
from slurmlink.interlink.types import parse_create
from slurmlink.slurm.base import Capacity, ContainerRecord, JobInfo, SchedulerBackend
from slurmlink.translate.job import BatchJob
from slurmlink.translate.status import pod_phase


class OrderedSlurm(SchedulerBackend):
    """Lists the jobs that exist when `jobs()` is called; the submission ends while that list is on its way."""

    def __init__(self) -> None:
        self.existing: list[JobInfo] = []
        self.submitting = asyncio.Event()
        self.listed = asyncio.Event()

    async def submit(self, job: BatchJob, user: str) -> str:
        self.submitting.set()
        await self.listed.wait()  # the poll has taken its list without this job
        self.existing.append(JobInfo(job_id="7", name=job.name, user=user, state="PENDING", workdir=job.workdir))
        return "7"

    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        listing = list(self.existing)
        self.listed.set()
        await asyncio.sleep(0.05)  # meanwhile the submission returns and the pod enters the registry
        return listing

    async def workdir_owner(self, workdir: str, job_id: str = "") -> str | None:
        return None

    async def finished(self, job_ids: list[str]) -> dict[str, JobInfo]:
        return {}  # no accounting

    async def cancel(self, job_id: str, user: str, signal: str | None = None, only_state: str | None = None) -> None:
        pass

    async def containers(self, workdir: str, user: str, job_id: str = "") -> dict[str, ContainerRecord]:
        return {}  # the job has not started: no records yet

    async def read_log(self, workdir: str, user: str, container: str, offset: int = 0, job_id: str = "") -> bytes:
        return b""

    async def capacity(self) -> Capacity:
        return Capacity(cpus=1, memory_mb=1024)


def test_a_job_submitted_during_a_poll_is_not_taken_for_gone() -> None:
    async def scenario() -> str:
        backend = OrderedSlurm()
        service = PodService(ApiConfig.model_validate({"users": {"default": "nobody"}, "job_root": "/tmp/jobs"}),
                             backend)
        service.recovered.set()
        pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"},
               "spec": {"containers": [{"name": "main", "image": "x", "command": ["true"]}]}}
        create = asyncio.create_task(service.create(parse_create({"pod": pod})))
        await backend.submitting.wait()
        await service.poller.poll_once()  # its list was taken before the job existed
        assert await create == "7"
        status = service.statuses([pod])[0]
        return pod_phase(status.containers, status.init_containers).phase

    assert asyncio.run(scenario()) == "Pending"
