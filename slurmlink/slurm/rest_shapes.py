"""The SLURM REST API's JSON, version by version (v0.0.38 of Debian 12's 22.05 up to v0.0.44).

Pure functions: a BatchJob becomes a submit body in the shape one API version takes, and job lists,
submit replies and errors of any of these versions are read into backend-neutral types. What changed:

| change | versions |
|---|---|
| `job.environment` a dict / a list of "K=V" | <= v0.0.38 / >= v0.0.39 |
| numbers plain / `{"set", "infinite", "number"}` (plain still accepted on input) | <= v0.0.38 / >= v0.0.39 |
| `script` at the top level / inside `job` | <= v0.0.40 / >= v0.0.41 |
| `job_state` a string / a list of flags, base state first | <= v0.0.39 / >= v0.0.40 |
| `exit_code` the raw wait status / `{"status", "return_code", "signal"}` | v0.0.38 / >= v0.0.39 |
| errors `{error, error_number}` / `{description, error_number, error, source}` | v0.0.38 / >= v0.0.40 |
| `jobs?update_time=` with nothing changed: `304` / `200`, `jobs: []` and a warning | v0.0.38 / v0.0.42 |
| `update_time` a number / only "now-N" (a number: `422`, errors 9202, 9000) | v0.0.38, v0.0.42 / v0.0.40, v0.0.41 |
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from slurmlink.core.records import Capacity, JobInfo
from slurmlink.core.states import base_state, decode_wait_status, is_finished, with_requeue
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.commands.sinfo import gpus, usable
from slurmlink.translate.job import BatchJob

SUPPORTED = tuple(f"v0.0.{n}" for n in range(38, 45))
NO_CHANGES = "No job changes since update_time"  # v0.0.42's warning when nothing changed (24.11)
_SUBMIT_PATH = re.compile(r"^/slurm/(v0\.0\.\d+)/job/submit/?$")

# sbatch options the flags annotation may give -> the job field of the REST API that means the same.
OPTION_FIELDS = {
    "--account": "account", "--qos": "qos", "--constraint": "constraints", "--nodes": "nodes",
    "--ntasks": "tasks", "--ntasks-per-node": "tasks_per_node", "--reservation": "reservation",
    "--licenses": "licenses", "--nice": "nice", "--mem-per-cpu": "memory_per_cpu", "--gpus": "gpus",
    "--gpus-per-node": "gpus_per_node", "--time-min": "time_minimum", "--mail-type": "mail_type",
}


def number(version: str) -> int:
    return int(version.rsplit(".", 1)[1])


def offered_versions(spec: dict[str, Any]) -> list[str]:
    """The API versions slurmrestd's OpenAPI document offers (job submission among them), oldest first."""
    offered = {m.group(1) for path in (spec.get("paths") or {}) if (m := _SUBMIT_PATH.match(path))}
    return sorted(offered, key=number)


def detect_version(spec: dict[str, Any]) -> str:
    """The newest API version both slurmrestd (from its OpenAPI document) and slurmlink support."""
    offered = offered_versions(spec)
    usable = [v for v in offered if v in SUPPORTED]
    if not usable:
        raise SlurmError(f"slurmrestd offers no API version slurmlink supports (it offers {offered})")
    return usable[-1]


def submit_body(job: BatchJob, version: str, environment: dict[str, str]) -> dict[str, Any]:
    if version not in SUPPORTED:
        raise SlurmError(f"SLURM REST API {version} is not supported (supported: {', '.join(SUPPORTED)})")
    fields: dict[str, Any] = {
        "name": job.name, "comment": job.comment, "current_working_directory": job.workdir,
        "standard_output": job.stdout, "standard_error": job.stdout, "cpus_per_task": job.cpus_per_task,
        "tasks": 1,
    }
    if job.memory_mb is not None:  # else the job's --mem-per-cpu (memory_per_cpu) says
        fields["memory_per_node"] = job.memory_mb
    if job.time_limit_minutes is not None:
        fields["time_limit"] = job.time_limit_minutes
    if job.partition:
        fields["partition"] = job.partition
    if job.gres and number(version) <= 38:
        fields["gres"] = job.gres
    elif job.gres:
        fields["tres_per_node"] = ",".join(f"gres/{g}" for g in job.gres.split(","))
    for option in job.extra_options:
        name, _, value = option.partition("=")
        if name not in OPTION_FIELDS:
            raise SlurmError(f"option {name} cannot be given through the SLURM REST API")
        fields[OPTION_FIELDS[name]] = value or True
    env = {**job.environment, **environment}
    fields["environment"] = env if number(version) <= 38 else [f"{k}={v}" for k, v in env.items()]
    if number(version) >= 41:
        return {"job": {**fields, "script": job.script}}
    return {"script": job.script, "job": fields}


def errors(body: dict[str, Any]) -> list[str]:
    """SLURM's error messages in a reply (whatever its HTTP status: slurmrestd puts them in the body)."""
    found = []
    for error in body.get("errors") or []:
        if isinstance(error, dict):
            # 24.11 puts the cause in `error` beneath a generic `description` ("Batch job submission failed")
            said = [str(error[k]) for k in ("description", "error") if error.get(k)]
            text = ": ".join(dict.fromkeys(said))
            code = error.get("error_number") or error.get("errno")
            found.append(f"{text} (error {code})" if code else str(text))
        else:
            found.append(str(error))
    return [e for e in found if e]


def error_codes(body: dict[str, Any]) -> set[int]:
    """SLURM's error numbers in a reply (the key differs between versions)."""
    codes = {e.get("error_number") or e.get("errno") or e.get("error_code")
             for e in body.get("errors") or [] if isinstance(e, dict)}
    return {c for c in codes if isinstance(c, int)}


