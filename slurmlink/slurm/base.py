"""One interface over SLURM, with a CLI backend (sbatch & co) and a REST backend (slurmrestd).

Each method takes the local user the call is made for; the backend decides how to act as that user
(runuser at the site, the user's token through the REST proxy).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from slurmlink.core.errors import SlurmlinkError
from slurmlink.core.records import Capacity, ContainerRecord, JobInfo, PodDirectory, VolumeFile
from slurmlink.identity.refresh import Credentials
from slurmlink.slurm.statuswatch import OnChange, StatusWatch
from slurmlink.translate.job import BatchJob

log = logging.getLogger(__name__)
RECORD_READS_AT_ONCE = 32  # file reads, not SLURM calls, but still bounded


class SlurmError(SlurmlinkError):
    """SLURM refused or failed a request. `message` is SLURM's own words, for the pod's status. A transient
    error (controller down, timeout) is retried; a permanent one fails the pod."""

    default_reason = "SlurmError"

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message, transient=transient)


class Unsupported(SlurmError):
    """The backend cannot do this at all (not a failure of SLURM): the API answers 501."""


@dataclass
class StepStream:
    """The site's answer to an interactive upgrade: after a 101, `network` (the connection, an httpcore
    network stream) and the protocol it chose; else the status and the reason it gave."""

    status: int
    protocol: str = ""
    reason: str = ""
    network: Any = None


class SchedulerBackend(abc.ABC):
    """The SLURM operations slurmlink needs; every method has a timeout and raises SlurmError."""

    @abc.abstractmethod
    async def submit(self, job: BatchJob, user: str) -> str:
        """Submit `job` as `user`; return the job id. Prepares the job's working directory."""

    @abc.abstractmethod
    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        """All jobs named like slurmlink's (of any user) that SLURM still knows. One SLURM query.
        `fresh`: no cached answer (before deciding that a job does not exist)."""

    @abc.abstractmethod
    async def workdir_owner(self, workdir: str, job_id: str = "") -> str | None:
        """The user owning the pod directory of job `job_id`, None if slurmlink did not make it for that job."""

    @abc.abstractmethod
    async def finished(self, job_ids: list[str]) -> dict[str, JobInfo]:
        """Final state of jobs that left the controller's memory (accounting); one query for all."""

    @abc.abstractmethod
    async def cancel(self, job_id: str, user: str, signal: str | None = None, only_state: str | None = None) -> None:
        """Cancel a job as `user`; with `signal`, only signal the batch script (graceful stop);
        with `only_state`, do nothing unless the job is in that state (PENDING, RUNNING)."""

    @abc.abstractmethod
    async def containers(self, pod: PodDirectory) -> dict[str, ContainerRecord]:
        """Per-container records the job script wrote in the pod's directory."""

    async def containers_of(self, pods: list[PodDirectory]) -> dict[str, dict[str, ContainerRecord]]:
        """The records of many pods at once, by job id; a pod whose records cannot be read now is left out
        (and logged). Backends that can read many in one request override this."""
        reads = asyncio.Semaphore(RECORD_READS_AT_ONCE)

        async def read(pod: PodDirectory) -> dict[str, ContainerRecord] | None:
            async with reads:
                try:
                    return await self.containers(pod)
                except SlurmError as exc:
                    log.warning("cannot read the container records of job %s: %s", pod.job_id, exc.message)
                    return None

        found = await asyncio.gather(*(read(pod) for pod in pods))
        return {pod.job_id: records for pod, records in zip(pods, found, strict=True) if records is not None}

    @abc.abstractmethod
    async def read_log(self, pod: PodDirectory, container: str, offset: int = 0, previous: bool = False) -> bytes:
        """Bytes of a container's log from `offset` (b"" when there is nothing yet); with `previous`, of the
        instance that ended at the container's last restart."""

    @abc.abstractmethod
    async def capacity(self) -> Capacity:
        """Free capacity of the site right now."""

    def step_command(self, job_id: str, user: str, workdir: str, argv: list[str], *, pty: bool,
                     unbuffered: bool = False) -> tuple[list[str], dict[str, str]]:
        """The argv and environment that start `argv` as a new step of a running job, as `user` (`kubectl
        exec`; `unbuffered`: output passed on as it comes, not by lines, as port-forward needs). Backends
        that cannot start a process at the site say so."""
        raise Unsupported("exec and attach are not supported with this site (mode 1 reaches SLURM through its "
                          "REST API, which cannot start an interactive step)")

    relays_steps = False  # True: steps run elsewhere (mode 1: the proxy), reached with `open_step_stream`

    async def open_step_stream(self, pod: PodDirectory, kind: str, params: list[tuple[str, str]],
                               headers: list[tuple[str, str]], body: bytes = b"") -> StepStream:
        """Ask the site for an upgraded connection serving `kind` ("exec" or "portforward") on the pod's job,
        as the pod's user (only where `relays_steps`)."""
        raise Unsupported(f"{kind} is not relayed by this backend")

    async def write_volume_files(self, pod: PodDirectory, files: list[VolumeFile]) -> None:
        """Atomically replace existing files of a running pod's volumes, as `user`'s files (a reader in the
        job sees the old or the new content, never a partial one)."""
        raise Unsupported("this backend cannot write files of a running pod")

    def status_watch(self, on_change: OnChange) -> StatusWatch | None:
        """A watch of the jobs' status files this backend offers itself (mode 1: the proxy's), or None."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


@runtime_checkable
class PodTokenVisibility(Protocol):
    """A backend that acts with each pod's own token (REST) sees only what those tokens let it see. A
    backend that is told the account and sees every job (CLI) does not implement this."""

    # Whether `jobs()` lists every user's jobs without any pod's credential (a service identity): then the
    # first poll after a start finds every job an earlier instance submitted, and no pod needs to be looked
    # for on its own.
    sees_all_jobs: bool

    async def user_for_token(self, credentials: Credentials) -> str:
        """The local account the pod's token maps to; the credential is kept for that account."""

    def keep_users(self, users: set[str]) -> None:
        """The users who still have pods: the backend may forget what it holds for the others."""

    def blind_to(self) -> frozenset[str]:
        """Users whose jobs the last `jobs()` could not see (no usable credential): their pods keep their
        last known state instead of being taken for finished."""
