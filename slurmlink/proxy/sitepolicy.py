"""The site's per-VO policy on job submissions (mode 1), the same rules `slurmlink api` applies in mode 2
(slurmlink.sitepolicy): one step between reading a submission's body and forwarding it.

The VO is the one the `X-Slurmlink-VO` header names (the caller must be an admitted member of it), else the
first of the caller's VOs in the site's order. A job description outside that VO's policy is refused with 403
and the rule, before slurmrestd sees it; one within it is forwarded with the VO's account, partition, QoS and
time limit written in. A VO's job caps are counted in SLURM (one job list as the SlurmUser per capped
submission) and refused with 429 and the rule: the mode-1 API then keeps the pod Pending and sends it again.
Submissions that arrive at the same moment may each see the last free place (the count is not held across
the forward).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from slurmlink.core.states import base_state
from slurmlink.identity import audit
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy import policy
from slurmlink.proxy.errors import error_response
from slurmlink.proxy.gates import Answer, Call
from slurmlink.proxy.roles import USER
from slurmlink.sitepolicy.config import SitePolicySection
from slurmlink.sitepolicy.jobdesc import place_body
from slurmlink.sitepolicy.rules import Placement, PolicyRefused, check_cap, choose_vo, has_cap
from slurmlink.wire.names import VO_HEADER

log = logging.getLogger("slurmlink.proxy")
ACTIVE = frozenset({"PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "REQUEUED", "RESIZING"})
CAP_RETRY_SECONDS = 30


class SubmitPolicy:
    def __init__(self, site_policy: SitePolicySection, http: httpx.AsyncClient, upstream: str,
                 version: Callable[[], Awaitable[str]], slurm_token: Callable[[], str], slurm_user: str) -> None:
        self.site_policy = site_policy
        self.http, self.upstream = http, upstream
        self.version, self.slurm_token, self.slurm_user = version, slurm_token, slurm_user

    async def check(self, call: Call) -> Answer | None:
        """The step: a user's submission placed by its VO's policy, or refused naming the rule."""
        if call.route != policy.SUBMIT or call.caller.role != USER or not self.site_policy.vos:
            return None
        asked = [v for k, v in call.request.headers.items() if k == VO_HEADER.lower()]
        if len(asked) > 1:
            return Answer("site-policy", error_response(400, "BadRequest", f"send at most one {VO_HEADER} header"))
        try:
            body = json.loads(call.body)
        except ValueError:
            return Answer("site-policy", error_response(400, "BadRequest", "the submission is not JSON"))
        try:
            placement = choose_vo(self.site_policy, call.caller.vos, asked[0] if asked else None, call.caller.groups)
            placed = place_body(body, placement)
        except PolicyRefused as exc:
            self._audit(call, placement=None, allowed=False, reason=exc.message, rule=exc.rule)
            return Answer("site-policy", error_response(403, exc.reason, exc.message, rule=exc.rule))
        if has_cap(placement):
            refused = await self._over_cap(call, placement)
            if refused is not None:
                return refused
        call.body = json.dumps(body, separators=(",", ":")).encode()
        first = placed[0] if placed else None
        self._audit(call, placement, allowed=True, reason="site policy placed the job",
                    account=first.account if first else None,
                    partition=",".join(first.partitions) if first else None)
        return None

    async def _over_cap(self, call: Call, placement: Placement) -> Answer | None:
        account = placement.policy.account if placement.policy else None
        try:
            jobs = await self._active_jobs(account or "")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot count the jobs of account %s: %s", account, type(exc).__name__)
            return Answer("site-policy", error_response(503, "UpstreamUnavailable", "cannot count the VO's jobs in "
                                                        "SLURM; try again later", retry_after=10))
        try:
            check_cap(placement, call.user, jobs.get(call.user, 0), sum(jobs.values()))
        except PolicyRefused as exc:
            self._audit(call, placement, allowed=False, reason=exc.message, rule=exc.rule)
            return Answer("site-policy", error_response(429, exc.reason, exc.message, rule=exc.rule,
                                                        retry_after=CAP_RETRY_SECONDS))
        return None

    async def _active_jobs(self, account: str) -> Counter[str]:
        """Queued and running jobs under `account`, per user, from slurmrestd's job list (as the SlurmUser)."""
        answer = await self.http.get(f"{self.upstream}/slurm/{await self.version()}/jobs", headers={
            header_rules.USER_NAME: self.slurm_user, header_rules.USER_TOKEN: self.slurm_token()})
        if answer.status_code != 200:
            raise ValueError(f"HTTP {answer.status_code}")
        return count_active(answer.json(), account)

    def _audit(self, call: Call, placement: Placement | None, *, allowed: bool, reason: str,
               **extra: str | None) -> None:
        caller = call.caller
        audit.record(action=call.action, allowed=allowed, reason=reason, client=call.client, issuer=caller.issuer,
                     subject=caller.subject, mapped_user=call.user, vo=placement.vo if placement else None, **extra)


def count_active(body: Any, account: str) -> Counter[str]:
    """Jobs per user under `account` that are queued or running, in a `/jobs` answer. Pure."""
    jobs = body.get("jobs") if isinstance(body, dict) else None
    counts: Counter[str] = Counter()
    for job in jobs if isinstance(jobs, list) else []:
        if isinstance(job, dict) and job.get("account") == account and base_state(job.get("job_state")) in ACTIVE:
            counts[str(job.get("user_name") or "")] += 1
    return counts
