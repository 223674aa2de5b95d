"""Pure: which projected ServiceAccount tokens a pod has, and when each pod's tokens are due for refresh.

Like the kubelet, a token is replaced once a fraction (default 80 %) of its lifetime has passed, and at least
daily, so that a long-lived token bound to a long job never comes near its expiry inside the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

DAY = 86400.0
MIN_LIFETIME = 60.0  # a clock skew must not turn into a refresh loop
BACKOFF_BASE, BACKOFF_CAP = 2.0, 300.0


@dataclass(frozen=True)
class TokenSource:
    volume: str
    path: str
    audience: str | None


def token_sources(pod: dict[str, Any]) -> list[TokenSource]:
    """The serviceAccountToken files of the pod's projected volumes."""
    found = []
    for volume in (pod.get("spec") or {}).get("volumes") or []:
        projected = volume.get("projected") if isinstance(volume, dict) else None
        if not isinstance(projected, dict):
            continue
        for source in projected.get("sources") or []:
            item = source.get("serviceAccountToken") if isinstance(source, dict) else None
            if isinstance(item, dict):
                audience = item.get("audience")
                found.append(TokenSource(str(volume.get("name")), str(item.get("path") or "token"),
                                         str(audience) if audience else None))
    return found


def expires_at(answer: dict[str, Any], issued_at: float, requested_seconds: int) -> float:
    """When a TokenRequest's token expires (wall clock): its status.expirationTimestamp, else what was asked."""
    stamp = (answer.get("status") or {}).get("expirationTimestamp")
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return issued_at + requested_seconds


def refresh_due(issued_at: float, expires: float, fraction: float, override: float | None) -> float:
    """When to replace tokens issued at `issued_at` that expire at `expires` (wall clock seconds).
    `override`: a fixed period whatever the lifetime (tests, sites that want it)."""
    if override is not None:
        return issued_at + override
    lifetime = max(expires - issued_at, MIN_LIFETIME)
    return issued_at + min(fraction * lifetime, DAY)


def retry_delay(failures: int) -> float:
    """Backoff after `failures` consecutive failed refreshes."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2 ** min(max(failures, 1) - 1, 10))


@dataclass
class Schedule:
    """The tokens of one pod: when they were issued, expire, and are next to be replaced."""

    issued_at: float
    expires: float
    due: float
    failures: int = 0
    last_warning: str = ""
