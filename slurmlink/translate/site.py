"""What a site decides about the jobs pods become: defaults, limits and what pods may ask for."""

from __future__ import annotations

from dataclasses import dataclass, field

# The `slurm-job.vk.io/flags` annotation is read in two steps (flags.py). Options slurmlink sets itself, where a
# pod's own value would only be overridden or would break how slurmlink follows the job, are dropped with a
# Warning event on the pod (interLink's own configuration puts --job-name there: such pods must run):
OWNED_OPTIONS: dict[str, str] = {
    "--job-name": "slurmlink names the job slurmlink-<pod uid>, which is how it finds the pod's job",
    "--output": "the job's output is the pod's log, in the pod's directory",
    "--error": "the job's errors are the pod's log, in the pod's directory",
    "--input": "containers read no standard input",
    "--open-mode": "slurmlink opens the job's output itself",
    "--chdir": "the job runs in the pod's directory; a container's workingDir sets where it starts",
    "--comment": "slurmlink records <namespace>/<pod> there",
    "--parsable": "slurmlink reads sbatch's answer itself",
    "--wait": "slurmlink follows the job itself; the submission must not block until the job ends",
    "--propagate": "the job's limits are the site's, not those of the service that submits it",
    "--kill-on-invalid-dep": "dependencies are refused, so it has no effect",
}
# ... and options that would change who runs the job, what environment it inherits, what it runs, or tie it to
# other jobs, which the pod cannot be allowed, are refused, whatever the site allows: the pod fails with
# FlagNotAllowed, naming the option and why.
FORBIDDEN_OPTIONS: dict[str, str] = {
    "--uid": "it would change who runs the job",
    "--gid": "it would change who runs the job",
    "--export": "the job's environment is the pod's",
    "--export-file": "the job's environment is the pod's",
    "--get-user-env": "the job's environment is the pod's",
    "--wrap": "the job runs the pod's containers, not a command of its own",
    "--container": "the pod's containers run in the site's runtime",
    "--container-id": "the pod's containers run in the site's runtime",
    "--array": "one pod is one job",
    "--dependency": "a pod's job may not wait on other jobs",
    "--test-only": "the pod would be reported as running while no job is submitted",
    "--requeue": "restarts follow the pod's restartPolicy, inside the job",
    "--no-requeue": "restarts follow the pod's restartPolicy, inside the job",
    "--bb": "burst buffer stage-in/out acts outside the job",
    "--bbf": "burst buffer stage-in/out acts outside the job",
    "--burst-buffer-file": "burst buffer stage-in/out acts outside the job",
}
# Both lists: never passed on to sbatch, whatever a site lists in allowed_options.
RESERVED_OPTIONS = frozenset(OWNED_OPTIONS) | frozenset(FORBIDDEN_OPTIONS)

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
    default_mem_per_cpu_mb: int | None = None  # per CPU in its place (a VO's site policy sets it)
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
