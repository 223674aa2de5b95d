"""Access-token validation against pinned OIDC issuers (EGI Check-in presets included).

Trust starts from configuration only: discovery and JWKS are fetched for pinned issuers, never for the `iss`
an unverified token claims (flaat fetches discovery of that `iss` first). A JWT access token is checked offline
(signature against the issuer's cached JWKS, per-issuer asymmetric algorithm allow-list, exact `iss`, required
`sub`, `exp`, `iat`, optional audience and minimum remaining lifetime); claims Check-in releases only at userinfo or
introspection (`eduperson_entitlement`) are then fetched from there. A token is a JWT if it starts with `eyJ` or
has exactly two dots; any other token is opaque and goes to userinfo/introspection of the pinned issuers that
accept opaque tokens, in configured order, first acceptance wins (exact with one pinned issuer, the usual
deployment; with several, the token is shown to each until one vouches for it).

Results are cached per sha256(token) until the token expires or the issuer's TTL ends, whichever is sooner.
Every failure, timeout included, is a `TokenRejected` with a short reason code: nothing fails open.
One validator belongs to one event loop (its HTTP pool and locks do).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import math
import re
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError

from slurmlink.core.errors import SlurmlinkError

log = logging.getLogger(__name__)

CHECKIN_PRESETS: dict[str, str] = {
    "egi-production": "https://aai.egi.eu/auth/realms/egi",
    "egi-demo": "https://aai-demo.egi.eu/auth/realms/egi",
    "egi-development": "https://aai-dev.egi.eu/auth/realms/egi",
}

# Symmetric algorithms are never acceptable: the "secret" would be the issuer's public key (alg confusion).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"})
_RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_CURVES = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
MIN_RSA_BITS = 2048

MAX_TOKEN_BYTES = 8 * 1024  # Check-in ATs are ~1.4 KB; anything far larger is abuse, refused before parsing
MAX_RESPONSE_BYTES = 512 * 1024  # cap on discovery/JWKS/userinfo/introspection bodies
DISCOVERY_MAX_AGE_SECONDS = 3600.0
FAILURE_BACKOFF_SECONDS = 1.0  # after a failed JWKS/discovery fetch, queued callers fail fast instead of retrying
REQUIRED_CLAIMS = ("iss", "sub", "exp", "iat")
# Signed into the access token: what userinfo/introspection says must not override them.
_PROTECTED_CLAIMS = frozenset({"iss", "sub", "exp", "iat", "nbf", "aud", "jti", "active"})
# Keycloak stamps a `typ` claim; ID and refresh tokens are signed by the same realm keys and must not pass as ATs.
_ACCESS_TOKEN_TYPES = frozenset({"bearer", "at+jwt", "application/at+jwt"})
_HEADER_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 b64token: no spaces, controls or non-ASCII
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_LOOPBACK_HOSTS = frozenset({"localhost"})


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


class TokenRejected(SlurmlinkError):
    """The token does not authenticate anyone. `reason` is a short machine code (see `REASONS`), `message` a
    sentence a person can act on; neither ever contains the token."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message, reason, transient=reason in TRANSIENT_REASONS)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


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

    def __post_init__(self) -> None:
        object.__setattr__(self, "algorithms", tuple(self.algorithms))  # a list from YAML would stay mutable
        _check_url(self.issuer, "issuer")
        if self.discovery_url is not None:
            _check_url(self.discovery_url, "discovery_url")
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


def _check_url(url: str, what: str) -> None:
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


class _IssuerState:
    """Per-issuer caches and the lock that keeps one discovery/JWKS fetch in flight."""

    def __init__(self, cfg: IssuerConfig) -> None:
        self.cfg = cfg
        self.lock = asyncio.Lock()
        self.metadata: dict[str, Any] | None = None
        self.metadata_at = -math.inf
        self.metadata_failed_at = -math.inf
        self.keys: dict[str | None, dict[str, jwt.PyJWK]] = {}  # kid -> algorithm -> key
        self.keys_at = -math.inf  # last successful JWKS fetch
        self.keys_attempt_at = -math.inf  # last JWKS fetch attempt: the refetch cooldown counts from here
        self.keys_failed_at = -math.inf
        self.last_error = ""


