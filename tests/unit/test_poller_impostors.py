"""Jobs named like slurmlink pods' that are not theirs are refused with one warning per poll, not one per job:
an API started beside thousands of such jobs (another API's, a bench's) wrote a line for each."""

from __future__ import annotations

import asyncio
import logging

import pytest

from slurmlink.api.config import ApiConfig
from slurmlink.api.poller import IMPOSTORS_SHOWN
from slurmlink.api.service import PodService
from slurmlink.core.records import JobInfo
from tests.harness.memory_slurm import MemorySlurm


def test_foreign_jobs_named_like_ours_get_one_warning_naming_some_of_them(caplog: pytest.LogCaptureFixture) -> None:
    backend = MemorySlurm()
    foreign = IMPOSTORS_SHOWN + 15
    for n in range(foreign):  # a workdir outside this API's job_root: not in place, so not ours
        backend.put(JobInfo(job_id=str(100 + n), name=f"slurmlink-u-{n}", user="nobody", state="RUNNING",
                            workdir=f"/elsewhere/default-u-{n}", comment=f"default/p{n}"))

    async def scenario() -> None:
        service = PodService(ApiConfig.model_validate({"users": {"default": "nobody"}, "job_root": "/tmp/jobs"}),
                             backend)
        await service.poller.poll_once()
        await service.poller.poll_once()  # refused for good: not warned about again

    with caplog.at_level(logging.WARNING, logger="slurmlink.api.poller"):
        asyncio.run(scenario())
    warnings = [r.getMessage() for r in caplog.records if "named like slurmlink pods'" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"{foreign} job(s) named like slurmlink pods' are not theirs, ignored: 100 of nobody")
    assert warnings[0].endswith(" and 15 more")
