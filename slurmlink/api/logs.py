"""Container logs for `/getLogs`: tail, limit and follow over a log read in chunks.

Logs are kept byte for byte without per-line times, so `since` drops a log that ended before that
moment and keeps one still being written; `timestamps` is not supported (see docs/configuration.md).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

from slurmlink.core.records import ContainerRecord
from slurmlink.wire.interlink import ContainerLogOpts

Reader = Callable[[int], Awaitable[bytes]]  # bytes of the log from an offset; b"" at its end


def since_of(opts: ContainerLogOpts, now: datetime | None = None) -> datetime | None:
    if opts.since_time:
        return opts.since_time
    if opts.since_seconds:
        return (now or datetime.now(UTC)) - timedelta(seconds=opts.since_seconds)
    return None


def ended_before_since(opts: ContainerLogOpts, record: ContainerRecord | None) -> bool:
    since = since_of(opts)
    return bool(since and record and record.finished_at and record.finished_at < since)


class Tail:
    """The last `lines` lines of a stream, keeping no more than that in memory."""

    def __init__(self, lines: int) -> None:
        self.lines: deque[bytes] = deque(maxlen=lines)
        self.partial = b""

    def feed(self, chunk: bytes) -> None:
        parts = (self.partial + chunk).split(b"\n")
        self.partial = parts.pop()
        self.lines.extend(part + b"\n" for part in parts)

    def result(self) -> bytes:
        lines = list(self.lines) + ([self.partial] if self.partial else [])
        return b"".join(lines[-self.lines.maxlen:] if self.lines.maxlen else lines)


async def stream(read: Reader, opts: ContainerLogOpts, record: ContainerRecord | None,
                 finished: Callable[[], bool], interval: float) -> AsyncIterator[bytes]:
    """The log as `kubectl logs` asks for it; with `follow`, new bytes until the container ended."""
    if ended_before_since(opts, record):
        return
    limit, sent, offset = opts.limit_bytes, 0, 0

    def clip(chunk: bytes) -> bytes:
        return chunk[: limit - sent] if limit else chunk

    if opts.tail:
        tail = Tail(opts.tail)
        while chunk := await read(offset):
            offset += len(chunk)
            tail.feed(chunk)
        first = clip(tail.result())
        sent += len(first)
        if first:
            yield first
    while not (limit and sent >= limit):
        done = finished()  # decided before the read, so bytes written just before the end are not lost
        chunk = await read(offset)
        if chunk:
            offset += len(chunk)
            chunk = clip(chunk)
            sent += len(chunk)
            yield chunk
            continue
        if done or not opts.follow:
            return
        await asyncio.sleep(interval)
