"""The gates every request to the proxy passes, in order, before it is answered (app.py) or forwarded
(forward.py): the allow-list, authentication, the rate limits, the service scope and job ownership.

Each gate takes the request's `Call` and either refuses it (an `Answer`) or passes it on (None), noting
what it learned (the token, the caller, the account) in the Call for the next ones. A new gate is one
method here and one entry in `AccessGates.steps`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property

from starlette.requests import Request
from starlette.responses import Response

from slurmlink.identity import audit
from slurmlink.identity.authorizer import AccessDenied
from slurmlink.proxy import policy
from slurmlink.proxy.callers import CallerIdentifier
from slurmlink.proxy.config import ProxyConfig
from slurmlink.proxy.errors import Refusal, error_response
from slurmlink.proxy.joblookup import JobLookup
from slurmlink.proxy.ledger import Ledger
from slurmlink.proxy.ownership import job_to_change, require_owner
from slurmlink.proxy.ratelimit import RateLimiter
from slurmlink.proxy.roles import SERVICE, SERVICE_SCOPE, USER, Caller, ServiceAccess, service_access
from slurmlink.proxy.slurm_token import SlurmTokenError, SlurmTokenSource

log = logging.getLogger("slurmlink.proxy")

NEVER_MAPPED = frozenset({"root"})
READ_METHODS = frozenset({"GET", "HEAD"})
_JOB_ID_IN_PATH = re.compile(r"/job/([0-9]+)/?\Z")
_NOBODY = Caller(user="", subject="", issuer="", role=USER)


@dataclass
class Call:
    """One request as the steps see it; they fill in what they learn."""

    request: Request
    method: str
    path: str  # raw, as the client sent it (percent-encoding intact): what is checked is what is forwarded
    query: str  # raw
    client: str  # the client's address
    verdict: policy.PolicyDecision
    token: str = ""  # the caller's bearer token
    caller: Caller = _NOBODY
    user: str = ""  # the account the request runs as
    body: bytes = b""  # of a forwarded request

    @classmethod
    def of(cls, request: Request, *, allow_slurmdb: bool) -> Call:
        scope = request.scope
        path = (scope.get("raw_path") or scope["path"].encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        client = scope["client"][0] if scope.get("client") else ""
        verdict = policy.decide_remembered(request.method, path, query, allow_slurmdb=allow_slurmdb)
        return cls(request, request.method, path, query, client, verdict)

    @cached_property
    def headers(self) -> list[tuple[str, str]]:
        """The client's headers (names lower-case), decoded once for all the steps."""
        return self.request.headers.items()

    @property
    def route(self) -> str:
        """The metrics label: the allow rule that matched, or `denied:<rule>`."""
        return self.verdict.route

    @property
    def action(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Answer:
    decision: str  # for the metrics: "allowed", or why not
    response: Response


Step = Callable[[Call], Awaitable[Answer | None]]


def retry_after(wait: float) -> int:
    return max(1, int(wait + 0.999))


class AccessGates:
    def __init__(self, config: ProxyConfig, callers: CallerIdentifier, ledger: Ledger | None,
                 slurm_token: SlurmTokenSource, lookup: JobLookup) -> None:
        self.config = config
        self.callers = callers
        self.ledger = ledger
        self.slurm_token = slurm_token
        self.lookup = lookup
        self.limiter = RateLimiter(config.rate_limit.requests_per_second, config.rate_limit.burst)
        failures = config.auth_failure_limit
        self.failures = RateLimiter(failures.requests_per_second, failures.burst) if failures else None

    def steps(self) -> list[Step]:
        return [self.allow_list, self.failure_limit, self.bearer_token, self.identity, self.never_privileged,
                self.rate_limit, self.service_scope, self.job_owner]

    async def allow_list(self, call: Call) -> Answer | None:
        verdict = call.verdict
        if verdict.allowed:
            return None
        log.info("refused %r %r from %s: policy %s", call.method[:20], call.path[:200], call.client, verdict.rule)
        if verdict.status == 404:
            return Answer("policy", error_response(404, "NotFound", verdict.message, rule=verdict.rule))
        return Answer("policy", error_response(
            403, "Forbidden", f"refused by the proxy's allow-list: {verdict.message}", rule=verdict.rule))

    async def failure_limit(self, call: Call) -> Answer | None:
        wait = self.failures.take(call.client, consume=False) if self.failures else 0.0
        if wait <= 0:
            return None
        return Answer("rate-limited", error_response(
            429, "TooManyFailures", "too many refused tokens from this address; wait before trying again",
            retry_after=retry_after(wait)))

    async def bearer_token(self, call: Call) -> Answer | None:
        authorization = [v for k, v in call.headers if k == "authorization"]
        scheme, _, token = authorization[0].strip().partition(" ") if len(authorization) == 1 else ("", "", "")
        call.token = token.strip()
        if scheme.lower() == "bearer" and call.token:
            return None
        why = ("send exactly one 'Authorization: Bearer <Check-in access token>' header"
               if authorization else "no 'Authorization: Bearer <Check-in access token>' header")
        self._failed(call.client)
        return Answer("unauthenticated", error_response(401, "Unauthorized", why))

    async def identity(self, call: Call) -> Answer | None:
        # a change (submit, cancel, signal) may want a fresher word from the issuer than a read
        max_age = self.config.token_recheck_on_change_seconds if call.method not in READ_METHODS else None
        try:
            call.caller = await self.callers.identify(call.token, action=call.action, client=call.client,
                                                      max_age=max_age)
        except AccessDenied as exc:
            if exc.transient:
                return Answer("unavailable", error_response(503, exc.reason, exc.message, retry_after=10))
            self._failed(call.client)
            return Answer("unauthorized", error_response(401, exc.reason, exc.message))
        call.user = call.caller.user
        return None

    async def never_privileged(self, call: Call) -> Answer | None:
        """Defence in depth: the identity layer refuses these accounts too."""
        if call.user not in NEVER_MAPPED and call.user != self.config.slurm_user:
            return None
        return Answer("unauthorized", error_response(403, "Forbidden", f"requests may not run as {call.user}"))

    async def rate_limit(self, call: Call) -> Answer | None:
        caller = call.caller
        wait = self.limiter.take(caller.user if caller.role != SERVICE else f"service:{caller.subject}")
        if wait <= 0:
            return None
        return Answer("rate-limited", error_response(
            429, "TooManyRequests", f"more than {self.config.rate_limit.requests_per_second:g} requests/s "
            f"for {call.user}; slow down", retry_after=retry_after(wait)))

    async def service_scope(self, call: Call) -> Answer | None:
        """A service identity's request runs as the job's owner for a ledger job, else as its own account."""
        caller = call.caller
        if caller.role != SERVICE:
            return None
        access = service_access(call.method, call.route)
        if access is ServiceAccess.AS_ACCOUNT:
            return None
        if access is ServiceAccess.AS_JOB_OWNER:
            match = _JOB_ID_IN_PATH.search(call.path) if call.route == policy.JOB else None
            if match is None:  # the extensions check the ledger themselves
                return None
            entry = self.ledger.get(match.group(1)) if self.ledger is not None else None
            if entry is not None:
                call.user = entry.user
                return None
            why = f"job {match.group(1)} was not submitted through this proxy: {SERVICE_SCOPE}"
        else:
            why = SERVICE_SCOPE
        audit.record(action=call.action, allowed=False, reason=why, issuer=caller.issuer,
                     subject=caller.subject, mapped_user=caller.user, role=SERVICE)
        return Answer("service-scope", error_response(403, "Forbidden", why, rule="service-scope"))

    async def job_owner(self, call: Call) -> Answer | None:
        """A cancel or signal of a job reaches slurmrestd only when its account owns the job (ownership.py)."""
        change = job_to_change(call.method, call.route, call.path)
        if change is None:
            return None
        version, job_id = change
        try:
            await require_owner(job_id, version, call.user, lookup=self.lookup, slurm_user=self.config.slurm_user,
                                token=self.slurm_token.token())
        except SlurmTokenError as exc:
            log.error("no SlurmUser token: %s", exc)
            return Answer("not-owner", error_response(503, "ProxyMisconfigured", "the proxy has no SlurmUser token",
                                                      retry_after=30))
        except Refusal as refusal:
            if refusal.status != 403:
                return Answer("not-owner", refusal.response())
            caller = call.caller
            audit.record(action=call.action, allowed=False, reason=refusal.message, issuer=caller.issuer,
                         subject=caller.subject, mapped_user=call.user, role=caller.role, job_id=job_id)
            return Answer("not-owner", error_response(403, refusal.error, refusal.message, rule="job-owner"))
        return None

    def _failed(self, client: str) -> None:
        """Count a refused token against the client's address."""
        if self.failures is not None:
            self.failures.take(client)
