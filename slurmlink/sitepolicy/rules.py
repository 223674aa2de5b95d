"""The policy's decisions over plain data: which VO applies, a job's defaults, whether it is allowed. Pure.

A refusal names the rule (the config key that refused) in its message and a CamelCase reason for the pod's
status; the proxy answers it as 403 with the rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from slurmlink.core.errors import PodRejected
from slurmlink.sitepolicy.config import SitePolicySection, VoPolicySection


class PolicyRefused(PodRejected):
    """A job outside its VO's policy. `rule` is the config key that refused it (e.g. `partitions`)."""

    def __init__(self, message: str, reason: str, rule: str) -> None:
        super().__init__(message, reason)
        self.rule = rule


@dataclass(frozen=True)
class JobAsk:
    """What a job asks for that the policy decides on; None: not asked (a default may fill it)."""

    account: str | None = None
    partitions: tuple[str, ...] = ()  # SLURM takes a comma-separated list: every one must be allowed
    qos: str | None = None
    time_minutes: int | None = None
    time_text: str | None = None  # a time limit given as text that did not parse (refused when there is a max)
    mem_per_cpu_mb: int | None = None
    gpus: int = 0
    gpus_unknown: bool = False  # GPUs asked in a way not counted here (refused when there is a max)


@dataclass(frozen=True)
class Placement:
    """The VO a job runs under and its policy (None: the VO has no entry, the site's settings apply)."""

    vo: str | None
    policy: VoPolicySection | None


def choose_vo(site_policy: SitePolicySection, member_of: Sequence[str], asked: str | None,
              groups: Sequence[tuple[str, Sequence[str]]] | None = None) -> Placement:
    """The VO a job runs under: the one `asked` (annotation or header), which the caller must be a member of;
    else the first of `member_of` (the site's order, from the entitlement policy). Its policy is the VO's first
    entry the caller's `groups` (group path -> roles held) match; without `groups`, each VO's plain member."""
    held = {path: set(roles) for path, roles in groups} if groups is not None else \
        {vo: {"member"} for vo in member_of}
    if asked is not None:
        asked = asked.strip()
        if asked not in member_of:
            raise PolicyRefused(f"site policy: VO {asked[:100]!r} was asked for, but the owner is not an admitted "
                                f"member of it (member of: {', '.join(member_of) or 'none'})", "VoNotMember", "vo")
        return Placement(asked, site_policy.for_vo(asked, held))
    vo = member_of[0] if member_of else None
    return Placement(vo, site_policy.for_vo(vo, held))


_VO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def asked_vo(text: str | None) -> str | None:
    """A VO named by a pod or a header, if it can be one (a bare group name such as `vo.example.org`); what
    cannot be is refused here, before it reaches a header or a log line."""
    if text is None:
        return None
    if not _VO_NAME.fullmatch(text.strip()):
        raise PolicyRefused(f"site policy: {text[:100]!r} is not a VO name", "VoNotMember", "vo")
    return text.strip()


def _refuse(placement: Placement, rule: str, reason: str, why: str) -> PolicyRefused:
    entry = placement.policy.name if placement.policy is not None else placement.vo
    return PolicyRefused(f"site policy of VO {entry}, rule {rule}: {why}", reason, rule)


def fill_and_check(placement: Placement, ask: JobAsk) -> JobAsk:
    """The job with its VO's defaults filled in; PolicyRefused naming the rule if it asks for what the VO may
    not have."""
    vo = placement.policy
    if vo is None:
        return ask
    if ask.account is not None and vo.account and ask.account != vo.account:
        raise _refuse(placement, "account", "AccountNotAllowed",
                      f"account {ask.account[:100]!r} is not the VO's account {vo.account!r}")
    partitions = ask.partitions or ((vo.partition,) if vo.partition else ())
    outside = [p for p in partitions if vo.partitions and p not in vo.partitions]
    if outside:
        raise _refuse(placement, "partitions", "PartitionNotAllowed",
                      f"partition {outside[0][:100]!r} is not one of {', '.join(vo.partitions)}")
    qos = ask.qos or vo.default_qos_name
    if qos is not None and vo.qos and qos not in vo.qos:
        raise _refuse(placement, "qos", "QosNotAllowed", f"QoS {qos[:100]!r} is not one of {', '.join(vo.qos)}")
    time = ask.time_minutes if ask.time_minutes is not None or ask.time_text else vo.default_time_minutes
    if vo.max_time_minutes is not None:
        if ask.time_text is not None:
            raise _refuse(placement, "max_time_minutes", "TimeLimitExceeded",
                          f"time limit {ask.time_text[:40]!r} cannot be read; at most {vo.max_time_minutes} minutes")
        if time is None:
            time = vo.max_time_minutes  # no limit asked or defaulted: the VO's longest, never "infinite"
        if time <= 0:  # SLURM reads a time limit of 0 as none at all
            raise _refuse(placement, "max_time_minutes", "TimeLimitExceeded",
                          f"time limit {time} means no limit to SLURM; at most {vo.max_time_minutes} minutes")
        if time > vo.max_time_minutes:
            raise _refuse(placement, "max_time_minutes", "TimeLimitExceeded",
                          f"time limit {time} minutes is above {vo.max_time_minutes}")
    if vo.max_mem_per_cpu_mb is not None and (ask.mem_per_cpu_mb or 0) > vo.max_mem_per_cpu_mb:
        raise _refuse(placement, "max_mem_per_cpu_mb", "MemoryLimitExceeded",
                      f"--mem-per-cpu {ask.mem_per_cpu_mb} MB is above {vo.max_mem_per_cpu_mb}")
    if vo.max_gpus is not None and (ask.gpus_unknown or ask.gpus > vo.max_gpus):
        asked = "GPUs asked in a form that is not counted" if ask.gpus_unknown else f"{ask.gpus} GPUs"
        raise _refuse(placement, "max_gpus", "GpuLimitExceeded", f"{asked}; at most {vo.max_gpus}")
    return replace(ask, account=ask.account or vo.account, partitions=partitions, qos=qos, time_minutes=time)


