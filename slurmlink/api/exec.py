"""`kubectl exec` and `attach` at the site (mode 2): the vk relays the apiserver's SPDY/3.1 connection here,
and this serves it the way a kubelet does. exec runs the command as a new step of the pod's job, as the pod's
own mapped account (`runuser -u <user> -- srun --overlap --jobid=<job> ...`); attach follows the container's
output (SLURM keeps no stdin of a running step to join).

It sits in front of the API's app as plain ASGI (the connection leaves HTTP after the 101, which FastAPI's
middleware cannot follow), checks the same bearer token, and limits sessions per pod and per account.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hmac
import json
import logging
import os
import pty
import signal
import struct
import termios
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from slurmlink.api import logs
from slurmlink.api.portforward import PortForwardSession, connector_argv
from slurmlink.api.registry import PodEntry
from slurmlink.api.service import PodService
from slurmlink.core.errors import PodRejected
from slurmlink.slurm.base import SlurmError, Unsupported
from slurmlink.streams import remotecommand as rc
from slurmlink.streams.portforward import PROTOCOL as PORTFORWARD_PROTOCOL
from slurmlink.streams.spdy import SpdySession, SpdyStream
from slurmlink.streams.upgrade import SPDY, on_server_shutdown, switch_protocols
from slurmlink.translate.execcmd import exec_argv, find_container
from slurmlink.wire.interlink import ContainerLogOpts
from slurmlink.wire.names import ATTACH_ROUTE, EXEC_ROUTE, PORTFORWARD_ROUTE

log = logging.getLogger(__name__)
STREAMS_TIMEOUT = 30.0  # the kubelet's streamCreationTimeout
READ_SIZE = 32 * 1024
MAX_QUEUED_READS = 8  # terminal output chunks waiting for the client before the terminal is read no more
MAX_RESIZE_BYTES = 4096  # of the resize stream kept while looking for a message's end
MAX_POD_BYTES = 4 * 1024 * 1024


class ExecEndpoint:
    """ASGI: the exec/attach routes here, everything else to `app`."""

    def __init__(self, app: ASGIApp, service: PodService, token: str | None, *, per_pod: int, per_user: int
                 ) -> None:
        self.app, self.service, self.token = app, service, token
        self.per_pod, self.per_user = per_pod, per_user
        self.sessions_of_pod: Counter[str] = Counter()
        self.sessions_of_user: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in (EXEC_ROUTE, ATTACH_ROUTE, PORTFORWARD_ROUTE):
            await self.app(scope, receive, send)
            return
        refusal, started = await self._start(scope, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        assert started is not None
        await started

    async def _start(self, scope: Scope, receive: Receive) -> tuple[ASGIApp | None, Awaitable[None] | None]:
        headers = Headers(scope=scope)
        given = headers.get("authorization", "")
        if self.token is not None and not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return PlainTextResponse("missing or wrong bearer token\n", 401), None
        if not self.service.recovered.is_set():
            return PlainTextResponse("slurmlink has not yet recovered its state from SLURM; retry\n", 503), None
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        params = dict(query)
        entry = self.service.registry.get(params.get("uid", ""))
        container = params.get("container", "")
        pod = await _pod_of(receive)
        if entry is not None and pod is not None and (pod.get("metadata") or {}).get("uid") == entry.uid:
            entry.pod = pod  # as /status does: after a restart the API knows the spec only from the vk
        if entry is None or entry.pod is None or entry.rejected is not None:
            return PlainTextResponse(f"pod {params.get('namespace')}/{params.get('pod')} is not known here\n",
                                     404), None
        if entry.finished or not entry.job_id or (entry.job is not None and entry.job.state != "RUNNING"):
            what = f"container {container}" if container else f"pod {params.get('namespace')}/{params.get('pod')}"
            return PlainTextResponse(f"{what} is not running: its job "
                                     f"{entry.job_id or '(none)'} is not running\n", 400), None
        if self.sessions_of_pod[entry.uid] >= self.per_pod or self.sessions_of_user[entry.user] >= self.per_user:
            return PlainTextResponse(f"too many exec sessions (at most {self.per_pod} per pod and {self.per_user} "
                                     f"per account)\n", 429), None
        # Counted before any await (two requests cannot both pass), and before attach reads the log.
        self.sessions_of_pod[entry.uid] += 1
        self.sessions_of_user[entry.user] += 1
        try:
            refusal, started = await self._prepare(scope, headers, query, entry, container)
        except BaseException:
            self._release(entry)
            raise
        if refusal is not None:
            self._release(entry)
        return refusal, started

    async def _prepare(self, scope: Scope, headers: Headers, query: list[tuple[str, str]], entry: PodEntry,
                       container: str) -> tuple[ASGIApp | None, Awaitable[None] | None]:
        """The step (or the attached output) and the upgrade, for a session already counted."""
        assert entry.pod is not None
        options = rc.ExecOptions.from_kubelet_query(query)
        forwarding = scope["path"] == PORTFORWARD_ROUTE
        job_id, user, workdir = entry.job_id, entry.user, entry.workdir

        def step_for(port: int) -> tuple[list[str], dict[str, str]]:
            return self.service.backend.step_command(job_id, user, workdir, connector_argv(port), pty=False,
                                                     unbuffered=True)

        step: list[str] = []
        env: dict[str, str] = {}
        try:
            if forwarding:
                try:
                    step_for(1)  # refused now, before the upgrade, if this site cannot start steps
                except Unsupported:
                    raise Unsupported("port-forward is not supported with this site (mode 1 reaches SLURM "
                                      "through its REST API, which cannot start a step)") from None
            elif scope["path"] == ATTACH_ROUTE:
                find_container(entry.pod, container)
                output = await attach_output(self.service, entry, container)
            else:
                argv = exec_argv(entry.pod, container, options.command, site=self.service.site,
                                 workdir=entry.workdir)
                step, env = self.service.backend.step_command(entry.job_id, entry.user, entry.workdir, argv,
                                                              pty=options.tty)
        except PodRejected as exc:
            return PlainTextResponse(f"{exc}\n", 400), None
        except Unsupported as exc:
            return PlainTextResponse(f"{exc}\n", 501), None
        except SlurmError as exc:
            return PlainTextResponse(f"{exc}\n", 403), None
        if (headers.get("upgrade") or "").lower() != SPDY.lower():
            return PlainTextResponse("Upgrade request required\n", 400), None
        offered = headers.getlist(rc.PROTOCOL_HEADER)
        supported = (PORTFORWARD_PROTOCOL,) if forwarding else rc.SPDY_PROTOCOLS
        protocol = rc.negotiate(offered, supported)
        if protocol is None:
            return PlainTextResponse(f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                     f"server supports {list(supported)}\n", 403), None
        reader, writer = switch_protocols(scope, [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, protocol)])
        session = SpdySession(reader, writer, server=True)
        served: ExecSession | PortForwardSession
        if forwarding:
            served = PortForwardSession(session, step_for)
        elif scope["path"] == ATTACH_ROUTE:
            served = AttachSession(session, options, protocol, output)
        else:
            served = ExecSession(session, options, protocol, step, env)
        on_server_shutdown(scope, served.interrupt)
        return None, self._counted(entry, served.run())

    async def _counted(self, entry: PodEntry, session: Awaitable[None]) -> None:
        try:
            await session
        finally:
            self._release(entry)

    def _release(self, entry: PodEntry) -> None:
        for counter, key in ((self.sessions_of_pod, entry.uid), (self.sessions_of_user, entry.user)):
            counter[key] -= 1
            if counter[key] <= 0:
                del counter[key]


async def _pod_of(receive: Receive) -> dict[str, Any] | None:
    """The pod object the vk sends as the request's body (read before the connection switches)."""
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body += message.get("body", b"")
        if len(body) > MAX_POD_BYTES:
            return None
        if not message.get("more_body"):
            break
    try:
        pod = json.loads(body) if body else None
    except ValueError:
        return None
    return pod if isinstance(pod, dict) and pod.get("spec") else None


