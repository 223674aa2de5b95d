"""The exec TTY's main side (steps/session.py `_Terminal`) on a real pty: a step that reads no input must not make
the API's loop spin or buffer without end, and output the client does not take stops being read."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import termios
import tty

from slurmlink.steps.session import MAX_QUEUED_READS, _Terminal


async def _input_nobody_reads() -> tuple[bool, int, bytes]:
    main, side = pty.openpty()
    tty.setraw(side)  # no echo, no line discipline: what is written waits in the terminal until read
    loop = asyncio.get_running_loop()
    terminal = _Terminal(main, loop)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)
    ticker = asyncio.create_task(tick())
    data = bytes(range(256)) * 4096  # 1 MiB: far more than a pty holds
    terminal.write(data)
    try:
        await asyncio.wait_for(terminal.drain(), 0.5)
        drained_early = True
    except TimeoutError:
        drained_early = False
    # The loop went on meanwhile; now the step reads, and the rest goes in.
    got = bytearray()
    os.set_blocking(side, False)
    while len(got) < len(data):
        try:
            got += os.read(side, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.005)
    await asyncio.wait_for(terminal.drain(), 5)
    ticker.cancel()
    terminal.close()
    os.close(side)
    return drained_early, ticks, bytes(got)


def test_input_that_the_step_does_not_read_waits_without_blocking_the_loop() -> None:
    drained_early, ticks, got = asyncio.run(_input_nobody_reads())
    assert not drained_early
    assert ticks >= 20  # the loop ran other tasks while the terminal was full
    assert got == bytes(range(256)) * 4096


async def _output_nobody_takes() -> int:
    main, side = pty.openpty()
    attrs = termios.tcgetattr(side)
    tty.setraw(side)
    terminal = _Terminal(main, asyncio.get_running_loop())
    os.set_blocking(side, False)
    written = 0
    chunk = b"x" * 4096
    for _ in range(400):  # the step keeps printing; the client takes nothing
        with contextlib.suppress(BlockingIOError):
            written += os.write(side, chunk)
        await asyncio.sleep(0)
    queued = terminal.readable.qsize()
    termios.tcsetattr(side, termios.TCSANOW, attrs)
    terminal.close()
    os.close(side)
    assert written < 400 * len(chunk)  # the terminal filled up: the step was held back, not the API's memory
    return queued


def test_output_the_client_does_not_take_is_read_no_further() -> None:
    assert asyncio.run(_output_nobody_takes()) <= MAX_QUEUED_READS
