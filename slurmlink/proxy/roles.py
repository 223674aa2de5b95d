"""Who a caller is to the proxy (a user, or the service identity of a `slurmlink api`) and what the service
identity may do. Pure.

A service identity is the API's own Check-in client: it keeps following pods after their owners' tokens
expired. It may read what any user may read about the queue, as its own unprivileged account; it may read
the files of, and cancel, only jobs that were submitted through this proxy (the ledger), and then as the
job's owner; it may never submit, nor touch anything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from slurmlink.proxy import policy

USER = "user"
SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    user: str  # the local account requests run as (for a service identity: its read-only account)
    subject: str
    issuer: str
    role: str = USER


@dataclass(frozen=True)
class ServiceIdentity:
    issuer: str
    subject: str
    account: str


def service_identity(issuer: str, subject: str, known: tuple[ServiceIdentity, ...]) -> ServiceIdentity | None:
    """The configured service identity with exactly this `iss` and `sub`, if any."""
    return next((s for s in known if s.issuer == issuer and s.subject == subject), None)


class ServiceAccess(enum.Enum):
    AS_ACCOUNT = "as-account"  # runs as the service identity's own account
    AS_JOB_OWNER = "as-job-owner"  # only for a job in the ledger, as the owner the ledger names
    REFUSED = "refused"


SERVICE_SCOPE = ("a service identity may only read the queue (ping, diag, jobs, job/{id}, /openapi/v3, whoami, "
                 "capacity) "
                 "and read the files of, signal or cancel jobs that were submitted through this proxy")
_READ_ONLY = frozenset({"GET /slurm/{v}/ping/", "GET /slurm/{v}/diag/", "GET /slurm/{v}/jobs/", "GET /openapi/v3",
                        policy.WHOAMI, policy.CAPACITY})


_OWNERS_ONLY = frozenset({policy.STATUS, policy.STATUSES, policy.LOGS, policy.SIGNAL})


def service_access(method: str, rule: str) -> ServiceAccess:
    """What a service identity may do with an allowed request (`rule` is the matched policy rule)."""
    method = method.upper()
    if rule in _READ_ONLY or (rule == policy.JOB and method == "GET"):
        return ServiceAccess.AS_ACCOUNT
    if rule in _OWNERS_ONLY or (rule == policy.JOB and method == "DELETE"):
        return ServiceAccess.AS_JOB_OWNER
    return ServiceAccess.REFUSED
