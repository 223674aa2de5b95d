"""Run SLURM's commands as subprocesses: no shell, a deadline, a clean environment, as a given user.

The child environment is built from scratch, never inherited from the service: variables such as
SQUEUE_FORMAT, SBATCH_* or SLURM_TIME_FORMAT in the service's own environment would silently change
what the commands do or print.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import re
import signal
from collections import Counter as _Tally
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import Counter

from slurmlink.slurm.base import SlurmError

COMMANDS_TOTAL = Counter("slurmlink_slurm_commands", "SLURM commands run by the cli backend", ["command"])

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
# SLURM's words for "the controller (or munge, or slurmdbd) is not there right now": worth a retry.
_TRANSIENT = re.compile(
    r"unable to contact slurm controller|socket timed out|zero bytes were transmitted|connection refused"
    r"|connection timed out|transport endpoint|resource temporarily unavailable|slurm_receive_msg"
    r"|backup controller|munge|problem talking to the database|unable to establish controller"
    r"|try again|slurmctld.* not responding|communication connection failure",
    re.IGNORECASE,
)
# "sbatch: error: ...", "scancel: fatal: ...": the prefix SLURM puts before its own words.
_PREFIX = re.compile(r"^\s*[\w.-]+: (error|fatal|warning): ", re.IGNORECASE)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def out(self) -> str:
        return self.stdout.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        return self.stderr.decode("utf-8", "replace")

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def slurm_message(text: str) -> str:
    """SLURM's own words from stderr: error lines without the "cmd: error: " prefix, in order."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [_PREFIX.sub("", line) for line in lines if not re.match(r"^\s*[\w.-]+: warning: ", line)]
    seen: list[str] = []
    for line in errors or [_PREFIX.sub("", line) for line in lines]:
        if line and line not in seen:
            seen.append(line)
    return "; ".join(seen)


def is_transient(text: str) -> bool:
    return bool(_TRANSIENT.search(text))


def error_from(result: CommandResult, what: str) -> SlurmError:
    """The SlurmError for a failed command: SLURM's message, transient when the controller is away."""
    message = slurm_message(result.err) or slurm_message(result.out)
    return SlurmError(
        message or f"{what} failed (exit status {result.returncode})", transient=is_transient(result.err)
    )


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


class Runner:
    """Runs commands, counting them by name so that a test can see what one operation costs."""

    def __init__(
        self,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        runuser: str = "/usr/sbin/runuser",
        path: str = DEFAULT_PATH,
    ) -> None:
        self.env = dict(env or {})
        self.timeout = timeout
        self.runuser = runuser
        self.path = path
        self.counts: _Tally[str] = _Tally()

    def base_env(self) -> dict[str, str]:
        # A fixed locale: SLURM does not translate, but the C library's messages and sorting would.
        return {"PATH": self.path, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", **self.env}

    def argv_for(self, argv: Sequence[str], user: str | None) -> list[str]:
        """The argv that runs `argv` as `user`: runuser when root acts for someone else."""
        if user is None:
            return list(argv)
        me = current_user()
        if user == me:
            return list(argv)
        if os.geteuid() != 0:
            raise SlurmError(f"slurmlink runs as {me!r}, not root: it cannot act for user {user!r}")
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise SlurmError(f"no local user {user!r}") from None
        return [self.runuser, "-u", user, "--", *argv]

    async def run(
        self,
        argv: Sequence[str],
        *,
        user: str | None = None,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        cwd: str | None = None,
    ) -> CommandResult:
        """Run `argv` (as `user`), return its result whatever the exit status.

        Raises SlurmError(transient=True) when it outlives its timeout (the process group is killed),
        SlurmError when the command cannot be started.
        """
        name = os.path.basename(argv[0])
        full = self.argv_for(argv, user)
        deadline = self.timeout if timeout is None else timeout
        self.counts[name] += 1
        COMMANDS_TOTAL.labels(command=name).inc()
        try:
            proc = await asyncio.create_subprocess_exec(
                *full,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**self.base_env(), **(env or {})},
                cwd=cwd or "/",
                # Its own process group, so a timeout kills runuser and the SLURM command under it.
                start_new_session=True,
            )
        except OSError as exc:
            raise SlurmError(f"cannot run {full[0]}: {exc.strerror or exc}") from exc
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(stdin), deadline)
        except TimeoutError:
            await _kill(proc)
            raise SlurmError(f"{name} did not answer within {deadline:g} s", transient=True) from None
        except asyncio.CancelledError:
            await _kill(proc)
            raise
        return CommandResult(tuple(full), -1 if proc.returncode is None else proc.returncode, stdout, stderr)


async def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        await proc.wait()
