"""The proxy's decision cache (slurmlink/proxy/callers.py): a token's VO decision and mapping are made again
whenever the validator validates the token again (a new Identity), never kept past that; refusals are not
remembered; every request still leaves an audit line. The validator and the authorizer here are stand-ins
that count calls; the real ones behind the real proxy are in tests/integration/test_proxy.py."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

import pytest

from slurmlink.identity import audit
from slurmlink.identity.audit import AUDIT_LOGGER
from slurmlink.identity.authorizer import AccessDenied, Authorizer, Grant
from slurmlink.identity.entitlements import Decision
from slurmlink.identity.mapping.base import MappingResult
from slurmlink.identity.oidc import Identity, TokenRejected
from slurmlink.proxy.callers import CallerIdentifier
from slurmlink.proxy.roles import SERVICE, USER, ServiceIdentity

ISSUER = "https://issuer.example"


def identity(subject: str = "alice-sub") -> Identity:
    return Identity(ISSUER, subject, subject, {}, expires_at=4e9, token_hash=f"{abs(hash(subject)):016x}" * 4)


class Validator:
    """Hands out the same Identity object per token until `revalidate()`, as the identity cache does."""

    def __init__(self) -> None:
        self.current: dict[str, Identity] = {}

    async def validate(self, token: str, *, max_age: float | None = None) -> Identity:
        if token.startswith("bad"):
            raise TokenRejected("invalid_signature", "bad signature")
        if token not in self.current or max_age == 0:
            self.current[token] = identity(token)
        return self.current[token]

    def revalidate(self, token: str) -> None:
        self.current.pop(token)


class Authorizing:
    def __init__(self, validator: Validator) -> None:
        self.validator = validator
        self.decisions = 0
        self.refuse = False

    async def authorize(self, token: str, *, action: str, client: str = "", max_age: float | None = None) -> Grant:
        self.decisions += 1
        if self.refuse:
            raise AccessDenied("NotAuthorized", "not a member of any allowed VO")
        found = await self.validator.validate(token, max_age=max_age)
        audit.record_for(found, action=action, allowed=True, reason="static", client=client, mapped_user="sltest1")
        return Grant(found, Decision(True, "member", "vo.example.org"), MappingResult("sltest1", "static", "static"))


def make(services: tuple[ServiceIdentity, ...] = ()) -> tuple[CallerIdentifier, Authorizing]:
    authorizing = Authorizing(Validator())
    return CallerIdentifier(cast(Authorizer, authorizing), services), authorizing


def identify(callers: CallerIdentifier, token: str, max_age: float | None = None) -> Any:
    return asyncio.run(callers.identify(token, action="GET /x", client="127.0.0.1", max_age=max_age))


def test_a_decision_lasts_as_long_as_the_validators_identity(caplog: pytest.LogCaptureFixture) -> None:
    callers, authorizing = make()
    with caplog.at_level(logging.INFO, logger=AUDIT_LOGGER):
        for _ in range(3):
            caller = identify(callers, "alice")
    assert (caller.user, caller.role, authorizing.decisions) == ("sltest1", USER, 1)
    assert len([r for r in caplog.records if r.name == AUDIT_LOGGER]) == 3  # one audit line per request
    assert '"mapped_user":"sltest1"' in caplog.records[-1].getMessage()
    cast(Validator, authorizing.validator).revalidate("alice")  # the identity cache entry ended
    identify(callers, "alice")
    assert authorizing.decisions == 2
    identify(callers, "alice", max_age=0)  # a change that wants a fresh word from the issuer
    assert authorizing.decisions == 3


def test_refusals_are_not_remembered() -> None:
    callers, authorizing = make()
    authorizing.refuse = True
    for _ in range(2):
        with pytest.raises(AccessDenied):
            identify(callers, "alice")
    assert authorizing.decisions == 2
    authorizing.refuse = False
    assert identify(callers, "alice").user == "sltest1"
    with pytest.raises(AccessDenied) as refused:
        identify(callers, "bad")
    assert refused.value.reason == "TokenRejected"


def test_a_service_identity_is_remembered_as_a_service() -> None:
    callers, authorizing = make((ServiceIdentity(ISSUER, "svc", "sltest3"),))
    for _ in range(2):
        caller = identify(callers, "svc")
    assert (caller.user, caller.role, authorizing.decisions) == ("sltest3", SERVICE, 0)


def test_the_cache_is_bounded() -> None:
    callers, _ = make()
    callers.max_remembered = 2
    for token in ("a", "b", "c"):
        identify(callers, token)
    assert len(callers._decided) == 2
