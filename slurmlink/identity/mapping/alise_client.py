"""Client of ALISE (the account linking service), the lookup the `alise` strategy makes."""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import urllib.parse
from collections import OrderedDict
from typing import Any

import httpx

from slurmlink.logs import redact_httpx_query

from .base import MappingError


class AliseClient:
    """Client of ALISE's mapping API (`GET /api/v1/target/{site}/mapping/issuer/{sha1(iss)}/user/{sub}`).

    `lookup()` returns the linked internal username, None when ALISE says `not-mapped`, and raises MappingError
    for everything else: bad apikey, transport errors and timeouts (after bounded retries), 5xx, unexpected
    statuses, and ALISE's habit of answering internal exceptions with HTTP 200 `{"error": ...}`. That last one
    is an error, not a miss: ALISE catches every exception (database unreadable included) that way, so it
    cannot be told apart from "this person linked an account we failed to read".
    Hits are cached for `cache_ttl`, misses for the shorter `miss_ttl` (a user who just linked waits at most
    that long); errors are never cached. A client belongs to one event loop (its connection pool does).
    """

    def __init__(self, base_url: str, site: str, apikey: str, *, timeout: float = 5.0, retries: int = 1,
                 cache_ttl: float = 300.0, miss_ttl: float = 30.0, cache_size: int = 10_000,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"ALISE base URL must be http(s): {base_url!r}")
        if not site or not apikey:
            raise ValueError("ALISE needs a site name and an apikey")
        self.base_url = base_url.rstrip("/")
        self.site = site
        self._apikey = apikey
        self.retries = retries
        self.cache_ttl = cache_ttl
        self.miss_ttl = miss_ttl
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[str, str], tuple[float, str | None]] = OrderedDict()
        redact_httpx_query("apikey")  # ALISE wants the apikey in the query string, which httpx logs
        # No redirects: an apikey must not follow a Location header anywhere.
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False, transport=transport,
                                       headers={"Accept": "application/json"})

    def __repr__(self) -> str:  # never the apikey
        return f"AliseClient({self.base_url!r}, site={self.site!r})"

    def mapping_path(self, issuer: str, subject: str) -> str:
        """The issuer goes as sha1 hex (ALISE's documented alternative to double URL-encoding it). The subject is
        quote_plus()ed and then percent-encoded once more: Starlette decodes the path before ALISE calls
        unquote_plus() on it again, so with a single encoding a '+' or '%' in a subject would be mangled
        (a single encoding only works for subjects like Check-in's `<hex>@egi.eu`)."""
        iss_hash = hashlib.sha1(issuer.encode(), usedforsecurity=False).hexdigest()
        sub = urllib.parse.quote(urllib.parse.quote_plus(subject), safe="")
        return f"/api/v1/target/{urllib.parse.quote(self.site, safe='')}/mapping/issuer/{iss_hash}/user/{sub}"

    async def lookup(self, issuer: str, subject: str) -> str | None:
        key = (issuer, subject)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > time.monotonic():
            self._cache.move_to_end(key)
            return cached[1]
        username = self._interpret(await self._get(self.mapping_path(issuer, subject)), subject)
        ttl = self.cache_ttl if username is not None else self.miss_ttl
        if ttl > 0:
            self._cache[key] = (time.monotonic() + ttl, username)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return username

    async def check(self) -> None:
        """Raise MappingError unless ALISE answers and accepts the apikey (for start-up and health checks)."""
        path = f"/api/v1/target/{urllib.parse.quote(self.site, safe='')}/validate_apikey/" \
               f"{urllib.parse.quote(self._apikey, safe='')}"
        response = await self._get(path, with_key=False)
        if response.status_code != 200 or _json(response).get("apikey") is not True:
            raise MappingError(f"ALISE at {self.base_url} does not accept the configured apikey for site {self.site}")

    def clear_cache(self) -> None:
        self._cache.clear()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, with_key: bool = True) -> httpx.Response:
        params = {"apikey": self._apikey} if with_key else None
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(0.2 * attempt + random.uniform(0, 0.1))  # noqa: S311 - jitter
            try:
                response = await self._http.get(self.base_url + path, params=params)
            except httpx.TimeoutException:
                last = "timed out"
                continue
            except httpx.TransportError as exc:
                last = f"unreachable ({type(exc).__name__})"
                continue
            if response.status_code >= 500:
                last = f"answered HTTP {response.status_code}"
                continue
            return response
        raise MappingError(f"ALISE at {self.base_url} {last}; cannot tell which account is linked, refusing")

    def _interpret(self, response: httpx.Response, subject: str) -> str | None:
        where = f"ALISE at {self.base_url}"
        body = _json(response)
        if response.status_code == 401:
            kinds = {d.get("type") for d in body.get("detail", []) if isinstance(d, dict)} \
                if isinstance(body.get("detail"), list) else set()
            if "not-mapped" in kinds:
                return None
            if "invalid" in kinds:
                raise MappingError(f"{where} rejected the apikey for site {self.site}")
            raise MappingError(f"{where} refused the lookup (HTTP 401)")
        if response.status_code != 200:
            raise MappingError(f"{where} answered HTTP {response.status_code} (check base URL and site)")
        if "error" in body:
            raise MappingError(f"{where} reported an internal error: {str(body['error'])[:200]}")
        internal = body.get("internal")
        username = internal.get("username") if isinstance(internal, dict) else None
        if not isinstance(username, str) or not username:
            # Linked, but no usable internal name (e.g. the internal OP lacks its username_claim): refusing keeps
            # the user off an account other than the one they linked.
            raise MappingError(f"{where} has a linked account for {subject} but no internal username")
        external = body.get("external")
        if isinstance(external, list) and external and not any(
                isinstance(e, dict) and e.get("sub") == subject for e in external):
            raise MappingError(f"{where} answered for a different identity than {subject}")
        return username


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
