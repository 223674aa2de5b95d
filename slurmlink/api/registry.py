"""The pods the API knows: a cache in front of SLURM, rebuilt from SLURM after any restart."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from slurmlink.api.changes import ChangeFeed
from slurmlink.core.records import ContainerRecord, JobInfo, PodDirectory
from slurmlink.translate.podspec import PodRef
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
    created: float = field(default_factory=time.monotonic)  # polls that began earlier do not judge it
    forget_after: float = 0.0  # once deleted and finished: when to drop it (monotonic time)
    records_read: int = 0  # the read (StatusPoller.read_seq) its records come from: an older one must not win
    started_by_files: float = 0.0  # when its files showed the start that SLURM had not shown yet (monotonic)
    placement: str = ""  # the VO, account and partition the site policy gave its job (for the pod's event)
    # What the change feed's last status of it was made from (PodService.observe): the same again needs no new
    # status, so a poll of many pods costs a comparison for each unchanged one.
    fed: tuple[Any, ...] | None = None

    @property
    def finished(self) -> bool:
        return self.rejected is not None or is_finished(self.job)

    @property
    def directory(self) -> PodDirectory:
        return PodDirectory(self.workdir, self.user, self.job_id)


class Registry:
    def __init__(self) -> None:
        self.entries: dict[str, PodEntry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.changes = ChangeFeed()  # what /slurmlink/v1/changes tells: fed by PodService.observe and forget

    def lock(self, uid: str) -> asyncio.Lock:
        """One create/delete at a time per pod: two concurrent creates must not make two jobs."""
        return self._locks.setdefault(uid, asyncio.Lock())

    def get(self, uid: str) -> PodEntry | None:
        return self.entries.get(uid)

    def forget(self, uid: str) -> None:
        entry = self.entries.pop(uid, None)
        if entry is not None:
            self.changes.remove(PodRef(entry.namespace, entry.name, uid))
        lock = self._locks.get(uid)
        if lock is not None and not lock.locked():
            del self._locks[uid]
