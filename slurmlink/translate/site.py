"""What a site decides about the jobs pods become: defaults, limits and what pods may ask for."""

from __future__ import annotations

from dataclasses import dataclass, field

# sbatch options a pod may never set: they would change who runs the job, where its files go or what
# environment it inherits, all of which slurmlink controls.
FORBIDDEN_OPTIONS = frozenset({
    "--uid", "--gid", "--export", "--export-file", "--get-user-env", "--chdir", "--output", "--error",
    "--input", "--job-name", "--comment", "--wrap", "--container", "--container-id", "--parsable",
    "--wait", "--test-only", "--array", "--dependency", "--kill-on-invalid-dep", "--requeue",
    "--no-requeue", "--open-mode", "--propagate", "--burst-buffer-file", "--bbf",
})

DEFAULT_ALLOWED_OPTIONS = frozenset({
    "--account", "--qos", "--partition", "--constraint", "--nodes", "--ntasks", "--ntasks-per-node",
    "--cpus-per-task", "--mem", "--mem-per-cpu", "--time", "--gres", "--gpus", "--gpus-per-node",
    "--exclusive", "--reservation", "--licenses", "--hint", "--nice", "--begin", "--mail-type",
    "--switches", "--time-min", "--exclude", "--nodelist",
})


@dataclass(frozen=True)
class ApptainerSettings:
    executable: str = "apptainer"  # or "singularity"
    # --no-eval: never let the runtime evaluate environment values as shell
    options: tuple[str, ...] = ("--containall", "--cleanenv", "--no-eval")
    image_prefix: str = "docker://"  # put before images without a scheme or absolute path


@dataclass(frozen=True)
class BwrapSettings:
    executable: str = "bwrap"
    default_rootfs: str | None = "/"  # root filesystem for images not listed below; None refuses them
    images: dict[str, str] = field(default_factory=dict)  # image reference -> root filesystem directory


@dataclass(frozen=True)
class SiteConfig:
    runtime: str = "host"  # host | bwrap | apptainer | singularity
    partition: str | None = None
    default_cpus: int = 1
    default_memory_mb: int = 2048  # what a pod without a memory request gets: never 1 MB
    default_time_minutes: int | None = None
    # Kubernetes extended resources that are GPUs (or other generic resources) -> SLURM gres name
    gres: dict[str, str] = field(default_factory=lambda: {"nvidia.com/gpu": "gpu", "amd.com/gpu": "gpu"})
    allowed_options: frozenset[str] = DEFAULT_ALLOWED_OPTIONS
    allow_pre_exec: bool = False
    host_path_prefixes: tuple[str, ...] = ()  # hostPath volumes allowed only below these
    path: str = "/usr/local/bin:/usr/bin:/bin"  # PATH in a container whose pod sets none
    max_restarts: int = 3  # restartPolicy OnFailure/Always: restarts of one container inside the job
    restart_backoff_seconds: int = 10
    apptainer: ApptainerSettings = field(default_factory=ApptainerSettings)
    bwrap: BwrapSettings = field(default_factory=BwrapSettings)
