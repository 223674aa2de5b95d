"""What SLURM and a job's files say about a pod, in backend-neutral terms: plain frozen records."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class JobInfo:
    """What SLURM says about one job, in backend-neutral terms."""

    job_id: str
    name: str
    user: str
    state: str  # SLURM base state: PENDING, RUNNING, COMPLETING, COMPLETED, FAILED, CANCELLED, TIMEOUT, ...
    reason: str = ""  # SLURM's reason (why pending, why failed); "" or "None" when there is none
    exit_code: int | None = None  # the job script's return code
    signal: int | None = None  # signal that ended the job script, if any
    submit_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    workdir: str = ""
    comment: str = ""


@dataclass(frozen=True)
class LastTermination:
    """The previous instance of a restarted container (Kubernetes' `lastState.terminated`)."""

    exit_code: int
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ContainerNote:
    """Something the job noticed about a container that Kubernetes reports as an Event
    (`Unhealthy`, `Killing`, `FailedPostStartHook`, ...); `seq` grows with every note of the container."""

    seq: int
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class ContainerRecord:
    """What the job script recorded for one container in the pod's directory (see translate.script)."""

    name: str
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str = ""  # "DeadlineExceeded", "Killed" (deleted), "" otherwise
    restarts: int = 0
    # Probes (None: the container has none that decides it, so running means started and ready)
    ready: bool | None = None  # the readiness verdict of the job's prober
    startup: bool | None = None  # whether the startup probe succeeded
    last: LastTermination | None = None  # how the previous instance ended (restarted containers)
    notes: tuple[ContainerNote, ...] = ()  # the last probe/hook notes, for Events (oldest first)


@dataclass(frozen=True)
class VolumeFile:
    """A file of a pod's volume to replace while its job runs (a refreshed ServiceAccount token)."""

    path: str  # relative to the pod's working directory: volumes/<volume>/<path>, already validated
    mode: int
    data: bytes


@dataclass(frozen=True)
class PodDirectory:
    """Where one pod's job keeps its files, and whose they are."""

    workdir: str
    user: str
    job_id: str


@dataclass(frozen=True)
class Capacity:
    """Free resources of the site, for the node's allocatable capacity."""

    cpus: int
    memory_mb: int
    gpus: dict[str, int] = field(default_factory=dict)
