"""Configuration of `slurmlink proxy` (one YAML file, `SLURMLINK_*` overrides via slurmlink.config.load_config).

    listen: {host: 127.0.0.1, port: 8443}
    upstream: http://127.0.0.1:6820          # slurmrestd (plain HTTP on loopback or a private network)
    identity: {...}                          # see slurmlink.identity.config.IdentityConfig
    slurm_user: slurm                        # the SlurmUser the proxy speaks for
    jwt_key_file: /var/spool/slurm/jwt_hs256.key   # either: mint short HS256 SlurmUser tokens
    # token_file: /run/slurmlink/slurm.token       # or: a token the site rotates (re-read on change)
    token_lifespan_seconds: 300
    max_body_bytes: 1048576
    upstream_timeout_seconds: 30
    max_upstream_connections: 32
    rate_limit: {requests_per_second: 10, burst: 20}   # per mapped user
    auth_failure_limit: null                 # e.g. {requests_per_second: 1, burst: 30}: refused tokens per address
    allow_slurmdb: false                     # read-only /slurmdb job queries
    tls: {cert_file: ..., key_file: ...}     # optional; terminate TLS here (TLS >= 1.3 recommended)
    admin: {host: 127.0.0.1, port: 9091}     # optional; /healthz with details and /metrics, plain HTTP
    files: {job_root: /path, max_chunk_bytes: 16777216}   # optional: the /slurmlink/v1/ file extensions
    service_identities: [{issuer: https://..., subject: <sub>, account: <local account>}]   # optional
    state_dir: /var/lib/slurmlink/proxy      # the submission ledger; required with service_identities
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slurmlink.config import AdminListen
from slurmlink.identity.config import IdentityConfig


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ListenSection(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)


class TlsSection(Strict):
    cert_file: str
    key_file: str


class RateLimitSection(Strict):
    requests_per_second: float = Field(default=10.0, gt=0)  # sustained, per mapped user
    burst: int = Field(default=20, ge=1)


class SignalsSection(Strict):
    """Signalling only a job's batch script (graceful stop): slurmrestd before v0.0.40 signals every process of
    the job, so the proxy runs `scancel --batch` with a token of the job's owner (SLURM_JWT; needs AuthAltTypes
    auth/jwt in slurm.conf)."""

    scancel: str = "scancel"
    slurm_conf: str | None = None  # SLURM_CONF for scancel; None: the system's
    timeout_seconds: float = Field(default=30.0, gt=0)


class FilesSection(Strict):
    """Where users' pod directories are (direct children of job_root), for the status and log extensions."""

    job_root: str
    max_chunk_bytes: int = Field(default=16 * 1024 * 1024, ge=1)  # most log bytes one answer/read carries
    follow_poll_seconds: float = Field(default=0.5, gt=0)  # how often a followed log is read for new bytes
    max_follows_per_user: int = Field(default=16, ge=1)  # open log follows at once (each polls the disk)

    @model_validator(mode="after")
    def _absolute(self) -> FilesSection:
        if not self.job_root.startswith("/") or self.job_root.rstrip("/") == "":
            raise ValueError("files.job_root must be an absolute path below /")
        return self


class ServiceIdentitySection(Strict):
    """The Check-in client identity of a `slurmlink api` (its own token: `sub` and `iss` match exactly)."""

    issuer: str
    subject: str = Field(min_length=1)
    account: str = Field(min_length=1)  # local account the read-only calls run as


class ProxyConfig(Strict):
    listen: ListenSection = Field(default_factory=lambda: ListenSection())
    admin: AdminListen = Field(default_factory=AdminListen)  # /healthz in full and /metrics, plain HTTP
    upstream: str = "http://127.0.0.1:6820"
    identity: IdentityConfig
    slurm_user: str = "slurm"
    jwt_key_file: str | None = None
    token_file: str | None = None
    token_lifespan_seconds: int = Field(default=300, ge=30, le=86400)
    api_version: str = "auto"  # the proxy's own requests (/healthz, lookups); auto: the newest both speak
    api_version_recheck_seconds: float = Field(default=300.0, gt=0)  # with auto: read slurmrestd's offer again
    max_body_bytes: int = Field(default=1024 * 1024, ge=1)
    upstream_timeout_seconds: float = Field(default=30.0, gt=0)
    upstream_connect_timeout_seconds: float = Field(default=5.0, gt=0)
    max_upstream_connections: int = Field(default=32, ge=1)
    rate_limit: RateLimitSection = Field(default_factory=lambda: RateLimitSection())
    # refused tokens per client address: past the burst, the address gets 429 without its token being looked at.
    # Off by default: in mode 1 one `slurmlink api` forwards every user's token from one address, and one user's
    # expired tokens would then lock out everyone behind it. Turn it on where clients are people.
    auth_failure_limit: RateLimitSection | None = None
    allow_slurmdb: bool = False
    tls: TlsSection | None = None
    files: FilesSection | None = None
    signals: SignalsSection | None = None  # POST /slurmlink/v1/jobs/{id}/signal (graceful stop on v0.0.38)
    service_identities: list[ServiceIdentitySection] = Field(default_factory=list)
    state_dir: str | None = None

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
        self._check_service_identities()
        return self

    def _check_service_identities(self) -> None:
        if not self.service_identities:
            return
        if self.state_dir is None:
            raise ValueError("service_identities need state_dir (the ledger of jobs submitted through the proxy)")
        pinned = {section.url for section in self.identity.issuers}
        for service in self.service_identities:
            if service.issuer not in pinned:
                raise ValueError(f"service identity issuer {service.issuer!r} is not one of identity.issuers")
            if service.account in ("root", self.slurm_user, self.identity.accounts.slurm_user):
                raise ValueError(f"a service identity may not run as {service.account!r}")
