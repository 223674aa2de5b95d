"""Header hygiene between the client and slurmrestd. Pure.

slurmrestd trusts `X-SLURM-USER-NAME` and `X-SLURM-USER-TOKEN` and takes the first match (case-insensitive),
so every client header that could be read as one of them is dropped, whatever its spelling, before the
proxy sets its own.
"""

from __future__ import annotations

from collections.abc import Iterable

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade",
})
DROPPED = HOP_BY_HOP | frozenset({
    "authorization", "cookie", "forwarded", "host", "content-length", "expect", "accept-encoding",
})

USER_NAME = "X-SLURM-USER-NAME"
USER_TOKEN = "X-SLURM-USER-TOKEN"  # noqa: S105 - a header name


def normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def is_dropped(name: str, connection_tokens: frozenset[str] = frozenset()) -> bool:
    norm = normalise(name)
    return (norm.startswith("x-slurm-") or norm in DROPPED or norm.startswith("x-forwarded-")
            or norm in connection_tokens)


def upstream_headers(client: Iterable[tuple[str, str]], *, user: str, token: str) -> list[tuple[str, str]]:
    """The headers to send upstream: the client's, cleaned, then the proxy's identity headers."""
    pairs = list(client)
    connection_tokens = frozenset(
        normalise(tok) for name, value in pairs if normalise(name) == "connection"
        for tok in value.split(",") if tok.strip())
    kept = [(name, value) for name, value in pairs if not is_dropped(name, connection_tokens)]
    return [*kept, (USER_NAME, user), (USER_TOKEN, token)]
