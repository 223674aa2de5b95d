"""Which pod directory a caller may read for a job, and as whom: the ownership check of the file extensions.

1. A job in the ledger (submitted through this proxy): the ledger's owner and workdir are authoritative.
   A user must be that owner; a service identity acts as that owner.
2. Otherwise (users only) slurmrestd is asked for the job as the caller: its `user_name` must be the caller.
3. The workdir must be a direct child of `files.job_root`; the reads then go through PodFiles with every
   directory and file owned by the owner's uid, and no symlink followed.
"""

from __future__ import annotations

import asyncio
import pwd
from dataclasses import dataclass

from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.roles import SERVICE, SERVICE_SCOPE, Caller
from slurmlink.slurm.podfiles import PodFiles


@dataclass(frozen=True)
class PodDir:
    job_id: str
    owner: str
    uid: int
    workdir: str


def check_owner(job_id: str, owner: str, caller: Caller) -> None:
    """A user reads their own jobs only (a service identity has been given the owner already)."""
    if caller.role != SERVICE and owner != caller.user:
        raise Refusal(403, "Forbidden", f"job {job_id} belongs to another user than {caller.user}")


def check_workdir(job_id: str, workdir: str, files: PodFiles) -> None:
    if not files.is_pod_dir(workdir):
        raise Refusal(403, "Forbidden", f"the working directory of job {job_id} is not a directory directly "
                      f"below the job root {files.job_root}; the proxy reads no files elsewhere")


def local_uid(job_id: str, owner: str) -> int:
    try:
        uid = pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise Refusal(403, "Forbidden", f"the owner of job {job_id} is not a local account") from None
    if uid == 0:
        raise Refusal(403, "Forbidden", "the proxy never reads root's files")
    return uid


async def owner_of(job_id: str, caller: Caller, *, ledger: Ledger | None, lookup: JobLookup,
                   token: str) -> tuple[str, str]:
    """(owner, workdir) of a job the caller may act on (Refusal otherwise)."""
    entry = ledger.get(job_id) if ledger is not None else None
    if entry is not None:
        owner, workdir = entry.user, entry.workdir
    elif caller.role == SERVICE:
        raise Refusal(403, "Forbidden", f"job {job_id} was not submitted through this proxy: {SERVICE_SCOPE}")
    else:
        job = await lookup.job(job_id, as_user=caller.user, token=token)
        owner, workdir = job.user, job.workdir
    check_owner(job_id, owner, caller)
    return owner, workdir


async def locate(job_id: str, caller: Caller, *, ledger: Ledger | None, lookup: JobLookup, token: str,
                 files: PodFiles) -> PodDir:
    owner, workdir = await owner_of(job_id, caller, ledger=ledger, lookup=lookup, token=token)
    check_workdir(job_id, workdir, files)
    uid = await asyncio.to_thread(local_uid, job_id, owner)  # NSS may ask LDAP or sssd: off the event loop
    return PodDir(job_id, owner, uid, workdir)
