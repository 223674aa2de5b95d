"""SLURM's commands, one module each: the argv to run and the parsing of what it prints, side by side.

Shared here: the field separator and the readers of values several commands print the same way.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

from slurmlink.core.records import JobInfo
from slurmlink.core.states import base_state, is_finished, with_requeue

# Between output fields: the ASCII unit separator, which no job name, comment or path of ours holds
# (comments of other users' jobs may well hold "|" or spaces).
SEP = "\x1f"
# Times as seconds since the epoch: no time zone to guess, no locale. TZ names the zone file that an unset TZ
# means too: with TZ unset, glibc looks at /etc/localtime again for every time it prints, which was half of
# squeue's CPU with 4,000 jobs held (bench/README.md); the epoch seconds do not depend on the zone anyway.
TIME_ENV = {"SLURM_TIME_FORMAT": "%s", "TZ": ":/etc/localtime"}



@functools.lru_cache(maxsize=1 << 16)  # every poll prints the same few times of each job again
def epoch(text: str) -> datetime | None:
    """A time printed under SLURM_TIME_FORMAT=%s; None for "N/A", "NONE", "Unknown", "0" and the like."""
    text = text.strip()
    if not text.isdigit() or int(text) == 0:
        return None
    return datetime.fromtimestamp(int(text), UTC)


def none_if_null(text: str) -> str:
    """SLURM prints unset strings as "(null)" and an absent reason as "None"."""
    text = text.strip()
    return "" if text in ("(null)", "None", "N/A") else text


def job_info(parts: list[str], decode_exit: Callable[[str], tuple[int | None, int | None]]) -> JobInfo:
    """A JobInfo from the fields squeue and sacct both print, in the same order: id, name, user, state,
    reason, exit code, submit, start, end, work dir, comment. The exit code's format is each one's own."""
    job_id, name, user, state, reason, code, submit, start, end, workdir, comment = parts
    state = with_requeue(base_state(state), epoch(end) is not None)
    final = is_finished(state)
    exit_code, signal = decode_exit(code) if final else (None, None)
    return JobInfo(
        job_id=job_id.strip(),
        name=name,
        user=user.strip(),
        state=state,
        reason=none_if_null(reason),
        exit_code=exit_code,
        signal=signal,
        submit_time=epoch(submit),
        # A pending job's start and end are forecasts, a running job's end is its time limit.
        start_time=epoch(start) if state != "PENDING" else None,
        end_time=epoch(end) if final else None,
        workdir=none_if_null(workdir),
        comment=none_if_null(comment),
    )
