"""An issuer's JWKS as verification keys (pure): which keys are usable, and which one a token names."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from .errors import TokenRejected, show

_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
MIN_RSA_BITS = 2048

# kid -> algorithm -> key
KeySet = dict[str | None, dict[str, jwt.PyJWK]]


def algorithms_for(jwk: Mapping[str, Any], allowed: tuple[str, ...]) -> list[str]:
    kty, crv, declared = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if kty == "RSA":
        family: set[str] = set(_RSA_ALGORITHMS)
    elif kty == "EC" and isinstance(crv, str) and crv in _EC_CURVES:
        family = {_EC_CURVES[crv]}
    elif kty == "OKP" and crv == "Ed25519":
        family = {"EdDSA"}
    else:
        family = set()  # `oct` (symmetric) keys and unknown types are never used
    return [a for a in allowed if a in family and (declared is None or a == declared)]


def usable_keys(jwks: Mapping[str, Any], allowed: tuple[str, ...]) -> KeySet:
    """Pre-built verification keys, each bound to one algorithm so a token cannot pick another."""
    keys: KeySet = {}
    entries = jwks.get("keys")
    for jwk in entries if isinstance(entries, list) else []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        for alg in algorithms_for(jwk, allowed):
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError:
                continue
            if jwk.get("kty") == "RSA" and getattr(key.key, "key_size", 0) < MIN_RSA_BITS:
                continue
            keys.setdefault(kid, {})[alg] = key
    return keys


def lookup(keys: KeySet, issuer: str, kid: str | None, alg: str) -> jwt.PyJWK | None:
    """The key for (kid, alg); None if the kid is unknown (a refetch may help), TokenRejected if it cannot."""
    if kid is None:
        if len(keys) != 1:
            raise TokenRejected("unknown_key", f"The token names no signing key (kid) and issuer {issuer} "
                                "has several.")
        by_alg = next(iter(keys.values()))
    else:
        found = keys.get(kid)
        if found is None:
            return None
        by_alg = found
    key = by_alg.get(alg)
    if key is None:
        raise TokenRejected("alg_not_allowed", f"The issuer's key {show(kid)} does not sign with {alg}.")
    return key
