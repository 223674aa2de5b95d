"""sacct: the final state of jobs the controller has forgotten, from accounting, in one call.

Without slurmdbd (the dev cluster, some small sites) sacct refuses with "Slurm accounting storage is
disabled": that is AccountingDisabled, which the backend remembers so later calls cost nothing.
"""

from __future__ import annotations

import re

from slurmlink.core.records import JobInfo
from slurmlink.core.states import decode_code_signal
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.commands import SEP, TIME_ENV, job_info
from slurmlink.slurm.runner import CommandResult, error_from

FIELDS = (
    "JobID",
    "JobName",
    "User",
    "State",
    "Reason",
    "ExitCode",
    "Submit",
    "Start",
    "End",
    "WorkDir",
    "Comment",
)
ENV = TIME_ENV
_DISABLED = re.compile(
    r"accounting storage is disabled|not running a supported accounting_storage plugin"
    r"|accounting_storage/none",
    re.IGNORECASE,
)
_JOB_ID = re.compile(r"\A[0-9]+(_[0-9]+)?\Z")


class AccountingDisabled(SlurmError):
    """This cluster keeps no accounting: there is no later record of a job than squeue's."""


def argv(job_ids: list[str], sacct: str = "sacct") -> list[str]:
    for job_id in job_ids:
        if not _JOB_ID.match(job_id):
            raise SlurmError(f"not a job id: {job_id!r}")
    # -X: the allocation only, not its steps; -a: every user's jobs (when we may see them).
    return [
        sacct, "-X", "-a", "-n", "-P", f"--delimiter={SEP}", f"--format={','.join(FIELDS)}",
        f"--jobs={','.join(job_ids)}",
    ]  # fmt: skip


def recent_argv(seconds: int, sacct: str = "sacct") -> list[str]:
    """Every user's jobs of the last `seconds` (the ones that started, ended or were queued in that time)."""
    return [
        sacct, "-X", "-a", "-n", "-P", f"--delimiter={SEP}", f"--format={','.join(FIELDS)}",
        f"--starttime=now-{int(seconds)}", "--endtime=now",
    ]  # fmt: skip


def parse_line(line: str) -> JobInfo | None:
    parts = line.split(SEP, len(FIELDS) - 1)
    if len(parts) != len(FIELDS) or not parts[0].strip():
        return None
    return job_info(parts, decode_code_signal)


def parse(result: CommandResult) -> dict[str, JobInfo]:
    """Jobs by id. Raises AccountingDisabled, or SlurmError with sacct's message."""
    if _DISABLED.search(result.err) or _DISABLED.search(result.out):
        raise AccountingDisabled("SLURM accounting is not enabled on this cluster")
    if not result.ok:
        raise error_from(result, "sacct")
    lines = [line for line in result.out.splitlines() if line.strip()]
    jobs = [job for job in map(parse_line, lines) if job is not None]
    if lines and not jobs:
        raise SlurmError(f"cannot read sacct's output (first line: {lines[0][:200]!r})")
    return {job.job_id: job for job in jobs}
