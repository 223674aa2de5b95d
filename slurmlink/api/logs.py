"""Container logs for `/getLogs`: selection (pure) and following (reads the log as it grows)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

from slurmlink.interlink.types import ContainerLogOpts
from slurmlink.slurm.base import ContainerRecord


def since_of(opts: ContainerLogOpts, now: datetime | None = None) -> datetime | None:
    if opts.since_time:
        return opts.since_time
    if opts.since_seconds:
        return (now or datetime.now(UTC)) - timedelta(seconds=opts.since_seconds)
    return None


def select(data: bytes, opts: ContainerLogOpts, record: ContainerRecord | None) -> bytes:
    """Apply tail and limit to a whole log. Logs carry no per-line times (they are byte-exact), so
    `since` drops a log that ended before that moment and keeps one that was still being written."""
    since = since_of(opts)
    if since and record and record.finished_at and record.finished_at < since:
        return b""
    if opts.tail:
        lines = data.splitlines(keepends=True)
        data = b"".join(lines[-opts.tail:])
    if opts.limit_bytes:
        data = data[: opts.limit_bytes]
    return data


async def follow(
    read: Callable[[int], asyncio.Future[bytes] | object], first: bytes, offset: int, limit: int,
    finished: Callable[[], bool], interval: float,
) -> AsyncIterator[bytes]:
    """Yield `first`, then new bytes as they appear, until the container ended and all is read."""
    sent = 0
    chunk = first
    while True:
        if chunk:
            if limit:
                chunk = chunk[: limit - sent]
            sent += len(chunk)
            yield chunk
            if limit and sent >= limit:
                return
        done = finished()  # decided before the read, so bytes written just before the end are not lost
        chunk = await read(offset)  # type: ignore[misc]
        offset += len(chunk)
        if not chunk:
            if done:
                return
            await asyncio.sleep(interval)
