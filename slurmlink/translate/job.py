"""The batch job a pod becomes: plain data, shared by every scheduler backend."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class BatchJob:
    """Everything a backend needs to submit one pod as one SLURM job.

    The script is self-contained (it materialises the pod's files itself), so the same job can be
    submitted by `sbatch` at the site or through the SLURM REST API from elsewhere. Scheduler options
    are structured fields, never `#SBATCH` lines, because slurmrestd does not read those.
    """

    name: str  # "slurmlink-<pod uid>": how a job is matched to its pod after any restart
    comment: str  # "<namespace>/<pod name>", for people reading squeue
    workdir: str  # the pod's own directory at the site; the script cds there
    script: str  # bash script; every value from the pod in it is quoted or base64-encoded
    stdout: str  # path of the job's own output (the script's trace, not container logs)
    cpus_per_task: int
    memory_mb: int | None  # the job's memory; None when the flags annotation asks per CPU (--mem-per-cpu)
    time_limit_minutes: int | None = None
    gres: str | None = None  # e.g. "gpu:2"
    partition: str | None = None
    # Allow-listed extra sbatch options from the pod's annotations, each one "--opt=value" argv item.
    extra_options: tuple[str, ...] = ()
    # Seconds between SIGTERM and SIGKILL when the pod is deleted.
    grace_seconds: int = 30
    environment: dict[str, str] = field(default_factory=dict)  # job-level env (the script clears it per container)
    # The VO the pod asked to run under, for a site that decides the policy itself (mode 1: the proxy's header)
    vo: str | None = None
