"""Who a caller is to the proxy (a user, or the service identity of a `slurmlink api`) and what the service
identity may do (declared with each rule of policy.RULES). Pure.

A service identity is the API's own Check-in client: it keeps following pods after their owners' tokens
expired. It may read what any user may read about the queue, as its own unprivileged account; it may read
the files of, and cancel, only jobs that were submitted through this proxy (the ledger), and then as the
job's owner; it may never submit, nor touch anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

from slurmlink.proxy import policy
from slurmlink.proxy.policy import ServiceAccess

USER = "user"
SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    user: str  # the local account requests run as (for a service identity: its read-only account)
    subject: str
    issuer: str
    role: str = USER
    vos: tuple[str, ...] = ()  # the admitted VOs the user is a member of, in the site's order (site policy)
    groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # roles held per group path (site policy)


@dataclass(frozen=True)
class ServiceIdentity:
    issuer: str
    subject: str
    account: str


def service_identity(issuer: str, subject: str, known: tuple[ServiceIdentity, ...]) -> ServiceIdentity | None:
    """The configured service identity with exactly this `iss` and `sub`, if any."""
    return next((s for s in known if s.issuer == issuer and s.subject == subject), None)


SERVICE_SCOPE = ("a service identity may only read the queue (ping, diag, jobs, job/{id}, /openapi/v3, whoami, "
                 "capacity) "
                 "and read the files of, signal or cancel jobs that were submitted through this proxy")


def service_access(method: str, rule: str) -> ServiceAccess:
    """What a service identity may do with an allowed request (`rule` is the matched policy rule's name)."""
    allowed = policy.BY_NAME.get(rule)
    return allowed.service_access(method) if allowed is not None else ServiceAccess.REFUSED
