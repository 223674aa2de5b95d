"""What a pinned issuer is: its configuration, the EGI Check-in presets, and which URLs may be trusted."""

from __future__ import annotations

import ipaddress
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

CHECKIN_PRESETS: dict[str, str] = {
    "egi-production": "https://aai.egi.eu/auth/realms/egi",
    "egi-demo": "https://aai-demo.egi.eu/auth/realms/egi",
    "egi-development": "https://aai-dev.egi.eu/auth/realms/egi",
}

# Symmetric algorithms are never acceptable: the "secret" would be the issuer's public key (alg confusion).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_LOOPBACK_HOSTS = frozenset({"localhost"})


@dataclass(frozen=True)
class IssuerConfig:
    """One pinned issuer. Strings are compared exactly: `.../egi/` or an upper-case host is another issuer."""

    issuer: str
    audience: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "RS384", "RS512", "ES256", "ES384", "PS256")
    leeway_seconds: int = 30
    min_lifetime_seconds: int = 0
    userinfo: bool = True
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    user_key_claim: str = "voperson_id"
    discovery_url: str | None = None
    timeout_seconds: float = 5.0
    jwks_refetch_cooldown_seconds: float = 30.0
    claims_cache_ttl_seconds: float = 300
    jwks_max_age_seconds: float = 300.0  # keys removed by the issuer stop verifying after this long
    accept_opaque: bool = True  # whether opaque tokens may be sent to this issuer's userinfo/introspection
    max_lifetime_seconds: int | None = None  # refuse tokens issued for longer than this (exp - iat)

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))  # a list from YAML would stay mutable
        check_url(self.issuer, "issuer")
        if self.discovery_url is not None:
            check_url(self.discovery_url, "discovery_url")
        if not self.algorithms or not set(self.algorithms) <= ASYMMETRIC_ALGORITHMS:
            bad = sorted(set(self.algorithms) - ASYMMETRIC_ALGORITHMS) or ["(empty)"]
            raise ValueError(f"issuer {self.issuer}: algorithms {bad} not allowed; use asymmetric ones only "
                             f"({', '.join(sorted(ASYMMETRIC_ALGORITHMS))})")
        if not 0 <= self.leeway_seconds <= 300:
            raise ValueError(f"issuer {self.issuer}: leeway_seconds must be within 0..300")
        if self.min_lifetime_seconds < 0 or self.claims_cache_ttl_seconds < 0 or self.jwks_refetch_cooldown_seconds < 0:
            raise ValueError(f"issuer {self.issuer}: lifetimes, TTLs and cooldowns cannot be negative")
        if self.timeout_seconds <= 0 or self.jwks_max_age_seconds <= 0:
            raise ValueError(f"issuer {self.issuer}: timeout_seconds and jwks_max_age_seconds must be positive")
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError(f"issuer {self.issuer}: set both client_id and client_secret (introspection) or neither")
        if self.max_lifetime_seconds is not None and self.max_lifetime_seconds <= 0:
            raise ValueError(f"issuer {self.issuer}: max_lifetime_seconds must be positive (or unset)")
        if not self.user_key_claim:
            raise ValueError(f"issuer {self.issuer}: user_key_claim cannot be empty")

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> IssuerConfig:
        """A Check-in environment by name (`egi-production`, `egi-demo`, `egi-development`)."""
        try:
            issuer = CHECKIN_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown Check-in preset {name!r}; known: {', '.join(CHECKIN_PRESETS)}") from None
        return cls(issuer=issuer, **overrides)

    @property
    def metadata_url(self) -> str:
        return self.discovery_url or self.issuer.rstrip("/") + "/.well-known/openid-configuration"

    @property
    def introspects(self) -> bool:
        return self.client_id is not None


def check_url(url: str, what: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and parts.hostname and _is_loopback(parts.hostname):
        return  # plain HTTP only on loopback (tests, a local stand-in)
    raise ValueError(f"{what} {url!r} must be an https:// URL (http:// only on loopback)")


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