def warnings(body: dict[str, Any]) -> list[str]:
    """SLURM's warning texts in a reply."""
    found = [str(w.get("description") or "") if isinstance(w, dict) else str(w) for w in body.get("warnings") or []]
    return [w for w in found if w]


def unchanged_listing(status: int, body: dict[str, Any] | None) -> bool:
    """Whether a `jobs?update_time=` answer means "nothing changed since": a `304` (<= v0.0.38), or a `200`
    with no jobs and the warning saying so (v0.0.42 of 24.11) - never "every job is gone"."""
    if status == 304:
        return True
    return (status == 200 and body is not None and not body.get("jobs")
            and any(w.startswith(NO_CHANGES) for w in warnings(body)))


def update_time(version: str, since: int, elapsed: float) -> str:
    """`update_time` for a listing `elapsed` seconds after one the site made at `since` (by its clock).
    v0.0.40 and v0.0.41 of 24.11 read it with SLURM's time parser, which refuses a plain number; they
    take "now-N" (seconds before the site's now: no clock or time zone of ours involved), with margin."""
    if number(version) in (40, 41):
        return f"now-{int(elapsed) + 2}"
    return str(since)


def parse_submit(body: dict[str, Any]) -> str:
    """The new job's id. A reply may carry a job id and errors at once (e.g. a held job): the job exists."""
    job_id = body.get("job_id")
    if isinstance(job_id, int) or (isinstance(job_id, str) and job_id.isdigit()):
        return str(job_id)
    raise SlurmError("; ".join(errors(body)) or "slurmrestd accepted no job and gave no reason")


def plain_value(raw: Any) -> Any:
    """A plain value, or the `number` of a {set, infinite, number} struct (None when unset or infinite)."""
    if isinstance(raw, dict) and "number" in raw:
        return raw["number"] if raw.get("set", True) and not raw.get("infinite", False) else None
    return raw


def _time(raw: Any) -> datetime | None:
    value = plain_value(raw)
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) and value > 0 else None


def job_state(raw: Any) -> str:
    """The base state from a `job_state` string (<= v0.0.39) or list of flags, base state first (>= v0.0.40)."""
    return base_state(raw or None)


def _exit(raw: Any) -> tuple[int | None, int | None]:
    """(return code, signal) from a raw wait status (v0.0.38) or an exit-code object (later)."""
    if isinstance(raw, int):
        return decode_wait_status(raw)
    if isinstance(raw, dict):
        signal = plain_value((raw.get("signal") or {}).get("id")) if isinstance(raw.get("signal"), dict) else None
        return plain_value(raw.get("return_code")), signal or None
    return None, None


def parse_jobs(body: dict[str, Any], prefix: str = "") -> list[JobInfo]:
    """Jobs of a `/jobs` or `/job/{id}` reply whose name starts with `prefix`."""
    jobs = []
    for raw in body.get("jobs") or []:
        if not isinstance(raw, dict):
            continue
        name = str(raw.get("name") or "")
        if not name.startswith(prefix):
            continue
        state = with_requeue(job_state(raw.get("job_state")), _time(raw.get("end_time")) is not None)
        finished = is_finished(state)
        code, signal = _exit(raw.get("exit_code")) if finished else (None, None)
        reason = str(raw.get("state_reason") or "")
        jobs.append(JobInfo(
            job_id=str(raw.get("job_id")), name=name, user=str(raw.get("user_name") or ""), state=state,
            reason="" if reason == "None" else reason, exit_code=code, signal=signal,
            submit_time=_time(raw.get("submit_time")),
            start_time=_time(raw.get("start_time")) if state != "PENDING" else None,
            end_time=_time(raw.get("end_time")) if finished else None,
            workdir=str(raw.get("current_working_directory") or ""), comment=str(raw.get("comment") or ""),
        ))
    return jobs


def parse_capacity(nodes: list[Any], partition: str | None) -> Capacity:
    """Free CPUs, memory and GPUs summed over the usable nodes of a `/nodes` reply (of `partition` only: a
    comma-separated list counts a node in any of them, once)."""
    cpus = memory = 0
    free_gpus: dict[str, int] = {}
    wanted = {p for p in (partition or "").split(",") if p}
    for node in nodes:
        if not isinstance(node, dict) or (wanted and wanted.isdisjoint(_names(node.get("partitions")))):
            continue
        if not usable(_node_state_words(node)):
            continue
        cpus += max(0, _count(node.get("cpus")) - _count(node.get("alloc_cpus")))
        memory += max(0, _count(node.get("real_memory")) - _count(node.get("alloc_memory")))
        used = gpus(str(node.get("gres_used") or ""))
        for name, total in gpus(str(node.get("gres") or "")).items():
            free_gpus[name] = free_gpus.get(name, 0) + max(0, total - used.get(name, 0))
    return Capacity(cpus=cpus, memory_mb=memory, gpus=free_gpus)


def _names(value: Any) -> set[str]:
    return {str(v) for v in value} if isinstance(value, list) else set()


def _node_state_words(node: dict[str, Any]) -> str:
    """"idle+drain" from v0.0.38's `state` and `state_flags`, or from the flag list of later versions."""
    state = node.get("state")
    words = [str(w) for w in state] if isinstance(state, list) else [str(state or "")]
    words += [str(f) for f in node.get("state_flags") or []]
    return "+".join(words).lower()


def _count(raw: Any) -> int:
    value = plain_value(raw)  # a plain int, or {"set", "infinite", "number"} from v0.0.39 on
    return value if isinstance(value, int) and value > 0 else 0
