"""`Identity`, a validated caller, and how one is assembled from the token's and the issuer's claims."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import invalid_claim
from .issuer import IssuerConfig

# Signed into the access token: what userinfo/introspection says must not override them.
_PROTECTED_CLAIMS = frozenset({"iss", "sub", "exp", "iat", "nbf", "aud", "jti", "active"})


@dataclass(frozen=True)
class Identity:
    """A validated caller. The user key is (issuer, user_key); claims are read-only (lists become tuples)."""

    issuer: str
    subject: str
    user_key: str
    claims: Mapping[str, Any] = field(compare=False, repr=False)  # personal data: kept out of reprs/logs
    expires_at: float
    token_hash: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.issuer, self.user_key)


def build_identity(cfg: IssuerConfig, token_claims: Mapping[str, Any], extra: Mapping[str, Any], expires_at: float,
                   token_hash: str) -> Identity:
    merged = dict(token_claims)
    merged.update({k: v for k, v in extra.items() if k not in _PROTECTED_CLAIMS})  # issuer's view of the user wins
    key = merged.get(cfg.user_key_claim)
    if key is None:
        key = merged["sub"]
    elif not isinstance(key, str) or not key:
        raise invalid_claim(cfg.user_key_claim, "a non-empty string")
    return Identity(issuer=cfg.issuer, subject=merged["sub"], user_key=key, claims=_freeze(merged),
                    expires_at=expires_at, token_hash=token_hash)


def _freeze(value: Any) -> Any:
    # The cached identity is shared by every request with this token: no caller may change it for the next.
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value
