"""The pods the API knows: a cache in front of SLURM, rebuilt from SLURM after any restart."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from slurmlink import JOB_NAME_PREFIX
from slurmlink.slurm.base import ContainerRecord, JobInfo
from slurmlink.translate.status import is_finished


@dataclass
class PodEntry:
    uid: str
    namespace: str = ""
    name: str = ""
    pod: dict[str, Any] | None = None  # the latest pod object a caller sent
    user: str = ""
    workdir: str = ""
    job_id: str = ""
    job: JobInfo | None = None
    records: dict[str, ContainerRecord] = field(default_factory=dict)
    rejected: tuple[str, str] | None = None  # (reason, message) when the pod never became a job
    deleting: bool = False
    records_final: bool = False  # the job ended and every container's record was read after that

    @property
    def finished(self) -> bool:
        return self.rejected is not None or is_finished(self.job)


class Registry:
    def __init__(self) -> None:
        self.entries: dict[str, PodEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, uid: str) -> asyncio.Lock:
        """One create/delete at a time per pod: two concurrent creates must not make two jobs."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def get(self, uid: str) -> PodEntry | None:
        return self.entries.get(uid)

    def forget(self, uid: str) -> None:
        self.entries.pop(uid, None)
        self._locks.pop(uid, None)

    def adopt(self, jobs: dict[str, JobInfo]) -> list[str]:
        """Learn the pods of SLURM's jobs that we do not know (after a restart). Returns their uids."""
        adopted = []
        for name, job in jobs.items():
            uid = name[len(JOB_NAME_PREFIX):]
            entry = self.entries.get(uid)
            if entry is None:
                namespace, _, pod_name = job.comment.partition("/")
                self.entries[uid] = PodEntry(uid=uid, namespace=namespace, name=pod_name, user=job.user,
                                             workdir=job.workdir, job_id=job.job_id, job=job)
                adopted.append(uid)
        return adopted
