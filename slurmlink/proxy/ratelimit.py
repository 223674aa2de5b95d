"""A token bucket per key, for the proxy's rate limits (per mapped user, and refused tokens per address)."""

from __future__ import annotations

import time
from collections import OrderedDict


class RateLimiter:
    """A token bucket per key (the mapped user); bounded in memory."""

    def __init__(self, rate: float, burst: int, max_keys: int = 10_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, key: str, now: float | None = None, *, consume: bool = True) -> float:
        """0 when allowed, otherwise the seconds until a request would be allowed.
        With consume=False only look (is the bucket empty?)."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0 if consume else 0.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
