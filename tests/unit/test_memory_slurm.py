"""The API service and its poller over the in-memory SLURM (tests/harness/memory_slurm.py): a pod's life,
a job that only accounting still knows, deletion, and a failed poll, each in milliseconds. The same paths
against the real SLURM are in tests/integration (test_api_e2e, test_api_restart, test_cli_backend)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest

from slurmlink.api.config import ApiConfig
from slurmlink.api.service import PodService
from slurmlink.core.records import ContainerRecord
from slurmlink.slurm.base import SlurmError
from slurmlink.translate.status import pod_phase
from slurmlink.wire.interlink import parse_create
from tests.harness.memory_slurm import MemorySlurm
from tests.harness.pods import make_pod

T = TypeVar("T")
STARTED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
FINISHED = datetime(2026, 1, 1, 12, 5, tzinfo=UTC)


def run(scenario: Callable[[PodService, MemorySlurm], Awaitable[T]]) -> T:
    async def go() -> T:
        slurm = MemorySlurm()
        config = ApiConfig.model_validate({"users": {"default": "alice"}, "job_root": "/jobs"})
        service = PodService(config, slurm)
        await service.recover()
        return await scenario(service, slurm)
    return asyncio.run(go())


def phase(service: PodService, pod: dict[str, Any]) -> str:
    status = service.statuses([pod])[0]
    return pod_phase(status.containers, status.init_containers).phase


async def submitted(service: PodService) -> tuple[dict[str, Any], str]:
    pod = make_pod([{"name": "main", "command": ["true"]}])
    job_id = await service.create(parse_create({"pod": pod}))
    return pod, job_id


def test_a_pods_life_follows_its_job() -> None:
    async def scenario(service: PodService, slurm: MemorySlurm) -> list[str]:
        pod, job_id = await submitted(service)
        job = slurm.submitted[job_id]
        assert (job.name, job.workdir) == (f"slurmlink-{pod['metadata']['uid']}",
                                           f"/jobs/default-{pod['metadata']['uid']}")
        phases = []
        await service.poller.poll_once()
        phases.append(phase(service, pod))
        slurm.start(job_id)
        slurm.write_records(job_id, ContainerRecord("main", started_at=STARTED))
        await service.poller.poll_once()
        phases.append(phase(service, pod))
        slurm.finish(job_id)
        slurm.write_records(job_id, ContainerRecord("main", started_at=STARTED, finished_at=FINISHED, exit_code=0))
        await service.poller.poll_once()
        phases.append(phase(service, pod))
        return phases

    assert run(scenario) == ["Pending", "Running", "Succeeded"]


def test_a_job_only_accounting_remembers_still_ends_its_pod() -> None:
    async def scenario(service: PodService, slurm: MemorySlurm) -> tuple[str, int]:
        pod, job_id = await submitted(service)
        slurm.start(job_id)
        slurm.write_records(job_id, ContainerRecord("main", started_at=STARTED))
        await service.poller.poll_once()
        slurm.finish(job_id, state="FAILED", exit_code=3)
        slurm.write_records(job_id, ContainerRecord("main", started_at=STARTED, finished_at=FINISHED, exit_code=3))
        slurm.forget(job_id)  # gone from squeue before any poll saw it end
        await service.poller.poll_once()
        return phase(service, pod), slurm.calls["finished"]

    assert run(scenario) == ("Failed", 1)


def test_deleting_cancels_a_pending_job_and_signals_a_running_one() -> None:
    async def scenario(service: PodService, slurm: MemorySlurm) -> tuple[str, list[tuple[str, str]]]:
        waiting, waiting_job = await submitted(service)
        running, running_job = await submitted(service)
        slurm.start(running_job)
        await service.poller.poll_once()
        await service.delete(waiting)
        await service.delete(running)
        await service.close()
        return slurm.queue[waiting_job].state, slurm.signals

    state, signals = run(scenario)
    assert state == "CANCELLED"
    assert signals == [("2", "TERM")]


def test_a_failed_poll_keeps_the_last_known_state() -> None:
    async def scenario(service: PodService, slurm: MemorySlurm) -> str:
        pod, job_id = await submitted(service)
        slurm.start(job_id)
        slurm.write_records(job_id, ContainerRecord("main", started_at=STARTED))
        await service.poller.poll_once()
        slurm.finish(job_id)
        slurm.fail_next("jobs")
        with pytest.raises(SlurmError, match="slurm controller"):
            await service.poller.poll_once()
        return phase(service, pod)

    assert run(scenario) == "Running"


def test_another_users_job_is_not_theirs_to_cancel() -> None:
    async def scenario(service: PodService, slurm: MemorySlurm) -> None:
        _, job_id = await submitted(service)
        with pytest.raises(SlurmError, match="Access/permission denied"):
            await slurm.cancel(job_id, "mallory")
        await slurm.cancel("999", "mallory")  # an unknown job: nothing to cancel, no error

    run(scenario)
