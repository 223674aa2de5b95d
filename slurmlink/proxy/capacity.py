"""`GET /slurmlink/v1/capacity`: the free CPUs, memory and GPUs of the site, summed over usable nodes.

A virtual kubelet needs these numbers for its node; the proxy gives the sums only, so users do not see
the nodes themselves (slurmrestd's /nodes is not on the allow-list)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import httpx

from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.errors import Refusal
from slurmlink.slurm.rest_shapes import parse_capacity


async def free_capacity(http: httpx.AsyncClient, url: str, *, as_user: str, token: str,
                        partition: str | None) -> dict[str, Any]:
    """Sums over the nodes slurmrestd lists at `url` (its /nodes), asked as `as_user`."""
    try:
        answer = await http.get(url, headers={header_rules.USER_NAME: as_user, header_rules.USER_TOKEN: token})
        body = answer.json()
    except httpx.HTTPError as exc:
        raise Refusal(502, "UpstreamUnreachable", f"slurmrestd is unreachable: {type(exc).__name__}") from None
    except ValueError:
        raise Refusal(502, "UpstreamError", f"slurmrestd answered {answer.status_code} without JSON") from None
    nodes = body.get("nodes") if isinstance(body, dict) else None
    if answer.status_code != 200 or not isinstance(nodes, list) or not nodes:
        # A wrong 0 would make Kubernetes stop sending pods: no numbers rather than made-up ones.
        raise Refusal(502, "UpstreamError", f"slurmrestd listed no nodes (HTTP {answer.status_code})")
    return asdict(parse_capacity(nodes, partition))
