"""Who is calling: a user (validated, authorised by VO, mapped by the identity layer) or a configured service
identity (validated by the same TokenValidator; entitlements and mapping do not apply to it)."""

from __future__ import annotations

from slurmlink.identity import audit
from slurmlink.identity.authorizer import AccessDenied, Authorizer
from slurmlink.identity.oidc import TokenRejected
from slurmlink.proxy.roles import SERVICE, USER, Caller, ServiceIdentity, service_identity


class CallerIdentifier:
    def __init__(self, authorizer: Authorizer, services: tuple[ServiceIdentity, ...] = ()) -> None:
        self.authorizer = authorizer
        self.services = services

    async def identify(self, token: str, *, action: str, client: str, max_age: float | None = None) -> Caller:
        """The caller, or AccessDenied (audited either way); `max_age` as for TokenValidator.validate."""
        if self.services:
            try:
                identity = await self.authorizer.validator.validate(token, max_age=max_age)
            except TokenRejected as exc:
                audit.record(action=action, allowed=False, reason=f"token: {exc.message}", client=client)
                raise AccessDenied("TokenRejected", f"the access token was refused: {exc.message}",
                                   transient=exc.transient) from exc
            service = service_identity(identity.issuer, identity.subject, self.services)
            if service is not None:
                audit.record_for(identity, action=action, allowed=True, reason="service identity",
                                 client=client, mapped_user=service.account, role=SERVICE)
                return Caller(service.account, identity.subject, identity.issuer, SERVICE)
        # the validator caches the identity by token hash: validating again here costs nothing
        grant = await self.authorizer.authorize(token, action=action, client=client, max_age=max_age)
        return Caller(grant.username, grant.identity.subject, grant.identity.issuer, USER, grant.decision.vos,
                      grant.decision.groups)
