"""`GET /slurmlink/v1/capacity`: the free CPUs, memory and GPUs of the site, summed over usable nodes.

A virtual kubelet needs these numbers for its node; the proxy gives the sums only, so users do not see
the nodes themselves (slurmrestd's /nodes is not on the allow-list)."""

from __future__ import annotations

from typing import Any

import httpx

from slurmlink.proxy import headers as header_rules
from slurmlink.proxy.errors import Refusal
from slurmlink.slurm.commands.sinfo import gpus, usable
from slurmlink.slurm.rest_shapes import plain_value


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
    return summed(nodes, partition)


def summed(nodes: list[Any], partition: str | None) -> dict[str, Any]:
    cpus = memory = 0
    free_gpus: dict[str, int] = {}
    for node in nodes:
        if not isinstance(node, dict) or (partition and partition not in (node.get("partitions") or [])):
            continue
        if not usable(_state_words(node)):
            continue
        cpus += max(0, _number(node.get("cpus")) - _number(node.get("alloc_cpus")))
        memory += max(0, _number(node.get("real_memory")) - _number(node.get("alloc_memory")))
        used = gpus(str(node.get("gres_used") or ""))
        for name, total in gpus(str(node.get("gres") or "")).items():
            free_gpus[name] = free_gpus.get(name, 0) + max(0, total - used.get(name, 0))
    return {"cpus": cpus, "memory_mb": memory, "gpus": free_gpus}


def _state_words(node: dict[str, Any]) -> str:
    """"idle+drain" from v0.0.38's `state` and `state_flags`, or from the flag list of later versions."""
    state = node.get("state")
    words = [str(w) for w in state] if isinstance(state, list) else [str(state or "")]
    words += [str(f) for f in node.get("state_flags") or []]
    return "+".join(words).lower()


def _number(raw: Any) -> int:
    value = plain_value(raw)  # a plain int, or {"set", "infinite", "number"} from v0.0.39 on
    return value if isinstance(value, int) and value > 0 else 0
