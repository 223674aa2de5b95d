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
import subprocess
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
            # Popen forks with vfork, as asyncio's subprocess does; the rest is the event loop's (_Child).
            proc = subprocess.Popen(
                full,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,  # only their descriptors are used, and close(): no buffered file objects around them
                env={**self.base_env(), **(env or {})},
                cwd=cwd or "/",
                # Its own process group, so a timeout kills runuser and the SLURM command under it.
                start_new_session=True,
            )
        except OSError as exc:
            raise SlurmError(f"cannot run {full[0]}: {exc.strerror or exc}") from exc
        child = _Child(proc, stdin)
        try:
            returncode, stdout, stderr = await asyncio.wait_for(child.done, deadline)
        except TimeoutError:
            await child.kill()
            raise SlurmError(f"{name} did not answer within {deadline:g} s", transient=True) from None
        except asyncio.CancelledError:
            await child.kill()
            raise
        return CommandResult(tuple(full), returncode, stdout, stderr)


class _Child:
    """A started command, driven by the event loop's own readiness callbacks: stdin written, stdout and
    stderr read until they close, then the exit status. asyncio's subprocess does the same through
    transports, protocols, three tasks and (on Python 3.11) a thread per command to wait for the exit:
    0.42 ms of the caller's CPU per command, against 0.18 ms this way (bench/README.md, issue 14).

    `done` gets (exit status, stdout, stderr). A command's output closes when it exits, so its status is
    then almost always there already; if not (the kernel closes the files a moment before the exit is
    reported: 5% of `runuser` commands 8 at a time; or a command closed them and went on), the loop waits for
    the exit on a pidfd, readable once the process has exited. A worker thread would cost a hand-over, and
    would hold one of the default executor's few threads, which the pod directories are written by, for as long
    as the command takes. Where pidfd_open is refused, a worker thread waits all the same."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin: bytes | None) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[tuple[int, bytes, bytes]] = self.loop.create_future()
        self.stdout, self.stderr = proc.stdout.fileno(), proc.stderr.fileno()
        self.output: dict[int, list[bytes]] = {self.stdout: [], self.stderr: []}
        self.reading = {self.stdout, self.stderr}
        for fd in self.reading:
            os.set_blocking(fd, False)
            self.loop.add_reader(fd, self._read, fd)
        self.exit_fd: int | None = None  # a pidfd while the exit is awaited (_read)
        self.unwritten = memoryview(stdin or b"")
        self.writing: int | None = None
        if proc.stdin is not None:
            self.writing = proc.stdin.fileno()
            os.set_blocking(self.writing, False)
            self._write()  # most scripts fit in the pipe at once
            if self.writing is not None:
                self.loop.add_writer(self.writing, self._write)

    def _write(self) -> None:
        assert self.writing is not None
        try:
            written = os.write(self.writing, self.unwritten) if self.unwritten else 0
        except BlockingIOError:
            return
        except OSError:  # it stopped reading (a broken pipe): its output and exit status will say why
            written = len(self.unwritten)
        self.unwritten = self.unwritten[written:]
        if not self.unwritten:
            self.loop.remove_writer(self.writing)
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.writing = None

    def _read(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # never seen on a pipe; taken as its end rather than a command waited on forever
            data = b""
        if data:
            self.output[fd].append(data)
            return
        self.loop.remove_reader(fd)
        self.reading.discard(fd)
        if self.reading:
            return
        if self.proc.poll() is not None:
            self._finish()
            return
        try:
            self.exit_fd = os.pidfd_open(self.proc.pid)
        except OSError:  # a kernel before 5.3, or a seccomp filter without it
            self.loop.run_in_executor(None, self.proc.wait).add_done_callback(lambda _: self._finish())
            return
        self.loop.add_reader(self.exit_fd, self._exited)

    def _exited(self) -> None:
        self._stop_waiting()
        self.proc.wait()  # the pidfd is readable once it has exited: reaped now, without waiting
        self._finish()

    def _stop_waiting(self) -> None:
        if self.exit_fd is not None:
            self.loop.remove_reader(self.exit_fd)
            os.close(self.exit_fd)
            self.exit_fd = None

    def _finish(self) -> None:
        if self.done.done():  # timed out or cancelled meanwhile
            return
        returncode = -1 if self.proc.returncode is None else self.proc.returncode
        result = (returncode, b"".join(self.output[self.stdout]), b"".join(self.output[self.stderr]))
        self._release()
        self.done.set_result(result)

    def _release(self) -> None:
        self._stop_waiting()
        for fd in self.reading:
            self.loop.remove_reader(fd)
        self.reading.clear()
        if self.writing is not None:
            self.loop.remove_writer(self.writing)
            self.writing = None
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()

    async def kill(self) -> None:
        """Kill its process group and reap it (a timeout, or the caller went away)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._release()
        if self.proc.poll() is None:
            await self.loop.run_in_executor(None, self.proc.wait)
