"""One pinned issuer's discovery document and signing keys, fetched on demand and cached.

Trust starts from configuration only: discovery and JWKS are fetched for pinned issuers, never for the `iss`
an unverified token claims. One fetch is in flight per issuer; after a failure, queued callers fail fast for
`FAILURE_BACKOFF_SECONDS` instead of retrying, and an unknown `kid` refetches at most once per cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from typing import Any

import httpx
import jwt

from .errors import TokenRejected, show, unavailable, unknown_key
from .http import CallCounts, exchange, get_json
from .issuer import IssuerConfig
from .keys import KeySet, lookup, usable_keys

log = logging.getLogger(__name__)

DISCOVERY_MAX_AGE_SECONDS = 3600.0
FAILURE_BACKOFF_SECONDS = 1.0  # after a failed JWKS/discovery fetch, queued callers fail fast instead of retrying


class IssuerClient:
    """Discovery and JWKS of one issuer, and authenticated calls to its other endpoints (`request`)."""

    def __init__(self, cfg: IssuerConfig, http: httpx.AsyncClient, clock: Callable[[], float],
                 counts: CallCounts) -> None:
        self.cfg = cfg
        self.counts = counts
        self._http = http
        self._clock = clock
        self._lock = asyncio.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = -math.inf
        self._metadata_failed_at = -math.inf
        self._keys: KeySet = {}
        self._keys_at = -math.inf  # last successful JWKS fetch
        self._keys_attempt_at = -math.inf  # last JWKS fetch attempt: the refetch cooldown counts from here
        self._keys_failed_at = -math.inf
        self._last_error = ""

    async def warm_up(self) -> None:
        """Fetch discovery and JWKS now (e.g. at start-up); TokenRejected if that fails."""
        async with self._lock:
            await self._refresh_keys()

    async def signing_key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        cfg = self.cfg
        if self._clock() - self._keys_at < cfg.jwks_max_age_seconds:
            key = lookup(self._keys, cfg.issuer, kid, alg)
            if key is not None:
                return key
        async with self._lock:  # one JWKS fetch in flight per issuer; waiters reuse its result
            now = self._clock()
            if now - self._keys_at < cfg.jwks_max_age_seconds:
                key = lookup(self._keys, cfg.issuer, kid, alg)
                if key is not None:
                    return key
                if now - self._keys_attempt_at < cfg.jwks_refetch_cooldown_seconds:
                    raise unknown_key(cfg.issuer, kid)  # an unknown-kid storm costs at most one fetch per cooldown
            elif now - self._keys_failed_at < FAILURE_BACKOFF_SECONDS:
                raise TokenRejected("issuer_unavailable", self._last_error)
            await self._refresh_keys()
            key = lookup(self._keys, cfg.issuer, kid, alg)
            if key is None:
                raise unknown_key(cfg.issuer, kid)
            return key

    async def endpoint(self, name: str, reason: str) -> str:
        """The URL of endpoint `name` from the discovery document; TokenRejected with `reason` otherwise."""
        try:
            metadata = await self._metadata_cached()
        except TokenRejected as exc:
            raise TokenRejected(reason, exc.message) from None
        url = metadata.get(name)
        if not isinstance(url, str):
            raise TokenRejected(reason, f"Issuer {self.cfg.issuer} publishes no {name}.")
        return url

    async def request(self, method: str, url: str, reason: str, what: str, *, headers: dict[str, str],
                      data: dict[str, str] | None = None) -> tuple[int, bytes]:
        return await exchange(self._http, self.cfg, method, url, reason, what, headers=headers, data=data)

    async def _refresh_keys(self) -> None:
        """Fetch the JWKS (and discovery if needed). Caller holds the lock."""
        cfg = self.cfg
        self._keys_attempt_at = self._clock()
        try:
            metadata = await self._metadata_locked()
            self.counts.jwks += 1
            jwks = await get_json(self._http, cfg, metadata["jwks_uri"], "issuer_unavailable", f"JWKS of {cfg.issuer}")
            keys = usable_keys(jwks, cfg.algorithms)
            if not keys:
                raise unavailable(cfg.issuer, "its JWKS holds no key usable with the allowed algorithms")
        except TokenRejected as exc:
            self._keys_failed_at = self._clock()
            self._last_error = exc.message
            log.warning("JWKS fetch for %s failed: %s", cfg.issuer, exc.message)
            raise
        self._keys = keys
        self._keys_at = self._clock()

    async def _metadata_cached(self) -> dict[str, Any]:
        if self._metadata is not None and self._clock() - self._metadata_at < DISCOVERY_MAX_AGE_SECONDS:
            return self._metadata
        async with self._lock:
            return await self._metadata_locked()

    async def _metadata_locked(self) -> dict[str, Any]:
        now = self._clock()
        if self._metadata is not None and now - self._metadata_at < DISCOVERY_MAX_AGE_SECONDS:
            return self._metadata
        if now - self._metadata_failed_at < FAILURE_BACKOFF_SECONDS:
            if self._metadata is not None:
                return self._metadata
            raise TokenRejected("issuer_unavailable", self._last_error)
        try:
            metadata = await self._fetch_metadata()
        except TokenRejected as exc:
            self._metadata_failed_at = self._clock()
            self._last_error = exc.message
            if self._metadata is not None:  # endpoints rarely move: keep the old document, keys stay fresh anyway
                log.warning("discovery refresh for %s failed, keeping the previous one: %s",
                            self.cfg.issuer, exc.message)
                return self._metadata
            raise
        self._metadata = metadata
        self._metadata_at = self._clock()
        return metadata

    async def _fetch_metadata(self) -> dict[str, Any]:
        cfg = self.cfg
        self.counts.discovery += 1
        metadata = await get_json(self._http, cfg, cfg.metadata_url, "issuer_unavailable", f"discovery of {cfg.issuer}")
        if metadata.get("issuer") != cfg.issuer:  # OIDC Discovery §4.3: must be exactly the pinned issuer
            raise unavailable(cfg.issuer, f"its discovery document names issuer {show(metadata.get('issuer'))}")
        if not isinstance(metadata.get("jwks_uri"), str):
            raise unavailable(cfg.issuer, "its discovery document has no jwks_uri")
        return metadata
