"""Two races between a status poll and the statuses it serves, each seen with the real SLURM:

- a poll whose job list was taken while a pod's job was being submitted took that job for gone (1 pod in
  1,000 in bench/vk_scale.py reported Failed two seconds after its submission);
- a restarted API showed an adopted, just-finished job before it had read its records (a kill -9 test of the
  API in CI): the pod came out Failed with exit code 1.

Kubernetes never lets a Failed pod run again, so both were for good. The timing cannot be forced with the
real sbatch and squeue, so these tests order the steps with scheduler stand-ins that behave like SLURM on
the one point tested: a job is listed only once its submission has returned; reading records takes time.
"""

from __future__ import annotations

import asyncio

from slurmlink.api.config import ApiConfig
from slurmlink.api.service import PodService
from slurmlink.core.records import Capacity, ContainerRecord, JobInfo
from slurmlink.slurm.base import SchedulerBackend
from slurmlink.translate.job import BatchJob
from slurmlink.translate.status import pod_phase
from slurmlink.wire.interlink import parse_create


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


class RestartedSlurm(OrderedSlurm):
    """After an API restart: a job that has just completed, whose pod the API must adopt; reading its records
    takes a while, during which a status is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.existing = [JobInfo(job_id="8", name="slurmlink-u-2", user="nobody", state="COMPLETED", exit_code=0,
                                 workdir="/tmp/jobs/default-u-2", comment="default/q")]
        self.reading = asyncio.Event()
        self.read = asyncio.Event()

    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        return list(self.existing)

    async def workdir_owner(self, workdir: str, job_id: str = "") -> str | None:
        return "nobody"

    async def containers(self, workdir: str, user: str, job_id: str = "") -> dict[str, ContainerRecord]:
        self.reading.set()
        await self.read.wait()
        return {"main": ContainerRecord(name="main", exit_code=0)}


def test_an_adopted_pod_is_never_shown_finished_without_its_records() -> None:
    async def scenario() -> list[str]:
        backend = RestartedSlurm()
        service = PodService(ApiConfig.model_validate({"users": {"default": "nobody"}, "job_root": "/tmp/jobs"}),
                             backend)
        pod = {"metadata": {"name": "q", "namespace": "default", "uid": "u-2"},
               "spec": {"containers": [{"name": "main", "image": "x", "command": ["true"]}]}}
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
