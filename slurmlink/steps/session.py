"""One exec or attach session over SPDY/3.1, served as a kubelet serves it: wait for the client's streams, run
the step (argv and environment made by the caller: `srun --overlap` as the pod's account, see srun.py), pump
stdin, stdout, stderr and terminal resizes, and write the exit code on the error stream. Used by the API (mode
2) and by the proxy's interactive extension (mode 1); neither service's own code is needed here.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import pty
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slurmlink.steps.ending import end_step, start_step
from slurmlink.streams import remotecommand as rc
from slurmlink.streams.spdy import SpdySession, SpdyStream

log = logging.getLogger(__name__)
STREAMS_TIMEOUT = 30.0  # the kubelet's streamCreationTimeout
READ_SIZE = 32 * 1024
MAX_QUEUED_READS = 8  # terminal output chunks waiting for the client before the terminal is read no more
MAX_RESIZE_BYTES = 4096  # of the resize stream kept while looking for a message's end


class ExecSession:
    """One exec: wait for the client's streams, run the step, pump bytes, report the exit code, close."""

    def __init__(self, session: SpdySession, options: rc.ExecOptions, protocol: str, step: list[str],
                 env: dict[str, str], *, server: str = "the slurmlink API") -> None:
        self.session, self.options, self.protocol = session, options, protocol
        self.step, self.env = step, env
        self.server = server  # who is serving, for the goodbye of a shutdown
        self.streams: dict[str, SpdyStream] = {}
        self.all_there = asyncio.Event()
        session.on_stream = self._arrived

    def interrupt(self) -> None:
        """The server is shutting down: tell the client why (a failure on the error stream), then close."""
        async def say_goodbye() -> None:
            error = self.streams.get("error")
            if error is not None:
                status = rc.failure_status(f"{self.server} is shutting down: the session was closed",
                                           "ServiceUnavailable", 503)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(error.write(rc.error_stream_bytes(status, self.protocol)), 2)
                    await error.close()
            await self.session.close()

        self._goodbye = asyncio.ensure_future(say_goodbye())

    def _arrived(self, stream: SpdyStream) -> None:
        kind = stream.headers.get(rc.STREAM_TYPE_HEADER, "")
        self.streams[kind] = stream
        if self.options.expected_streams(self.protocol) <= self.streams.keys():
            self.all_there.set()

    async def run(self) -> None:
        reading = asyncio.create_task(self.session.run())
        try:
            waits = [asyncio.create_task(self.all_there.wait()), asyncio.create_task(self.session.ended.wait())]
            await asyncio.wait(waits, timeout=STREAMS_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if not self.all_there.is_set():  # a client that left, or never opened its streams
                log.info("exec: the client did not open its streams (%s)",
                         "it went away" if self.session.ended.is_set() else "in time")
                return
            code = await self._run_step()
            if code is not None and not self.session.closed:
                error = self.streams["error"]
                with contextlib.suppress(Exception):
                    await error.write(rc.error_stream_bytes(rc.exit_status(code, self.options.command),
                                                            self.protocol))
        finally:
            for stream in self.streams.values():
                with contextlib.suppress(Exception):
                    await stream.close()
            await self.session.close()
            reading.cancel()

    async def _run_step(self) -> int | None:
        """The step's exit code; None when the client went away first (the step is then killed)."""
        if self.options.tty:
            return await self._run_with_tty()
        proc = await start_step(
            *self.step, env=self.env, start_new_session=True,
            stdin=asyncio.subprocess.PIPE if self.options.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if self.options.stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE if self.options.stderr else asyncio.subprocess.DEVNULL)
        pumps = []
        if proc.stdout is not None:
            pumps.append(asyncio.create_task(_pump_out(proc.stdout.read, self.streams["stdout"])))
        if proc.stderr is not None:
            pumps.append(asyncio.create_task(_pump_out(proc.stderr.read, self.streams["stderr"])))
        feeding = asyncio.create_task(_pump_in(self.streams.get("stdin"), proc.stdin))
        return await self._until_exit(proc, pumps, [feeding])

    async def _run_with_tty(self) -> int | None:
        main, child = pty.openpty()
        try:
            proc = await start_step(
                *self.step, env={**self.env, "TERM": "xterm"}, stdin=child, stdout=child, stderr=child,
                preexec_fn=functools.partial(_take_terminal, child))  # noqa: PLW1509 - srun --pty needs a terminal
        finally:
            os.close(child)
        loop = asyncio.get_running_loop()
        terminal = _Terminal(main, loop)
        pumps = [asyncio.create_task(_pump_out(terminal.read, self.streams["stdout"]))]
        helpers = [asyncio.create_task(_pump_in(self.streams.get("stdin"), terminal)),
                   asyncio.create_task(_resizes(self.streams.get("resize"), main))]
        try:
            return await self._until_exit(proc, pumps, helpers)
        finally:
            terminal.close()

    async def _until_exit(self, proc: asyncio.subprocess.Process, pumps: list[asyncio.Task[None]],
                          helpers: list[asyncio.Task[None]]) -> int | None:
        exited = asyncio.create_task(proc.wait())
        gone = asyncio.create_task(self.session.ended.wait())
        try:
            await asyncio.wait([exited, gone], return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                return None  # the client went away: the step is ended below
            await asyncio.wait(pumps, timeout=5)  # what the step wrote last, before the status
            return proc.returncode
        finally:
            tasks = [*pumps, *helpers, gone, exited]
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks)  # over: the step's pipes have no reader left but end_step's
            await end_step(proc)  # run() returns only once srun is reaped: the caller's count holds until then


class AttachSession(ExecSession):
    """`kubectl attach`: the container's output from now on, until it ends. A SLURM job's container has no
    stdin to join and no terminal: what the client types is read and dropped, as a runtime does for a
    container started without `stdin: true`."""

    def __init__(self, session: SpdySession, options: rc.ExecOptions, protocol: str,
                 output: AsyncIterator[bytes]) -> None:
        super().__init__(session, options, protocol, [], {})
        self.output = output

    async def _run_step(self) -> int | None:
        async def copy() -> None:
            async for chunk in self.output:
                if "stdout" in self.streams:
                    await self.streams["stdout"].write(chunk)

        copying = asyncio.create_task(copy())
        dropping = asyncio.create_task(_pump_in(self.streams.get("stdin"), _Discard()))
        gone = asyncio.create_task(self.session.ended.wait())
        try:
            await asyncio.wait([copying, gone], return_when=asyncio.FIRST_COMPLETED)
            return 0 if copying.done() and not gone.done() else None
        finally:
            for task in (copying, dropping, gone):
                task.cancel()


class _Discard:
    def write(self, data: bytes) -> None:
        return None

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None


def _take_terminal(terminal: int) -> None:
    """In the child: a session of its own whose controlling terminal is the pty. By its fd, not fd 0: uvloop
    (the proxy's loop) runs this before it sets up the child's stdin."""
    os.setsid()
    fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)


