"""Token -> identity -> authorisation -> local account, audited: the one path both modes use."""

from __future__ import annotations

from dataclasses import dataclass

from slurmlink.core.errors import SlurmlinkError
from slurmlink.identity import audit
from slurmlink.identity.entitlements import Decision, EntitlementPolicy
from slurmlink.identity.mapping import Mapper, MappingError, MappingResult
from slurmlink.identity.oidc import Identity, TokenRejected, TokenValidator


class AccessDenied(SlurmlinkError):
    """No access. `reason` is a CamelCase word for a pod status, `message` says why for a person;
    `transient` is true when trying again later may succeed (the issuer or ALISE did not answer)."""

    def __init__(self, reason: str, message: str, transient: bool = False) -> None:
        super().__init__(message, reason, transient=transient)


@dataclass(frozen=True)
class Grant:
    identity: Identity
    decision: Decision
    mapping: MappingResult

    @property
    def username(self) -> str:
        return self.mapping.username


class Authorizer:
    def __init__(self, validator: TokenValidator, policy: EntitlementPolicy, mapper: Mapper) -> None:
        self.validator = validator
        self.policy = policy
        self.mapper = mapper

    async def authorize(self, token: str, *, action: str, client: str = "", max_age: float | None = None) -> Grant:
        """`max_age`: see TokenValidator.validate."""
        try:
            identity = await self.validator.validate(token, max_age=max_age)
        except TokenRejected as exc:
            audit.record(action=action, allowed=False, reason=f"token: {exc.message}", client=client)
            raise AccessDenied("TokenRejected", f"the access token was refused: {exc.message}",
                               transient=exc.transient) from exc
        decision = self.policy.decide(identity.claims)
        if not decision.allowed:
            audit.record_for(identity, action=action, allowed=False, reason=decision.reason, client=client)
            raise AccessDenied("NotAuthorized", decision.reason)
        try:
            result = await self.mapper.map(identity.issuer, identity.user_key, identity.claims, decision)
        except MappingError as exc:
            audit.record_for(identity, action=action, allowed=False, reason=exc.message, client=client,
                             vo=decision.vo)
            raise AccessDenied("NoAccountMapping", exc.message) from exc
        audit.record_for(identity, action=action, allowed=True, reason=result.reason, client=client,
                         vo=decision.vo, mapped_user=result.username)
        return Grant(identity, decision, result)

    async def aclose(self) -> None:
        await self.validator.aclose()
        await self.mapper.aclose()
