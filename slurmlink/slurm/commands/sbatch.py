"""sbatch: submit a BatchJob, the script on stdin and every option a separate argv item.

Environment: the job must not inherit the service's environment. sbatch runs with an environment
built from scratch (see runner), and the job gets `--export=NONE`, or `--export=<names>` when the job
has variables of its own: their values travel in sbatch's environment, not in argv, so commas and
"=" in values need no escaping. In 22.05 both forms make slurmd load the user's login environment
(HOME, PATH, SHELL, what /etc/profile sets) before the named variables, which is what a job script
at an HPC site expects.
"""

from __future__ import annotations

import re

from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.runner import CommandResult, error_from, is_transient, slurm_message
from slurmlink.translate.job import BatchJob
from slurmlink.translate.site import RESERVED_OPTIONS

_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")
# sbatch reads SBATCH_* as options and SLURM_* are its own: a job's variables may set neither.
_RESERVED_PREFIXES = ("SBATCH_", "SLURM_", "SALLOC_", "SRUN_")
_GENERIC = "Batch job submission failed:"


def environment(job: BatchJob) -> dict[str, str]:
    """The job's own variables, checked: they become sbatch's environment."""
    for name, value in job.environment.items():
        if not _NAME.match(name) or name.upper().startswith(_RESERVED_PREFIXES):
            raise SlurmError(f"environment variable {name!r} cannot be passed to a job")
        if "\0" in value:
            raise SlurmError(f"environment variable {name!r} holds a NUL byte")
    return dict(job.environment)


def export_option(job: BatchJob) -> str:
    names = sorted(job.environment)
    return f"--export={','.join(names)}" if names else "--export=NONE"


def argv(job: BatchJob, sbatch: str = "sbatch") -> list[str]:
    extra = []
    for option in job.extra_options:
        name = option.split("=", 1)[0]
        # getopt takes any unambiguous prefix ("--expo" is --export): refuse prefixes of forbidden ones too.
        if not name.startswith("--") or any(f.startswith(name) for f in RESERVED_OPTIONS) or "\n" in option:
            raise SlurmError(f"sbatch option {option!r} is not allowed")
        extra.append(option)
    args = [sbatch, "--parsable", *extra]  # ours come after the extras: on a repeat, sbatch keeps the last
    args += [
        f"--job-name={job.name}", f"--comment={job.comment}", f"--chdir={job.workdir}",
        f"--output={job.stdout}", f"--cpus-per-task={job.cpus_per_task}",
        # none: the job's --mem-per-cpu (from the flags) says
        *([f"--mem={job.memory_mb}M"] if job.memory_mb is not None else []), export_option(job),
    ]  # fmt: skip
    if job.time_limit_minutes is not None:
        args.append(f"--time={job.time_limit_minutes}")
    if job.gres:
        args.append(f"--gres={job.gres}")
    if job.partition:
        args.append(f"--partition={job.partition}")
    return args


def message(stderr: str) -> str:
    """SLURM's reason for a refusal: the specific line rather than the generic one that follows it
    ("invalid partition specified: nope", not "...; Batch job submission failed: Invalid partition
    name specified")."""
    text = slurm_message(stderr)
    parts = text.split("; ")
    specific = [p for p in parts if not p.startswith(_GENERIC)]
    return "; ".join(specific) if specific and len(specific) < len(parts) else text


def parse(result: CommandResult) -> str:
    """The job id from `--parsable` output ("123" or "123;cluster"). Raises SlurmError with SLURM's words.

    A transient error (the controller timed out) may still have created the job: the caller looks for
    the job by name before it submits again.
    """
    if not result.ok:
        text = message(result.err)
        if not text:
            raise error_from(result, "sbatch")
        raise SlurmError(text, transient=is_transient(result.err))
    first = result.out.strip().splitlines()[0] if result.out.strip() else ""
    job_id = first.split(";")[0].strip()
    if not job_id.isdigit():
        raise SlurmError(
            f"sbatch printed no job id: {result.out.strip()[:200]!r} {result.err.strip()[:200]!r}"
        )
    return job_id
