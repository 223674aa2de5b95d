"""squeue: every job the controller still holds, in one call, as separator-delimited lines.

`-O` (not `-o`) because only the long format has the exit code. A width of 0 prints a field in full,
unpadded; the suffix after it is our separator. The comment comes last so that, split with a maximum,
a separator inside it could not shift the other fields.
"""

from __future__ import annotations

from slurmlink.slurm.base import JobInfo, SlurmError
from slurmlink.slurm.commands import FINAL_STATES, SEP, TIME_ENV, base_state, epoch, none_if_null

FIELDS = (
    "JobID", "Name", "UserName", "State", "Reason", "exit_code", "SubmitTime", "StartTime", "EndTime",
    "WorkDir", "Comment",
)  # fmt: skip
ENV = TIME_ENV


def format_option() -> str:
    return ",".join(f"{name}:0{SEP}" for name in FIELDS[:-1]) + f",{FIELDS[-1]}:0"


def argv(squeue: str = "squeue") -> list[str]:
    # -a: hidden partitions too; --states=all: finished jobs the controller still remembers.
    return [squeue, "-h", "-a", "--states=all", "-O", format_option()]


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """squeue's exit_code is the raw wait status: 768 is `exit 3`, 9 is SIGKILL."""
    low = status & 0x7F
    if low == 0:
        return status >> 8, None
    return None, low


def parse_line(line: str) -> JobInfo | None:
    """One squeue line; None if it is not a job line of this format."""
    parts = line.split(SEP, len(FIELDS) - 1)
    if len(parts) != len(FIELDS) or not parts[0].strip() or not parts[5].strip().isdigit():
        return None
    job_id, name, user, state, reason, raw_exit, submit, start, end, workdir, comment = parts
    state = base_state(state)
    final = state in FINAL_STATES
    exit_code, signal = decode_wait_status(int(raw_exit)) if final else (None, None)
    return JobInfo(
        job_id=job_id.strip(),
        name=name,
        user=user.strip(),
        state=state,
        reason=none_if_null(reason),
        exit_code=exit_code,
        signal=signal,
        submit_time=epoch(submit),
        # A pending job's start and end are forecasts, a running job's end is its time limit.
        start_time=epoch(start) if state != "PENDING" else None,
        end_time=epoch(end) if final else None,
        workdir=none_if_null(workdir),
        comment=none_if_null(comment),
    )


def parse(output: str) -> list[JobInfo]:
    """All jobs in squeue's output. Raises SlurmError when lines are there but none can be read,
    which is a changed format, not an empty queue."""
    lines = [line for line in output.splitlines() if line.strip()]
    jobs = [job for job in map(parse_line, lines) if job is not None]
    if lines and not jobs:
        raise SlurmError(f"cannot read squeue's output (first line: {lines[0][:200]!r})")
    return jobs


def _rank(job: JobInfo) -> tuple[bool, int]:
    number = job.job_id.split("_")[0]
    return job.state not in FINAL_STATES, int(number) if number.isdigit() else -1


def by_name(jobs: list[JobInfo], prefix: str) -> dict[str, JobInfo]:
    """Jobs whose name starts with `prefix`, keyed by name. Two jobs of one name (a pod submitted again
    after its job ended): the one still active wins, else the newest."""
    found: dict[str, JobInfo] = {}
    for job in jobs:
        if not job.name.startswith(prefix):
            continue
        other = found.get(job.name)
        if other is None or _rank(job) > _rank(other):
            found[job.name] = job
    return found