class ExecSession:
    """One exec: wait for the client's streams, run the step, pump bytes, report the exit code, close."""

    def __init__(self, session: SpdySession, options: rc.ExecOptions, protocol: str, step: list[str],
                 env: dict[str, str]) -> None:
        self.session, self.options, self.protocol = session, options, protocol
        self.step, self.env = step, env
        self.streams: dict[str, SpdyStream] = {}
        self.all_there = asyncio.Event()
        session.on_stream = self._arrived

    def interrupt(self) -> None:
        """The API is shutting down: tell the client why (a failure on the error stream), then close."""
        async def say_goodbye() -> None:
            error = self.streams.get("error")
            if error is not None:
                status = rc.failure_status("the slurmlink API is shutting down: the session was closed",
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
        proc = await asyncio.create_subprocess_exec(
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
            proc = await asyncio.create_subprocess_exec(
                *self.step, env={**self.env, "TERM": "xterm"}, stdin=child, stdout=child, stderr=child,
                preexec_fn=_take_terminal)  # noqa: PLW1509 - setsid + controlling tty: srun --pty needs a terminal
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
                _kill_group(proc)
                return None
            await asyncio.wait(pumps, timeout=5)  # what the step wrote last, before the status
            return proc.returncode
        finally:
            for task in [*pumps, *helpers, gone]:
                task.cancel()
            if not exited.done():
                _kill_group(proc)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(exited, 5)


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


async def attach_output(service: PodService, entry: PodEntry, container: str) -> AsyncIterator[bytes]:
    """The container's log from its current end on, until the container ends (or restarts)."""
    base = 0
    while chunk := await service.backend.read_log(entry.directory, container, base):
        base += len(chunk)
    record = entry.records.get(container)
    restarts = record.restarts if record else 0

    async def read(offset: int) -> bytes:
        return await service.backend.read_log(entry.directory, container, base + offset)

    def ended() -> bool:
        now = entry.records.get(container)
        return entry.finished or (now is not None and (now.exit_code is not None or now.restarts != restarts))

    return logs.stream(read, ContainerLogOpts(follow=True), record, ended, service.config.log_follow_interval)


def _take_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)  # runuser, srun and the step's local side


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
