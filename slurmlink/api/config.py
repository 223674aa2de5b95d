"""Configuration of `slurmlink api` (see docs/configuration.md and slurmlink/examples/api-*.yaml)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from slurmlink.config import AbsolutePath, AdminListen, Strict
from slurmlink.identity.config import IdentityConfig, IssuerSection
from slurmlink.sitepolicy.config import SitePolicySection
from slurmlink.slurm.rest_shapes import SUPPORTED
from slurmlink.translate import site as site_model


class ListenTlsConfig(Strict):
    cert_file: str = Field(description="the server certificate (PEM)")
    key_file: str = Field(description="its private key")
    client_ca_file: str | None = Field(default=None, description=(
        "set: callers must present a client certificate this CA signed"))


class ListenConfig(Strict):
    host: str = Field(default="127.0.0.1", description="address to serve on")
    port: int = Field(default=3000, description="port (interLink's conventional API port)")
    tls: ListenTlsConfig | None = Field(default=None, description="HTTPS on host:port")
    socket: str | None = Field(default=None, description=(
        "a unix socket, served instead of host:port (mode 0660: its permissions are the access control)"))
    socket_group: str | None = Field(default=None, description=(
        "the socket's group (e.g. the one upstream interLink runs in)"))


class CliBackendConfig(Strict):
    slurm_conf: str | None = Field(default=None, description=(
        "`SLURM_CONF` for the commands; unset: the system's `/etc/slurm/slurm.conf`"))
    bin_dir: str | None = Field(default=None, description=(
        "directory of `sbatch` & co; unset: searched in `/usr/local/bin:/usr/bin:/bin` (the 24.11 dev cluster's "
        "is its `bin/`, see [dev-cluster.md](dev-cluster.md))"))
    timeout_seconds: float = Field(default=30.0, description="timeout of each SLURM command (sbatch: 60 s)")
    accounting_lookback_hours: float = Field(default=24.0, ge=0, description=(
        "at start, one `sacct` lists the jobs of this many hours; slurmlink's jobs among them that ended and "
        "left `squeue` are adopted like running ones, so a pod the virtual kubelet sends again after a restart "
        "is not run twice. Needs slurmdbd with `AccountingStoreFlags=job_comment` (the pod's namespace/name is "
        "in the job's comment; without it such jobs are ignored). `0`: never; without accounting it costs one "
        "refused `sacct`"))


class RestBackendConfig(Strict):
    """Mode 1: the site's `slurmlink proxy` (or a slurmrestd that takes Check-in tokens)."""

    url: str = Field(description="the site's `slurmlink proxy`, e.g. `https://hpc.example.org:8443`")
    api_version: str = Field(default="auto", description=(
        "SLURM REST API version: `v0.0.38` .. `v0.0.44`, or `auto` (the newest of slurmrestd's `/openapi/v3`)"))
    service_token_file: str | None = Field(default=None, description=(
        "the API's own Check-in token, for pods whose owner's token expired (see [mode1.md](mode1.md))"))
    ca_file: str | None = Field(default=None, description="CA of the proxy's certificate; unset: the system's")
    timeout_seconds: float = Field(default=30.0, gt=0, description="per request to the proxy")
    max_connections: int = Field(default=16, ge=1, description="connections to the proxy at once")
    refresh_issuers: list[IssuerSection] = Field(default_factory=list, description=(
        "issuers a pod's refresh token may be sent to (for pods that outlive their access token)"))

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if value != "auto" and value not in SUPPORTED:
            raise ValueError(f"api_version must be auto or one of {', '.join(SUPPORTED)}")
        return value


class UsersConfig(Strict):
    """Who jobs run as, until Check-in identity decides it: one account, or one per namespace."""

    default: str | None = Field(default=None, description=(
        "local account jobs run as (until Check-in identity maps each user)"))
    namespaces: dict[str, str] = Field(default_factory=dict, description=(
        "namespace → local account; wins over `default`. A pod with no account ends Failed (`NoAccountMapping`)"))


