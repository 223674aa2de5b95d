"""`TokenRejected`, its reason codes, and the refusal messages more than one check uses."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Every reason code `TokenRejected` can carry.
REASONS: Mapping[str, str] = MappingProxyType({
    "too_large": "longer than the size limit, refused before parsing",
    "malformed": "not a bearer token, not a well-formed JWT, or opaque while no issuer takes opaque tokens",
    "unknown_issuer": "`iss` is not exactly a pinned issuer (nothing was fetched)",
    "alg_not_allowed": "alg none/HS*/unknown, outside the issuer's allow-list, or not the key's algorithm",
    "wrong_token_type": "an ID or refresh token (`typ`) sent as an access token",
    "unknown_key": "the issuer does not publish the token's `kid` (refetched at most once per cooldown)",
    "bad_signature": "the signature does not verify",
    "missing_claim": "one of iss, sub, exp, iat is absent",
    "invalid_claim": "a claim has the wrong type (exp not a number, sub or the user key claim not a string)",
    "wrong_audience": "the required audience is not in `aud`",
    "expired": "`exp` has passed (beyond the leeway)",
    "not_yet_valid": "`nbf` or `iat` lies in the future (beyond the leeway)",
    "expires_soon": "less than the issuer's min_lifetime_seconds left",
    "inactive": "the issuer says the token is not active (introspection) or refuses it (userinfo 401/403)",
    "subject_mismatch": "userinfo/introspection describe another `sub` than the token",
    "issuer_unavailable": "discovery or JWKS could not be fetched or made no sense",
    "userinfo_failed": "userinfo errored, timed out or answered nonsense",
    "introspection_failed": "introspection errored, timed out, or refused the client credentials",
    "internal_error": "a bug; logged with its trace",
})
# Refusals that say nothing about the token: a caller may answer 503 rather than 401 for these.
TRANSIENT_REASONS = frozenset({"issuer_unavailable", "userinfo_failed", "introspection_failed", "internal_error"})


class TokenRejected(Exception):
    """The token does not authenticate anyone. `reason` is a short machine code (see `REASONS`), `message` a
    sentence a person can act on; neither ever contains the token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    @property
    def transient(self) -> bool:
        return self.reason in TRANSIENT_REASONS


def show(value: object) -> str:
    """An attacker-chosen value, made safe for messages and logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def missing_claim(claim: str) -> TokenRejected:
    return TokenRejected("missing_claim", f"The token has no {claim!r} claim, which this service requires.")


def invalid_claim(claim: str, expected: str) -> TokenRejected:
    return TokenRejected("invalid_claim", f"The token's {claim!r} claim is not {expected}.")


def wrong_audience(audience: str | None) -> TokenRejected:
    return TokenRejected("wrong_audience", f"The token is not meant for this service (audience {audience!r} "
                         "required); get one for it, e.g. by token exchange at the issuer.")


def unknown_key(issuer: str, kid: str | None) -> TokenRejected:
    return TokenRejected("unknown_key", f"The token is signed with key {show(kid)}, which issuer {issuer} "
                         "does not publish; if the issuer just rotated keys, try again in a minute.")


def unavailable(issuer: str, why: str) -> TokenRejected:
    return TokenRejected("issuer_unavailable", f"Issuer {issuer} cannot be used: {why}.")
