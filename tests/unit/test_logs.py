"""Log selection over chunked reads: tail keeps only what it needs, limits, follow ends with the container."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from slurmlink.api.logs import Tail, stream
from slurmlink.core.records import ContainerRecord
from slurmlink.wire.interlink import ContainerLogOpts


def collect(data: bytes, chunk: int = 3, **opts: object) -> bytes:
    async def read(offset: int) -> bytes:
        return data[offset:offset + chunk]

    async def run() -> bytes:
        parts = [p async for p in stream(read, ContainerLogOpts(**opts), None, lambda: True, 0.01)]
        return b"".join(parts)

    return asyncio.run(run())


def test_whole_log_in_chunks() -> None:
    assert collect(b"a\nbb\nccc\n") == b"a\nbb\nccc\n"


def test_tail_and_limit() -> None:
    data = b"one\ntwo\nthree\nfour"
    assert collect(data, tail=2) == b"three\nfour"
    assert collect(data, tail=10) == data
    assert collect(data, limit_bytes=5) == b"one\nt"


def test_tail_keeps_bounded_memory() -> None:
    tail = Tail(2)
    for _ in range(10_000):
        tail.feed(b"line\n")
    assert len(tail.lines) == 2 and tail.result() == b"line\nline\n"


def test_since_drops_a_log_that_ended_before() -> None:
    ended = ContainerRecord(name="c", finished_at=datetime.now(UTC) - timedelta(hours=2))

    async def read(offset: int) -> bytes:
        return b"old\n"[offset:]

    async def run() -> list[bytes]:
        opts = ContainerLogOpts(SinceSeconds=60)
        return [p async for p in stream(read, opts, ended, lambda: True, 0.01)]

    assert asyncio.run(run()) == []


def test_follow_until_the_container_ends() -> None:
    data = bytearray(b"a\n")
    state = {"reads": 0}

    async def read(offset: int) -> bytes:
        state["reads"] += 1
        if state["reads"] == 3:
            data.extend(b"b\n")
        return bytes(data[offset:])

    async def run() -> bytes:
        opts = ContainerLogOpts(Follow=True)
        return b"".join([p async for p in stream(read, opts, None, lambda: state["reads"] >= 5, 0.001)])

    assert asyncio.run(run()) == b"a\nb\n"
