"""squeue: every job the controller still holds, in one call, as separator-delimited lines.

`-O` (not `-o`) because only the long format has the exit code. A width of 0 prints a field in full,
unpadded; the suffix after it is our separator. The comment comes last so that, split with a maximum,
a separator inside it could not shift the other fields.
"""

from __future__ import annotations

import re

from slurmlink.core.records import JobInfo
from slurmlink.core.states import decode_exit_code
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.commands import SEP, TIME_ENV, job_info

FIELDS = (
    "JobID", "Name", "UserName", "State", "Reason", "exit_code", "SubmitTime", "StartTime", "EndTime",
    "WorkDir", "Comment",
)  # fmt: skip
ENV = TIME_ENV
_EXIT_CODE = re.compile(r"\A[0-9]+(:[0-9]+)?\Z")  # "768" (22.05: a wait status) or "3:0" (24.11: code:signal)


def format_option() -> str:
    return ",".join(f"{name}:0{SEP}" for name in FIELDS[:-1]) + f",{FIELDS[-1]}:0"


def argv(squeue: str = "squeue") -> list[str]:
    # -a: hidden partitions too; --states=all: finished jobs the controller still remembers.
    return [squeue, "-h", "-a", "--states=all", "-O", format_option()]


def parse_line(line: str) -> JobInfo | None:
    """One squeue line; None if it is not a job line of this format."""
    parts = line.split(SEP, len(FIELDS) - 1)
    if len(parts) != len(FIELDS) or not parts[0].strip() or not _EXIT_CODE.match(parts[5].strip()):
        return None
    return job_info(parts, decode_exit_code)


def parse(output: str, prefix: str = "", reuse: dict[str, JobInfo] | None = None) -> list[JobInfo]:
    """Jobs in squeue's output whose name starts with `prefix`. Other users' jobs are skipped before
    their fields are parsed: on a busy cluster they are most of the lines. Raises SlurmError when lines
    are there but none has this format, which is a changed format, not an empty queue.

    `reuse`: the jobs of the last call by their line, replaced by this call's. A job that did not change prints
    the same line (most lines are finished jobs the controller still holds), so it is not parsed again."""
    every = output.splitlines()
    # The name (the second field) read in place: this runs for every job the controller holds at every poll.
    ours = [line for line in every if (end := line.find(SEP)) >= 0 and line.startswith(prefix, end + 1)]
    known = reuse if reuse is not None else {}
    parsed = {line: job for line in ours if (job := known.get(line) or parse_line(line)) is not None}
    jobs = list(parsed.values())
    if reuse is not None:
        reuse.clear()
        reuse.update(parsed)
    lines = [] if jobs else [line for line in every if line.strip()]
    if lines and not any(parse_line(line) for line in lines[:5]):
        raise SlurmError(f"cannot read squeue's output (first line: {lines[0][:200]!r})")
    return jobs
