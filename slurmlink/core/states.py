"""SLURM's job states and exit codes, whichever command or REST version reported them.

Adding a state SLURM reports is one edit here: every reader (squeue, sacct, slurmrestd, the proxy) and the
pod status take "finished" from FINISHED_STATES.
"""

from __future__ import annotations

# States after which a job never runs again: its exit code and end time are final, it writes nothing more.
FINISHED_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE",
    "PREEMPTED", "SPECIAL_EXIT", "REVOKED",
})  # fmt: skip


# A job waiting to run (again): whatever its directory holds is from an earlier run (a requeued job).
WAITING_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})


def with_requeue(state: str, ended: bool) -> str:
    """A job that ends has an end time; one being requeued (scontrol requeue, a failed node) is pending
    again while its old run completes, and has none: squeue (22.05, 24.11) and REST v0.0.38 say COMPLETING
    for it, later REST versions PENDING. Such a COMPLETING is "REQUEUED" here."""
    return "REQUEUED" if state == "COMPLETING" and not ended else state


def base_state(raw: object) -> str:
    """The base state, upper case: "CANCELLED by 1001" (sacct) or "RUNNING+" -> the first word; a REST
    `job_state` list of flags (>= v0.0.40) -> its first entry. "" stays "" (the caller decides); None or
    an empty list is "UNKNOWN"."""
    if isinstance(raw, list):
        return str(raw[0]).upper() if raw else "UNKNOWN"
    if raw is None:
        return "UNKNOWN"
    words = str(raw).strip().split()
    return words[0].rstrip("+").upper() if words else ""


def is_finished(state: str) -> bool:
    return state in FINISHED_STATES


def decode_wait_status(status: int) -> tuple[int | None, int | None]:
    """(exit code, signal) from a raw wait status (squeue of 22.05, REST v0.0.38): 768 is `exit 3`, 9 is SIGKILL."""
    low = status & 0x7F
    if low == 0:
        return status >> 8, None
    return None, low


def decode_code_signal(text: str) -> tuple[int | None, int | None]:
    """(exit code, signal) from "code:signal" (sacct; squeue of 24.11): "3:0" is exit 3, "0:15" signal 15."""
    code, _, sig = text.strip().partition(":")
    if not code.isdigit():
        return None, None
    if sig.isdigit() and int(sig):
        return None, int(sig)
    return int(code), None


def decode_exit_code(raw: str) -> tuple[int | None, int | None]:
    """Either form as text: "768" (a wait status) or "3:0" (code:signal)."""
    raw = raw.strip()
    return decode_code_signal(raw) if ":" in raw else decode_wait_status(int(raw))
