"""The scheduler backend the API's configuration asks for."""

from __future__ import annotations

from slurmlink.api.config import ApiConfig
from slurmlink.slurm.base import SchedulerBackend
from slurmlink.slurm.cli import CliBackend, CliConfig


def make_backend(config: ApiConfig) -> SchedulerBackend:
    env = {"SLURM_CONF": config.cli.slurm_conf} if config.cli.slurm_conf else {}
    return CliBackend(CliConfig(job_root=config.job_root, bin_dir=config.cli.bin_dir or "", env=env,
                                timeout_seconds=config.cli.timeout_seconds, partition=config.site.partition))
