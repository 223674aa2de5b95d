"""Mode 1: the policy on a job description submitted through `slurmlink proxy` (slurmrestd's JSON). Pure.

Every part of the submission (`job`, or each of `jobs`) is checked, and the VO's account, partition, QoS and
time limit are written into it, so slurmrestd receives the job as the policy placed it.
"""

from __future__ import annotations

from typing import Any

from slurmlink.sitepolicy.rules import (
    JobAsk,
    Placement,
    PolicyRefused,
    fill_and_check,
    gpu_count,
    gpus_in,
    has_cap,
    upper_count,
)

# fields where GPUs can be asked: TRES/gres lists, and plain GPU counts (`gpus`, or `type:count`)
TRES_FIELDS = ("gres", "tres_per_node", "tres_per_job", "tres_per_task", "tres_per_socket")
GPU_FIELDS = ("gpus", "gpus_per_node", "gpus_per_task", "gpus_per_socket")
PER_NODE_FIELDS = ("gres", "tres_per_node", "gpus_per_node")  # counted once per node the job may get
PER_TASK_FIELDS = ("tres_per_task", "tres_per_socket", "gpus_per_task", "gpus_per_socket")


def job_parts(body: Any) -> list[dict[str, Any]]:
    """The job descriptions in a submit body; PolicyRefused when there is none to check."""
    parts: list[Any] = []
    if isinstance(body, dict) and isinstance(body.get("job"), dict):
        parts.append(body["job"])
    if isinstance(body, dict) and isinstance(body.get("jobs"), list):
        parts.extend(body["jobs"])
    if not parts or not all(isinstance(p, dict) for p in parts):
        raise PolicyRefused("site policy: the submission holds no job description to check", "InvalidJob", "job")
    return parts


def _number(value: Any) -> tuple[int | None, bool]:
    """slurmrestd's number: an int, or {"set", "infinite", "number"} (v0.0.40+). (number, infinite)."""
    if isinstance(value, bool):
        return None, False
    if isinstance(value, int):
        return value, False
    if isinstance(value, dict):
        if value.get("infinite"):
            return None, True
        if value.get("set") is False:
            return None, False
        number = value.get("number")
        return (number, False) if isinstance(number, int) and not isinstance(number, bool) else (None, False)
    return None, False


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _nodes_at_most(part: dict[str, Any]) -> int | None:
    """The most nodes the job may get (see batchjob.py): the largest node count given; without one, its tasks;
    else one. None if a count does not parse."""
    counts = []
    for name in ("nodes", "maximum_nodes", "minimum_nodes", "max_nodes", "min_nodes"):
        value = part.get(name)
        if value is None:
            continue
        number, _ = _number(value)
        count = number if number is not None else (upper_count(value) if isinstance(value, str) else None)
        if count is None:
            return None
        counts.append(count)
    if counts:
        return max(counts)
    tasks, _ = _number(part.get("tasks")) if part.get("tasks") is not None else (1, False)
    return tasks


def ask_of(part: dict[str, Any]) -> JobAsk:
    raw = part.get("time_limit")
    time, infinite = _number(raw)
    unreadable = raw is not None and not isinstance(raw, dict) and time is None
    mem, _ = _number(part.get("memory_per_cpu"))
    nodes = _nodes_at_most(part)
    gpus, unknown = 0, False
    for name in TRES_FIELDS + GPU_FIELDS:
        value = part.get(name)
        if value is None:
            continue
        if name in PER_TASK_FIELDS:
            unknown = True  # the count depends on tasks or sockets: not counted, refused under a max
            continue
        if name in TRES_FIELDS:
            count = gpus_in(value) if isinstance(value, str) else None
        else:
            count = gpu_count(str(value) if isinstance(value, int | str) and not isinstance(value, bool) else "")
        if count is not None and name in PER_NODE_FIELDS:
            count = count * nodes if nodes is not None else None
        gpus, unknown = gpus + (count or 0), unknown or count is None
    partition = part.get("partition")
    account, qos = part.get("account"), part.get("qos")
    for name, value in (("account", account), ("partition", partition), ("qos", qos)):
        if value is not None and not isinstance(value, str):
            raise PolicyRefused(f"site policy: job field {name} must be a string", "InvalidJob", name)
    return JobAsk(account=_text(account), partitions=tuple(p for p in (partition or "").split(",") if p),
                  qos=_text(qos), time_minutes=time,
                  time_text="infinite" if infinite else ("unreadable" if unreadable else None),
                  mem_per_cpu_mb=mem, gpus=gpus, gpus_unknown=unknown)


def place_body(body: Any, placement: Placement) -> list[JobAsk]:
    """Check and fill every job description of `body` in place; PolicyRefused naming the rule."""
    if placement.policy is None:
        return []
    placed = []
    parts = job_parts(body)
    for part in parts:
        filled = fill_and_check(placement, ask_of(part))
        if filled.account:
            part["account"] = filled.account
        if filled.partitions:
            part["partition"] = ",".join(filled.partitions)
        if filled.qos:
            part["qos"] = filled.qos
        if filled.time_minutes is not None:
            part["time_limit"] = filled.time_minutes
        placed.append(filled)
    if has_cap(placement) and (len(parts) > 1 or any(part.get("array") is not None for part in parts)):
        # one submission, many jobs: the caps count jobs as one submission each
        raise PolicyRefused(f"site policy of VO {placement.vo}, rule max_jobs: job arrays and heterogeneous jobs are "
                            "not taken under a VO with job caps", "JobCapReached", "max_jobs")
    return placed
