"""An in-memory SLURM behind slurmlink's SchedulerBackend interface, for fast unit tests of the API service and
its status poller (no processes, no files: a test runs in milliseconds and decides when each step happens).

It behaves like the CLI backend in front of a real SLURM on what the service relies on:
- `submit` returns a fresh numeric job id; the job is then listed by `jobs()` as PENDING, with the name,
  comment and work directory it was submitted with, and its pod directory belongs to the submitting user;
- `jobs()` lists only jobs named like slurmlink's (`slurmlink-...`) that the controller still holds;
- a job the controller has forgotten (SLURM's MinJobAge) is answered by `finished()` from accounting, if the
  site keeps accounting (`accounting=False`: `finished()` answers {} as the CLI backend does then);
- `cancel` of an unknown or ended job is no error; of another user's job it is refused with scancel's words;
  `only_state` makes it a no-op for a job in any other state; with `signal` only the batch script is signalled;
- container records, logs (read from an offset, the previous instance's apart) and volume files are kept per
  pod directory and read as the directory's owner; root is never a user; a container name is never a path.

The test plays SLURM and the job script: `start`, `finish`, `forget` move a job on; `write_records`,
`append_log` write what the job script would; `put` adds a job an earlier API instance submitted;
`fail_next` makes the next call of a method raise (a transient controller failure by default).

What it does not imitate: scheduling and time (a job stays PENDING until the test starts it and listed until
the test forgets it); resources, partitions, limits, QOS and sbatch's checks of the job (the BatchJob is kept
as given in `submitted`); COMPLETING (a cancelled job is CANCELLED at once) and what a signal does (it is only
noted in `signals`: the test decides how the script reacts); real files and their safety checks (slurm/podfiles
does those: a volume file need not exist before it is replaced); the REST backend's per-user credentials and
visibility (it does not implement base.PodTokenVisibility: it sees every job, as the CLI backend does); and
any cost: no call is slow unless a test subclass makes it so.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from datetime import UTC, datetime

from slurmlink.core.naming import JOB_NAME_PREFIX
from slurmlink.core.records import Capacity, ContainerRecord, JobInfo, PodDirectory, VolumeFile
from slurmlink.slurm.base import SchedulerBackend, SlurmError
from slurmlink.slurm.podfiles import check_container_name
from slurmlink.translate.job import BatchJob
from slurmlink.translate.status import is_finished

LOG_CHUNK_BYTES = 16 * 1024 * 1024  # the CLI backend's default max_log_chunk_bytes


class MemorySlurm(SchedulerBackend):
    """See the module docstring. Every attribute is plain data a test may read or set."""

    def __init__(self, *, capacity: Capacity | None = None, accounting: bool = True, first_job_id: int = 1) -> None:
        self.queue: dict[str, JobInfo] = {}  # what the controller holds (squeue), by job id
        self.accounting: dict[str, JobInfo] | None = {} if accounting else None  # forgotten jobs (sacct)
        self.submitted: dict[str, BatchJob] = {}  # job id -> the job as submitted
        self.owners: dict[str, str] = {}  # pod directory -> the user who owns it
        self.directory_of_job: dict[str, str] = {}  # job id -> its pod directory
        self.records: dict[str, dict[str, ContainerRecord]] = {}  # pod directory -> container -> record
        self.logs: dict[tuple[str, str, bool], bytes] = {}  # (pod directory, container, previous) -> log
        self.volume_files: dict[str, dict[str, VolumeFile]] = {}  # pod directory -> relative path -> file
        self.signals: list[tuple[str, str]] = []  # (job id, signal) sent to batch scripts
        self.capacity_now = capacity or Capacity(cpus=8, memory_mb=16384)
        self.calls: Counter[str] = Counter()  # method name -> calls, for "no SLURM call" assertions
        self.failures: dict[str, SlurmError] = {}  # method name -> raised by its next call
        self._next_id = first_job_id

    # ---- the SchedulerBackend interface -------------------------------------------------------------------

    async def submit(self, job: BatchJob, user: str) -> str:
        self._called("submit")
        self._check_user(user)
        job_id = str(self._next_id)
        self._next_id += 1
        self.submitted[job_id] = job
        self.put(JobInfo(job_id=job_id, name=job.name, user=user, state="PENDING", submit_time=_now(),
                         workdir=job.workdir, comment=job.comment))
        return job_id

    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        self._called("jobs")
        return [job for job in self.queue.values() if job.name.startswith(JOB_NAME_PREFIX)]

    async def workdir_owner(self, workdir: str, job_id: str = "") -> str | None:
        self._called("workdir_owner")
        directory = os.path.normpath(workdir)
        if job_id and self.directory_of_job.get(job_id) != directory:
            return None
        return self.owners.get(directory)

    async def finished(self, job_ids: list[str]) -> dict[str, JobInfo]:
        self._called("finished")
        if self.accounting is None:
            return {}
        return {job_id: self.accounting[job_id] for job_id in job_ids if job_id in self.accounting}

    async def cancel(self, job_id: str, user: str, signal: str | None = None, only_state: str | None = None) -> None:
        self._called("cancel")
        self._check_user(user)
        job = self.queue.get(job_id)
        if job is None or is_finished(job):
            return  # nothing left to cancel: scancel says nothing
        if job.user != user:
            raise SlurmError(f"scancel: error: Kill job error on job id {job_id}: Access/permission denied")
        if only_state and job.state != only_state:
            return
        if signal is not None:
            self.signals.append((job_id, signal))
            return
        self._update(job_id, state="CANCELLED", end_time=_now())

    async def containers(self, pod: PodDirectory) -> dict[str, ContainerRecord]:
        self._called("containers")
        return dict(self.records.get(self._as_owner(pod.workdir, pod.user), {}))

    async def read_log(self, pod: PodDirectory, container: str, offset: int = 0, previous: bool = False) -> bytes:
        self._called("read_log")
        check_container_name(container)
        if offset < 0:
            raise SlurmError(f"negative log offset {offset}")
        log = self.logs.get((self._as_owner(pod.workdir, pod.user), container, previous), b"")
        return log[offset:offset + LOG_CHUNK_BYTES]

    async def capacity(self) -> Capacity:
        self._called("capacity")
        return self.capacity_now

    async def write_volume_files(self, pod: PodDirectory, files: list[VolumeFile]) -> None:
        self._called("write_volume_files")
        written = self.volume_files.setdefault(self._as_owner(pod.workdir, pod.user), {})
        for file in files:
            written[file.path] = file

    # ---- the test plays SLURM and the job script ----------------------------------------------------------

    def put(self, job: JobInfo) -> None:
        """A job in the controller's queue (one an earlier API instance submitted, say), its pod directory
        made for it and owned by its user."""
        directory = os.path.normpath(job.workdir)
        self.queue[job.job_id] = job
        self.directory_of_job[job.job_id] = directory
        self.owners[directory] = job.user

    def start(self, job_id: str) -> None:
        self._update(job_id, state="RUNNING", start_time=_now())

    def finish(self, job_id: str, state: str = "COMPLETED", exit_code: int = 0, signal: int | None = None,
               reason: str = "") -> None:
        self._update(job_id, state=state, exit_code=exit_code, signal=signal, reason=reason, end_time=_now())

    def forget(self, job_id: str) -> None:
        """The controller lets go of the job (MinJobAge): only accounting knows it now, if kept."""
        job = self.queue.pop(job_id)
        if self.accounting is not None:
            self.accounting[job_id] = job

    def write_records(self, job_id: str, *records: ContainerRecord) -> None:
        """What the job script records for its containers (replacing earlier records of the same names)."""
        self.records.setdefault(self.directory_of_job[job_id], {}).update({r.name: r for r in records})

    def append_log(self, job_id: str, container: str, data: bytes, previous: bool = False) -> None:
        key = (self.directory_of_job[job_id], container, previous)
        self.logs[key] = self.logs.get(key, b"") + data

    def fail_next(self, method: str, error: SlurmError | None = None) -> None:
        """The next call of `method` raises `error` (default: a transient "controller unreachable")."""
        self.failures[method] = error or SlurmError("Unable to contact slurm controller (connect failure)",
                                                    transient=True)

    # ---- inside ---------------------------------------------------------------------------------------------

    def _called(self, method: str) -> None:
        self.calls[method] += 1
        if method in self.failures:
            raise self.failures.pop(method)

    def _update(self, job_id: str, **changes: object) -> None:
        self.queue[job_id] = dataclasses.replace(self.queue[job_id], **changes)  # type: ignore[arg-type]

    @staticmethod
    def _check_user(user: str) -> None:
        if not user or user == "root":
            raise SlurmError(f"slurmlink never acts as {user or 'nobody'!r}")

    def _as_owner(self, workdir: str, user: str) -> str:
        """The pod directory, read as `user`: nothing there for anyone but its owner (an empty directory)."""
        self._check_user(user)
        directory = os.path.normpath(workdir)
        owner = self.owners.get(directory)
        if owner is not None and owner != user:
            raise SlurmError(f"cannot read {directory}: Permission denied")
        return directory


def _now() -> datetime:
    return datetime.now(UTC)