class ApptainerConfig(Strict):
    executable: str = Field(default="apptainer", description="or `singularity`, or a full path")
    options: list[str] = Field(default_factory=lambda: list(site_model.ApptainerSettings().options),
                               description="options of every `apptainer exec/run`")
    image_prefix: str = Field(default="docker://", description=(
        "put before images that have no scheme and are not absolute paths"))


class BwrapConfig(Strict):
    executable: str = Field(default="bwrap", description="bubblewrap")
    default_rootfs: str | None = Field(default="/", description=(
        "root filesystem for images not listed in `images`; `null` refuses them"))
    images: dict[str, str] = Field(default_factory=dict, description="image reference → root filesystem directory")


class SiteSection(Strict):
    runtime: Literal["host", "bwrap", "apptainer", "singularity"] = Field(default="host", description=(
        "how containers run; a pod may choose with the annotation `slurmlink.io/runtime`"))
    partition: str | None = Field(default=None, description=(
        "partition for pods that name none (the flags annotation may choose another if `--partition` is allowed)"))
    default_cpus: int = Field(default=1, ge=1, description="CPUs of a pod that requests none")
    default_memory_mb: int = Field(default=2048, ge=16, description=(
        "memory of a pod that requests none (never SLURM's 1 MB)"))
    default_time_minutes: int | None = Field(default=None, description=(
        "`--time` of a pod without `activeDeadlineSeconds`; unset: the partition's default"))
    gres: dict[str, str] = Field(default_factory=lambda: {"nvidia.com/gpu": "gpu", "amd.com/gpu": "gpu"},
                                 description="Kubernetes extended resources → SLURM gres names (`--gres=gpu:N`)")
    allowed_options: list[str] = Field(default_factory=lambda: sorted(site_model.DEFAULT_ALLOWED_OPTIONS),
                                       description=(
        "sbatch options the `slurm-job.vk.io/flags` annotation may set (short forms such as `-t 30`, `-A proj` "
        "count as their long names; abbreviations such as `--part` do not)"))
    allow_pre_exec: bool = Field(default=False, description=(
        "run the `slurm-job.vk.io/pre-exec` annotation (as shell, as the user, before the containers)"))
    host_path_prefixes: list[str] = Field(default_factory=list, description=(
        "hostPath volumes are allowed only below these directories"))
    path: str = Field(default="/usr/local/bin:/usr/bin:/bin", description=(
        "`PATH` in host/bwrap containers whose pod sets none"))
    max_restarts: int = Field(default=3, ge=0, description=(
        "restarts of a failing container inside the job (`restartPolicy: OnFailure`/`Always`)"))
    restart_backoff_seconds: int = Field(default=10, ge=0, description="backoff before restart N is N × this")
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

    bearer_token_file: str | None = Field(default=None, description=(
        "callers (the virtual kubelet) must send `Authorization: Bearer <contents>`"))
    allow_unauthenticated: bool = Field(default=False, description=(
        "serve without a token (a single-user laptop, the tests, the demo). The API refuses to start without "
        "one otherwise: any local user of the host could submit as any mapped account"))


class ExecSection(Strict):
    """`kubectl exec`, `attach` and `port-forward` into running pods (in mode 1 through the proxy's interactive
    extension; see [vk.md](vk.md#exec-and-attach))."""

    max_sessions_per_pod: int = Field(default=4, ge=0, description=(
        "open exec, attach and port-forward sessions into one pod at once; more are refused (429)"))
    max_sessions_per_user: int = Field(default=16, ge=0, description=(
        "open exec, attach and port-forward sessions of one mapped account at once, over all its pods; more are "
        "refused (429)"))


