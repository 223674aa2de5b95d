"""Access-token validation against a real HTTP stand-in for Check-in on loopback (starts in ~0.1 s).

The table throws hostile tokens and hostile issuer behaviour at the validator; each must be refused with the
right reason, and no refusal message may contain the token.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import json
import secrets
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from slurmlink.identity.oidc import (
    CHECKIN_PRESETS,
    REASONS,
    IssuerConfig,
    TokenRejected,
    TokenValidator,
)
from standins.checkin import DEFAULT_CLIENT, CheckinStandin, SigningKey, b64url, new_key

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def evil() -> Iterator[CheckinStandin]:
    """A second, unpinned "issuer": it must never see a request."""
    with CheckinStandin() as idp:
        yield idp


class Clock:
    """Real time plus an offset tests can advance (the stand-in keeps real time)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


TLS = ssl.create_default_context()  # loading CA certificates per client would cost 0.2 s per test


@contextlib.asynccontextmanager
async def validating(idp: CheckinStandin | list[IssuerConfig], clock: Callable[[], float] = time.time,
                     **cfg: Any) -> AsyncIterator[TokenValidator]:
    issuers = [IssuerConfig(issuer=idp.issuer, **cfg)] if isinstance(idp, CheckinStandin) else idp
    async with httpx.AsyncClient(verify=TLS) as http:
        yield TokenValidator(issuers, http=http, clock=clock)


INTROSPECTION: dict[str, Any] = {"client_id": DEFAULT_CLIENT[0], "client_secret": DEFAULT_CLIENT[1]}


@functools.cache
def attacker_key(alg: str = "RS256", kid: str = "attacker") -> SigningKey:
    return new_key(alg, kid)


def forge(header: dict[str, Any] | str, payload: dict[str, Any] | str, signature: bytes = b"") -> str:
    return f"{b64url(header)}.{b64url(payload)}.{b64url(signature)}"


def hs256(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    return f"{signing_input}.{b64url(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())}"


def without(claims: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in claims.items() if k not in names}


def now() -> int:
    return int(time.time())


def userinfo_says_other_subject(idp: CheckinStandin) -> str:
    token = idp.mint()
    sub = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["sub"]
    idp.set_user(sub, sub=idp.new_subject())
    return token


def revoked(idp: CheckinStandin) -> str:
    token = idp.mint()
    idp.revoke(token)
    return token


def half_signature(token: str) -> str:
    signing_input, signature = token.rsplit(".", 1)
    raw = base64.urlsafe_b64decode(signature + "==")
    return f"{signing_input}.{b64url(raw[: len(raw) // 2])}"


def tampered(idp: CheckinStandin) -> str:
    header, _, signature = idp.mint().split(".")
    return f"{header}.{b64url(idp.access_claims())}.{signature}"


@dataclass
class Case:
    id: str
    make: Callable[[CheckinStandin], str]
    reason: str
    cfg: dict[str, Any] = field(default_factory=dict)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)