def check_cap(placement: Placement, user: str, jobs_of_user: int, jobs_of_vo: int) -> None:
    """PolicyRefused (reason JobCapReached) when one more job would pass a cap; the counts are the queued and
    running jobs under the VO's account in SLURM, of the user and of everyone."""
    vo = placement.policy
    if vo is None:
        return
    if vo.max_jobs_per_user is not None and jobs_of_user >= vo.max_jobs_per_user:
        raise _refuse(placement, "max_jobs_per_user", "JobCapReached",
                      f"{user} has {jobs_of_user} queued or running jobs under account {vo.account}, the most "
                      f"allowed is {vo.max_jobs_per_user}")
    if vo.max_jobs is not None and jobs_of_vo >= vo.max_jobs:
        raise _refuse(placement, "max_jobs", "JobCapReached",
                      f"the VO has {jobs_of_vo} queued or running jobs under account {vo.account}, the most "
                      f"allowed is {vo.max_jobs}")


def has_cap(placement: Placement) -> bool:
    vo = placement.policy
    return vo is not None and (vo.max_jobs_per_user is not None or vo.max_jobs is not None)


# --- reading SLURM's own spellings ------------------------------------------------------------------------

_TIME = re.compile(r"\A(?:(?P<days>\d+)-)?(?P<a>\d+)(?::(?P<b>\d+))?(?::(?P<c>\d+))?\Z")


def time_minutes(text: str) -> int | None:
    """A SLURM time limit in minutes (rounded up), as sbatch reads it: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`,
    `D-H:M:S`; None for anything else (`UNLIMITED` and `infinite` included: those are no limit)."""
    match = _TIME.match(text.strip())
    if match is None:
        return None
    days, a, b, c = (int(v) if v is not None else None for v in match.group("days", "a", "b", "c"))
    if days is None:
        if b is None:
            seconds = (a or 0) * 60
        elif c is None:
            seconds = (a or 0) * 60 + b
        else:
            seconds = (a or 0) * 3600 + b * 60 + c
    else:
        seconds = days * 86400 + (a or 0) * 3600 + (b or 0) * 60 + (c or 0)
    return -(-seconds // 60)


def memory_mb(text: str) -> int | None:
    """`--mem-per-cpu` in MB (SLURM's default unit is M; K, G, T suffixes); None if it does not parse."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", text.strip().upper())
    if match is None:
        return None
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[match.group(2)]
    return -(-int(int(match.group(1)) * factor * 1024) // 1024)


def gpus_in(spec: str) -> int | None:
    """GPUs in a gres/TRES list such as `gpu:2`, `gpu:a100:2,gres/gpu:1`, `gres/gpu=2` (a gpu entry without a
    count is one); None if an entry does not parse."""
    total = 0
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        name = item.removeprefix("gres/").removeprefix("gres:")
        if not (name == "gpu" or name.startswith(("gpu:", "gpu="))):
            continue
        count = re.split(r"[:=]", name)[-1] if name != "gpu" else "1"
        if not count.isdigit():
            if len(re.split(r"[:=]", name)) == 2:  # gpu:a100: a type without a count is one
                total += 1
                continue
            return None
        total += int(count)
    return total


def upper_count(value: str) -> int | None:
    """The largest number a SLURM count or range allows (`4`, `2-8`, `2-8:2`); None if it does not parse."""
    match = re.fullmatch(r"(\d+)(?:-(\d+))?(?::\d+)?", value.strip())
    if match is None:
        return None
    return int(match.group(2) or match.group(1))


def gpu_count(value: str) -> int | None:
    """A `--gpus`/`--gpus-per-node` value, `2` or `a100:2`; None if it does not parse."""
    count = value.rsplit(":", 1)[-1]
    return int(count) if count.isdigit() else None
