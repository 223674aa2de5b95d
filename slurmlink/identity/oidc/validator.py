"""`TokenValidator`: a bearer token in, an `Identity` or a `TokenRejected` out.

A JWT access token is checked offline (signature against the issuer's cached JWKS, per-issuer asymmetric
algorithm allow-list, exact `iss`, required `sub`, `exp`, `iat`, optional audience and minimum remaining
lifetime); claims Check-in releases only at userinfo or introspection (`eduperson_entitlement`) are then fetched
from there. A token is a JWT if it starts with `eyJ` or has exactly two dots; any other token is opaque and goes
to userinfo/introspection of the pinned issuers that accept opaque tokens, in configured order, first acceptance
wins (exact with one pinned issuer, the usual deployment; with several, the token is shown to each until one
vouches for it).

Results are cached per sha256(token) until the token expires or the issuer's TTL ends, whichever is sooner.
Every failure, timeout included, is a `TokenRejected` with a short reason code: nothing fails open.
One validator belongs to one event loop (its HTTP pool and locks do).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

import httpx

from . import jwt_checks
from .cache import IdentityCache
from .claims import introspect, issuer_claims, userinfo
from .discovery import IssuerClient
from .errors import TokenRejected, missing_claim, show
from .http import CallCounts
from .identity import Identity, build_identity
from .issuer import IssuerConfig
from .jwt_checks import MAX_TOKEN_BYTES

log = logging.getLogger(__name__)


class TokenValidator:
    """Validates bearer tokens (without the `Bearer ` prefix) against the pinned issuers.

    `clock` is wall-clock epoch seconds (token times are compared with it); `http` may be shared, it is then
    not closed here. Counters of HTTP calls made (`discovery_calls`, `jwks_calls`, `userinfo_calls`,
    `introspection_calls`, sum `http_calls`) and `cache_hits` are there for tests and metrics.
    """

    def __init__(self, issuers: list[IssuerConfig], http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time, *, max_token_bytes: int = MAX_TOKEN_BYTES,
                 cache_max_entries: int = 10_000) -> None:
        if not issuers:
            raise ValueError("pin at least one issuer")
        pinned = [cfg.issuer for cfg in issuers]
        twice = [issuer for issuer in pinned if pinned.count(issuer) > 1]
        if twice:
            raise ValueError(f"issuer {twice[0]} is configured twice")
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(follow_redirects=False,
                                               headers={"User-Agent": "slurmlink-token-validator"})
        self._clock = clock
        self._counts = CallCounts()
        self._clients: dict[str, IssuerClient] = {}
        for cfg in issuers:
            self._clients[cfg.issuer] = IssuerClient(cfg, self._http, clock, self._counts)
        self._max_token_bytes = max_token_bytes
        self._cache = IdentityCache(cache_max_entries)
        self._inflight: dict[str, asyncio.Future[Identity]] = {}
        self.cache_hits = 0

    @property
    def discovery_calls(self) -> int:
        return self._counts.discovery

    @property
    def jwks_calls(self) -> int:
        return self._counts.jwks

    @property
    def userinfo_calls(self) -> int:
        return self._counts.userinfo

    @property
    def introspection_calls(self) -> int:
        return self._counts.introspection

    @property
    def http_calls(self) -> int:
        return self.discovery_calls + self.jwks_calls + self.userinfo_calls + self.introspection_calls

    @property
    def issuers(self) -> list[IssuerConfig]:
        return [c.cfg for c in self._clients.values()]

    async def token_endpoint(self, issuer: str) -> str:
        """The token endpoint of a pinned issuer (from its discovery document); TokenRejected otherwise."""
        client = self._clients.get(issuer)
        if client is None:
            raise TokenRejected("unknown_issuer", f"Issuer {show(issuer)} is not pinned.")
        return await client.endpoint("token_endpoint", "issuer_unavailable")

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
        for client in self._clients.values():
            try:
                await client.warm_up()
                result[client.cfg.issuer] = None
            except TokenRejected as exc:
                result[client.cfg.issuer] = exc.message
        return result

    async def validate(self, token: str, *, max_age: float | None = None) -> Identity:
        """The identity `token` proves, or `TokenRejected`. `max_age`: take a cached identity only if it was
        validated at most this many seconds ago, else ask the issuer again (prompt revocation, at its cost)."""
        jwt_checks.check_shape(token, self._max_token_bytes)
        token_hash = hashlib.sha256(token.encode("ascii")).hexdigest()
        now = self._clock()
        cached = self._cache.get(token_hash, now, max_age)
        if cached is not None:
            self.cache_hits += 1
            identity, exp = cached
            if exp is not None:
                jwt_checks.check_remaining(self._clients[identity.issuer].cfg, exp, now)
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
            if jwt_checks.looks_like_jwt(token):
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
        cfg = self._clients[identity.issuer].cfg
        self._cache.put(identity, exp, cfg.claims_cache_ttl_seconds, self._clock())
        return identity

    async def _validate_jwt(self, token: str, token_hash: str) -> tuple[Identity, float | None]:
        header, unverified = jwt_checks.split_jwt(token)
        alg = jwt_checks.header_algorithm(header)
        iss = unverified.get("iss")
        if iss is None:
            raise missing_claim("iss")
        client = self._clients.get(iss) if isinstance(iss, str) else None
        if client is None:  # decided before any network call: an unpinned issuer is never contacted
            raise TokenRejected("unknown_issuer", f"The token's issuer {show(iss)} is not one this service "
                                f"trusts (pinned: {', '.join(self._clients)}); get a token from a pinned issuer.")
        cfg = client.cfg
        kid = jwt_checks.check_issuer_rules(cfg, alg, header, unverified)
        key = await client.signing_key(kid, alg)
        claims = jwt_checks.verify(token, key, alg, cfg)
        exp = jwt_checks.check_times(cfg, claims, self._clock())
        sub = jwt_checks.subject(claims)
        extra = await issuer_claims(client, token, sub)
        return build_identity(cfg, claims, extra, exp, token_hash), exp

    async def _validate_opaque(self, token: str, token_hash: str) -> tuple[Identity, float | None]:
        """An opaque token names no issuer: ask each pinned issuer that takes opaque tokens, in configured
        order, and take the first that vouches for it. With several issuers this shows the token to each."""
        candidates = [c for c in self._clients.values()
                      if c.cfg.accept_opaque and (c.cfg.introspects or c.cfg.userinfo)]
        if not candidates:
            raise TokenRejected("malformed", "The token is not a JWT, and no pinned issuer is configured to check "
                                "opaque tokens.")
        failure: TokenRejected | None = None
        for client in candidates:
            try:
                return await self._validate_opaque_at(client, token, token_hash)
            except TokenRejected as exc:
                if failure is None or failure.reason == "inactive":
                    failure = exc  # an outage says more than "not mine"
        assert failure is not None  # candidates is not empty
        raise failure

    async def _validate_opaque_at(self, client: IssuerClient, token: str, token_hash: str
                                  ) -> tuple[Identity, float | None]:
        cfg = client.cfg
        now = self._clock()
        if cfg.introspects:
            claims = await introspect(client, token)
            exp = jwt_checks.number(claims, "exp")
            iat = jwt_checks.number(claims, "iat")
            if exp is not None and iat is not None:
                jwt_checks.check_lifetime(cfg, exp, iat)
            if exp is not None:
                jwt_checks.check_expiry(cfg, exp, now)
        else:
            claims = await userinfo(client, token)
            exp = None
        jwt_checks.subject(claims)
        claims = {k: v for k, v in claims.items() if k != "active"}
        claims["iss"] = cfg.issuer
        # Without introspection the lifetime is unknown: the identity lasts as long as its cache entry.
        expires_at = exp if exp is not None else now + cfg.claims_cache_ttl_seconds
        return build_identity(cfg, claims, {}, expires_at, token_hash), exp
