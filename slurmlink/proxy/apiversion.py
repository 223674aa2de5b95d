"""The slurmrestd API version the proxy speaks itself (its health check, job lookups, capacity).

Configured (`api_version: v0.0.42`), or with `auto` (the default) the newest version that both the site's
slurmrestd offers in its OpenAPI document and slurmlink supports: read at the first need, read again
after slurmrestd was unreachable or no longer knew the version, and every `recheck_seconds` (an upgrade
that adds versions breaks nothing, so only time shows it), so that a SLURM upgrade under a running proxy
is followed. Clients' own requests name their version in the path and are not affected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import httpx

from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.slurm_token import SlurmTokenError
from slurmlink.slurm import rest_shapes
from slurmlink.slurm.base import SlurmError

log = logging.getLogger("slurmlink.proxy")
AUTO = "auto"
RETRY_SECONDS = 2.0  # after a failed reading, the next need waits this long before asking again


class ApiVersion:
    def __init__(self, configured: str, http: httpx.AsyncClient, upstream: str,
                 headers: Callable[[], dict[str, str]], recheck_seconds: float = 300.0) -> None:
        self.configured, self.recheck_seconds = configured, recheck_seconds
        self._read_at = 0.0
        self.http, self.upstream, self.headers = http, upstream, headers  # headers: the SlurmUser's (on 24.11
        # /openapi/v3 needs a token)
        self.version = "" if configured == AUTO else configured
        self.offered: list[str] = []
        self._lock = asyncio.Lock()
        self._failed: tuple[float, Refusal] | None = None

    async def get(self) -> str:
        """The version to use; Refusal (502/503) when slurmrestd cannot say or offers none slurmlink speaks."""
        if self.version and (self.configured != AUTO or time.monotonic() - self._read_at < self.recheck_seconds):
            return self.version
        async with self._lock:
            if not self.version or time.monotonic() - self._read_at >= self.recheck_seconds:
                if self._failed is not None and time.monotonic() - self._failed[0] < RETRY_SECONDS:
                    raise self._failed[1]
                try:
                    self.version = await self._read()
                    self._failed, self._read_at = None, time.monotonic()
                except Refusal as refusal:
                    if self.version:  # a recheck that failed: keep what worked, ask again at the next need
                        retry = min(RETRY_SECONDS, self.recheck_seconds)
                        self._read_at = time.monotonic() - self.recheck_seconds + retry
                        return self.version
                    self._failed = (time.monotonic(), refusal)
                    raise
        return self.version

    def forget(self) -> None:
        """slurmrestd went away or forgot the version: read its offer again at the next need (auto only)."""
        if self.configured == AUTO and self.version:
            log.info("slurmrestd was unreachable or no longer serves %s: reading its API versions again",
                     self.version)
            self.version = ""

    async def _read(self) -> str:
        try:
            answer = await self.http.get(f"{self.upstream}/openapi/v3", headers=self.headers())
            spec = answer.json()
        except SlurmTokenError as exc:
            raise Refusal(503, "ProxyMisconfigured", f"the proxy has no SlurmUser token: {exc}") from None
        except httpx.HTTPError as exc:
            raise Refusal(502, "UpstreamUnreachable", f"slurmrestd is unreachable: {type(exc).__name__}") from None
        except ValueError:
            raise Refusal(502, "UpstreamError",
                          f"slurmrestd's /openapi/v3 answered {answer.status_code} without JSON") from None
        if answer.status_code != 200 or not isinstance(spec, dict):
            raise Refusal(502, "UpstreamError", f"slurmrestd's /openapi/v3 answered {answer.status_code}")
        self.offered = rest_shapes.offered_versions(spec)
        try:
            version = rest_shapes.detect_version(spec)
        except SlurmError as exc:
            log.error("%s; slurmlink speaks %s", exc.message, ", ".join(rest_shapes.SUPPORTED))
            raise Refusal(502, "NoCommonApiVersion", f"{exc.message}; slurmlink speaks "
                          f"{', '.join(rest_shapes.SUPPORTED)}") from None
        if version != self.version:
            log.info("slurmrestd offers %s; the proxy uses %s", ", ".join(self.offered), version)
        return version
