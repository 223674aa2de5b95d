"""Configuration of `slurmlink proxy` (one YAML file, `SLURMLINK_*` overrides via slurmlink.config.load_config).

Every key is described here (`Field(description=...)`); docs/configuration.md's table of them is generated from
this module (`slurmlink config reference`), and slurmlink/examples/proxy.yaml is a complete example.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from slurmlink.config import AbsolutePath, AdminListen, Strict
from slurmlink.identity.config import IdentityConfig
from slurmlink.sitepolicy.config import SitePolicySection


class ListenSection(Strict):
    host: str = Field(default="127.0.0.1", description="address to serve on")
    port: int = Field(default=8443, ge=0, le=65535, description="port to serve on")


class TlsSection(Strict):
    """Serve HTTPS (for direct exposure; TLS >= 1.3 recommended)."""

    cert_file: str = Field(description="the server certificate (PEM, with its chain)")
    key_file: str = Field(description="its private key (PEM)")


class RateLimitSection(Strict):
    requests_per_second: float = Field(default=10.0, gt=0, description="sustained rate")
    burst: int = Field(default=20, ge=1, description="requests allowed at once above the sustained rate")


class ClientsSection(Strict):
    """What a client may hold of the proxy before its request is whole (slow or stalled clients)."""

    header_timeout_seconds: float = Field(default=10.0, gt=0, description=(
        "a connection sends its request's headers within this long of connecting (or of its first byte after "
        "an answer), else 408 and closed"))
    body_timeout_seconds: float = Field(default=30.0, gt=0, description=(
        "a request's whole body arrives within this long of its headers, else 408 and closed"))
    keepalive_timeout_seconds: float = Field(default=5.0, gt=0, description=(
        "an idle kept-alive connection is closed after this long"))
    send_timeout_seconds: float = Field(default=30.0, gt=0, description=(
        "a client takes each part of its answer within this long, else its connection is closed (a client that "
        "stops reading would otherwise hold a connection to slurmrestd)"))
    max_header_bytes: int = Field(default=16 * 1024, ge=8 * 1024 + 1024, description=(
        "largest request line and headers together (a Check-in token is up to 8 KiB), else 431"))
    max_connections: int = Field(default=1000, ge=1, description=(
        "connections open at once on the public port, else 503 (each is a file descriptor: stay below the "
        "process's `ulimit -n` minus `max_upstream_connections`)"))
    max_connections_per_address: int = Field(default=200, ge=1, description=(
        "connections open at once from one client address, else 429 (in mode 1 one API holds its pool and every "
        "followed log: keep this above the API's `max_connections` plus the follows it serves)"))


class SignalsSection(Strict):
    """Signalling only a job's batch script (graceful stop): slurmrestd before v0.0.40 signals every process of
    the job, so the proxy runs `scancel --batch` with a token of the job's owner (SLURM_JWT; needs AuthAltTypes
    auth/jwt in slurm.conf)."""

    scancel: str = Field(default="scancel", description="the `scancel` command (a name on PATH or a full path)")
    slurm_conf: str | None = Field(default=None, description="`SLURM_CONF` for scancel; unset: the system's")
    timeout_seconds: float = Field(default=30.0, gt=0, description="timeout of each scancel")


class FilesSection(Strict):
    """Where users' pod directories are (direct children of job_root), for the status and log extensions."""

    job_root: str = Field(description=(
        "the directory whose direct children are pod directories: root-owned, mode `1733`, and the same path "
        "as the mode-1 API's `job_root`"))
    max_chunk_bytes: int = Field(default=16 * 1024 * 1024, ge=1, description=(
        "most log bytes one answer (or one read while following) carries"))
    follow_poll_seconds: float = Field(default=0.5, gt=0, description="how often a followed log is read for new bytes")
    max_follows_per_user: int = Field(default=16, ge=1, description=(
        "log follows one user may have open at once (each polls the disk)"))
    watch: Literal["auto", "inotify", "stat", "off"] = Field(default="auto", description=(
        "the file watch (`GET /slurmlink/v1/status-changes`, a long poll): how the proxy notices that a job wrote "
        "its pod's `status/` files, so that a mode-1 API learns starts and ends without asking SLURM. `inotify` "
        "(the job root on a local filesystem), `stat` (every `watch_stat_interval`: a shared filesystem, where "
        "inotify does not see the compute nodes' writes), `off` (the route answers 404 and the API keeps to its "
        "polls); `auto`: `inotify` on a local disk or memory filesystem (ext2/3/4, XFS, Btrfs, F2FS, ZFS, tmpfs, "
        "overlay) where the kernel has it, else `stat` (as on any other filesystem)"))
    watch_stat_interval: float = Field(default=0.5, gt=0, description=(
        "seconds between two looks at each watched pod's `status/` directory with `watch: stat`"))

    @model_validator(mode="after")
    def _absolute(self) -> FilesSection:
        if not self.job_root.startswith("/") or self.job_root.rstrip("/") == "":
            raise ValueError("files.job_root must be an absolute path below /")
        return self


