"""The `site_policy:` section, the same in the API's and the proxy's configuration.

    site_policy:
      vos:
        - vo: vo.alpha.example.org       # a VO of identity.policy.vos
          account: alpha                 # the SLURM account (allocation) its jobs are charged to
          partitions: [debug, batch]     # allowed; the first is the default unless default_partition says
          qos: [normal]                  # allowed; the first is the default unless default_qos says
          default_time_minutes: 60
          max_time_minutes: 1440
          max_gpus: 0
          max_jobs_per_user: 10          # queued + running, counted in SLURM
          max_jobs: 100
"""

from __future__ import annotations

from pydantic import Field, model_validator

from slurmlink.config import Strict


class VoPolicySection(Strict):
    vo: str = Field(min_length=1, description="the VO's name, as in `identity.policy.vos`")
    group: str | None = Field(default=None, description=(
        "a subgroup path within the VO (`hpc`, `hpc:gpu`): the entry applies to its members only"))
    role: str | None = Field(default=None, description=(
        "a role (`role=` of the entitlement) in the VO, or in `group`: the entry applies to holders only"))
    account: str | None = Field(default=None, description=(
        "the SLURM account the VO's jobs are charged to; a job naming another account is refused. Unset: "
        "whatever account SLURM gives the user"))
    partitions: list[str] = Field(default_factory=list, description=(
        "partitions the VO's jobs may use (empty: any); the default is `default_partition`, else the first"))
    default_partition: str | None = Field(default=None, description="partition of a job that names none")
    qos: list[str] = Field(default_factory=list, description=(
        "QoS the VO's jobs may use (empty: any); the default is `default_qos`, else the first"))
    default_qos: str | None = Field(default=None, description="QoS of a job that names none")
    default_time_minutes: int | None = Field(default=None, gt=0, description=(
        "time limit of a job that sets none (unset: the site's, else the partition's)"))
    max_time_minutes: int | None = Field(default=None, gt=0, description="longest time limit a job may ask for")
    default_memory_mb: int | None = Field(default=None, ge=16, description=(
        "memory of a pod that requests none (unset: `site.default_memory_mb`; mode 2 only)"))
    default_mem_per_cpu_mb: int | None = Field(default=None, gt=0, description=(
        "`--mem-per-cpu` of a job that asks for no memory (mode 2: a pod without a memory request, in place of "
        "`default_memory_mb`; mode 1: a submission without `memory_per_node`, `memory_per_cpu` or "
        "`memory_per_tres`)"))
    max_mem_per_cpu_mb: int | None = Field(default=None, gt=0, description="largest `--mem-per-cpu` a job may ask for")
    gres: dict[str, str] | None = Field(default=None, description=(
        "Kubernetes extended resource -> SLURM gres for this VO (e.g. `nvidia.com/gpu: gpu:a100`); unset: "
        "`site.gres` (mode 2 only)"))
    max_gpus: int | None = Field(default=None, ge=0, description="most GPUs one job may ask for (0: none)")
    allowed_options: list[str] | None = Field(default=None, description=(
        "sbatch options this VO's flags annotation may set, within `site.allowed_options` (unset: the site's; "
        "mode 2 only)"))
    max_jobs_per_user: int | None = Field(default=None, ge=0, description=(
        "queued + running jobs one user may have under this VO's account, counted in SLURM"))
    max_jobs: int | None = Field(default=None, ge=0, description=(
        "queued + running jobs the whole VO may have under its account, counted in SLURM"))

    @model_validator(mode="after")
    def _defaults_allowed(self) -> VoPolicySection:
        if self.default_partition and self.partitions and self.default_partition not in self.partitions:
            raise ValueError(f"default_partition {self.default_partition!r} is not one of partitions")
        if self.default_qos and self.qos and self.default_qos not in self.qos:
            raise ValueError(f"default_qos {self.default_qos!r} is not one of qos")
        if (self.default_time_minutes and self.max_time_minutes
                and self.default_time_minutes > self.max_time_minutes):
            raise ValueError("default_time_minutes is above max_time_minutes")
        if self.default_memory_mb and self.default_mem_per_cpu_mb:
            raise ValueError("set one of default_memory_mb and default_mem_per_cpu_mb")
        if (self.default_mem_per_cpu_mb and self.max_mem_per_cpu_mb
                and self.default_mem_per_cpu_mb > self.max_mem_per_cpu_mb):
            raise ValueError("default_mem_per_cpu_mb is above max_mem_per_cpu_mb")
        if (self.max_jobs_per_user is not None or self.max_jobs is not None) and not self.account:
            raise ValueError("max_jobs_per_user and max_jobs count jobs under the VO's account: set `account`")
        return self

    def applies_to(self, groups: dict[str, set[str]]) -> bool:
        """Whether a member of the VO holding `groups` (group path -> roles) is one this entry is for. An entry
        without group and role is every member's (also one admitted through a subgroup only)."""
        path = f"{self.vo}:{self.group}" if self.group else self.vo
        if self.group is not None and path not in groups:
            return False
        return self.role is None or self.role in groups.get(path, set())

    @property
    def name(self) -> str:
        """The entry as a person names it: `vo`, `vo:group`, with `#role=...`."""
        return (f"{self.vo}:{self.group}" if self.group else self.vo) + (f"#role={self.role}" if self.role else "")

    @property
    def partition(self) -> str | None:
        return self.default_partition or (self.partitions[0] if self.partitions else None)

    @property
    def default_qos_name(self) -> str | None:
        return self.default_qos or (self.qos[0] if self.qos else None)


class SitePolicySection(Strict):
    vos: list[VoPolicySection] = Field(default_factory=list, description=(
        "one entry per VO, or per group or role within it (see [site-policy.md](site-policy.md)): the first "
        "entry of the job's VO that the user's groups and roles match applies; a VO without one runs under the "
        "site's settings only"))

    @model_validator(mode="after")
    def _distinct(self) -> SitePolicySection:
        names = [v.name for v in self.vos]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"{twice[0]} has two entries")
        return self

    def for_vo(self, vo: str | None, groups: dict[str, set[str]]) -> VoPolicySection | None:
        """The first entry of `vo` that a member holding `groups` (group path -> roles) matches."""
        return next((entry for entry in self.vos if entry.vo == vo and entry.applies_to(groups)), None)

    def partitions(self) -> list[str] | None:
        """The partitions the VOs may use, in order (where capacity is counted); None when an entry may use any
        partition, or there is no entry."""
        if not self.vos or any(not vo.partitions for vo in self.vos):
            return None
        return list(dict.fromkeys(p for vo in self.vos for p in vo.partitions))

    def accounts(self) -> dict[str, str]:
        """VO -> account, for the VOs that name one."""
        return {v.vo: v.account for v in self.vos if v.account}
