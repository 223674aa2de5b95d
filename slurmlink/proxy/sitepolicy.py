"""The site's per-VO policy on job submissions (mode 1), the same rules `slurmlink api` applies in mode 2
(slurmlink.sitepolicy): one step between reading a submission's body and forwarding it.

The VO is the one the `X-Slurmlink-VO` header names (the caller must be an admitted member of it), else the
first of the caller's VOs in the site's order. A job description outside that VO's policy is refused with 403
and the rule, before slurmrestd sees it; one within it is forwarded with the VO's account, partition, QoS and
time limit written in, and the answer tells the placement back in `X-Slurmlink-Placement` (the mode-1 API
passes it on to the pod's Submitted event, as mode 2's API does). A VO's job caps are counted in SLURM (one
job list as the SlurmUser per capped submission) and refused with 429 and the rule: the mode-1 API then keeps
the pod Pending and sends it again. The count and the forward of a capped submission are made under one lock
per account and user (per account when the VO has a `max_jobs`), so submissions arriving at the same moment
cannot each take the last free place; submissions without a cap take no lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from slurmlink.core.states import base_state
from slurmlink.identity import audit
from slurmlink.proxy import headers as header_rules
from slurmlink.proxy import policy
from slurmlink.proxy.errors import error_response
from slurmlink.proxy.gates import Answer, Call, Step
from slurmlink.proxy.roles import USER
from slurmlink.sitepolicy.config import SitePolicySection
from slurmlink.sitepolicy.jobdesc import place_body
from slurmlink.sitepolicy.rules import JobAsk, Placement, PolicyRefused, check_cap, choose_vo, has_cap
from slurmlink.wire.names import MAX_PLACEMENT, PLACEMENT_HEADER, VO_HEADER

log = logging.getLogger("slurmlink.proxy")
ACTIVE = frozenset({"PENDING", "RUNNING", "SUSPENDED", "CONFIGURING", "REQUEUED", "RESIZING"})
CAP_RETRY_SECONDS = 30


class SubmitPolicy:
    def __init__(self, site_policy: SitePolicySection, http: httpx.AsyncClient, upstream: str,
                 version: Callable[[], Awaitable[str]], slurm_token: Callable[[], str], slurm_user: str,
                 forward: Step) -> None:
        self.site_policy = site_policy
        self.http, self.upstream = http, upstream
        self.version, self.slurm_token, self.slurm_user = version, slurm_token, slurm_user
        self.forward = forward  # the next step: a placed submission is forwarded from here (its answer told)
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # cap key -> (lock, [holders and waiters])

    async def check(self, call: Call) -> Answer | None:
        """The step: a user's submission placed by its VO's policy and forwarded (the answer tells the
        placement), or refused naming the rule. Anything else goes on to the forward as it is."""
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
        call.body = json.dumps(body, separators=(",", ":")).encode()
        first = placed[0] if placed else None
        if not has_cap(placement):
            return await self._forward(call, placement, first)
        async with self._held(cap_key(placement, call.user)):  # the count holds until slurmrestd has the job
            refused = await self._over_cap(call, placement)
            if refused is not None:
                return refused
            return await self._forward(call, placement, first)

    async def _forward(self, call: Call, placement: Placement, first: JobAsk | None) -> Answer:
        self._audit(call, placement, allowed=True, reason="site policy placed the job",
                    account=first.account if first else None,
                    partition=",".join(first.partitions) if first else None)
        answer = await self.forward(call)
        if answer is None:
            raise AssertionError("the forward answers every request")
        if first is not None and 200 <= answer.response.status_code < 300:
            answer.response.headers[PLACEMENT_HEADER] = describe(placement, first)
        return answer

    @asynccontextmanager
    async def _held(self, key: str) -> AsyncIterator[None]:
        """One lock per key, forgotten when nobody holds or waits for it (users come and go)."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]

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


def cap_key(placement: Placement, user: str) -> str:
    """What a capped submission waits on: its account and user; the account alone when the whole VO is capped
    (every user's submission takes from the same count). Pure."""
    vo = placement.policy
    account = vo.account if vo is not None else ""
    return f"{account}" if vo is not None and vo.max_jobs is not None else f"{account}/{user}"


def describe(placement: Placement, job: JobAsk) -> str:
    """`VO x, account a, partition p, QoS q`, as mode 2's API says it; printable only, bounded (a partition
    the VO does not restrict is the caller's own text). Pure."""
    parts = [f"VO {placement.vo}", f"account {job.account or '(user default)'}",
             f"partition {','.join(job.partitions) or '(cluster default)'}"]
    text = ", ".join(parts + ([f"QoS {job.qos}"] if job.qos else []))
    return "".join(c for c in text if c.isprintable() and c.isascii())[:MAX_PLACEMENT]


def count_active(body: Any, account: str) -> Counter[str]:
    """Jobs per user under `account` that are queued or running, in a `/jobs` answer. Pure."""
    jobs = body.get("jobs") if isinstance(body, dict) else None
    counts: Counter[str] = Counter()
    for job in jobs if isinstance(jobs, list) else []:
        if isinstance(job, dict) and job.get("account") == account and base_state(job.get("job_state")) in ACTIVE:
            counts[str(job.get("user_name") or "")] += 1
    return counts
