"""Requests that change a job (cancel, signal: `DELETE /slurm/{v}/job/{id}`) reach slurmrestd only when the
account they would run as owns the job, by SLURM's own word.

SLURM refuses other users' cancels itself, but slurmctld 24.11.5 deadlocks doing so for a running job
(issue 11: a 500 after 10 s, then it ignores SIGTERM), so the proxy must never forward one. The owner is
asked as the SlurmUser, so a site's `PrivateData=jobs` cannot hide it. A job SLURM does not know is
forwarded: SLURM's own "invalid job id" is the answer, and it has nothing running to cancel.
"""

from __future__ import annotations

import re

from slurmlink.proxy import policy
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.joblookup import JobLookup

_JOB_PATH = re.compile(r"\A/slurm/(v0\.0\.[0-9]+)/job/([0-9]+)/?\Z")
READ_ONLY_METHODS = frozenset({"GET", "HEAD"})


def job_to_change(method: str, route: str, path: str) -> tuple[str, str] | None:
    """(API version, job id) of a request that would change one job, else None. Pure."""
    if route != policy.JOB or method.upper() in READ_ONLY_METHODS:
        return None
    match = _JOB_PATH.match(path)
    return (match.group(1), match.group(2)) if match else None


async def require_owner(job_id: str, version: str, account: str, *, lookup: JobLookup, slurm_user: str,
                        token: str) -> None:
    """Refusal (403) unless SLURM says `account` owns the job; 502/503 when SLURM cannot say."""
    try:
        job = await lookup.job(job_id, as_user=slurm_user, token=token, version=version)
    except Refusal as refusal:
        if refusal.status == 404:
            return
        raise
    if job.user != account:
        raise Refusal(403, "Forbidden", f"job {job_id} belongs to another user than {account}: "
                      "the proxy forwards cancels and signals only for the caller's own jobs")