class _Terminal:
    """The pty's main side, read and written without blocking the loop. Both ways are bounded: output is read
    only while fewer than MAX_QUEUED_READS chunks wait for the client, and `drain` waits until what was written
    has gone into the terminal (a step that reads no input must not make the API spin or buffer without end)."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd, self.loop = fd, loop
        self.readable: asyncio.Queue[bytes] = asyncio.Queue()
        self._reading = False
        self._pending = bytearray()  # written by the client, not yet taken by the terminal
        self._drained = asyncio.Event()
        self._drained.set()
        os.set_blocking(fd, False)
        self._read_again()

    def _read_again(self) -> None:
        if not self._reading:
            self.loop.add_reader(self.fd, self._ready)
            self._reading = True

    def _ready(self) -> None:
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return
        except OSError:  # EIO: every process let go of the terminal
            data = b""
        if not data or self.readable.qsize() + 1 >= MAX_QUEUED_READS:
            self.loop.remove_reader(self.fd)  # at the end; or until the client has taken some
            self._reading = False
        self.readable.put_nowait(data)

    async def read(self, _size: int = READ_SIZE) -> bytes:
        data = await self.readable.get()
        if data and self.readable.qsize() < MAX_QUEUED_READS // 2:
            self._read_again()
        return data

    def write(self, data: bytes) -> None:
        self._pending += data
        self._flush()

    def _flush(self) -> None:
        while self._pending:
            try:
                written = os.write(self.fd, self._pending)
            except BlockingIOError:
                break
            except OSError:  # the terminal is gone: what is left has nowhere to go
                self._pending.clear()
                break
            del self._pending[:written]
        if self._pending:
            if self._drained.is_set():
                self._drained.clear()
                self.loop.add_writer(self.fd, self._flush)
        elif not self._drained.is_set():
            self.loop.remove_writer(self.fd)
            self._drained.set()

    async def drain(self) -> None:
        await self._drained.wait()

    def close(self) -> None:
        self.loop.remove_reader(self.fd)
        self.loop.remove_writer(self.fd)
        self._drained.set()
        with contextlib.suppress(OSError):
            os.close(self.fd)


async def _pump_out(read: Callable[[int], Awaitable[bytes]], stream: SpdyStream) -> None:
    while chunk := await read(READ_SIZE):
        await stream.write(chunk)


async def _pump_in(stream: SpdyStream | None, sink: Any) -> None:
    """The client's stdin into the step; its end closes the step's stdin (a terminal gets ^D)."""
    if stream is None or sink is None:
        return
    while chunk := await stream.read():
        sink.write(chunk)
        await sink.drain()
    if isinstance(sink, _Terminal):
        sink.write(b"\x04")
    else:
        sink.close()


async def _resizes(stream: SpdyStream | None, fd: int) -> None:
    """Each resize message sets the terminal's size; the kernel tells srun (SIGWINCH), srun the remote pty."""
    if stream is None:
        return
    pending = b""
    while chunk := await stream.read():
        pending = (pending + chunk)[-MAX_RESIZE_BYTES:]  # a message is a few dozen bytes: garbage is dropped
        while b"}" in pending:
            message, _, pending = pending.partition(b"}")
            size = rc.parse_resize(message + b"}")
            if size is not None:
                fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size[1], size[0], 0, 0))