HOSTILE = [
    # algorithm games
    Case("alg_none", lambda i: forge({"alg": "none", "typ": "JWT"}, i.access_claims()), "alg_not_allowed"),
    Case("alg_None_with_kid", lambda i: forge({"alg": "None", "kid": i.rsa_kid}, i.access_claims(), b"x"),
         "alg_not_allowed"),
    Case("hs256_signed_with_issuer_public_pem",
         lambda i: hs256({"alg": "HS256", "typ": "JWT", "kid": i.rsa_kid}, i.access_claims(), i.key().public_pem()),
         "alg_not_allowed"),
    Case("hs256_signed_with_issuer_jwk",
         lambda i: hs256({"alg": "HS256", "kid": i.rsa_kid}, i.access_claims(),
                         json.dumps(i.key().public_jwk()).encode()), "alg_not_allowed"),
    Case("es256_header_on_rsa_kid", lambda i: i.sign(i.access_claims(), key=attacker_key("ES256", i.rsa_kid)),
         "alg_not_allowed"),
    Case("rs256_outside_issuer_allow_list", lambda i: i.mint(), "alg_not_allowed", {"algorithms": ("ES256",)}),
    # keys
    Case("wrong_key_same_kid", lambda i: i.sign(i.access_claims(), key=attacker_key("RS256", i.rsa_kid)),
         "bad_signature"),
    Case("unknown_kid", lambda i: i.sign(i.access_claims(), key=attacker_key()), "unknown_key"),
    Case("embedded_jwk_header", lambda i: i.sign(i.access_claims(), key=attacker_key(),
                                                  headers={"jwk": attacker_key().public_jwk()}), "unknown_key"),
    Case("signed_with_published_encryption_key", lambda i: i.sign(i.access_claims(), key=i.encryption_key),
         "unknown_key"),
    Case("no_kid_several_keys", lambda i: i.sign(i.access_claims(), headers={"kid": None}), "unknown_key"),
    Case("kid_not_a_string", lambda i: i.sign(i.access_claims(), headers={"kid": 7}), "malformed"),
    Case("payload_swapped", tampered, "bad_signature"),
    Case("signature_stripped", lambda i: i.mint().rsplit(".", 1)[0] + ".", "bad_signature"),
    Case("signature_truncated", lambda i: half_signature(i.mint()), "bad_signature"),
    Case("issuer_serves_other_keys", lambda i: i.mint(), "bad_signature", faults={"certs": {"wrong_keys": True}}),
    # time
    Case("expired", lambda i: i.mint(exp=now() - 120), "expired"),
    Case("nbf_in_future", lambda i: i.mint(nbf=now() + 600), "not_yet_valid"),
    Case("iat_in_future", lambda i: i.mint(iat=now() + 600), "not_yet_valid"),
    Case("expires_before_min_lifetime", lambda i: i.mint(lifetime=120), "expires_soon",
         {"min_lifetime_seconds": 600}),
    Case("exp_not_a_number", lambda i: i.mint(exp=str(now() + 600)), "invalid_claim"),
    Case("exp_is_nan", lambda i: i.mint(exp=float("nan")), "invalid_claim"),
    Case("exp_is_bool", lambda i: i.mint(exp=True), "invalid_claim"),
    # issuer
    Case("unpinned_issuer", lambda i: i.mint(iss="https://evil.example/auth/realms/egi"), "unknown_issuer"),
    Case("issuer_trailing_slash", lambda i: i.mint(iss=i.issuer + "/"), "unknown_issuer"),
    Case("issuer_upper_case_path", lambda i: i.mint(iss=i.issuer.replace("/egi", "/EGI")), "unknown_issuer"),
    Case("issuer_upper_case_scheme", lambda i: i.mint(iss=i.issuer.replace("http:", "HTTP:")), "unknown_issuer"),
    Case("issuer_not_a_string", lambda i: i.mint(iss=[i.issuer]), "unknown_issuer"),
    # audience
    Case("wrong_audience", lambda i: i.mint(aud="another-service"), "wrong_audience", {"audience": "slurmlink"}),
    Case("no_audience_when_required", lambda i: i.mint(), "wrong_audience", {"audience": "slurmlink"}),
    # required claims
    Case("missing_iss", lambda i: i.sign(without(i.access_claims(), "iss")), "missing_claim"),
    Case("missing_sub", lambda i: i.sign(without(i.access_claims(), "sub")), "missing_claim"),
    Case("missing_exp", lambda i: i.sign(without(i.access_claims(), "exp")), "missing_claim"),
    Case("missing_iat", lambda i: i.sign(without(i.access_claims(), "iat")), "missing_claim"),
    Case("sub_not_a_string", lambda i: i.sign({**i.access_claims(), "sub": 12345}), "invalid_claim"),
    Case("user_key_not_a_string", lambda i: i.mint(voperson_id=["a@egi.eu"]), "invalid_claim", {"userinfo": False}),
    # token types
    Case("id_token_as_access_token", lambda i: i.mint(typ="ID", aud=DEFAULT_CLIENT[0]), "wrong_token_type"),
    Case("refresh_token_as_access_token", lambda i: i.mint(typ="Refresh"), "wrong_token_type"),
    Case("header_typ_not_jwt", lambda i: i.sign(i.access_claims(), headers={"typ": "dpop+jwt"}), "wrong_token_type"),
    # shape
    Case("empty", lambda i: "", "malformed"),
    Case("truncated", lambda i: (t := i.mint())[: len(t) // 2], "malformed"),
    Case("oversized_100k", lambda i: "eyJ" + "A" * 100 * 1024, "too_large"),
    Case("garbage_base64", lambda i: "eyJ!!!.???.***", "malformed"),
    Case("base64_not_json", lambda i: "eyJxxxxxxxx.yyyyyyyy.zzzzzzzz", "malformed"),
    Case("header_not_object", lambda i: forge("[1]", i.access_claims()), "malformed"),
    Case("deeply_nested_payload", lambda i: forge({"alg": "RS256"}, "[" * 3000 + "]" * 3000), "malformed"),
    Case("encrypted_jwe", lambda i: "eyJhbGciOiJSU0EtT0FFUCJ9.a.b.c.d", "malformed"),
    Case("critical_header", lambda i: i.sign(i.access_claims(), headers={"crit": ["exp"]}), "malformed"),
    Case("bearer_prefix_left_on", lambda i: "Bearer " + i.mint(), "malformed"),
    Case("newline_injection", lambda i: i.mint() + "\r\nX-Slurm-User-Name: root", "malformed"),
    Case("non_ascii", lambda i: i.mint() + "é", "malformed"),
    # issuer-side checks fail closed
    Case("userinfo_timeout", lambda i: i.mint(), "userinfo_failed", {"timeout_seconds": 0.3},
         {"userinfo": {"delay": 2}}),
    Case("userinfo_500", lambda i: i.mint(), "userinfo_failed", faults={"userinfo": {"status": 500}}),
    Case("userinfo_503", lambda i: i.mint(), "userinfo_failed", faults={"userinfo": {"status": 503}}),
    Case("userinfo_garbage", lambda i: i.mint(), "userinfo_failed", faults={"userinfo": {"garbage": True}}),
    Case("userinfo_other_subject", userinfo_says_other_subject, "subject_mismatch"),
    Case("revoked_at_userinfo", revoked, "inactive"),
    Case("revoked_at_introspection", revoked, "inactive", INTROSPECTION),
    Case("introspection_bad_client_secret", lambda i: i.mint(), "introspection_failed",
         {**INTROSPECTION, "client_secret": "wrong"}),
    Case("introspection_503", lambda i: i.mint(), "introspection_failed", INTROSPECTION,
         {"introspect": {"status": 503}}),
    Case("opaque_unknown_at_userinfo", lambda i: secrets.token_urlsafe(32), "inactive"),
    Case("opaque_unknown_at_introspection", lambda i: secrets.token_urlsafe(32), "inactive", INTROSPECTION),
    Case("opaque_when_no_issuer_takes_them", lambda i: i.mint_opaque(), "malformed", {"accept_opaque": False}),
    Case("jwks_down", lambda i: i.mint(), "issuer_unavailable", faults={"certs": {"status": 503}}),
    Case("jwks_garbage", lambda i: i.mint(), "issuer_unavailable", faults={"certs": {"garbage": True}}),
    Case("discovery_down", lambda i: i.mint(), "issuer_unavailable", faults={"discovery": {"status": 503}}),
    Case("discovery_slow", lambda i: i.mint(), "issuer_unavailable", {"timeout_seconds": 0.3},
         {"discovery": {"delay": 2}}),
]


@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
async def test_hostile_token_is_refused_with_its_reason(checkin: CheckinStandin, case: Case) -> None:
    for endpoint, fault in case.faults.items():
        checkin.set_fault(endpoint, **fault)
    token = case.make(checkin)
    async with validating(checkin, **case.cfg) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
    exc = caught.value
    assert exc.reason == case.reason, exc.message
    assert exc.reason in REASONS
    assert exc.transient == (exc.reason in ("issuer_unavailable", "userinfo_failed", "introspection_failed"))
    assert exc.message and exc.message[0].isupper()
    for text in (exc.message, str(exc), repr(exc)):
        assert not token or token not in text
        assert not any(len(part) > 16 and part in text for part in token.split("."))


def test_the_table_is_big_enough() -> None:
    assert len(HOSTILE) >= 20
    assert len({c.id for c in HOSTILE}) == len(HOSTILE)
    assert set(REASONS) - {c.reason for c in HOSTILE} == {"internal_error"}  # every other reason is exercised


NO_NETWORK_NEEDED = {
    "alg_none", "alg_None_with_kid", "hs256_signed_with_issuer_public_pem", "hs256_signed_with_issuer_jwk",
    "kid_not_a_string", "unpinned_issuer", "issuer_trailing_slash", "issuer_upper_case_path",
    "issuer_upper_case_scheme", "issuer_not_a_string", "missing_iss", "id_token_as_access_token",
    "refresh_token_as_access_token", "header_typ_not_jwt", "empty", "truncated", "oversized_100k", "garbage_base64",
    "base64_not_json", "header_not_object", "deeply_nested_payload", "encrypted_jwe", "critical_header",
    "bearer_prefix_left_on", "newline_injection", "non_ascii",
}


async def test_refusals_decided_from_the_token_alone_make_no_network_call(checkin: CheckinStandin) -> None:
    cases = [c for c in HOSTILE if c.id in NO_NETWORK_NEEDED]
    assert len(cases) == len(NO_NETWORK_NEEDED)
    async with validating(checkin) as validator:
        for case in cases:
            with pytest.raises(TokenRejected):
                await validator.validate(case.make(checkin))
        assert validator.http_calls == 0
    assert checkin.count() == 0


# --- the unpinned issuer is never contacted -----------------------------------------------------------------


async def test_unpinned_issuer_gets_no_request(checkin: CheckinStandin, evil: CheckinStandin) -> None:
    token = evil.mint()  # a perfectly valid token of another, working OIDC provider
    async with validating(checkin) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
        assert caught.value.reason == "unknown_issuer"
        assert validator.http_calls == 0
    assert evil.count() == 0 and checkin.count() == 0


async def test_key_urls_in_the_header_are_never_fetched(checkin: CheckinStandin, evil: CheckinStandin) -> None:
    evil_kid = evil.key().kid
    token = checkin.sign(checkin.access_claims(), key=evil.key(),
                         headers={"jku": evil.jwks_uri, "x5u": evil.jwks_uri + "/x5u", "kid": evil_kid})
    async with validating(checkin) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
    assert caught.value.reason == "unknown_key"
    assert evil.count() == 0


async def test_discovery_must_name_the_pinned_issuer(checkin: CheckinStandin, evil: CheckinStandin) -> None:
    async with validating(checkin, discovery_url=evil.discovery_url) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(checkin.mint())
    assert caught.value.reason == "issuer_unavailable"
    assert evil.issuer in caught.value.message
    assert evil.count("certs") == 0  # the foreign document's jwks_uri is not followed


async def test_issuer_down_fails_fast_and_closed(checkin: CheckinStandin) -> None:
    down = CheckinStandin().start()
    token = down.mint()
    down.stop()  # connection refused from now on
    started = time.monotonic()
    async with validating(down) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
    assert caught.value.reason == "issuer_unavailable"
    assert time.monotonic() - started < 2


# --- accepted tokens ----------------------------------------------------------------------------------------


async def test_valid_rs256_token(checkin: CheckinStandin) -> None:
    sub = checkin.new_subject()
    vo_id = checkin.new_subject()
    checkin.set_user(sub, voperson_id=vo_id, eduperson_entitlement=[
        "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu",
        "urn:mace:egi.eu:group:vo.example.org:role=vm_operator#aai.egi.eu"])
    token = checkin.mint(sub, voperson_id=vo_id)
    async with validating(checkin) as validator:
        identity = await validator.validate(token)
        assert (validator.discovery_calls, validator.jwks_calls, validator.userinfo_calls) == (1, 1, 1)
    assert identity.issuer == checkin.issuer
    assert identity.subject == sub
    assert identity.user_key == vo_id != sub
    assert identity.key == (checkin.issuer, vo_id)
    assert identity.token_hash == hashlib.sha256(token.encode()).hexdigest()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert identity.expires_at == claims["exp"]
    # entitlements come from userinfo (Check-in does not put them in the access token)
    assert "eduperson_entitlement" not in claims
    assert identity.claims["eduperson_entitlement"] == (
        "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu",
        "urn:mace:egi.eu:group:vo.example.org:role=vm_operator#aai.egi.eu")
    assert identity.claims["scope"] == claims["scope"] and identity.claims["jti"] == claims["jti"]
    assert "eduperson_entitlement" not in repr(identity)  # claims stay out of logs


async def test_valid_es256_token(checkin: CheckinStandin) -> None:
    token = checkin.mint(kid=checkin.ec_kid)
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["alg"] == "ES256"
    async with validating(checkin) as validator:
        identity = await validator.validate(token)
    assert identity.issuer == checkin.issuer


async def test_user_key_falls_back_to_sub_and_is_configurable(checkin: CheckinStandin) -> None:
    sub = checkin.new_subject()
    checkin.set_user(sub, voperson_id="vo-id@egi.eu")
    del checkin.users[sub]["voperson_id"]
    token = checkin.mint(sub, voperson_id=None)
    async with validating(checkin) as validator:
        assert (await validator.validate(token)).user_key == sub
    async with validating(checkin, user_key_claim="preferred_username") as validator:
        assert (await validator.validate(token)).user_key == checkin.users[sub]["preferred_username"]


async def test_userinfo_cannot_override_what_the_token_signed(checkin: CheckinStandin) -> None:
    sub = checkin.new_subject()
    checkin.set_user(sub, iss="https://evil.example", exp=9999999999, aud="x")
    async with validating(checkin) as validator:
        identity = await validator.validate(checkin.mint(sub, lifetime=600))
    assert identity.claims["iss"] == checkin.issuer
    assert identity.claims["exp"] == identity.expires_at < time.time() + 700
    assert "aud" not in identity.claims


@pytest.mark.parametrize("aud", ["slurmlink", ["other", "slurmlink"]])
async def test_audience_when_required(checkin: CheckinStandin, aud: str | list[str]) -> None:
    async with validating(checkin, audience="slurmlink") as validator:
        identity = await validator.validate(checkin.mint(aud=aud))
    assert identity.claims["aud"] in (aud, tuple(aud))


async def test_audience_in_token_is_fine_when_none_is_required(checkin: CheckinStandin) -> None:
    async with validating(checkin) as validator:
        await validator.validate(checkin.mint(aud="some-client"))


async def test_leeway_accepts_small_clock_skew(checkin: CheckinStandin) -> None:
    # userinfo off: the issuer itself (rightly) has no leeway for an expired token
    async with validating(checkin, leeway_seconds=30, userinfo=False) as validator:
        await validator.validate(checkin.mint(iat=now() + 10, nbf=now() + 10))
        await validator.validate(checkin.mint(exp=now() - 10))


async def test_introspection_is_preferred_when_client_credentials_are_set(checkin: CheckinStandin) -> None:
    async with validating(checkin, **INTROSPECTION) as validator:
        identity = await validator.validate(checkin.mint())
        assert (validator.introspection_calls, validator.userinfo_calls) == (1, 0)
    assert identity.claims["eduperson_entitlement"]
    assert "active" not in identity.claims


async def test_without_userinfo_only_the_token_speaks(checkin: CheckinStandin) -> None:
    async with validating(checkin, userinfo=False) as validator:
        identity = await validator.validate(checkin.mint())
        assert validator.userinfo_calls == 0 and checkin.count("userinfo") == 0
    assert "eduperson_entitlement" not in identity.claims


async def test_claims_are_read_only(checkin: CheckinStandin) -> None:
    async with validating(checkin) as validator:
        identity = await validator.validate(checkin.mint())
    with pytest.raises(TypeError):
        identity.claims["sub"] = "root"  # type: ignore[index]
    assert isinstance(identity.claims["eduperson_entitlement"], tuple)


# --- opaque tokens ------------------------------------------------------------------------------------------


async def test_opaque_token_via_userinfo(checkin: CheckinStandin) -> None:
    sub = checkin.new_subject()
    clock = Clock()
    async with validating(checkin, clock, claims_cache_ttl_seconds=120) as validator:
        identity = await validator.validate(checkin.mint_opaque(sub))
        assert validator.jwks_calls == 0 and validator.userinfo_calls == 1
    assert (identity.issuer, identity.subject, identity.user_key) == (checkin.issuer, sub, sub)
    assert identity.claims["iss"] == checkin.issuer
    assert identity.claims["eduperson_entitlement"]
    assert abs(identity.expires_at - (clock() + 120)) < 5  # unknown lifetime: as long as the cache entry


async def test_opaque_token_via_introspection(checkin: CheckinStandin) -> None:
    sub = checkin.new_subject()
    token = checkin.mint_opaque(sub, lifetime=900)
    async with validating(checkin, **INTROSPECTION) as validator:
        identity = await validator.validate(token)
        assert validator.introspection_calls == 1 and validator.userinfo_calls == 0
    assert identity.subject == sub
    assert identity.expires_at == checkin.opaque[token]["exp"]
    assert identity.claims["username"] == checkin.users[sub]["preferred_username"]


async def test_opaque_token_tries_pinned_issuers_in_order(checkin: CheckinStandin, evil: CheckinStandin) -> None:
    token = evil.mint_opaque()
    issuers = [IssuerConfig(issuer=checkin.issuer), IssuerConfig(issuer=evil.issuer)]
    async with validating(issuers) as validator:
        identity = await validator.validate(token)
    assert identity.issuer == evil.issuer
    assert checkin.count("userinfo") == 1 and evil.count("userinfo") == 1


# --- caching ------------------------------------------------------------------------------------------------


async def test_second_validation_makes_no_http_call(checkin: CheckinStandin) -> None:
    token = checkin.mint()
    async with validating(checkin) as validator:
        first = await validator.validate(token)
        calls, seen = validator.http_calls, checkin.count()
        second = await validator.validate(token)
        assert second is first
        assert validator.http_calls == calls and checkin.count() == seen
        assert validator.cache_hits == 1


async def test_cache_entry_ends_with_its_ttl(checkin: CheckinStandin) -> None:
    clock = Clock()
    token = checkin.mint()
    async with validating(checkin, clock, claims_cache_ttl_seconds=60) as validator:
        await validator.validate(token)
        clock.advance(61)
        await validator.validate(token)
        assert validator.userinfo_calls == 2 and validator.cache_hits == 0


async def test_cache_entry_does_not_outlive_the_token(checkin: CheckinStandin) -> None:
    clock = Clock()
    token = checkin.mint(lifetime=90)
    async with validating(checkin, clock, claims_cache_ttl_seconds=3600, leeway_seconds=30) as validator:
        await validator.validate(token)
        clock.advance(90 + 31)
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
        assert caught.value.reason == "expired"
        assert validator.userinfo_calls == 1 and validator.cache_hits == 0


async def test_min_lifetime_applies_to_cached_tokens(checkin: CheckinStandin) -> None:
    clock = Clock()
    token = checkin.mint(lifetime=3599)
    async with validating(checkin, clock, claims_cache_ttl_seconds=3600, min_lifetime_seconds=300) as validator:
        await validator.validate(token)
        clock.advance(3400)
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
        assert caught.value.reason == "expires_soon"
        assert validator.cache_hits == 1 and validator.userinfo_calls == 1


async def test_rejections_are_not_cached(checkin: CheckinStandin) -> None:
    token = checkin.mint()
    checkin.set_fault("userinfo", status=503)
    async with validating(checkin) as validator:
        with pytest.raises(TokenRejected):
            await validator.validate(token)
        checkin.clear_faults()
        await validator.validate(token)


# --- keys: rotation, storms, stampedes ----------------------------------------------------------------------


async def test_key_rotation_is_picked_up_by_refetch_on_new_kid(checkin: CheckinStandin) -> None:
    clock = Clock()
    old = checkin.mint()
    async with validating(checkin, clock, jwks_refetch_cooldown_seconds=30) as validator:
        await validator.validate(old)
        new_kid = checkin.add_key("RS256")
        fresh = checkin.mint()
        # right after a fetch the cooldown holds: the new kid waits (a storm of random kids costs nothing)
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(fresh)
        assert caught.value.reason == "unknown_key" and validator.jwks_calls == 1
        clock.advance(31)
        identity = await validator.validate(fresh)
        assert validator.jwks_calls == 2
        assert json.loads(base64.urlsafe_b64decode(fresh.split(".")[0] + "=="))["kid"] == new_kid
        assert identity.issuer == checkin.issuer
        await validator.validate(checkin.mint(kid=checkin.rsa_kid))  # the old key still verifies while published


async def test_removed_key_stops_verifying_after_jwks_max_age(checkin: CheckinStandin) -> None:
    clock = Clock()
    async with validating(checkin, clock, jwks_max_age_seconds=300) as validator:
        await validator.validate(checkin.mint(kid=checkin.ec_kid))
        checkin.remove_key(checkin.ec_kid)
        late = checkin.sign(checkin.access_claims(), key=checkin._initial[1])
        clock.advance(301)
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(late)
        assert caught.value.reason == "unknown_key"
        assert validator.jwks_calls == 2


async def test_unknown_kid_storm_costs_one_jwks_fetch_per_cooldown(checkin: CheckinStandin) -> None:
    clock = Clock()

    def storm_token() -> str:
        return checkin.sign(checkin.access_claims(), key=attacker_key(), headers={"kid": secrets.token_hex(8)})

    async with validating(checkin, clock, jwks_refetch_cooldown_seconds=30) as validator:
        await validator.validate(checkin.mint())
        assert validator.jwks_calls == 1
        for wave in range(3):
            results = await asyncio.gather(*(validator.validate(storm_token()) for _ in range(100)),
                                           return_exceptions=True)
            assert all(isinstance(r, TokenRejected) and r.reason == "unknown_key" for r in results)
            # first wave falls in the cooldown of the warm-up fetch; later waves are each allowed one refetch
            assert validator.jwks_calls == 1 + wave
            clock.advance(31)
    assert checkin.count("certs") == 3


async def test_cold_storm_of_unknown_kids_fetches_jwks_once(checkin: CheckinStandin) -> None:
    async with validating(checkin) as validator:
        tokens = [checkin.sign(checkin.access_claims(), key=attacker_key(), headers={"kid": secrets.token_hex(8)})
                  for _ in range(100)]
        results = await asyncio.gather(*(validator.validate(t) for t in tokens), return_exceptions=True)
    assert {r.reason for r in results if isinstance(r, TokenRejected)} == {"unknown_key"}
    assert checkin.count("certs") == 1 and checkin.count("discovery") == 1


async def test_same_cold_token_concurrently_is_checked_once(checkin: CheckinStandin) -> None:
    token = checkin.mint()
    async with validating(checkin) as validator:
        identities = await asyncio.gather(*(validator.validate(token) for _ in range(50)))
    assert len({id(i) for i in identities}) == 1
    assert (checkin.count("discovery"), checkin.count("certs"), checkin.count("userinfo")) == (1, 1, 1)


async def test_many_cold_tokens_share_one_discovery_and_jwks_fetch(checkin: CheckinStandin) -> None:
    tokens = [checkin.mint() for _ in range(20)]
    async with validating(checkin) as validator:
        await asyncio.gather(*(validator.validate(t) for t in tokens))
    assert (checkin.count("discovery"), checkin.count("certs"), checkin.count("userinfo")) == (1, 1, 20)


async def test_outage_does_not_stampede_and_recovers(checkin: CheckinStandin) -> None:
    clock = Clock()
    checkin.set_fault("certs", status=503)
    tokens = [checkin.mint() for _ in range(20)]
    async with validating(checkin, clock) as validator:
        results = await asyncio.gather(*(validator.validate(t) for t in tokens), return_exceptions=True)
        assert {r.reason for r in results if isinstance(r, TokenRejected)} == {"issuer_unavailable"}
        assert checkin.count("certs") == 1
        checkin.clear_faults()
        clock.advance(2)
        await validator.validate(tokens[0])
    assert checkin.count("certs") == 2


async def test_warm_up_reports_per_issuer(checkin: CheckinStandin, evil: CheckinStandin) -> None:
    evil.set_fault("discovery", status=503)
    issuers = [IssuerConfig(issuer=checkin.issuer), IssuerConfig(issuer=evil.issuer)]
    async with validating(issuers) as validator:
        report = await validator.warm_up()
        assert report[checkin.issuer] is None
        assert "503" in str(report[evil.issuer])
        calls = validator.http_calls
        await validator.validate(checkin.mint())
        assert validator.http_calls == calls + 1  # only userinfo: keys were already there


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [
    {"algorithms": ("HS256",)}, {"algorithms": ("none",)}, {"algorithms": ("RS256", "HS512")}, {"algorithms": ()},
    {"issuer": "http://aai.egi.eu/auth/realms/egi"}, {"issuer": "aai.egi.eu"}, {"leeway_seconds": 3600},
    {"client_id": "only-the-id"}, {"timeout_seconds": 0}, {"user_key_claim": ""},
])
def test_unsafe_configuration_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        IssuerConfig(**{"issuer": CHECKIN_PRESETS["egi-production"], **bad})


def test_presets_and_secrets() -> None:
    assert CHECKIN_PRESETS == {
        "egi-production": "https://aai.egi.eu/auth/realms/egi",
        "egi-demo": "https://aai-demo.egi.eu/auth/realms/egi",
        "egi-development": "https://aai-dev.egi.eu/auth/realms/egi",
    }
    secret = secrets.token_hex(8)
    cfg = IssuerConfig.preset("egi-demo", client_id="c", client_secret=secret)
    assert cfg.metadata_url == "https://aai-demo.egi.eu/auth/realms/egi/.well-known/openid-configuration"
    assert secret not in repr(cfg)
    with pytest.raises(ValueError):
        IssuerConfig.preset("egi-prod")
    with pytest.raises(ValueError):
        TokenValidator([cfg, IssuerConfig.preset("egi-demo")])
    with pytest.raises(ValueError):
        TokenValidator([])


# --- the stand-in's refresh grant (used by token refresh elsewhere) -----------------------------------------


async def test_standin_refresh_grant_rotates_and_revokes(checkin: CheckinStandin) -> None:
    sub = checkin.new_subject()
    refresh = checkin.issue_refresh_token(sub)
    form = {"grant_type": "refresh_token", "client_id": DEFAULT_CLIENT[0], "client_secret": DEFAULT_CLIENT[1]}
    async with httpx.AsyncClient() as http, validating(checkin) as validator:
        answer = (await http.post(checkin.token_endpoint, data={**form, "refresh_token": refresh})).json()
        assert answer["refresh_token"] != refresh and answer["expires_in"] == 3599
        assert (await validator.validate(answer["access_token"])).subject == sub
        reused = await http.post(checkin.token_endpoint, data={**form, "refresh_token": refresh})
        assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
        checkin.revoke(answer["refresh_token"])
        gone = await http.post(checkin.token_endpoint, data={**form, "refresh_token": answer["refresh_token"]})
        assert gone.status_code == 400


# --- lifetime and revocation ----------------------------------------------------------------------------------


async def test_a_token_issued_for_longer_than_the_maximum_is_refused(checkin: CheckinStandin) -> None:
    async with validating(checkin, max_lifetime_seconds=3600) as validator:
        assert await validator.validate(checkin.mint(lifetime=3599))
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(checkin.mint(lifetime=7 * 86400))
    assert caught.value.reason == "lifetime_too_long"
    assert "604800 s (exp - iat)" in caught.value.message and "3600 s" in caught.value.message


async def test_the_maximum_lifetime_counts_from_iat_not_from_now(checkin: CheckinStandin) -> None:
    issued = int(time.time()) - 3000  # issued long ago, for too long, with little left: still refused
    token = checkin.mint(lifetime=3599, iat=issued, exp=issued + 5000)
    async with validating(checkin, max_lifetime_seconds=3600) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
    assert caught.value.reason == "lifetime_too_long"


async def test_an_introspected_token_issued_for_too_long_is_refused(checkin: CheckinStandin) -> None:
    token = checkin.mint_opaque(lifetime=7200)
    async with validating(checkin, max_lifetime_seconds=3600, **INTROSPECTION) as validator:
        with pytest.raises(TokenRejected) as caught:
            await validator.validate(token)
    assert caught.value.reason == "lifetime_too_long"


async def test_max_age_asks_the_issuer_again_and_sees_a_revocation(checkin: CheckinStandin) -> None:
    clock = Clock()
    token = checkin.mint()
    async with validating(checkin, clock, claims_cache_ttl_seconds=3000) as validator:
        await validator.validate(token)
        clock.advance(20)
        await validator.validate(token)  # a read: the cache answers
        await validator.validate(token, max_age=30)  # young enough
        assert validator.userinfo_calls == 1 and validator.cache_hits == 2
        checkin.revoke(token)
        with pytest.raises(TokenRejected):
            await validator.validate(token, max_age=10)  # too old for a change: the issuer says it is revoked
        assert validator.userinfo_calls == 2


async def test_max_age_zero_asks_every_time(checkin: CheckinStandin) -> None:
    token = checkin.mint()
    async with validating(checkin) as validator:
        for _ in range(3):
            await validator.validate(token, max_age=0)
        await validator.validate(token)
        assert validator.userinfo_calls >= 3 and validator.cache_hits >= 1


async def test_a_zero_ttl_caches_nothing(checkin: CheckinStandin) -> None:
    token = checkin.mint()
    async with validating(checkin, claims_cache_ttl_seconds=0) as validator:
        await validator.validate(token)
        await validator.validate(token)
        assert validator.userinfo_calls == 2 and validator.cache_hits == 0
