"""A container's log for `GET /slurmlink/v1/jobs/{id}/logs/{container}`: offset, limit, tail and follow.

Every read opens the log afresh through PodFiles (no symlink, the owner's regular file), and no answer or
read carries more than `max_chunk` bytes, so memory stays bounded whatever the log's size.
"""

from __future__ import annotations

import asyncio
import logging
import os
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.poddir import PodDir
from slurmlink.slurm.base import SlurmError
from slurmlink.slurm.podfiles import PodFiles, pread_all, tail_offset

log = logging.getLogger("slurmlink.proxy")

MAX_NUMBER = 2**62
ENDED_CHECK_SECONDS = 15.0  # while following: how often SLURM is asked whether the job is still there


@dataclass(frozen=True)
class LogQuery:
    offset: int = 0
    limit_bytes: int | None = None
    tail_lines: int | None = None  # when set, the last K lines instead of `offset`
    follow: bool = False
    previous: bool = False  # the log of the instance before the container's last restart


def parse_query(query: str) -> LogQuery:
    """The log parameters from a raw query string; Refusal 400 for anything unknown, repeated or malformed."""
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise Refusal(400, "BadRequest", "the query string is not valid") from None
    values: dict[str, str] = {}
    for key, value in pairs:
        if key not in ("offset", "limit_bytes", "tail_lines", "follow", "previous"):
            raise Refusal(400, "BadRequest", f"unknown parameter {key[:40]!r}: use offset, limit_bytes, "
                          "tail_lines, follow, previous")
        if key in values:
            raise Refusal(400, "BadRequest", f"parameter {key} given twice")
        values[key] = value
    for flag in ("follow", "previous"):
        if values.get(flag, "false") not in ("true", "false"):
            raise Refusal(400, "BadRequest", f"{flag} is true or false")
    if values.get("follow") == "true" and values.get("previous") == "true":
        raise Refusal(400, "BadRequest", "the previous instance's log has ended: follow it without previous")
    limit = _number(values, "limit_bytes")
    if limit == 0:
        raise Refusal(400, "BadRequest", "limit_bytes must be at least 1")
    return LogQuery(offset=_number(values, "offset") or 0, limit_bytes=limit, tail_lines=_number(values, "tail_lines"),
                    follow=values.get("follow") == "true", previous=values.get("previous") == "true")


def _number(values: dict[str, str], key: str) -> int | None:
    text = values.get(key)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18 or int(text) > MAX_NUMBER:
        raise Refusal(400, "BadRequest", f"{key} must be a whole number of at most 18 digits")
    return int(text)


@dataclass(frozen=True)
class Chunk:
    data: bytes
    size: int  # the log's size when it was read
    end: int  # where the next read continues


def read_chunk(files: PodFiles, pod: PodDir, container: str, query: LogQuery, start: int | None,
               limit: int, window: int) -> Chunk:
    """One bounded read (blocking): from `start`, or where the query says when `start` is None. A tail is
    looked for in the last `window` bytes; `limit` then counts from its first line, as kubectl's does."""
    with files.open_log(pod.workdir, pod.uid, container, owned_dirs=True, previous=query.previous) as fd:
        if fd is None:
            return Chunk(b"", 0, start or 0)
        size = os.fstat(fd).st_size
        if start is None:
            start = tail_offset(fd, query.tail_lines, size, window) if query.tail_lines is not None else query.offset
        data = pread_all(fd, limit, start)
        return Chunk(data, size, start + len(data))


class LogReader:
    def __init__(self, files: PodFiles, max_chunk: int, poll_seconds: float) -> None:
        self.files, self.max_chunk, self.poll_seconds = files, max_chunk, poll_seconds

    def _limit(self, query: LogQuery, sent: int = 0) -> int:
        if query.limit_bytes is None:
            return self.max_chunk
        return min(self.max_chunk, query.limit_bytes - sent)

    async def once(self, pod: PodDir, container: str, query: LogQuery) -> Chunk:
        return await asyncio.to_thread(read_chunk, self.files, pod, container, query, None, self._limit(query),
                                       self.max_chunk)

    async def follow(self, pod: PodDir, container: str, query: LogQuery, first: Chunk,
                     job_ended: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
        """The first chunk, then new bytes as they are written, until the container's exit record exists
        (or SLURM says the job is gone, for jobs killed before writing one), `limit_bytes` are sent, or the
        client leaves (Starlette then cancels this generator). A file that turns unsafe ends the stream."""
        try:
            async for data in self._follow(pod, container, query, first, job_ended):
                yield data
        except SlurmError as exc:
            log.warning("stopped following the log of %s in job %s: %s", container, pod.job_id, exc.message)

    async def _follow(self, pod: PodDir, container: str, query: LogQuery, first: Chunk,
                      job_ended: Callable[[], Awaitable[bool]]) -> AsyncIterator[bytes]:
        sent, position = len(first.data), first.end
        if first.data:
            yield first.data
        loop = asyncio.get_running_loop()
        next_check = loop.time() + ENDED_CHECK_SECONDS
        while self._limit(query, sent) > 0:
            # Look for the exit record before reading: what was logged before it appeared is then read below.
            done = await asyncio.to_thread(self.files.has_status_file, pod.workdir, pod.uid, f"{container}.exit",
                                           owned_dirs=True)
            if not done and loop.time() >= next_check:
                done = await job_ended()
                next_check = loop.time() + ENDED_CHECK_SECONDS
            chunk = await asyncio.to_thread(read_chunk, self.files, pod, container, query, position,
                                            self._limit(query, sent), self.max_chunk)
            if chunk.data:
                sent, position = sent + len(chunk.data), chunk.end
                yield chunk.data
                continue  # there may be more right away
            if done:
                return
            await asyncio.sleep(self.poll_seconds)
