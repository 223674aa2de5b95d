"""Header hygiene between the client and slurmrestd. Pure.

slurmrestd trusts `X-SLURM-USER-NAME` and `X-SLURM-USER-TOKEN` and takes the first match (case-insensitive),
and reads little else: the body's media type and the one it should answer in. So a client's header reaches
slurmrestd only when it is one of those (`PASSED_ON`, its name exactly, once); everything else — identity
headers in any spelling, `Authorization`, cookies, `Forwarded`, hop-by-hop headers — is left behind, and
the proxy sets its own identity headers.
"""

from __future__ import annotations

from collections.abc import Iterable

PASSED_ON = frozenset({"content-type", "accept"})

USER_NAME = "X-SLURM-USER-NAME"
USER_TOKEN = "X-SLURM-USER-TOKEN"  # noqa: S105 - a header name


def upstream_headers(client: Iterable[tuple[str, str]], *, user: str, token: str) -> list[tuple[str, str]]:
    """The headers to send upstream: the first of each allowed client header, then the proxy's identity."""
    kept: dict[str, tuple[str, str]] = {}
    for name, value in client:
        lowered = name.lower()
        if lowered in PASSED_ON and lowered not in kept:
            kept[lowered] = (name, value)
    return [*kept.values(), (USER_NAME, user), (USER_TOKEN, token)]
