"""Configuration of `slurmlink api` (see docs/configuration.md and examples/api-*.yaml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from slurmlink.config import AdminListen
from slurmlink.identity.config import IdentityConfig, IssuerSection
from slurmlink.slurm.rest_shapes import SUPPORTED
from slurmlink.translate import site as site_model


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt key is an error, not a silent default


class ListenTlsConfig(Strict):
    cert_file: str
    key_file: str
    client_ca_file: str | None = None  # set: callers must present a client certificate this CA signed


class ListenConfig(Strict):
    host: str = "127.0.0.1"
    port: int = 3000
    tls: ListenTlsConfig | None = None  # HTTPS on host:port
    # A unix socket, served instead of host:port (mode 0660: its permissions are the access control)
    socket: str | None = None
    socket_group: str | None = None  # the socket's group (e.g. the one upstream interLink runs in)


class CliBackendConfig(Strict):
    slurm_conf: str | None = None  # SLURM_CONF for the commands; None uses the system's slurm.conf
    bin_dir: str | None = None  # where sbatch & co live; None searches PATH
    timeout_seconds: float = 30.0
    # At start: pods whose jobs ended this long ago (and left squeue) are recovered from accounting (sacct)
    accounting_lookback_hours: Annotated[float, Field(ge=0)] = 24.0


class RestBackendConfig(Strict):
    """Mode 1: the site's `slurmlink proxy` (or a slurmrestd that takes Check-in tokens)."""

    url: str  # e.g. https://hpc.example.org:8443
    api_version: str = "auto"  # v0.0.38 .. v0.0.44, or "auto" (from slurmrestd's /openapi/v3)
    service_token_file: str | None = None  # the API's own Check-in token (see docs/mode1.md)
    ca_file: str | None = None  # the proxy's CA; None: the system's
    timeout_seconds: float = Field(30.0, gt=0)
    max_connections: int = Field(16, ge=1)
    # Issuers a pod's refresh token may be sent to (for pods that outlive their access token).
    refresh_issuers: list[IssuerSection] = Field(default_factory=list)

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "auto" and value not in SUPPORTED:
            raise ValueError(f"api_version must be auto or one of {', '.join(SUPPORTED)}")
        return value


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
    admin: AdminListen = Field(default_factory=AdminListen)
    backend: Literal["cli", "rest"] = "cli"  # cli: sbatch & co at the site (mode 2); rest: the proxy (mode 1)
    cli: CliBackendConfig = Field(default_factory=CliBackendConfig)
    rest: RestBackendConfig | None = None
    job_root: str = "/var/lib/slurmlink/jobs"  # per-pod working directories, on a filesystem the nodes share
    poll_interval: float = Field(2.0, gt=0)  # seconds between the batched SLURM queries
    users: UsersConfig = Field(default_factory=UsersConfig)
    site: SiteSection = Field(default_factory=SiteSection)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    log_follow_interval: float = Field(1.0, gt=0)  # how often a followed log is read for new bytes
    # Check-in identity: each pod's own token decides who its job runs as (then `users` is not used).
    identity: IdentityConfig | None = None

    @model_validator(mode="after")
    def _backend_configured(self) -> ApiConfig:
        if self.listen.socket is not None and self.listen.tls is not None:
            raise ValueError("listen.tls and listen.socket exclude each other (the socket replaces the TCP port)")
        if self.backend == "rest" and self.rest is None:
            raise ValueError("backend rest needs a `rest:` section (at least its url)")
        if self.backend == "rest" and self.identity is not None:
            raise ValueError("with backend rest the site's proxy maps tokens to accounts: drop `identity:`")
        return self
