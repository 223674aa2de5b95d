"""A lean HTTP/1.1 client for the proxy's forwarding to slurmrestd: kept-alive connections, each request written
in one piece (head and body in one send, so slurmrestd reads it whole at once), the answer's head parsed here.

It does only what forwarding needs: no redirects, cookies, decompression or proxies, and no retry of a request
once sent (a refused connect is tried again for up to 2 s: nothing was sent). Measured per
request, httpx's general machinery (its pool, anyio, h11, two sends) was the largest part of the proxy's own
CPU (bench/README.md). The proxy's other calls to slurmrestd (version discovery, job lookups, health) are rare
and keep using httpx.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from slurmlink.core.errors import SlurmlinkError

MAX_HEAD_BYTES = 64 * 1024  # slurmrestd's answer heads are a few hundred bytes
READ_SIZE = 64 * 1024
PREREAD_BYTES = 16 * 1024  # a body up to this size, with a Content-Length, is read with the head (most answers)
NO_BODY_STATUSES = frozenset({204, 304})
REFUSED_RETRY_SECONDS = (0.05, 0.5)  # after a refused connect: first delay, doubling up to the second
REFUSED_RETRY_WINDOW = 2.0  # refused connects are tried again for this long (within the connect timeout)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 token: a header name
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # no CR, LF or NUL: one header stays one header
_TARGET = re.compile(r"/[!-~]*")  # visible ASCII only: what is checked is what is sent
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-5][0-9]{2})(?: [^\r\n]*)?")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\r\n]*)?\r\n")


class UpstreamError(SlurmlinkError):
    """slurmrestd could not be reached, or its answer was not HTTP/1.1 the proxy can relay."""

    default_reason = "UpstreamUnreachable"
    default_transient = True


class UpstreamTimeout(UpstreamError):
    """slurmrestd did not connect, or answer, within the timeout."""

    default_reason = "UpstreamUnavailable"


def valid_target(target: str) -> bool:
    """Whether a request target (path and query) can be sent as it is. Pure."""
    return _TARGET.fullmatch(target) is not None


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reused = False

    def usable(self) -> bool:
        """Still open at both ends (slurmrestd's close of an idle connection shows as EOF), with nothing unread:
        bytes after the end of an answer would be read as the answer to the next request, another caller's."""
        unread = self.reader._buffer  # type: ignore[attr-defined]  # StreamReader has no public look at it
        return not unread and not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


class UpstreamResponse:
    """slurmrestd's answer: status and headers now, the body read with `aiter_raw()` or `read()`, then
    `aclose()` (always: it gives the connection back to the pool, or closes it if the body was not read)."""

    def __init__(self, pool: UpstreamPool, conn: _Connection, status: int, headers: list[tuple[str, str]],
                 length: int | None, chunked: bool, keep_alive: bool, preread: bytes = b"") -> None:
        self.status_code, self.headers = status, headers  # header names lowercased
        self._pool, self._conn = pool, conn
        self._length, self._chunked, self._keep_alive = length, chunked, keep_alive
        self._preread = preread  # the whole body, read with the head (then _length is 0): read once given out
        self._done = length == 0 and not chunked and not preread
        self._closed = False

    def whole(self) -> bytes | None:
        """The whole body, if it was read with the head (PREREAD_BYTES: never empty) and not given out yet:
        then it counts as read. None otherwise (read it with `aiter_raw()` or `read()`)."""
        if not self._preread:
            return None
        preread, self._preread = self._preread, b""
        self._done = True
        return preread

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (de-chunked, otherwise as sent)."""
        preread = self.whole()
        if preread is not None:
            yield preread
        while not self._done:
            chunk = await self._next_chunk()
            if chunk:
                yield chunk

    async def read(self, limit: int) -> bytes | None:
        """The whole body, or None when it is larger than `limit` bytes (the connection is then closed)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.aiter_raw():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pool.release(self._conn, reuse=self._done and self._keep_alive)

    async def _next_chunk(self) -> bytes:
        """The next piece of the body, each read within the pool's timeout (never across a `yield`: a slow
        client is the edge's business, not a reason to cancel the task relaying to it)."""
        reader = self._conn.reader
        try:
            async with asyncio.timeout(self._pool.timeout):
                if self._chunked:
                    return await self._next_chunked(reader)
                if self._length is None:  # framed by the end of the connection
                    data = await reader.read(READ_SIZE)
                    self._done = not data
                    return data
                data = await reader.read(min(READ_SIZE, self._length))
            if not data:
                raise UpstreamError("slurmrestd closed the connection within an answer")
            self._length -= len(data)
            self._done = self._length == 0
            return data
        except TimeoutError:
            raise UpstreamTimeout("slurmrestd stopped sending its answer") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise UpstreamError(f"slurmrestd broke off its answer: {type(exc).__name__}") from None

    async def _next_chunked(self, reader: asyncio.StreamReader) -> bytes:
        match = _CHUNK_SIZE.fullmatch(await reader.readuntil(b"\r\n"))
        if match is None:
            raise UpstreamError("slurmrestd sent a malformed chunk")
        size = int(match.group(1), 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers: read and dropped
                pass
            self._done = True
            return b""
        data = await reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise UpstreamError("slurmrestd sent a malformed chunk")
        return data[:-2]


class UpstreamPool:
    """Kept-alive connections to one slurmrestd, at most `max_connections` in use at once."""

    def __init__(self, url: str, *, max_connections: int, timeout: float, connect_timeout: float) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.tls = ssl.create_default_context() if parts.scheme == "https" else None
        self.port = parts.port or (443 if self.tls else 80)
        self.host_header = parts.netloc
        self.timeout, self.connect_timeout = timeout, connect_timeout
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []

    async def send(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> UpstreamResponse:
        """Send one request (`target` checked with `valid_target`); the answer's head is read, and its body too
        when it is small (PREREAD_BYTES, with a Content-Length): within the same timer, not one more."""
        head = self._head(method, target, headers, body)
        try:
            if self._slots.locked():  # else it is taken at once: no timer to set
                async with asyncio.timeout(self.timeout):
                    await self._slots.acquire()
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise UpstreamTimeout("no connection to slurmrestd became free in time") from None
        conn: _Connection | None = None
        try:
            async with asyncio.timeout(self.timeout):
                conn = await self._connection()
                conn.writer.write(head + body)
                return await self._answer(conn, method)
        except BaseException as exc:
            if conn is not None:
                conn.close()
            self._slots.release()
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout("slurmrestd did not answer in time") from None
            if isinstance(exc, OSError | asyncio.IncompleteReadError | asyncio.LimitOverrunError | ValueError):
                raise UpstreamError(type(exc).__name__) from None
            raise

    def release(self, conn: _Connection, *, reuse: bool) -> None:
        if reuse and conn.usable():
            conn.reused = True
            self._idle.append(conn)
        else:
            conn.close()
        self._slots.release()

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()

    def _head(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
        if not valid_target(target):
            raise ValueError("a request target must be visible ASCII")  # the caller checks it first
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host_header}"]
        for name, value in headers:
            if not _TOKEN.fullmatch(name) or not _FIELD_VALUE.fullmatch(value):
                raise ValueError(f"the header {name[:40]!r} cannot be sent")
            lines.append(f"{name}: {value}")
        if body or method not in ("GET", "HEAD", "DELETE"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.close()
        started = time.monotonic()
        deadline, retry_until = started + self.connect_timeout, started + REFUSED_RETRY_WINDOW
        delay = REFUSED_RETRY_SECONDS[0]
        while True:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    reader, writer = await asyncio.open_connection(self.host, self.port, ssl=self.tls,
                                                                   limit=MAX_HEAD_BYTES)
                return _Connection(reader, writer)
            except ConnectionRefusedError:
                # slurmrestd restarting (an upgrade, a new key): nothing was sent, so trying again is safe
                if time.monotonic() + delay >= min(deadline, retry_until):
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, REFUSED_RETRY_SECONDS[1])

    async def _answer(self, conn: _Connection, method: str) -> UpstreamResponse:
        while True:
            head = await conn.reader.readuntil(b"\r\n\r\n")
            status_line, _, rest = head[:-4].partition(b"\r\n")
            match = _STATUS_LINE.fullmatch(status_line)
            if match is None:
                raise UpstreamError("slurmrestd's answer does not start with an HTTP/1.x status line")
            status = int(match.group(2))
            if status >= 200:
                break  # 1xx interim answers are skipped (the proxy never asks for one)
        headers = [_header(line) for line in rest.split(b"\r\n")] if rest else []
        keep_alive = match.group(1) == b"1"
        length: int | None = None
        chunked = False
        for name, value in headers:
            if name == "connection" and "close" in value.lower():
                keep_alive = False
            elif name == "transfer-encoding":
                chunked = value.lower().rsplit(",", 1)[-1].strip() == "chunked"
                length, keep_alive = None, keep_alive and chunked
            elif name == "content-length" and not chunked:
                if not value.isdigit() or (length is not None and int(value) != length):
                    raise UpstreamError("slurmrestd's Content-Length is not valid")
                length = int(value)
        if method == "HEAD" or status in NO_BODY_STATUSES:
            length, chunked = 0, False
        elif length is None and not chunked:
            keep_alive = False  # the body ends when the connection does
        if length is not None and 0 < length <= PREREAD_BYTES:
            return UpstreamResponse(self, conn, status, headers, 0, False, keep_alive,
                                    await conn.reader.readexactly(length))
        return UpstreamResponse(self, conn, status, headers, length, chunked, keep_alive)


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    if not colon or not name or name != name.strip():
        raise UpstreamError("slurmrestd sent a malformed header line")
    return name.decode("latin-1").lower(), value.strip().decode("latin-1")
