"""The site's per-VO policy on `/create` (mode 2): which VO a pod runs under, its job placed by that VO's policy
(slurmlink.sitepolicy, the same rules the proxy applies in mode 1), and the VO's job caps counted in SLURM.

A pod outside its VO's policy ends Failed (PolicyRefused, a PodRejected naming the rule). A pod over a cap is
held, not failed: `/create` answers 503 naming the cap, the virtual kubelet keeps the pod Pending, says why
in a Warning event and sends it again with backoff, and it runs once the VO's jobs fall under the cap (a cap
is a queue limit, not a wrong request: failing would only make users resubmit in a loop). The caps are
counted in SLURM at each capped create (one squeue of the VO's account), so a restart cannot reset them; the
creates of one capped account are serialised, so that two at once cannot both take the last place.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from slurmlink.api.accounts import PodAccount
from slurmlink.api.errors import NotReady
from slurmlink.identity import audit
from slurmlink.sitepolicy.batchjob import place_job, site_for
from slurmlink.sitepolicy.config import SitePolicySection
from slurmlink.sitepolicy.rules import Placement, PolicyRefused, asked_vo, check_cap, choose_vo, has_cap
from slurmlink.slurm.base import SlurmError
from slurmlink.translate.job import BatchJob
from slurmlink.translate.podspec import pod_annotations
from slurmlink.translate.site import SiteConfig
from slurmlink.wire.names import VO_ANNOTATION


@runtime_checkable
class CountsJobs(Protocol):
    async def active_jobs(self, account: str) -> Counter[str]:
        """Queued and running jobs under `account`, per user."""


@runtime_checkable
class TellsPlacement(Protocol):
    def placement(self, job_id: str) -> str:
        """The VO, account and partition the site's proxy gave a job just submitted (mode 1); "" if none."""


class SitePolicyGate:
    def __init__(self, policy: SitePolicySection, site: SiteConfig, backend: object) -> None:
        self.policy = policy
        self.site = site
        self.counter = backend if isinstance(backend, CountsJobs) else None
        self.teller = backend if isinstance(backend, TellsPlacement) else None
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    def place(self, pod: dict[str, Any], account: PodAccount) -> Placement:
        """The pod's VO (its annotation, else the first of its owner's) and that VO's policy; no VO when this
        API does not know its owner's VOs (mode 1: the site's proxy decides; `users:`: no VOs)."""
        if account.vos is None:
            return Placement(None, None)
        return choose_vo(self.policy, account.vos, pod_annotations(pod).get(VO_ANNOTATION), account.groups)

    def site_for(self, placement: Placement) -> SiteConfig:
        return site_for(self.site, placement)

    def job_for(self, job: BatchJob, pod: dict[str, Any], placement: Placement, account: PodAccount,
                client: str) -> BatchJob:
        """The translated job placed by its VO's policy (PolicyRefused otherwise), audited either way. Where
        the site decides (mode 1's proxy), the job carries the pod's VO annotation there."""
        if account.vos is None:
            return replace(job, vo=asked_vo(pod_annotations(pod).get(VO_ANNOTATION)))
        try:
            placed = place_job(job, placement, self.site)
        except PolicyRefused as exc:
            audit.record(action="create", allowed=False, reason=exc.message, client=client, vo=placement.vo,
                         mapped_user=account.user, rule=exc.rule)
            raise
        audit.record(action="create", allowed=True, reason="site policy: " + describe(placed, placement),
                     client=client, vo=placement.vo, mapped_user=account.user, account=_account(placed),
                     partition=placed.partition)
        return placed

    def placed(self, job: BatchJob, placement: Placement, job_id: str) -> str:
        """What the pod's Submitted event says the job runs under: this API's placement, or where the site
        decides (mode 1), the proxy's word; "" when no VO applied."""
        if placement.vo:
            return describe(job, placement)
        return self.teller.placement(job_id) if self.teller is not None else ""

    @asynccontextmanager
    async def within_caps(self, placement: Placement, user: str) -> AsyncIterator[None]:
        """Hold the VO's account while a job is submitted; NotReady (the pod waits) when a cap is reached."""
        vo = placement.policy
        if vo is None or not has_cap(placement) or not vo.account:
            yield
            return
        if self.counter is None:  # mode 1: the site's proxy counts
            yield
            return
        async with self._locks[vo.account]:
            try:
                jobs = await self.counter.active_jobs(vo.account)
            except SlurmError as exc:
                raise NotReady(f"cannot count the VO's jobs in SLURM: {exc.message}") from exc
            try:
                check_cap(placement, user, jobs.get(user, 0), sum(jobs.values()))
            except PolicyRefused as exc:
                raise NotReady(f"{exc.reason}: {exc.message}; the pod waits until there is room") from exc
            yield


def _account(job: BatchJob) -> str | None:
    return next((o.partition("=")[2] for o in job.extra_options if o.startswith("--account=")), None)


def describe(job: BatchJob, placement: Placement) -> str:
    """`VO x, account a, partition p, QoS q`: what the pod's event says it runs under."""
    qos = next((o.partition("=")[2] for o in job.extra_options if o.startswith("--qos=")), None)
    parts = [f"VO {placement.vo}" if placement.vo else "no VO", f"account {_account(job) or '(user default)'}",
             f"partition {job.partition or '(cluster default)'}"]
    return ", ".join(parts + ([f"QoS {qos}"] if qos else []))
