"""Ending a session's step (steps/ending.py) when the client goes away, without SLURM: a real bash stands in for
srun, one that ignores SIGTERM as a step may. The session's run() must return only once that process is gone
(the API and the proxy free the session's slot when it returns), and only our own child's group is signalled."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import uuid

import pytest

from slurmlink.steps import ending
from slurmlink.steps.portforward import PortForwardSession
from slurmlink.steps.session import ExecSession
from slurmlink.streams import remotecommand as rc
from slurmlink.streams.spdy import SpdySession

GRACE = 0.5  # instead of ending.GRACE_SECONDS: the stand-in ignores SIGTERM, so each test waits this out


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ending, "GRACE_SECONDS", GRACE)


DEAF_STEP = ["bash", "-c", "trap '' TERM; sleep 300; exit"]  # srun's stand-in and its child, one group


def _env(marker: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "ENDING_TEST": marker}  # inherited by bash and sleep: how they are found


def _processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                if f"ENDING_TEST={marker}".encode() in environ.read().split(b"\0"):
                    found.append(int(pid))
        except OSError:
            pass
    return found


async def _until_running(marker: str, count: int) -> None:
    async with asyncio.timeout(10):
        while len(_processes_with(marker)) < count:
            await asyncio.sleep(0.05)


async def _pair() -> tuple[SpdySession, SpdySession]:
    left, right = socket.socketpair()
    client = SpdySession(*await asyncio.open_connection(sock=left), server=False)
    server = SpdySession(*await asyncio.open_connection(sock=right), server=True)
    return client, server


@pytest.mark.anyio
@pytest.mark.parametrize("stdin", [False, True])
async def test_an_exec_whose_client_left_returns_only_once_its_deaf_step_is_gone(stdin: bool) -> None:
    marker = f"ending-{uuid.uuid4().hex}"
    client, server = await _pair()
    options = rc.ExecOptions(("sleep",), stdin, True, False, False)
    session = ExecSession(server, options, rc.SPDY_PROTOCOLS[0], DEAF_STEP, _env(marker))
    running = asyncio.create_task(session.run())
    reading = asyncio.create_task(client.run())
    try:
        for kind in ("error", "stdout", *(["stdin"] if stdin else [])):
            await client.open_stream({rc.STREAM_TYPE_HEADER: kind})
        await _until_running(marker, 2)  # bash and its sleep
        client.writer.transport.abort()  # kubectl's ^C
        await asyncio.wait_for(running, 10 + GRACE)
        assert _processes_with(marker) == []  # SIGTERM was ignored: SIGKILL ended the group before run() returned
    finally:
        reading.cancel()
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_a_port_forward_whose_client_left_returns_only_once_its_deaf_steps_are_gone() -> None:
    marker = f"ending-{uuid.uuid4().hex}"
    client, server = await _pair()
    session = PortForwardSession(server, lambda port: (DEAF_STEP, _env(marker)))
    running = asyncio.create_task(session.run())
    reading = asyncio.create_task(client.run())
    try:
        for request_id in ("0", "1"):  # two connections, a step each
            headers = {"port": "8080", "requestid": request_id}
            await client.open_stream({"streamtype": "error", **headers})
            await client.open_stream({"streamtype": "data", **headers})
        await _until_running(marker, 4)  # bash and its sleep, twice
        client.writer.transport.abort()
        await asyncio.wait_for(running, 10 + GRACE)
        assert _processes_with(marker) == []
    finally:
        reading.cancel()
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.anyio
async def test_a_reaped_child_is_never_signalled(monkeypatch: pytest.MonkeyPatch) -> None:
    # Once reaped, the child's pid (the group's id) may belong to someone else: end_step must not signal it.
    proc = await asyncio.create_subprocess_exec("true", start_new_session=True)
    await proc.wait()
    signalled: list[tuple[int, int]] = []
    monkeypatch.setattr(ending.os, "killpg", lambda pgid, signum: signalled.append((pgid, signum)))
    await asyncio.wait_for(ending.end_step(proc), 5)
    assert signalled == []


@pytest.mark.anyio
async def test_a_step_that_heeds_sigterm_gets_no_sigkill() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "300", start_new_session=True,
                                                stdout=asyncio.subprocess.PIPE)
    await asyncio.wait_for(ending.end_step(proc), GRACE / 2 + 5)
    assert proc.returncode == -signal.SIGTERM


@pytest.mark.anyio
async def test_output_nobody_reads_does_not_keep_end_step_waiting() -> None:
    # A full pipe keeps asyncio's wait() from returning: end_step drops what is left.
    proc = await asyncio.create_subprocess_exec("bash", "-c", "trap '' TERM; yes", start_new_session=True,
                                                stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    await proc.stdout.readexactly(1)  # it writes; within the grace it fills the pipe, as nobody reads
    await asyncio.wait_for(ending.end_step(proc), 10 + GRACE)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.anyio
@pytest.mark.parametrize("turns", [1, 2, 3, 5, 8])
async def test_a_step_whose_start_is_cancelled_is_ended_not_left(turns: int) -> None:
    # The client leaves while srun starts: asyncio's own create_subprocess_exec would SIGKILL the child alone and
    # wait for pipes that the rest of its group holds.
    marker = f"ending-{uuid.uuid4().hex}"
    starting = asyncio.create_task(ending.start_step(*DEAF_STEP, env=_env(marker), start_new_session=True,
                                                     stdout=asyncio.subprocess.PIPE))
    for _ in range(turns):  # cancelled at different points of the start
        await asyncio.sleep(0)
    starting.cancel()
    try:
        await asyncio.wait_for(asyncio.wait([starting]), 10 + GRACE)
        if not starting.cancelled():  # it had started before the cancel came: the caller ends it, as any step
            await ending.end_step(starting.result())
        assert _processes_with(marker) == []
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)