class InteractiveSection(Strict):
    """`kubectl exec` and `port-forward` into mode-1 pods (attach needs nothing here: it reads the log): the proxy
    runs a step of the caller's own running job as the caller's mapped account (`setpriv` to that account, then
    `srun --overlap --jobid=<job>`), on this host. Needs the SLURM client commands and munge here, and
    CAP_SETUID, CAP_SETGID and CAP_KILL (the systemd drop-in `interactive.conf`, see [proxy.md](proxy.md))."""

    enabled: bool = Field(default=False, description=(
        "serve `POST /slurmlink/v1/jobs/{id}/exec` and `.../portforward` (SPDY/3.1 upgrades); off: they answer "
        "501 `InteractiveDisabled`, which kubectl shows and the pod's events say"))
    srun: str = Field(default="/usr/bin/srun", description="the `srun` command, a full path")
    setpriv: str = Field(default="/usr/bin/setpriv", description=(
        "the `setpriv` command (util-linux) that switches to the caller's account, a full path (it runs with "
        "the proxy's CAP_SETUID: a name would be looked up on a PATH others may write to)"))
    slurm_conf: str | None = Field(default=None, description="`SLURM_CONF` for srun; unset: the system's")
    path: str = Field(default="/usr/local/bin:/usr/bin:/bin", description="`PATH` of the steps' commands")
    max_sessions_per_user: int = Field(default=8, ge=1, description=(
        "exec and port-forward sessions one account may have open at once, else 429 (each forwarded connection "
        "of a port-forward is a step of its own, within its session)"))
    max_sessions: int = Field(default=256, ge=1, description=(
        "exec and port-forward sessions open at once for all accounts together, else 503 (they do not count "
        "against `clients.max_connections*`: in mode 1 they all come from the API's host)"))

    @model_validator(mode="after")
    def _full_paths(self) -> InteractiveSection:
        for name in ("srun", "setpriv"):
            if not getattr(self, name).startswith("/"):
                raise ValueError(f"interactive.{name} must be a full path: the proxy starts it with CAP_SETUID")
        return self


class ServiceIdentitySection(Strict):
    """The Check-in client identity of a `slurmlink api` (its own token: `sub` and `iss` match exactly)."""

    issuer: str = Field(description="the client's issuer: one of `identity.issuers`")
    subject: str = Field(min_length=1, description="the client's `sub`")
    account: str = Field(min_length=1, description="local account the read-only calls run as")