class TokenValidator:
    """Validates bearer tokens (without the `Bearer ` prefix) against the pinned issuers.

    `clock` is wall-clock epoch seconds (token times are compared with it); `http` may be shared, it is then
    not closed here. Counters of HTTP calls made (`discovery_calls`, `jwks_calls`, `userinfo_calls`,
    `introspection_calls`, sum `http_calls`) and `cache_hits` are plain attributes, for tests and metrics.
    """

    def __init__(self, issuers: list[IssuerConfig], http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time, *, max_token_bytes: int = MAX_TOKEN_BYTES,
                 cache_max_entries: int = 10_000) -> None:
        if not issuers:
            raise ValueError("pin at least one issuer")
        self._states: dict[str, _IssuerState] = {}
        for cfg in issuers:
            if cfg.issuer in self._states:
                raise ValueError(f"issuer {cfg.issuer} is configured twice")
            self._states[cfg.issuer] = _IssuerState(cfg)
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False,
                                               headers={"User-Agent": "slurmlink-token-validator"})
        self._clock = clock
        self._max_token_bytes = max_token_bytes
        self._cache_max = cache_max_entries
        # token hash -> (identity, cached until, token expiry when known: opaque tokens via userinfo have none)
        self._cache: OrderedDict[str, tuple[Identity, float, float | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Identity]] = {}
        self.discovery_calls = 0
        self.jwks_calls = 0
        self.userinfo_calls = 0
        self.introspection_calls = 0
        self.cache_hits = 0

    @property
    def http_calls(self) -> int:
        return self.discovery_calls + self.jwks_calls + self.userinfo_calls + self.introspection_calls

    @property
    def issuers(self) -> list[IssuerConfig]:
        return [s.cfg for s in self._states.values()]

    async def token_endpoint(self, issuer: str) -> str:
        """The token endpoint of a pinned issuer (from its discovery document); TokenRejected otherwise."""
        state = self._states.get(issuer)
        if state is None:
            raise TokenRejected("unknown_issuer", f"Issuer {_show(issuer)} is not pinned.")
        return await self._endpoint(state, "token_endpoint", "issuer_unavailable")

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> TokenValidator:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def warm_up(self) -> dict[str, str | None]:
        """Fetch discovery and JWKS of every issuer now (e.g. at start-up): issuer -> error message or None."""
        result: dict[str, str | None] = {}
        for state in self._states.values():
            try:
                async with state.lock:
                    await self._refresh_keys(state)
                result[state.cfg.issuer] = None
            except TokenRejected as exc:
                result[state.cfg.issuer] = exc.message
        return result

    async def validate(self, token: str) -> Identity:
        """The identity `token` proves, or `TokenRejected`."""
        _check_shape(token, self._max_token_bytes)
        token_hash = hashlib.sha256(token.encode("ascii")).hexdigest()
        now = self._clock()
        cached = self._cache_get(token_hash, now)
        if cached is not None:
            self.cache_hits += 1
            identity, exp = cached
            if exp is not None:
                _check_remaining(self._states[identity.issuer].cfg, exp, now)
            return identity
        # One validation in flight per token: concurrent requests with the same cold token share its result.
        pending = self._inflight.get(token_hash)
        if pending is None:
            pending = asyncio.ensure_future(self._validate_cold(token, token_hash))
            self._inflight[token_hash] = pending
            pending.add_done_callback(lambda done: self._settle(token_hash, done))
        return await asyncio.shield(pending)

    def _settle(self, token_hash: str, done: asyncio.Future[Identity]) -> None:
        if self._inflight.get(token_hash) is done:
            del self._inflight[token_hash]
        if not done.cancelled():
            done.exception()  # retrieved, so an unawaited rejection is not reported as "never retrieved"

    async def _validate_cold(self, token: str, token_hash: str) -> Identity:
        try:
            if _looks_like_jwt(token):
                identity, exp = await self._validate_jwt(token, token_hash)
            else:
                identity, exp = await self._validate_opaque(token, token_hash)
        except TokenRejected:
            raise
        except Exception:
            # A bug must not turn into acceptance, nor into a 500 that leaks details: refuse, keep the trace.
            log.exception("token validation failed unexpectedly")
            raise TokenRejected("internal_error", "The token could not be checked because of an internal "
                                "error; try again, and report it if it persists.") from None
        self._cache_put(identity, self._states[identity.issuer].cfg, exp)
        return identity

    # --- JWT access tokens ---------------------------------------------------------------------------------

    async def _validate_jwt(self, token: str, token_hash: str) -> tuple[Identity, float | None]:
        header, unverified = _split_jwt(token)
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in ASYMMETRIC_ALGORITHMS:
            raise TokenRejected("alg_not_allowed", f"Tokens signed with {_show(alg)} are never accepted; "
                                "only asymmetric signatures (RS*, PS*, ES*, EdDSA) from a pinned issuer are.")
        if "crit" in header:
            raise TokenRejected("malformed", "The token header lists critical extensions this service does not "
                                "implement.")
        iss = unverified.get("iss")
        if iss is None:
            raise _missing("iss")
        state = self._states.get(iss) if isinstance(iss, str) else None
        if state is None:  # decided before any network call: an unpinned issuer is never contacted
            raise TokenRejected("unknown_issuer", f"The token's issuer {_show(iss)} is not one this service "
                                f"trusts (pinned: {', '.join(self._states)}); get a token from a pinned issuer.")
        cfg = state.cfg
        if alg not in cfg.algorithms:
            raise TokenRejected("alg_not_allowed", f"Issuer {cfg.issuer} is configured to sign with "
                                f"{', '.join(cfg.algorithms)}, the token uses {alg}.")
        _check_token_type(header, unverified)
        kid = header.get("kid")
        if kid is not None and (not isinstance(kid, str) or len(kid) > 256):
            raise TokenRejected("malformed", "The token header's key id (kid) is not a short string.")
        key = await self._signing_key(state, kid, alg)
        claims = _verify(token, key, alg, cfg)
        now = self._clock()
        exp = _check_times(cfg, claims, now)
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub:
            raise _invalid("sub", "a non-empty string")
        extra = await self._issuer_claims(state, token, sub)
        return _identity(cfg, claims, extra, exp, token_hash), exp

    async def _signing_key(self, state: _IssuerState, kid: str | None, alg: str) -> jwt.PyJWK:
        cfg = state.cfg
        if self._clock() - state.keys_at < cfg.jwks_max_age_seconds:
            key = _lookup(state, kid, alg)
            if key is not None:
                return key
        async with state.lock:  # one JWKS fetch in flight per issuer; waiters reuse its result
            now = self._clock()
            if now - state.keys_at < cfg.jwks_max_age_seconds:
                key = _lookup(state, kid, alg)
                if key is not None:
                    return key
                if now - state.keys_attempt_at < cfg.jwks_refetch_cooldown_seconds:
                    raise _unknown_key(cfg, kid)  # an unknown-kid storm costs at most one fetch per cooldown
            elif now - state.keys_failed_at < FAILURE_BACKOFF_SECONDS:
                raise TokenRejected("issuer_unavailable", state.last_error)
            await self._refresh_keys(state)
            key = _lookup(state, kid, alg)
            if key is None:
                raise _unknown_key(cfg, kid)
            return key

    async def _refresh_keys(self, state: _IssuerState) -> None:
        """Fetch the JWKS (and discovery if needed). Caller holds `state.lock`."""
        cfg = state.cfg
        state.keys_attempt_at = self._clock()
        try:
            metadata = await self._metadata_locked(state)
            self.jwks_calls += 1
            body = await self._get_ok(cfg, metadata["jwks_uri"], "issuer_unavailable", f"JWKS of {cfg.issuer}")
            keys = _usable_keys(_json_object(body, "issuer_unavailable", f"JWKS of {cfg.issuer}"), cfg.algorithms)
            if not keys:
                raise _unavailable(cfg, "its JWKS holds no key usable with the allowed algorithms")
        except TokenRejected as exc:
            state.keys_failed_at = self._clock()
            state.last_error = exc.message
            log.warning("JWKS fetch for %s failed: %s", cfg.issuer, exc.message)
            raise
        state.keys = keys
        state.keys_at = self._clock()

    async def _metadata(self, state: _IssuerState) -> dict[str, Any]:
        if state.metadata is not None and self._clock() - state.metadata_at < DISCOVERY_MAX_AGE_SECONDS:
            return state.metadata
        async with state.lock:
            return await self._metadata_locked(state)

    async def _metadata_locked(self, state: _IssuerState) -> dict[str, Any]:
        cfg = state.cfg
        now = self._clock()
        if state.metadata is not None and now - state.metadata_at < DISCOVERY_MAX_AGE_SECONDS:
            return state.metadata
        if now - state.metadata_failed_at < FAILURE_BACKOFF_SECONDS:
            if state.metadata is not None:
                return state.metadata
            raise TokenRejected("issuer_unavailable", state.last_error)
        try:
            self.discovery_calls += 1
            what = f"discovery of {cfg.issuer}"
            metadata = _json_object(await self._get_ok(cfg, cfg.metadata_url, "issuer_unavailable", what),
                                    "issuer_unavailable", what)
            if metadata.get("issuer") != cfg.issuer:  # OIDC Discovery §4.3: must be exactly the pinned issuer
                raise _unavailable(cfg, f"its discovery document names issuer {_show(metadata.get('issuer'))}")
            if not isinstance(metadata.get("jwks_uri"), str):
                raise _unavailable(cfg, "its discovery document has no jwks_uri")
        except TokenRejected as exc:
            state.metadata_failed_at = self._clock()
            state.last_error = exc.message
            if state.metadata is not None:  # endpoints rarely move: keep the old document, keys stay fresh anyway
                log.warning("discovery refresh for %s failed, keeping the previous one: %s", cfg.issuer, exc.message)
                return state.metadata
            raise
        state.metadata = metadata
        state.metadata_at = self._clock()
        return metadata

    # --- userinfo / introspection ----------------------------------------------------------------------------

    async def _issuer_claims(self, state: _IssuerState, token: str, sub: str) -> dict[str, Any]:
        """Claims only the issuer's endpoints release (entitlements); its subject must be the token's."""
        cfg = state.cfg
        if cfg.introspects:
            extra = await self._introspect(state, token)
        elif cfg.userinfo:
            extra = await self._userinfo(state, token)
        else:
            return {}
        if extra.get("sub") is not None and extra["sub"] != sub:
            raise TokenRejected("subject_mismatch", f"Issuer {cfg.issuer} describes a different user than the "
                                "token names; refusing both.")
        return extra

    async def _userinfo(self, state: _IssuerState, token: str) -> dict[str, Any]:
        cfg = state.cfg
        what = f"userinfo of {cfg.issuer}"
        url = await self._endpoint(state, "userinfo_endpoint", "userinfo_failed")
        self.userinfo_calls += 1
        status, body = await self._request(cfg, "GET", url, "userinfo_failed", what,
                                           headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        if status in (401, 403):
            raise TokenRejected("inactive", f"Issuer {cfg.issuer} no longer accepts this token (revoked, logged out "
                                "or expired there); get a new one.")
        if status != 200:
            raise TokenRejected("userinfo_failed", f"The {what} answered HTTP {status}; try again later.")
        claims = _json_object(body, "userinfo_failed", what)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenRejected("userinfo_failed", f"The {what} answered without a subject (sub).")
        return claims

    async def _introspect(self, state: _IssuerState, token: str) -> dict[str, Any]:
        cfg = state.cfg
        assert cfg.client_id is not None and cfg.client_secret is not None  # for mypy: introspects guarantees it
        what = f"introspection at {cfg.issuer}"
        url = await self._endpoint(state, "introspection_endpoint", "introspection_failed")
        # RFC 6749 §2.3.1: client_secret_basic form-encodes id and secret before base64.
        pair = f"{urllib.parse.quote(cfg.client_id, safe='')}:{urllib.parse.quote(cfg.client_secret, safe='')}"
        headers = {"Authorization": "Basic " + base64.b64encode(pair.encode()).decode(), "Accept": "application/json"}
        self.introspection_calls += 1
        status, body = await self._request(cfg, "POST", url, "introspection_failed", what, headers=headers,
                                           data={"token": token, "token_type_hint": "access_token"})
        if status in (400, 401, 403):
            raise TokenRejected("introspection_failed", f"The {what} refused this service's client credentials "
                                f"(HTTP {status}); the operator must fix client_id/client_secret.")
        if status != 200:
            raise TokenRejected("introspection_failed", f"The {what} answered HTTP {status}; try again later.")
        result = _json_object(body, "introspection_failed", what)
        if result.get("active") is not True:
            raise TokenRejected("inactive", f"Issuer {cfg.issuer} reports this token as not active (revoked or "
                                "expired); get a new one.")
        if result.get("iss") is not None and result["iss"] != cfg.issuer:
            raise TokenRejected("introspection_failed", f"The {what} reports issuer {_show(result['iss'])}.")
        return result

    async def _endpoint(self, state: _IssuerState, name: str, reason: str) -> str:
        try:
            metadata = await self._metadata(state)
        except TokenRejected as exc:
            raise TokenRejected(reason, exc.message) from None
        url = metadata.get(name)
        if not isinstance(url, str):
            raise TokenRejected(reason, f"Issuer {state.cfg.issuer} publishes no {name}.")
        return url

    # --- opaque tokens ---------------------------------------------------------------------------------------

    async def _validate_opaque(self, token: str, token_hash: str) -> tuple[Identity, float | None]:
        """An opaque token names no issuer: ask each pinned issuer that takes opaque tokens, in configured
        order, and take the first that vouches for it. With several issuers this shows the token to each."""
        candidates = [s for s in self._states.values()
                      if s.cfg.accept_opaque and (s.cfg.introspects or s.cfg.userinfo)]
        if not candidates:
            raise TokenRejected("malformed", "The token is not a JWT, and no pinned issuer is configured to check "
                                "opaque tokens.")
        failure: TokenRejected | None = None
        for state in candidates:
            try:
                return await self._validate_opaque_at(state, token, token_hash)
            except TokenRejected as exc:
                if failure is None or failure.reason == "inactive":
                    failure = exc  # an outage says more than "not mine"
        assert failure is not None  # candidates is not empty
        raise failure

    async def _validate_opaque_at(self, state: _IssuerState, token: str, token_hash: str
                                  ) -> tuple[Identity, float | None]:
        cfg = state.cfg
        now = self._clock()
        if cfg.introspects:
            claims = await self._introspect(state, token)
            exp = _number(claims, "exp")
            if exp is not None:
                _check_expiry(cfg, exp, now)
        else:
            claims = await self._userinfo(state, token)
            exp = None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise _invalid("sub", "a non-empty string")
        claims = {k: v for k, v in claims.items() if k != "active"}
        claims["iss"] = cfg.issuer
        # Without introspection the lifetime is unknown: the identity lasts as long as its cache entry.
        expires_at = exp if exp is not None else now + cfg.claims_cache_ttl_seconds
        return _identity(cfg, claims, {}, expires_at, token_hash), exp

    # --- HTTP ------------------------------------------------------------------------------------------------

    async def _get_ok(self, cfg: IssuerConfig, url: str, reason: str, what: str) -> bytes:
        status, body = await self._request(cfg, "GET", url, reason, what, headers={"Accept": "application/json"})
        if status != 200:
            raise TokenRejected(reason, f"The {what} answered HTTP {status}; try again later.")
        return body

    async def _request(self, cfg: IssuerConfig, method: str, url: str, reason: str, what: str, *,
                       headers: dict[str, str], data: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One HTTP exchange bounded in total time (not only per socket operation) and in body size."""
        try:
            async with asyncio.timeout(cfg.timeout_seconds):
                async with self._http.stream(method, url, headers=headers, data=data, timeout=cfg.timeout_seconds,
                                             follow_redirects=False) as response:
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_RESPONSE_BYTES:
                            raise TokenRejected(reason, f"The {what} answered with more than "
                                                f"{MAX_RESPONSE_BYTES} bytes.")
                    return response.status_code, bytes(body)
        except TimeoutError:
            raise TokenRejected(reason, f"The {what} did not answer within {cfg.timeout_seconds:g} s; "
                                "try again later.") from None
        except httpx.HTTPError as exc:
            raise TokenRejected(reason, f"The {what} could not be reached ({type(exc).__name__}); "
                                "try again later.") from None

    # --- cache -----------------------------------------------------------------------------------------------

    def _cache_get(self, token_hash: str, now: float) -> tuple[Identity, float | None] | None:
        entry = self._cache.get(token_hash)
        if entry is None:
            return None
        identity, until, exp = entry
        if now >= until:
            del self._cache[token_hash]
            return None
        self._cache.move_to_end(token_hash)
        return identity, exp

    def _cache_put(self, identity: Identity, cfg: IssuerConfig, exp: float | None) -> None:
        now = self._clock()
        until = min(identity.expires_at, now + cfg.claims_cache_ttl_seconds)  # never outlives the token
        if until <= now:
            return
        self._cache[identity.token_hash] = (identity, until, exp)
        self._cache.move_to_end(identity.token_hash)
        while len(self._cache) > self._cache_max:
            self._cache.popitem(last=False)


# --- pure helpers ------------------------------------------------------------------------------------------


def _check_shape(token: object, max_bytes: int) -> None:
    if not isinstance(token, str) or not token:
        raise TokenRejected("malformed", "No token was given.")
    if len(token) > max_bytes:
        raise TokenRejected("too_large", f"The token is longer than {max_bytes} bytes; no issuer this service "
                            "trusts issues such tokens.")
    if not _TOKEN68.fullmatch(token):
        raise TokenRejected("malformed", "The token contains characters a bearer token cannot contain "
                            "(spaces, controls or non-ASCII); send it without the 'Bearer ' prefix or quotes.")


def _looks_like_jwt(token: str) -> bool:
    # `eyJ` is base64url of `{"`. Opaque tokens (MITREid, Google's ya29.x) start otherwise and rarely have 2 dots.
    return token.startswith("eyJ") or token.count(".") == 2


def _split_jwt(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
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


def _json_object(body: bytes, reason: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise TokenRejected(reason, f"The {what} answered with something that is not JSON; try again later.") from None
    if not isinstance(value, dict):
        raise TokenRejected(reason, f"The {what} answered with JSON that is not an object.")
    return value


def _check_token_type(header: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
    for value, allowed in ((header.get("typ"), _HEADER_TYPES), (payload.get("typ"), _ACCESS_TOKEN_TYPES)):
        if value is not None and (not isinstance(value, str) or value.lower() not in allowed):
            raise TokenRejected("wrong_token_type", f"This is a {_show(value)} token, not an access token; send the "
                                "access token, not the ID or refresh token.")


def _algorithms_for(jwk: Mapping[str, Any], allowed: tuple[str, ...]) -> list[str]:
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


def _usable_keys(jwks: Mapping[str, Any], allowed: tuple[str, ...]) -> dict[str | None, dict[str, jwt.PyJWK]]:
    """Pre-built verification keys, each bound to one algorithm so a token cannot pick another."""
    keys: dict[str | None, dict[str, jwt.PyJWK]] = {}
    entries = jwks.get("keys")
    for jwk in entries if isinstance(entries, list) else []:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        for alg in _algorithms_for(jwk, allowed):
            try:
                key = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError:
                continue
            if jwk.get("kty") == "RSA" and getattr(key.key, "key_size", 0) < MIN_RSA_BITS:
                continue
            keys.setdefault(kid, {})[alg] = key
    return keys


def _lookup(state: _IssuerState, kid: str | None, alg: str) -> jwt.PyJWK | None:
    if kid is None:
        if len(state.keys) != 1:
            raise TokenRejected("unknown_key", f"The token names no signing key (kid) and issuer {state.cfg.issuer} "
                                "has several.")
        by_alg = next(iter(state.keys.values()))
    else:
        found = state.keys.get(kid)
        if found is None:
            return None
        by_alg = found
    key = by_alg.get(alg)
    if key is None:
        raise TokenRejected("alg_not_allowed", f"The issuer's key {_show(kid)} does not sign with {alg}.")
    return key


def _verify(token: str, key: jwt.PyJWK, alg: str, cfg: IssuerConfig) -> dict[str, Any]:
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
            raise _wrong_audience(cfg) from None
        raise _missing(exc.claim) from None
    except jwt.InvalidAudienceError:
        raise _wrong_audience(cfg) from None
    except jwt.InvalidAlgorithmError:
        raise TokenRejected("alg_not_allowed", "The token's algorithm does not match the issuer's key.") from None
    except jwt.InvalidIssuerError:
        raise TokenRejected("unknown_issuer", "The token's issuer is not a pinned issuer.") from None
    except (InvalidSubjectError, InvalidJTIError):
        raise TokenRejected("invalid_claim", "The token's sub or jti claim is not a string.") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected("malformed", f"The token could not be decoded ({type(exc).__name__}).") from None
    return dict(decoded["payload"])


def _check_times(cfg: IssuerConfig, claims: Mapping[str, Any], now: float) -> float:
    exp = _number(claims, "exp")
    iat = _number(claims, "iat")
    nbf = _number(claims, "nbf")
    assert exp is not None and iat is not None  # required by _verify
    if iat > now + cfg.leeway_seconds:
        raise TokenRejected("not_yet_valid", "The token says it was issued in the future (iat); check the clocks "
                            "of this service and the issuer.")
    if nbf is not None and nbf > now + cfg.leeway_seconds:
        raise TokenRejected("not_yet_valid", "The token is not valid yet (nbf); try again later or check clocks.")
    _check_expiry(cfg, exp, now)
    return exp


def _check_expiry(cfg: IssuerConfig, exp: float, now: float) -> None:
    if exp <= now - cfg.leeway_seconds:
        raise TokenRejected("expired", "The token has expired; get a new access token (e.g. with your refresh "
                            "token) and try again.")
    _check_remaining(cfg, exp, now)


def _check_remaining(cfg: IssuerConfig, exp: float, now: float) -> None:
    if cfg.min_lifetime_seconds and exp - now < cfg.min_lifetime_seconds:
        raise TokenRejected("expires_soon", f"The token expires in under {cfg.min_lifetime_seconds} s, which this "
                            "service requires it to outlive; get a fresh access token.")


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(name, "a number of seconds since the epoch")
    return float(value)


def _identity(cfg: IssuerConfig, token_claims: Mapping[str, Any], extra: Mapping[str, Any], expires_at: float,
              token_hash: str) -> Identity:
    merged = dict(token_claims)
    merged.update({k: v for k, v in extra.items() if k not in _PROTECTED_CLAIMS})  # issuer's view of the user wins
    key = merged.get(cfg.user_key_claim)
    if key is None:
        key = merged["sub"]
    elif not isinstance(key, str) or not key:
        raise _invalid(cfg.user_key_claim, "a non-empty string")
    return Identity(issuer=cfg.issuer, subject=merged["sub"], user_key=key, claims=_freeze(merged),
                    expires_at=expires_at, token_hash=token_hash)


def _freeze(value: Any) -> Any:
    # The cached identity is shared by every request with this token: no caller may change it for the next.
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _show(value: object) -> str:
    """An attacker-chosen value, made safe for messages and logs."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _missing(claim: str) -> TokenRejected:
    return TokenRejected("missing_claim", f"The token has no {claim!r} claim, which this service requires.")


def _invalid(claim: str, expected: str) -> TokenRejected:
    return TokenRejected("invalid_claim", f"The token's {claim!r} claim is not {expected}.")


def _wrong_audience(cfg: IssuerConfig) -> TokenRejected:
    return TokenRejected("wrong_audience", f"The token is not meant for this service (audience {cfg.audience!r} "
                         "required); get one for it, e.g. by token exchange at the issuer.")


def _unknown_key(cfg: IssuerConfig, kid: str | None) -> TokenRejected:
    return TokenRejected("unknown_key", f"The token is signed with key {_show(kid)}, which issuer {cfg.issuer} "
                         "does not publish; if the issuer just rotated keys, try again in a minute.")


def _unavailable(cfg: IssuerConfig, why: str) -> TokenRejected:
    return TokenRejected("issuer_unavailable", f"Issuer {cfg.issuer} cannot be used: {why}.")
