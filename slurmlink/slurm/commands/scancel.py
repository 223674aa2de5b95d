"""scancel: end a job, or only signal its batch script so that it can stop its containers gracefully."""

from __future__ import annotations

import re

from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.runner import CommandResult, error_from

# fullmatch, never `$`: `$` also matches before a final newline ("TERM\n")
_JOB_ID = re.compile(r"[0-9]+(?:_[0-9]+)?")
_SIGNAL = re.compile(r"(?:SIG)?[A-Z][A-Z0-9+]*|[0-9]{1,2}", re.IGNORECASE | re.ASCII)  # ASCII: no Kelvin sign
# Nothing left to cancel: deleting a pod twice, or after its job ended, is not an error.
_GONE = re.compile(r"already completing or completed|invalid job id specified", re.IGNORECASE)


def argv(job_id: str, signal: str | None = None, scancel: str = "scancel", only_state: str | None = None) -> list[str]:
    if not _JOB_ID.fullmatch(job_id):
        raise SlurmError(f"not a job id: {job_id!r}")
    # --state: act only on a job in that state. Signalling a pending job is refused with "try again
    # later", which scancel retries until it times out; a state filter makes it a quick no-op.
    state = [f"--state={only_state}"] if only_state else []
    if only_state and not (only_state.isascii() and only_state.isalpha()):
        raise SlurmError(f"not a job state: {only_state!r}")
    if signal is None:
        return [scancel, *state, job_id]
    if not _SIGNAL.fullmatch(signal):
        raise SlurmError(f"not a signal: {signal!r}")
    # --batch: only the batch script, which traps the signal and stops its containers itself.
    return [scancel, f"--signal={signal}", "--batch", *state, job_id]


def parse(result: CommandResult) -> None:
    """Raises SlurmError with scancel's message, unless the job is simply gone.

    scancel 22.05 exits 0 for an unknown or finished job and prints nothing; a refused one exits
    non-zero with "Access/permission denied".
    """
    if result.ok and "error" not in result.err.lower():
        return
    if _GONE.search(result.err):
        return
    raise error_from(result, "scancel")
