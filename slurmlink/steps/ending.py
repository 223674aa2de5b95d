"""Ending a step's local side: setpriv or runuser, then srun, started with a process group of their own
(start_new_session), whose id is the child's pid.

SIGTERM to the group first: srun answers it by killing the step (SIGKILL through slurmstepd) and exits once the
step has ended. What is still there after GRACE_SECONDS (a srun that cannot reach SLURM, or a command that
ignores SIGTERM) gets SIGKILL. A srun killed so leaves its step running in SLURM (seen on SLURM 22.05): that
happens only to a srun whose kill did not get through to SLURM in time, where scancel (the same way, and the
step's id unknown: srun runs --quiet) would do no better; the step then ends with its job.

Only our own child's group is signalled, and only while the child is not reaped: after that its pid, and so the
group's id, may be another process's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Any

log = logging.getLogger(__name__)
GRACE_SECONDS = 5.0


async def start_step(*argv: str, **options: Any) -> asyncio.subprocess.Process:
    """asyncio.create_subprocess_exec, which a cancellation cannot break off halfway: asyncio's own answer to one
    is SIGKILL to the child alone (srun killed so leaves its step running) and a wait on pipes that the rest of
    its group may hold for ever. Here the cancelled start completes, then the step is ended as any other."""
    starting = asyncio.ensure_future(asyncio.create_subprocess_exec(*argv, **options))
    try:
        return await asyncio.shield(starting)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await end_step(await starting)
        raise


async def end_step(proc: asyncio.subprocess.Process) -> None:
    """Stop `proc` and its group; return once it is reaped, so a caller that counts sessions counts this one
    until then. What it still writes to its pipes is dropped (a full pipe would keep wait() from returning).
    Cancelled while waiting, it kills the group at once."""
    dropping = [asyncio.create_task(_drop(reader)) for reader in (proc.stdout, proc.stderr) if reader is not None]
    try:
        _signal_group(proc, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), GRACE_SECONDS)
        except TimeoutError:
            log.warning("step %s still there %s s after SIGTERM: killing its group", proc.pid, GRACE_SECONDS)
        finally:
            _signal_group(proc, signal.SIGKILL)
        await proc.wait()
    finally:
        for task in dropping:
            task.cancel()


def _signal_group(proc: asyncio.subprocess.Process, signum: int) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)


async def _drop(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(64 * 1024):
            pass
