"""The scheduler backend the API's configuration asks for."""

from __future__ import annotations

from slurmlink.api.config import ApiConfig
from slurmlink.identity.build import build_issuers
from slurmlink.identity.oidc import TokenValidator
from slurmlink.slurm.base import SchedulerBackend
from slurmlink.slurm.cli import CliBackend, CliConfig
from slurmlink.slurm.credentials import CredentialStore
from slurmlink.slurm.rest import RestBackend, RestConfig


def make_backend(config: ApiConfig) -> SchedulerBackend:
    if config.backend == "rest" and config.rest is not None:
        rest = config.rest
        issuers = build_issuers(rest.refresh_issuers, "rest.refresh_issuers")
        return RestBackend(
            RestConfig(url=rest.url, api_version=rest.api_version, service_token_file=rest.service_token_file,
                       timeout_seconds=rest.timeout_seconds, max_connections=rest.max_connections,
                       verify=rest.ca_file or True, partition=config.site.partition),
            validator=TokenValidator(issuers) if issuers else None,
            credentials=CredentialStore())  # the pods' credentials: an object of their own, not the backend's
    env = {"SLURM_CONF": config.cli.slurm_conf} if config.cli.slurm_conf else {}
    return CliBackend(CliConfig(job_root=config.job_root, bin_dir=config.cli.bin_dir or "", env=env,
                                timeout_seconds=config.cli.timeout_seconds, partition=capacity_partitions(config),
                                accounting_lookback_hours=config.cli.accounting_lookback_hours))


def capacity_partitions(config: ApiConfig) -> str | None:
    """Where mode 2's capacity (`/pinglink`, the node's allocatable) is counted: the partitions the site policy's
    VOs may use, with the site's own (sinfo takes the list and counts a node in two of them once); unset: every
    node. A VO that may use any partition, or none listed at all, leaves it to the site's partition."""
    named = config.site_policy.partitions()
    if named is None:
        return config.site.partition
    wanted = [*([config.site.partition] if config.site.partition else []), *named]
    return ",".join(dict.fromkeys(wanted))
