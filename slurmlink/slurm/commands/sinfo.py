"""sinfo: free CPUs, memory and GPUs of the nodes that can take a job now.

One line per node and partition (`-N`); a node in two partitions is counted once. A node counts when
it responds and is not down, drained, failing, in maintenance or reserved; its free CPUs are SLURM's
"idle" count (total minus allocated minus unusable), its free memory is its memory minus what is
allocated (always 0 allocated when memory is not a consumable resource).
"""

from __future__ import annotations

import re

from slurmlink.core.records import Capacity
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.commands import SEP

FIELDS = ("NodeList", "StateComplete", "CPUsState", "Memory", "AllocMem", "Gres", "GresUsed")
# Node state words (StateComplete is "idle", "mixed+drain", "down*+not_responding", ...) that rule a
# node out; a trailing "*" also means "not responding".
_UNUSABLE = frozenset({
    "down", "drain", "drained", "draining", "fail", "failing", "maint", "not_responding", "reserved",
    "inval", "invalid", "future", "unknown", "perfctrs", "reboot_issued", "powering_down", "powered_down",
    "power_down", "unk",
})  # fmt: skip
_GRES_ITEM = re.compile(r"([^,(]+)(\([^)]*\))?")


def argv(partition: str | None = None, sinfo: str = "sinfo") -> list[str]:
    args = [sinfo, "-h", "-N", "-O", ",".join(f"{name}:0{SEP}" for name in FIELDS)]
    if partition:
        args.append(f"--partition={partition}")
    return args


def usable(state: str) -> bool:
    words = re.split(r"[+\s]", state.strip().lower())
    if not words or not words[0] or any(w.endswith("*") for w in words):
        return False
    return not any(w.rstrip("~#!%$@^-") in _UNUSABLE for w in words)


def gpus(text: str) -> dict[str, int]:
    """{"gpu": n} from a gres list: "gpu:2", "gpu:a100:4(S:0-1),mps:100", "gpu:tesla:1(IDX:0)";
    types are summed under "gpu"; "(null)" is none."""
    found: dict[str, int] = {}
    text = text.strip().replace(":(null)", "")  # some versions print an untyped gres as "gpu:(null):2"
    if text in ("", "(null)", "N/A"):
        return found
    for match in _GRES_ITEM.finditer(text):
        parts = match.group(1).strip().split(":")
        if parts[0] != "gpu":
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        if not count.isdigit():
            raise SlurmError(f"cannot read the GPU count in gres {text!r}")
        found["gpu"] = found.get("gpu", 0) + int(count)
    return found


def _int(text: str, what: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise SlurmError(f"cannot read {what} {text!r} in sinfo's output")
    return int(text)


def parse(output: str) -> Capacity:
    """Free capacity. Raises SlurmError when no node is listed or a line cannot be read: a wrong 0
    would make Kubernetes stop sending pods."""
    lines = [line for line in output.splitlines() if line.strip()]
    if not lines:
        raise SlurmError("sinfo lists no nodes")
    cpus = memory = 0
    free_gpus: dict[str, int] = {}
    seen: set[str] = set()
    for line in lines:
        parts = line.split(SEP)
        if len(parts) < len(FIELDS):
            raise SlurmError(f"cannot read sinfo's output: {line[:200]!r}")
        node, state, cpu_state, mem, alloc_mem, gres, gres_used = (p.strip() for p in parts[: len(FIELDS)])
        counts = cpu_state.split("/")
        if len(counts) != 4:
            raise SlurmError(f"cannot read CPU states {cpu_state!r} of node {node}")
        idle = _int(counts[1], "idle CPUs")
        if node in seen:
            continue
        seen.add(node)
        if not usable(state) or idle == 0:
            continue
        cpus += idle
        memory += max(0, _int(mem, "memory") - _int(alloc_mem, "allocated memory"))
        used = gpus(gres_used)
        for name, total in gpus(gres).items():
            free_gpus[name] = free_gpus.get(name, 0) + max(0, total - used.get(name, 0))
    return Capacity(cpus=cpus, memory_mb=memory, gpus=free_gpus)
