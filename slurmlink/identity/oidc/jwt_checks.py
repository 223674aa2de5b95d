"""Pure checks of a token: its shape, a JWT's header and signature, and its times. No I/O, no clock of its own."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from .errors import TokenRejected, invalid_claim, missing_claim, show, wrong_audience
from .issuer import ASYMMETRIC_ALGORITHMS, IssuerConfig

MAX_TOKEN_BYTES = 8 * 1024  # Check-in ATs are ~1.4 KB; anything far larger is abuse, refused before parsing
REQUIRED_CLAIMS = ("iss", "sub", "exp", "iat")
# Keycloak stamps a `typ` claim; ID and refresh tokens are signed by the same realm keys and must not pass as ATs.
_ACCESS_TOKEN_TYPES = frozenset({"bearer", "at+jwt", "application/at+jwt"})
_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token: no spaces, controls or non-ASCII
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def check_shape(token: object, max_bytes: int) -> None:
    if not isinstance(token, str) or not token:
        raise TokenRejected("malformed", "No token was given.")
    if len(token) > max_bytes:
        raise TokenRejected("too_large", f"The token is longer than {max_bytes} bytes; no issuer this service "
                            "trusts issues such tokens.")
    if not _TOKEN68.fullmatch(token):
        raise TokenRejected("malformed", "The token contains characters a bearer token cannot contain "
                            "(spaces, controls or non-ASCII); send it without the 'Bearer ' prefix or quotes.")


def looks_like_jwt(token: str) -> bool:
    # `eyJ` is base64url of `{"`. Opaque tokens (MITREid, Google's ya29.x) start otherwise and rarely have 2 dots.
    return token.startswith("eyJ") or token.count(".") == 2


def split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload, unverified: only used to choose issuer, algorithm and key."""
    parts = token.split(".")
    if len(parts) != 3:
        hint = " (encrypted tokens are not supported)" if len(parts) == 5 else ""
        raise TokenRejected("malformed", f"The token is not a signed JWT of three parts{hint}; it may have been "
                            "truncated when copied.")
    header = _b64_json(parts[0], "header")
    payload = _b64_json(parts[1], "payload")
    if not _B64URL.fullmatch(parts[2]) or len(parts[2]) % 4 == 1:
        raise TokenRejected("malformed", "The token's signature part is not base64url.")
    return header, payload


def _b64_json(segment: str, part: str) -> dict[str, Any]:
    if not segment or not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise TokenRejected("malformed", f"The token's {part} is not base64url; it may have been truncated.")
    try:
        value = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except (binascii.Error, ValueError, RecursionError):
        raise TokenRejected("malformed", f"The token's {part} is not JSON; it may have been truncated.") from None
    if not isinstance(value, dict):
        raise TokenRejected("malformed", f"The token's {part} is not a JSON object.")
    return value


def header_algorithm(header: Mapping[str, Any]) -> str:
    """The header's `alg` if it can ever be accepted; critical extensions are refused here too."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
        raise TokenRejected("alg_not_allowed", f"Tokens signed with {show(alg)} are never accepted; "
                            "only asymmetric signatures (RS*, PS*, ES*, EdDSA) from a pinned issuer are.")
    if "crit" in header:
        raise TokenRejected("malformed", "The token header lists critical extensions this service does not "
                            "implement.")
    return alg


def check_issuer_rules(cfg: IssuerConfig, alg: str, header: Mapping[str, Any], payload: Mapping[str, Any]
                       ) -> str | None:
    """The issuer's algorithm allow-list, the token type, and the key id (returned) the header names."""
    if alg not in cfg.algorithms:
        raise TokenRejected("alg_not_allowed", f"Issuer {cfg.issuer} is configured to sign with "
                            f"{', '.join(cfg.algorithms)}, the token uses {alg}.")
    check_token_type(header, payload)
    kid = header.get("kid")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
        raise TokenRejected("malformed", "The token header's key id (kid) is not a short string.")
    return kid


