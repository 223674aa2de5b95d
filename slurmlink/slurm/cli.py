"""The `cli` backend (mode 2): slurmlink runs at the site and calls sbatch, squeue, sacct, scancel and
sinfo, acting for each user through runuser.

Status costs one squeue (all jobs) and at most one sacct (jobs squeue no longer shows) per interval,
whatever the number of pods. Per-pod directories live under `job_root` and are read and written through
slurmlink.slurm.podfiles, so that a user's symlink can never make the service (root) read or write elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pwd
import shutil
import stat
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from slurmlink.core.naming import JOB_NAME_PREFIX
from slurmlink.core.records import Capacity, ContainerRecord, JobInfo, PodDirectory, VolumeFile
from slurmlink.core.states import is_finished
from slurmlink.slurm.base import SchedulerBackend, SlurmError
from slurmlink.slurm.commands import jobcount, sacct, sbatch, scancel, sinfo, squeue
from slurmlink.slurm.podfiles import PodFiles, check_container_name
from slurmlink.slurm.runner import DEFAULT_PATH, Runner, error_from
from slurmlink.slurm.statuswatch import on_local_filesystem
from slurmlink.steps.srun import StepRefused, local_account, step_argv
from slurmlink.translate import layout
from slurmlink.translate.job import BatchJob

log = logging.getLogger(__name__)
COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "sinfo")
SCRIPT_FILE = "job.sh"  # a copy of the submitted script, for people at the site


@dataclass(frozen=True)
class CliConfig:
    job_root: str  # per-pod working directories are created below this directory, and nowhere else
    bin_dir: str = ""  # directory of sbatch & co; "" looks them up on `path`
    env: Mapping[str, str] = field(default_factory=dict)  # added to every command's env, e.g. SLURM_CONF
    timeout_seconds: float = 30.0  # squeue, sacct, scancel, sinfo
    submit_timeout_seconds: float = 60.0  # sbatch (it retries by itself while the controller is busy)
    path: str = DEFAULT_PATH  # PATH of the commands (never the service's own environment)
    runuser: str = "/usr/sbin/runuser"
    partition: str | None = None  # count capacity in this partition only; None: all nodes
    max_log_chunk_bytes: int = 16 * 1024 * 1024  # read_log returns at most this much per call
    max_status_file_bytes: int = 4096
    # At start, pods whose jobs ended over this many hours (and left squeue) are found in accounting, so a
    # restarted service adopts them rather than running them again; 0: never (nothing without accounting).
    accounting_lookback_hours: float = 24.0


class CliBackend(SchedulerBackend):
    def __init__(self, config: CliConfig, runner: Runner | None = None) -> None:
        self.config = config
        self.runner = runner or Runner(
            env=config.env, timeout=config.timeout_seconds, runuser=config.runuser, path=config.path
        )
        self.files = PodFiles(config.job_root, max_status_file_bytes=config.max_status_file_bytes)
        self.configured_root = self.files.configured_root
        self.root = self.files.root
        # A pod directory takes a dozen metadata calls. On a local disk or memory filesystem they are the page
        # cache's, and cost less on the event loop than a worker thread's hand-over in a burst of creates, where
        # the thread and the loop take the GIL from each other at every call (0.3-0.4 ms of the API's CPU per
        # create, bench/README.md). Anywhere else (a shared filesystem, autofs, FUSE, a type not known) a call
        # may wait for a server that is away: worker threads make them, so that creates wait, not the event
        # loop that answers every request.
        self.workdirs_in_thread = not on_local_filesystem(self.root)
        log.info("pod directories under %s: made %s", self.root,
                 "in worker threads" if self.workdirs_in_thread else "on the event loop (a local filesystem)")
        self.bin = {name: self._locate(name) for name in COMMANDS}
        self.accounting: bool | None = None  # None until sacct has told; False: never ask again
        self._looked_back = False  # the first job list also holds what accounting has of the lookback
        self._squeue_lines: dict[str, JobInfo] = {}  # the last job list's jobs by their line (squeue.parse)

    def _locate(self, name: str) -> str:
        if self.config.bin_dir:
            return os.path.join(self.config.bin_dir, name)
        return shutil.which(name, path=self.config.path) or name

    # ---- jobs -----------------------------------------------------------------------------------------

    async def submit(self, job: BatchJob, user: str) -> str:
        account = self._account(user)
        env = sbatch.environment(job)  # checked before anything touches the disk
        argv = sbatch.argv(job, self.bin["sbatch"])
        if self.workdirs_in_thread:
            await asyncio.to_thread(self._prepare_workdir, job, account)
        else:
            self._prepare_workdir(job, account)
        result = await self.runner.run(
            argv, user=user, stdin=job.script.encode(), env=env, timeout=self.config.submit_timeout_seconds
        )
        return sbatch.parse(result)

    async def jobs(self, *, fresh: bool = False) -> list[JobInfo]:
        result = await self.runner.run(squeue.argv(self.bin["squeue"]), env=squeue.ENV)
        if not result.ok:
            raise error_from(result, "squeue")
        listed = squeue.parse(result.out, JOB_NAME_PREFIX, reuse=self._squeue_lines)
        if not self._looked_back:  # the service's first list, that it recovers its pods from
            listed += await self._ended_while_away({job.job_id for job in listed})
            self._looked_back = True
        return listed

    async def _ended_while_away(self, listed: set[str]) -> list[JobInfo]:
        """Our pods' jobs that ended in the lookback window and that squeue no longer shows, from accounting
        ([] without it): their pods were submitted before a restart, and must not run twice."""
        seconds = int(self.config.accounting_lookback_hours * 3600)
        if seconds <= 0 or self.accounting is False:
            return []
        result = await self.runner.run(sacct.recent_argv(seconds, self.bin["sacct"]), env=sacct.ENV)
        try:
            found = sacct.parse(result)
        except sacct.AccountingDisabled:
            self.accounting = False
            return []
        self.accounting = True
        return [job for job in found.values() if job.job_id not in listed and is_finished(job.state)
                and job.name.startswith(JOB_NAME_PREFIX)]

    async def workdir_owner(self, workdir: str, job_id: str = "") -> str | None:
        """Owner of a pod directory slurmlink created under job_root, or None if there is none.

        Only the service can create directories in job_root, so a job whose user owns the directory
        of its pod is that pod's job; anyone can name a job `slurmlink-<uid>`, nobody else can do this."""
        def owner() -> str | None:
            path = os.path.normpath(workdir)
            if os.path.dirname(path) != self.configured_root:
                return None
            try:
                info = os.lstat(os.path.join(self.root, os.path.basename(path)))
                return pwd.getpwuid(info.st_uid).pw_name if stat.S_ISDIR(info.st_mode) else None
            except (OSError, KeyError):
                return None

        return await asyncio.to_thread(owner)

    async def finished(self, job_ids: list[str]) -> dict[str, JobInfo]:
        """Jobs by id, as accounting recorded them; {} (and no command) when the site keeps none."""
        if not job_ids or self.accounting is False:
            return {}
        result = await self.runner.run(sacct.argv(sorted(set(job_ids)), self.bin["sacct"]), env=sacct.ENV)
        try:
            found = sacct.parse(result)
        except sacct.AccountingDisabled:
            self.accounting = False
            return {}
        self.accounting = True
        return found

    async def cancel(self, job_id: str, user: str, signal: str | None = None, only_state: str | None = None) -> None:
        self._account(user)
        argv = scancel.argv(job_id, signal, self.bin["scancel"], only_state)
        scancel.parse(await self.runner.run(argv, user=user))

    async def active_jobs(self, account: str) -> Counter[str]:
        """Queued and running jobs under `account`, per user, as SLURM counts them now (a VO's caps)."""
        result = await self.runner.run(jobcount.argv(account, self.bin["squeue"]))
        if not result.ok:
            raise error_from(result, "squeue")
        return jobcount.parse(result.out)

    async def capacity(self) -> Capacity:
        result = await self.runner.run(sinfo.argv(self.config.partition, self.bin["sinfo"]))
        if not result.ok:
            raise error_from(result, "sinfo")
        return sinfo.parse(result.out)

    # ---- the pod's directory --------------------------------------------------------------------------

    async def containers(self, pod: PodDirectory) -> dict[str, ContainerRecord]:
        account = self._account(pod.user)
        files = await asyncio.to_thread(self.files.read_status, pod.workdir, account.pw_uid)
        return layout.container_records(files)

    async def containers_of(self, pods: list[PodDirectory]) -> dict[str, dict[str, ContainerRecord]]:
        """The records of many pods in one worker thread: each read is a few small local files, and a thread
        hop for each pod cost the event loop more than the reads (bench/submit_throughput.py)."""
        def read_all() -> dict[str, dict[str, ContainerRecord]]:
            found = {}
            for pod in pods:
                try:
                    account = self._account(pod.user)
                    files = self.files.read_status(pod.workdir, account.pw_uid)
                except SlurmError as exc:
                    log.warning("cannot read the container records of job %s: %s", pod.job_id, exc.message)
                    continue
                found[pod.job_id] = layout.container_records(files)
            return found

        return await asyncio.to_thread(read_all) if pods else {}

    async def read_log(self, pod: PodDirectory, container: str, offset: int = 0, previous: bool = False) -> bytes:
        """Up to `max_log_chunk_bytes` from `offset`; call again from the new offset for more."""
        check_container_name(container)
        if offset < 0:
            raise SlurmError(f"negative log offset {offset}")
        account = self._account(pod.user)
        return await asyncio.to_thread(self.files.read_log, pod.workdir, account.pw_uid, container, offset,
                                       self.config.max_log_chunk_bytes, previous=previous)

    async def write_volume_files(self, pod: PodDirectory, files: list[VolumeFile]) -> None:
        """Replace files of the pod's volumes (safe walk from the job root, the user's directories only)."""
        account = self._account(pod.user)

        def write() -> None:
            for file in files:
                self.files.replace_file(pod.workdir, file.path, account.pw_uid, account.pw_gid, file.mode, file.data)

        await asyncio.to_thread(write)

    def step_command(self, job_id: str, user: str, workdir: str, argv: list[str], *, pty: bool,
                     unbuffered: bool = False) -> tuple[list[str], dict[str, str]]:
        self._account(user)
        try:
            step = step_argv(self._locate("srun"), job_id, workdir, argv, pty=pty, unbuffered=unbuffered)
        except StepRefused as exc:
            raise SlurmError(exc.message) from None
        return self.runner.argv_for(step, user), self.runner.base_env()

    def _account(self, user: str) -> pwd.struct_passwd:
        """The local account `user`: must exist, is never root, and is ours unless we are root."""
        try:
            account = local_account(user, runs="jobs")
        except StepRefused as exc:
            raise SlurmError(exc.message) from None
        if os.geteuid() != 0 and account.pw_uid != os.geteuid():
            raise SlurmError(f"slurmlink does not run as root: it cannot act for user {user!r}")
        return account

    def _prepare_workdir(self, job: BatchJob, account: pwd.struct_passwd) -> None:
        try:
            with self.files.directory(job.workdir, create_for=account) as fd:
                if os.fstat(fd).st_uid != account.pw_uid:
                    raise SlurmError(f"{job.workdir} exists and does not belong to {account.pw_name}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(SCRIPT_FILE, dir_fd=fd)
                script = os.open(
                    SCRIPT_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd
                )
                with os.fdopen(script, "wb") as fh:
                    os.fchown(script, account.pw_uid, account.pw_gid)
                    fh.write(job.script.encode())
        except OSError as exc:
            raise SlurmError(f"cannot prepare {job.workdir}: {exc.strerror or exc}") from exc
