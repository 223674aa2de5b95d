"""The `cli` backend (mode 2): slurmlink runs at the site and calls sbatch, squeue, sacct, scancel and
sinfo, acting for each user through runuser.

Status costs one squeue (all jobs) and at most one sacct (jobs squeue no longer shows) per interval,
whatever the number of pods. Per-pod directories live under `job_root`; files users can write are
opened without following symlinks, from a descriptor of `job_root` down, so that a user's symlink can
never make the service (root) read or write elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from slurmlink import JOB_NAME_PREFIX
from slurmlink.slurm.base import Capacity, ContainerRecord, JobInfo, SchedulerBackend, SlurmError
from slurmlink.slurm.commands import sacct, sbatch, scancel, sinfo, squeue
from slurmlink.slurm.runner import DEFAULT_PATH, Runner, error_from
from slurmlink.translate import layout
from slurmlink.translate.job import BatchJob

COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "sinfo")
SCRIPT_FILE = "job.sh"  # a copy of the submitted script, for people at the site
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
# O_NONBLOCK: a FIFO a user puts in place of a file cannot hang the service.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


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


class CliBackend(SchedulerBackend):
    def __init__(self, config: CliConfig, runner: Runner | None = None) -> None:
        self.config = config
        self.runner = runner or Runner(
            env=config.env, timeout=config.timeout_seconds, runuser=config.runuser, path=config.path
        )
        self.configured_root = os.path.normpath(os.path.abspath(config.job_root))
        self.root = os.path.realpath(config.job_root)
        self.bin = {name: self._locate(name) for name in COMMANDS}
        self.accounting: bool | None = None  # None until sacct has told; False: never ask again

    def _locate(self, name: str) -> str:
        if self.config.bin_dir:
            return os.path.join(self.config.bin_dir, name)
        return shutil.which(name, path=self.config.path) or name

    # ---- jobs -----------------------------------------------------------------------------------------

    async def submit(self, job: BatchJob, user: str) -> str:
        account = self._account(user)
        env = sbatch.environment(job)  # checked before anything touches the disk
        argv = sbatch.argv(job, self.bin["sbatch"])
        await asyncio.to_thread(self._prepare_workdir, job, account)
        result = await self.runner.run(
            argv, user=user, stdin=job.script.encode(), env=env, timeout=self.config.submit_timeout_seconds
        )
        return sbatch.parse(result)

    async def jobs(self) -> list[JobInfo]:
        result = await self.runner.run(squeue.argv(self.bin["squeue"]), env=squeue.ENV)
        if not result.ok:
            raise error_from(result, "squeue")
        return squeue.parse(result.out, JOB_NAME_PREFIX)

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

    async def capacity(self) -> Capacity:
        result = await self.runner.run(sinfo.argv(self.config.partition, self.bin["sinfo"]))
        if not result.ok:
            raise error_from(result, "sinfo")
        return sinfo.parse(result.out)

    # ---- the pod's directory --------------------------------------------------------------------------

    async def containers(self, workdir: str, user: str, job_id: str = "") -> dict[str, ContainerRecord]:
        account = self._account(user)
        files = await asyncio.to_thread(self._read_status, workdir, account)
        return layout.container_records(files)

    async def read_log(self, workdir: str, user: str, container: str, offset: int = 0,
                       job_id: str = "") -> bytes:
        """Up to `max_log_chunk_bytes` from `offset`; call again from the new offset for more."""
        if not container or "/" in container or container.startswith(".") or "\0" in container:
            raise SlurmError(f"not a container name: {container!r}")
        if offset < 0:
            raise SlurmError(f"negative log offset {offset}")
        account = self._account(user)
        return await asyncio.to_thread(self._read_log, workdir, account, container, offset)

    def _account(self, user: str) -> pwd.struct_passwd:
        """The local account `user`: must exist, is never root, and is ours unless we are root."""
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise SlurmError(f"no local user {user!r}") from None
        if account.pw_uid == 0:
            raise SlurmError("slurmlink never runs jobs as root")
        if os.geteuid() != 0 and account.pw_uid != os.geteuid():
            raise SlurmError(f"slurmlink does not run as root: it cannot act for user {user!r}")
        return account

    def _parts(self, path: str) -> list[str]:
        """`path`'s components below job_root; SlurmError unless it is strictly inside job_root.

        The components are then opened one by one without following symlinks, so a symlink below
        job_root (planted by a user, or pointing to another user's directory) is refused as well."""
        if not os.path.isabs(path):
            raise SlurmError(f"working directory {path!r} is not an absolute path")
        norm = os.path.normpath(path)
        for root in (self.configured_root, self.root):
            if root != "/" and norm.startswith(root + "/"):
                return norm[len(root) + 1 :].split("/")
        raise SlurmError(f"working directory {path!r} is not inside the job root {self.config.job_root}")

    @contextlib.contextmanager
    def _open_dir(self, path: str, account: pwd.struct_passwd | None = None) -> Iterator[int]:
        """A descriptor of `path`, walked from job_root without following symlinks. With `account`,
        missing directories are created for that user (mode 0700)."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in self._parts(path):
                created = False
                if account is not None:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                        created = True
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if created and account is not None:
                    os.fchown(fd, account.pw_uid, account.pw_gid)
                    os.fchmod(fd, 0o700)  # whatever the umask
            yield fd
        finally:
            os.close(fd)

    def _prepare_workdir(self, job: BatchJob, account: pwd.struct_passwd) -> None:
        try:
            with self._open_dir(job.workdir, account) as fd:
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

    def _open_owned(self, dir_fd: int, name: str, account: pwd.struct_passwd) -> int:
        """Open a regular file the user owns (not a link to someone else's file, not a FIFO)."""
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != account.pw_uid:
            os.close(fd)
            raise PermissionError(f"{name} is not a regular file of {account.pw_name}")
        return fd

    def _read_status(self, workdir: str, account: pwd.struct_passwd) -> dict[str, str]:
        files: dict[str, str] = {}
        try:
            with self._open_dir(os.path.join(workdir, layout.STATUS_DIR)) as fd:
                for name in os.listdir(fd):
                    if name.startswith(".") or name.rpartition(".")[2] not in layout.STATUS_SUFFIXES:
                        continue
                    with contextlib.suppress(OSError):
                        f = self._open_owned(fd, name, account)
                        with os.fdopen(f, "rb") as fh:
                            files[name] = fh.read(self.config.max_status_file_bytes).decode(
                                "utf-8", "replace"
                            )
        except FileNotFoundError:
            return {}  # the job has not started yet
        except OSError as exc:
            raise SlurmError(f"cannot read the status of {workdir}: {exc.strerror or exc}") from exc
        return files

    def _read_log(self, workdir: str, account: pwd.struct_passwd, container: str, offset: int) -> bytes:
        try:
            with self._open_dir(os.path.join(workdir, layout.LOGS_DIR)) as fd:
                f = self._open_owned(fd, f"{container}.log", account)
                try:
                    return _pread_all(f, self.config.max_log_chunk_bytes, offset)
                finally:
                    os.close(f)
        except FileNotFoundError:
            return b""  # nothing logged yet
        except OSError as exc:
            raise SlurmError(f"cannot read the log of {container}: {exc.strerror or exc}") from exc


def _pread_all(fd: int, limit: int, offset: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.pread(fd, min(limit - size, 1024 * 1024), offset + size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