def check_token_type(header: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    for value, allowed in ((header.get("typ"), _HEADER_TYPES), (payload.get("typ"), _ACCESS_TOKEN_TYPES)):
        if value is not None and (not isinstance(value, str) or value.lower() not in allowed):
            raise TokenRejected("wrong_token_type", f"This is a {show(value)} token, not an access token; send the "
                                "access token, not the ID or refresh token.")


def verify(token: str, key: jwt.PyJWK, alg: str, cfg: IssuerConfig) -> dict[str, Any]:
    """Signature, required claims, issuer and audience via PyJWT; times are checked with our clock after."""
    try:
        decoded = jwt.decode_complete(
            token, key=key, algorithms=[alg], issuer=cfg.issuer, audience=cfg.audience,
            options={"require": list(REQUIRED_CLAIMS), "verify_exp": False, "verify_nbf": False,
                     "verify_iat": False, "verify_aud": cfg.audience is not None, "verify_iss": True,
                     "verify_sub": True, "verify_jti": True, "enforce_minimum_key_length": True})
    except jwt.InvalidSignatureError:
        raise TokenRejected("bad_signature", f"The token's signature does not verify with issuer {cfg.issuer}'s "
                            "key; it was altered or signed by someone else.") from None
    except jwt.MissingRequiredClaimError as exc:
        if exc.claim == "aud":
            raise wrong_audience(cfg.audience) from None
        raise missing_claim(exc.claim) from None
    except jwt.InvalidAudienceError:
        raise wrong_audience(cfg.audience) from None
    except jwt.InvalidAlgorithmError:
        raise TokenRejected("alg_not_allowed", "The token's algorithm does not match the issuer's key.") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("unknown_issuer", "The token's issuer is not a pinned issuer.") from None
    except (InvalidSubjectError, InvalidJTIError):
        raise TokenRejected("invalid_claim", "The token's sub or jti claim is not a string.") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", f"The token could not be decoded ({type(exc).__name__}).") from None
    return dict(decoded["payload"])


def check_times(cfg: IssuerConfig, claims: Mapping[str, Any], now: float) -> float:
    exp = number(claims, "exp")
    iat = number(claims, "iat")
    nbf = number(claims, "nbf")
    assert exp is not None and iat is not None  # required by verify
    if iat > now + cfg.leeway_seconds:
        raise TokenRejected("not_yet_valid", "The token says it was issued in the future (iat); check the clocks "
                            "of this service and the issuer.")
    if nbf is not None and nbf > now + cfg.leeway_seconds:
        raise TokenRejected("not_yet_valid", "The token is not valid yet (nbf); try again later or check clocks.")
    check_lifetime(cfg, exp, iat)
    check_expiry(cfg, exp, now)
    return exp


def check_lifetime(cfg: IssuerConfig, exp: float, iat: float) -> None:
    """A token issued for longer than the site accepts is refused, however much of it is left: a long-lived
    token that leaks stays usable long, and a revoked one is believed (cached) until it expires."""
    if cfg.max_lifetime_seconds is not None and exp - iat > cfg.max_lifetime_seconds:
        raise TokenRejected("lifetime_too_long", f"The token was issued for {exp - iat:.0f} s (exp - iat), longer "
                            f"than the {cfg.max_lifetime_seconds} s this service accepts from {cfg.issuer}; use "
                            "an access token of the usual lifetime.")


def check_expiry(cfg: IssuerConfig, exp: float, now: float) -> None:
    if exp <= now - cfg.leeway_seconds:
        raise TokenRejected("expired", "The token has expired; get a new access token (e.g. with your refresh "
                            "token) and try again.")
    check_remaining(cfg, exp, now)


def check_remaining(cfg: IssuerConfig, exp: float, now: float) -> None:
    if cfg.min_lifetime_seconds and exp - now < cfg.min_lifetime_seconds:
        raise TokenRejected("expires_soon", f"The token expires in under {cfg.min_lifetime_seconds} s, which this "
                            "service requires it to outlive; get a fresh access token.")


def number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise invalid_claim(name, "a number of seconds since the epoch")
    return float(value)


def subject(claims: Mapping[str, Any]) -> str:
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise invalid_claim("sub", "a non-empty string")
    return sub
