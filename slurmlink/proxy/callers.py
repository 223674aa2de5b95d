"""Who is calling: a user (validated, authorised by VO, mapped by the identity layer) or a configured service
identity (validated by the same TokenValidator; entitlements and mapping do not apply to it).

The decision for a token is remembered for as long as the validator keeps that token's identity: the
validator caches it by token hash until the token expires, the issuer's `claims_cache_ttl_seconds` ends, or
a change's `max_age` asks for a fresher one (then it validates again and hands out a new Identity object, and
the decision is made again). So a caller seen recently costs one cache lookup, not the VO policy and the
mapping chain (whose account check runs in a thread); the audit line is still written for every request.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from slurmlink.identity import audit
from slurmlink.identity.authorizer import AccessDenied, Authorizer
from slurmlink.identity.oidc import Identity, TokenRejected
from slurmlink.proxy.roles import SERVICE, USER, Caller, ServiceIdentity, service_identity

MAX_REMEMBERED = 10_000  # as many as the validator's identity cache holds by default


@dataclass(frozen=True)
class _Decided:
    identity: Identity  # the validator's object: the decision holds only while the validator returns this one
    caller: Caller
    audit_line: audit.Prepared  # the audit line of its allowed requests


class CallerIdentifier:
    def __init__(self, authorizer: Authorizer, services: tuple[ServiceIdentity, ...] = (),
                 max_remembered: int = MAX_REMEMBERED) -> None:
        self.authorizer = authorizer
        self.services = services
        self.max_remembered = max_remembered
        self._decided: OrderedDict[str, _Decided] = OrderedDict()  # by token hash, least recently used first

    async def identify(self, token: str, *, action: str, client: str, max_age: float | None = None) -> Caller:
        """The caller, or AccessDenied (audited either way); `max_age` as for TokenValidator.validate."""
        try:
            identity = await self.authorizer.validator.validate(token, max_age=max_age)
        except TokenRejected as exc:
            audit.record(action=action, allowed=False, reason=f"token: {exc.message}", client=client)
            raise AccessDenied("TokenRejected", f"the access token was refused: {exc.message}",
                               transient=exc.transient) from exc
        decided = self._decided.get(identity.token_hash)
        if decided is not None and decided.identity is identity:
            self._decided.move_to_end(identity.token_hash)
            decided.audit_line.record(action=action, client=client)
            return decided.caller
        decided = await self._decide(token, identity, action=action, client=client, max_age=max_age)
        self._decided[identity.token_hash] = decided
        self._decided.move_to_end(identity.token_hash)
        while len(self._decided) > self.max_remembered:
            self._decided.popitem(last=False)
        return decided.caller

    async def _decide(self, token: str, identity: Identity, *, action: str, client: str,
                      max_age: float | None) -> _Decided:
        """The whole decision for a token not seen (or validated again) since the last one; audited."""
        service = service_identity(identity.issuer, identity.subject, self.services) if self.services else None
        if service is not None:
            fields: dict[str, Any] = {"reason": "service identity", "mapped_user": service.account, "role": SERVICE}
            audit.record_for(identity, action=action, allowed=True, client=client, **fields)
            return _Decided(identity, Caller(service.account, identity.subject, identity.issuer, SERVICE),
                            audit.Prepared(identity, allowed=True, **fields))
        # the validator has the identity cached by token hash: validating again here costs nothing
        grant = await self.authorizer.authorize(token, action=action, client=client, max_age=max_age)
        fields = {"reason": grant.mapping.reason, "vo": grant.decision.vo, "mapped_user": grant.username}
        caller = Caller(grant.username, grant.identity.subject, grant.identity.issuer, USER, grant.decision.vos,
                        grant.decision.groups)
        return _Decided(grant.identity, caller, audit.Prepared(grant.identity, allowed=True, **fields))
