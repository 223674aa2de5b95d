"""Configuration of `slurmlink api` (see docs/configuration.md and examples/api-*.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from slurmlink.identity.config import IdentityConfig
from slurmlink.translate import site as site_model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silent default


class ListenConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 3000


class CliBackendConfig(Strict):
    slurm_conf: str | None = None  # SLURM_CONF for the commands; None uses the system's slurm.conf
    bin_dir: str | None = None  # where sbatch & co live; None searches PATH
    timeout_seconds: float = 30.0


class UsersConfig(Strict):
    """Who jobs run as, until Check-in identity decides it: one account, or one per namespace."""

    default: str | None = None
    namespaces: dict[str, str] = Field(default_factory=dict)


class ApptainerConfig(Strict):
    executable: str = "apptainer"
    options: list[str] = Field(default_factory=lambda: list(site_model.ApptainerSettings().options))
    image_prefix: str = "docker://"


class BwrapConfig(Strict):
    executable: str = "bwrap"
    default_rootfs: str | None = "/"
    images: dict[str, str] = Field(default_factory=dict)


class SiteSection(Strict):
    runtime: Literal["host", "bwrap", "apptainer", "singularity"] = "host"
    partition: str | None = None
    default_cpus: Annotated[int, Field(ge=1)] = 1
    default_memory_mb: Annotated[int, Field(ge=16)] = 2048
    default_time_minutes: int | None = None
    gres: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu": "gpu", "amd.com/gpu": "gpu"})
    allowed_options: list[str] = Field(default_factory=lambda: sorted(site_model.DEFAULT_ALLOWED_OPTIONS))
    allow_pre_exec: bool = False
    host_path_prefixes: list[str] = Field(default_factory=list)
    path: str = "/usr/local/bin:/usr/bin:/bin"
    max_restarts: Annotated[int, Field(ge=0)] = 3
    restart_backoff_seconds: Annotated[int, Field(ge=0)] = 10
    apptainer: ApptainerConfig = Field(default_factory=ApptainerConfig)
    bwrap: BwrapConfig = Field(default_factory=BwrapConfig)

    def to_site(self) -> site_model.SiteConfig:
        return site_model.SiteConfig(
            runtime=self.runtime, partition=self.partition, default_cpus=self.default_cpus,
            default_memory_mb=self.default_memory_mb, default_time_minutes=self.default_time_minutes,
            gres=dict(self.gres), allowed_options=frozenset(self.allowed_options),
            allow_pre_exec=self.allow_pre_exec, host_path_prefixes=tuple(self.host_path_prefixes),
            path=self.path, max_restarts=self.max_restarts, restart_backoff_seconds=self.restart_backoff_seconds,
            apptainer=site_model.ApptainerSettings(self.apptainer.executable, tuple(self.apptainer.options),
                                                   self.apptainer.image_prefix),
            bwrap=site_model.BwrapSettings(self.bwrap.executable, self.bwrap.default_rootfs, dict(self.bwrap.images)),
        )


class AuthConfig(Strict):
    """How callers of the API (the virtual kubelet) authenticate."""

    bearer_token_file: str | None = None
    # Without a token, any local user of the host could submit as any mapped account through a root API:
    # serving without one must be asked for explicitly (a single-user laptop, the tests, the demo).
    allow_unauthenticated: bool = False


class ApiConfig(Strict):
    listen: ListenConfig = Field(default_factory=ListenConfig)
    backend: Literal["cli"] = "cli"
    cli: CliBackendConfig = Field(default_factory=CliBackendConfig)
    job_root: str = "/var/lib/slurmlink/jobs"  # per-pod working directories, on a filesystem the nodes share
    poll_interval: float = Field(2.0, gt=0)  # seconds between the batched SLURM queries
    users: UsersConfig = Field(default_factory=UsersConfig)
    site: SiteSection = Field(default_factory=SiteSection)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    log_follow_interval: float = Field(1.0, gt=0)  # how often a followed log is read for new bytes
    # Check-in identity: each pod's own token decides who its job runs as (then `users` is not used).
    identity: IdentityConfig | None = None
