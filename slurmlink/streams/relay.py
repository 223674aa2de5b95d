"""Relaying an upgraded connection byte for byte: the vk between the apiserver and the API, the mode-1 API
between the vk and the proxy. Neither end's protocol is read here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)
CHUNK = 64 * 1024
GONE_CHECK_SECONDS = 2.0  # how soon a deleted pod's open sessions are closed


async def splice(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, network: Any,
                 gone: Callable[[], bool]) -> None:
    """Copy both ways between a switched connection and `network` (an httpcore network stream, as httpx hands
    over after a 101) until one side ends or `gone()`; then close both."""
    async def upstream() -> None:
        while data := await reader.read(CHUNK):
            await network.write(data)

    async def downstream() -> None:
        while data := await network.read(CHUNK):
            writer.write(data)
            await writer.drain()

    async def watch() -> None:
        while not gone():
            await asyncio.sleep(GONE_CHECK_SECONDS)
        log.info("the pod is gone: its interactive session is closed")

    tasks = [asyncio.create_task(coro) for coro in (upstream(), downstream(), watch())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await network.aclose()
        writer.close()
