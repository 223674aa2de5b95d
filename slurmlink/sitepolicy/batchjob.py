"""Mode 2: the policy on a pod's batch job (`slurmlink api`). Pure.

The pod is translated with `site_for(...)`, a copy of the site's settings that leaves partition and time
limit unset (so the job shows what the pod itself asked) and carries the VO's own defaults; `place_job` then
checks what the job asks and fills in the VO's account, partition, QoS and time limit.
"""

from __future__ import annotations

import re
from dataclasses import replace

from slurmlink.sitepolicy.rules import (
    JobAsk,
    Placement,
    fill_and_check,
    gpu_count,
    gpus_in,
    memory_mb,
    time_minutes,
    upper_count,
)
from slurmlink.translate.job import BatchJob
from slurmlink.translate.site import SiteConfig

DECIDED = ("--account", "--qos", "--time")  # options whose value the policy sets on the job
# GPU options a site may allow whose count depends on tasks or sockets: not counted, so refused under a max
_UNCOUNTED_GPUS = re.compile(r"--(?:gpus-per-(?:task|socket)|tres-per-[a-z]+)")


def site_for(site: SiteConfig, placement: Placement) -> SiteConfig:
    vo = placement.policy
    if vo is None:
        return site
    allowed = site.allowed_options if vo.allowed_options is None else site.allowed_options & set(vo.allowed_options)
    return replace(site, partition=None, default_time_minutes=None,
                   default_memory_mb=vo.default_memory_mb or site.default_memory_mb,
                   gres=dict(vo.gres) if vo.gres is not None else site.gres, allowed_options=frozenset(allowed))


def _options(job: BatchJob) -> dict[str, str | None]:
    options: dict[str, str | None] = {}
    for option in job.extra_options:
        name, has_value, value = option.partition("=")
        options[name] = value if has_value else None
    return options


def _nodes_at_most(options: dict[str, str | None]) -> int | None:
    """The most nodes the job may get: `--nodes`' upper end; without it, as many as its tasks (SLURM may spread
    `--ntasks` over that many); else one. None if a count does not parse."""
    for name in ("--nodes", "--ntasks"):
        value = options.get(name)
        if value is not None:
            return upper_count(value)
    return 1


def _gpus(job: BatchJob, options: dict[str, str | None]) -> tuple[int, bool]:
    """GPUs the job asks for in all, and whether some are asked in a form not counted here. Per-node requests
    count once per node the job may get; per-task and per-socket ones are not counted (refused under a max)."""
    nodes = _nodes_at_most(options)
    per_node, per_job, unknown = 0, 0, False
    for spec in (job.gres, options.get("--gres")):
        if spec:
            count = gpus_in(spec)
            per_node, unknown = per_node + (count or 0), unknown or count is None
    for name, is_per_node in (("--gpus", False), ("--gpus-per-node", True)):
        value = options.get(name)
        if value is not None:
            gpus = gpu_count(value)
            unknown = unknown or gpus is None
            if is_per_node:
                per_node += gpus or 0
            else:
                per_job += gpus or 0
    unknown = unknown or any(_UNCOUNTED_GPUS.fullmatch(name) for name in options)
    if per_node and nodes is None:
        return per_job, True
    return per_job + per_node * (nodes or 1), unknown


def ask_of(job: BatchJob) -> JobAsk:
    options = _options(job)
    time_text = options.get("--time")
    time = job.time_limit_minutes
    if time is None and time_text is not None:
        time = time_minutes(time_text)
    mem = options.get("--mem-per-cpu")
    gpus, unknown = _gpus(job, options)
    return JobAsk(account=options.get("--account"),
                  partitions=tuple(p for p in (job.partition or "").split(",") if p),
                  qos=options.get("--qos"), time_minutes=time,
                  time_text=time_text if time is None and time_text is not None else None,
                  mem_per_cpu_mb=memory_mb(mem) if mem else None, gpus=gpus, gpus_unknown=unknown)


def place_job(job: BatchJob, placement: Placement, site: SiteConfig) -> BatchJob:
    """The job under its VO's policy (account, partition, QoS, time limit set); PolicyRefused if it asks for
    what the VO may not have. `site`: the site's own settings (their partition and time are the last default)."""
    if placement.policy is None:
        return job
    filled = fill_and_check(placement, ask_of(job))
    time = filled.time_minutes if filled.time_minutes is not None else site.default_time_minutes
    keep = [o for o in job.extra_options if o.partition("=")[0] not in DECIDED
            or (o.startswith("--time") and time is None)]
    decided = [f"--account={filled.account}"] if filled.account else []
    decided += [f"--qos={filled.qos}"] if filled.qos else []
    partition = ",".join(filled.partitions) or site.partition
    return replace(job, partition=partition, time_limit_minutes=time,
                   extra_options=tuple(decided + keep))
