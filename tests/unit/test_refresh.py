"""Refreshing a pod's access token against the Check-in stand-in (a real OIDC server on loopback)."""

from __future__ import annotations

import asyncio
import time

import httpx

from slurmlink.identity.oidc import IssuerConfig, TokenValidator
from slurmlink.identity.refresh import Credentials, TokenSource, unverified_claims
from standins.checkin import CheckinStandin

CLIENT = ("slurmlink-refresh-test", "s3cret")


def source_for(checkin: CheckinStandin, lifetime: int) -> tuple[TokenSource, str]:
    checkin.add_client(*CLIENT)
    sub = checkin.new_subject()
    access = checkin.mint(sub, lifetime=lifetime, client_id=CLIENT[0])
    refresh = checkin.issue_refresh_token(sub, CLIENT[0])
    validator = TokenValidator([IssuerConfig(issuer=checkin.issuer)])
    source = TokenSource(Credentials(access, refresh, *CLIENT), validator, httpx.AsyncClient(),
                         margin=300)
    return source, access


def test_a_fresh_token_is_used_as_it_is(checkin: CheckinStandin) -> None:
    source, access = source_for(checkin, lifetime=3600)
    assert asyncio.run(source.token()) == access
    assert source.refreshes == 0


def test_a_token_near_expiry_is_refreshed_and_validates(checkin: CheckinStandin) -> None:
    source, access = source_for(checkin, lifetime=60)

    async def scenario() -> str:
        token = await source.token()
        await source.validator.validate(token)  # the refreshed token is a good one
        return token

    token = asyncio.run(scenario())
    assert token != access and source.refreshes == 1 and not source.problem
    assert unverified_claims(token)["exp"] > time.time() + 3000


def test_a_revoked_refresh_token_is_reported_and_an_updated_secret_fixes_it(checkin: CheckinStandin) -> None:
    source, access = source_for(checkin, lifetime=60)
    checkin.revoke(source.credentials.refresh_token or "")
    assert asyncio.run(source.token()) == access  # still the old one, until it expires
    assert "refresh token was refused" in source.problem and "update the token Secret" in source.problem
    sub = unverified_claims(access)["sub"]
    new = Credentials(checkin.mint(sub, lifetime=3600), checkin.issue_refresh_token(sub, CLIENT[0]), *CLIENT)
    source.update(Credentials.from_secret({"stringData": {"access_token": new.access_token,
                                                          "refresh_token": new.refresh_token or "",
                                                          "client_id": CLIENT[0], "client_secret": CLIENT[1]}}))
    assert source.problem == "" and asyncio.run(source.token()) == new.access_token


def test_refresh_goes_only_to_a_pinned_issuer(checkin: CheckinStandin) -> None:
    source, _ = source_for(checkin, lifetime=60)
    rogue = checkin.sign({**checkin.access_claims(), "iss": "https://attacker.example/realms/x",
                          "exp": int(time.time()) + 60})
    source.update(Credentials(rogue, "some-refresh-token", *CLIENT))
    assert asyncio.run(source.token()) == rogue
    assert "not pinned" in source.problem