class ApiConfig(Strict):
    listen: ListenConfig = Field(default_factory=ListenConfig)
    admin: AdminListen = Field(default_factory=AdminListen, description=(
        "plain HTTP `/healthz` (in full) and `/metrics`, without authentication (see *Listeners*)"))
    backend: Literal["cli", "rest"] = Field(default="cli", description=(
        "`cli`: sbatch/squeue/sacct/scancel at the site (mode 2); `rest`: through the site's proxy (mode 1, "
        "see [mode1.md](mode1.md))"))
    cli: CliBackendConfig = Field(default_factory=CliBackendConfig)
    rest: RestBackendConfig | None = Field(default=None, description="needed with `backend: rest`")
    job_root: str = Field(default="/var/lib/slurmlink/jobs", description=(
        "per-pod directories `<job_root>/<namespace>-<uid>` (0700, owned by the user), on a filesystem the "
        "compute nodes share. Mode 2: traversable (`0711`) by the users; mode 1: root-owned `1733`, and the same "
        "path as the proxy's `files.job_root`"))
    poll_interval: float = Field(default=5.0, gt=0, description=(
        "seconds between the batched status queries (one `squeue` for all pods) at steady state; starts and ends "
        "come sooner, from the job's files and the hurried queries"))
    poll_interval_fast: float = Field(default=0.25, gt=0, description=(
        "while a submitted job has not been seen started (or a deleted pod's job ended), the next query comes "
        "this many seconds after the last, then after twice that, and so on up to `poll_interval`; at steady "
        "state only `poll_interval` counts. Where inotify watches the job files, a submission does not hurry "
        "the queries: the files show the start at once (see *How status reaches Kubernetes*)"))
    watch_files: Literal["auto", "inotify", "stat", "off"] = Field(default="auto", description=(
        "mode 2: how the API notices what a job writes in its pod's `status/` directory between queries: "
        "`inotify` (the job root on a local filesystem), `stat` (every `watch_stat_interval`: a shared "
        "filesystem, where inotify does not see the compute nodes' writes), `off`; `auto`: `inotify` on a local "
        "disk or memory filesystem (ext2/3/4, XFS, Btrfs, F2FS, ZFS, tmpfs, overlay) where the kernel has it, else "
        "`stat` (as on any other filesystem). Mode 1: anything but `off` holds a long poll of the "
        "proxy's file watch (the proxy's `files.watch` chooses how it watches; see [mode1.md](mode1.md))"))
    watch_stat_interval: float = Field(default=0.5, gt=0, description=(
        "seconds between two looks (one `stat` of each running pod's `status/` directory) with "
        "`watch_files: stat`"))
    users: UsersConfig = Field(default_factory=UsersConfig)
    site: SiteSection = Field(default_factory=SiteSection)
    site_policy: SitePolicySection = Field(default_factory=SitePolicySection, description=(
        "per-VO account, partitions, QoS, limits and job caps (mode 2, with `identity:`; in mode 1 the site's "
        "proxy applies its own). See [site-policy.md](site-policy.md)"))
    auth: AuthConfig = Field(default_factory=AuthConfig)
    exec: ExecSection = Field(default_factory=ExecSection)
    log_follow_interval: float = Field(default=1.0, gt=0, description="how often a followed log is read for new bytes")
    identity: IdentityConfig | None = Field(default=None, description=(
        "Check-in identity: each pod's own token decides who its job runs as (then `users` is not used)"))
    state_dir: AbsolutePath = Field(default="/var/lib/slurmlink/api", description=(
        "state that must outlive a restart (the identity pool's database, unless its url is set; see *State that "
        "must persist*); made (0700) at start when something is kept there"))

    @model_validator(mode="after")
    def _state_dir(self) -> ApiConfig:
        if self.identity is not None:
            self.identity.keep_pools_in(self.state_dir)
        return self

    @model_validator(mode="after")
    def _backend_configured(self) -> ApiConfig:
        if self.listen.socket is not None and self.listen.tls is not None:
            raise ValueError("listen.tls and listen.socket exclude each other (the socket replaces the TCP port)")
        if self.backend == "rest" and self.rest is None:
            raise ValueError("backend rest needs a `rest:` section (at least its url)")
        if self.backend == "rest" and self.identity is not None:
            raise ValueError("with backend rest the site's proxy maps tokens to accounts: drop `identity:`")
        return self