class ProxyConfig(Strict):
    listen: ListenSection = Field(default_factory=lambda: ListenSection())
    admin: AdminListen = Field(default_factory=AdminListen, description=(
        "plain HTTP `/healthz` (in full) and `/metrics`; set, `/metrics` leaves the public port"))
    upstream: str = Field(default="http://127.0.0.1:6820", description=(
        "slurmrestd (`http(s)://host[:port]`, plain HTTP on loopback or a private network)"))
    identity: IdentityConfig = Field(description="issuers, VO policy, mapping chain (as for `slurmlink api`)")
    slurm_user: str = Field(default="slurm", description="the SlurmUser the proxy speaks for; never a mapping result")
    jwt_key_file: str | None = Field(default=None, description=(
        "slurmrestd's JWT key: the proxy mints short SlurmUser tokens from it (give this or `token_file`)"))
    token_file: str | None = Field(default=None, description=(
        "a SlurmUser token the site rotates, re-read when it changes (give this or `jwt_key_file`)"))
    token_lifespan_seconds: int = Field(default=300, ge=30, le=86400, description="lifetime of minted SlurmUser tokens")
    api_version: str = Field(default="auto", description=(
        "the proxy's own requests (`/healthz`, job lookups, capacity): `auto` (the newest both speak) or e.g. "
        "`v0.0.42`"))
    api_version_recheck_seconds: float = Field(default=300.0, gt=0, description=(
        "with `auto`: how often slurmrestd's offer is read again (also after it was unreachable)"))
    max_body_bytes: int = Field(default=1024 * 1024, ge=1, description="largest request body")
    upstream_timeout_seconds: float = Field(default=30.0, gt=0, description="per request to slurmrestd")
    upstream_connect_timeout_seconds: float = Field(default=5.0, gt=0, description="to connect to slurmrestd")
    max_upstream_connections: int = Field(default=32, ge=1, description=(
        "kept-alive connections that forward requests; the proxy's own lookups (job owners, API version, "
        "health) have a pool of the same size: keep twice it below slurmrestd's `--max-connections` (124)"))
    rate_limit: RateLimitSection = Field(default_factory=lambda: RateLimitSection(), description="per mapped user")
    auth_failure_limit: RateLimitSection | None = Field(default=None, description=(
        "refused tokens per client address: past the burst, the address gets 429 without its token being looked "
        "at. Off by default: in mode 1 one API sends everyone's tokens, and one user's expired tokens would lock "
        "out everyone behind it. Turn it on where clients are people"))
    token_recheck_on_change_seconds: float | None = Field(default=None, ge=0, description=(
        "prompt revocation: submits, cancels and signals trust a validated token's identity only this long, then "
        "ask the issuer again (userinfo, or introspection with `client_id`), so a revoked token or a left VO "
        "stops changing jobs within it; costs one issuer round trip per token per interval on such requests "
        "(0: on every one). Null: `identity.issuers[].cache_ttl_seconds` applies to every request"))
    clients: ClientsSection = Field(default_factory=lambda: ClientsSection(), description=(
        "timeouts and connection caps for slow, stalled or greedy clients"))
    site_policy: SitePolicySection = Field(default_factory=SitePolicySection, description=(
        "per-VO account, partitions, QoS, limits and job caps, applied to every submission (see "
        "[site-policy.md](site-policy.md))"))
    allow_slurmdb: bool = Field(default=False, description="allow the read-only `/slurmdb` job queries")
    tls: TlsSection | None = None
    files: FilesSection | None = Field(default=None, description=(
        "the `/slurmlink/v1/` status and log extensions; unset: they answer 404"))
    signals: SignalsSection | None = Field(default=None, description=(
        "`POST /slurmlink/v1/jobs/{id}/signal` (graceful stop on slurmrestd before v0.0.40)"))
    interactive: InteractiveSection = Field(default_factory=lambda: InteractiveSection(), description=(
        "`kubectl exec` and `port-forward` into mode-1 pods, as the caller's own account (off by default)"))
    service_identities: list[ServiceIdentitySection] = Field(default_factory=list, description=(
        "Check-in clients of `slurmlink api` (see *Service identities and the submission ledger* in "
        "[proxy.md](proxy.md))"))
    state_dir: AbsolutePath = Field(default="/var/lib/slurmlink/proxy", description=(
        "state that must outlive a restart: the submission ledger, and the identity pool's database unless its "
        "url is set (see *State that must persist*); made (0700) at start if missing"))

    @model_validator(mode="after")
    def _check(self) -> ProxyConfig:
        if (self.jwt_key_file is None) == (self.token_file is None):
            raise ValueError("give exactly one of jwt_key_file and token_file (the SlurmUser token)")
        if not re.fullmatch(r"https?://[^/?#]+/?", self.upstream):
            raise ValueError("upstream must be http(s)://host[:port] of slurmrestd, without a path")
        if self.api_version != "auto" and not re.fullmatch(r"v0\.0\.\d+", self.api_version):
            raise ValueError("api_version is auto or looks like v0.0.42")
        if self.signals is not None and self.jwt_key_file is None:
            # scancel would act as the SlurmUser, for whom SLURM checks nothing: only a token of the owner
            raise ValueError("signals need jwt_key_file: scancel runs with a token of the job's owner")
        self.identity.keep_pools_in(self.state_dir)
        self._check_service_identities()
        return self

    def _check_service_identities(self) -> None:
        if not self.service_identities:
            return
        pinned = {section.url for section in self.identity.issuers}
        for service in self.service_identities:
            if service.issuer not in pinned:
                raise ValueError(f"service identity issuer {service.issuer!r} is not one of identity.issuers")
            if service.account in ("root", self.slurm_user, self.identity.accounts.slurm_user):
                raise ValueError(f"a service identity may not run as {service.account!r}")
