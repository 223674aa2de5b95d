"""SPDY/3.1 (draft-mbelshe-httpbis-spdy-00 plus the 3.1 session window): frames, header blocks, and an
asyncio session of streams, as Kubernetes uses it between the apiserver and a kubelet (moby/spdystream).

Only what a stream relay needs: SYN_STREAM/SYN_REPLY/RST_STREAM/SETTINGS/PING/GOAWAY/HEADERS/WINDOW_UPDATE
and DATA; no server push, no priorities, no CREDENTIAL. Header blocks are zlib streams (one per direction per
connection) primed with the protocol's dictionary, each block ended by a sync flush.

Flow control: we grant the peer windows and send WINDOW_UPDATE as we consume. We hold our own sending to the
peer's windows only once it has shown it does flow control (a WINDOW_UPDATE or SETTINGS initial window):
moby/spdystream, the Go side of every Kubernetes SPDY stream, never sends WINDOW_UPDATE and does not count.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from slurmlink.core.errors import SlurmlinkError

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN, FLAG_UNIDIRECTIONAL = 0x01, 0x02
SETTINGS_INITIAL_WINDOW_SIZE = 7
INITIAL_WINDOW = 64 * 1024
MAX_FRAME_DATA = 16 * 1024  # what we put in one DATA frame
MAX_FRAME_LENGTH = (1 << 24) - 1
# What a peer may make us hold (a session serves one user, but in the API's process beside everyone's):
MAX_CONTROL_FRAME = 64 * 1024  # SYN_STREAM and the like carry a few headers
MAX_DATA_FRAME = 1024 * 1024  # Go's spdystream writes what io.Copy read (32 KiB) as one frame
MAX_HEADER_BLOCK = 64 * 1024  # a header block once decompressed (zlib could expand a frame a thousandfold)
MAX_STREAM_BUFFER = 256 * 1024  # a stream's data not yet read: past it, the session reads no more (backpressure)
HANGUP_CHECK_SECONDS = 1.0  # how often a paused session looks whether its peer has gone
MAX_OPEN_STREAMS = 64  # streams the peer may hold open at once; more are refused
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM, RST_CANCEL, RST_FLOW_CONTROL_ERROR = 1, 3, 5, 7

# The header compression dictionary of SPDY/3 (section 2.6.10.1): a fixed protocol constant, which both
# ends must hold byte for byte (zlib checks its Adler-32). Written as the spec lays it out: header names
# and common values, each after a 32-bit big-endian length, then a run of status codes, phrases, dates and
# media types without lengths.
_DICTIONARY_WORDS = (
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
    "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
    "content-base", "content-encoding", "content-language", "content-length", "content-location", "content-md5",
    "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host", "if-match",
    "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after",
    "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
    "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie",
    "keep-alive", "origin",
)
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
HEADER_DICTIONARY = b"".join(struct.pack(">I", len(word)) + word.encode() for word in _DICTIONARY_WORDS) + \
    _DICTIONARY_TAIL.encode()


class SpdyError(SlurmlinkError):
    """The peer broke the protocol, or the session ended under a stream."""


Headers = dict[str, str]  # names lower-case; several values of one name joined by NUL, as on the wire


@dataclass(frozen=True)
class ControlFrame:
    kind: int
    flags: int
    payload: bytes


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    flags: int
    data: bytes


Frame = ControlFrame | DataFrame


def encode_control(kind: int, flags: int, payload: bytes) -> bytes:
    return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload


def encode_data(stream_id: int, flags: int, data: bytes) -> bytes:
    if len(data) > MAX_FRAME_LENGTH:
        raise SpdyError("a DATA frame holds at most 16 MiB")
    return struct.pack(">II", stream_id & 0x7FFFFFFF, (flags << 24) | len(data)) + data


class FrameReader:
    """Bytes in, whole frames out: `feed` as they arrive, then `frames()`."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            first, second = struct.unpack_from(">II", self._buffer)
            length = second & 0xFFFFFF
            if length > (MAX_CONTROL_FRAME if first & 0x80000000 else MAX_DATA_FRAME):
                raise SpdyError(f"a frame of {length} bytes is more than this end takes")
            if len(self._buffer) < 8 + length:
                break
            body = bytes(self._buffer[8:8 + length])
            del self._buffer[:8 + length]
            if first & 0x80000000:
                version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
                if version != VERSION:
                    raise SpdyError(f"SPDY version {version}, not {VERSION}")
                frames.append(ControlFrame(kind, second >> 24, body))
            else:
                frames.append(DataFrame(first & 0x7FFFFFFF, second >> 24, body))
        return frames


class HeaderCodec:
    """One direction's header compression: a zlib stream that lives as long as the connection."""

    def __init__(self) -> None:
        self._compress = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 9,
                                          zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)
        self._decompress = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def encode(self, headers: Headers) -> bytes:
        block = bytearray(struct.pack(">I", len(headers)))
        for name, value in headers.items():
            if name != name.lower() or not name:
                raise SpdyError(f"header name {name!r} must be non-empty and lower-case")
            for part in (name.encode(), value.encode()):
                block += struct.pack(">I", len(part)) + part
        return self._compress.compress(bytes(block)) + self._compress.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, data: bytes) -> Headers:
        try:
            block = self._decompress.decompress(data, MAX_HEADER_BLOCK)
        except zlib.error as exc:
            raise SpdyError(f"header block: {exc}") from None
        if self._decompress.unconsumed_tail:
            raise SpdyError(f"a header block of more than {MAX_HEADER_BLOCK} bytes")
        try:
            (count,), offset, headers = struct.unpack_from(">I", block), 4, {}
            if count > (len(block) - 4) // 8:
                raise SpdyError("a header block that counts more headers than it holds")
            for _ in range(count):
                pair = []
                for _part in range(2):
                    (length,) = struct.unpack_from(">I", block, offset)
                    if offset + 4 + length > len(block):
                        raise SpdyError("truncated header block")
                    pair.append(block[offset + 4:offset + 4 + length].decode("utf-8", "replace"))
                    offset += 4 + length
                headers[pair[0].lower()] = pair[1]
        except struct.error:
            raise SpdyError("truncated header block") from None
        return headers


@dataclass
class SpdyStream:
    """One stream: its headers, what came in (until FIN or reset), and writes bounded by the peer's window."""

    session: SpdySession
    id: int
    headers: Headers
    incoming: asyncio.Queue[bytes] = field(default_factory=asyncio.Queue)
    send_window: int = INITIAL_WINDOW
    window_open: asyncio.Event = field(default_factory=asyncio.Event)
    replied: asyncio.Event = field(default_factory=asyncio.Event)
    reply_headers: Headers = field(default_factory=dict)
    remote_closed: bool = False
    local_closed: bool = False
    reset: bool = False
    unacknowledged: int = 0  # bytes consumed that we have not yet granted back
    buffered: int = 0  # bytes in `incoming`
    room: asyncio.Event = field(default_factory=asyncio.Event)  # set while `buffered` is under MAX_STREAM_BUFFER

    def __post_init__(self) -> None:
        self.room.set()

    async def read(self) -> bytes:
        """The next chunk; b"" once the peer closed or reset the stream."""
        if self.remote_closed and self.incoming.empty():
            return b""
        chunk = await self.incoming.get()
        if chunk:
            self.buffered -= len(chunk)
            if self.buffered < MAX_STREAM_BUFFER:
                self.room.set()
            self.session.consumed(self, len(chunk))
        return chunk

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.reset or self.session.closed:
                raise SpdyError(f"stream {self.id} is closed")
            size = min(len(view), MAX_FRAME_DATA)
            if self.session.peer_counts_windows:
                size = min(size, self.send_window, self.session.send_window)
                if size <= 0:
                    self.window_open.clear()
                    self.session.window_open.clear()
                    await (self.window_open.wait() if self.send_window <= 0 else self.session.window_open.wait())
                    continue
            # counted even for a peer that does not count yet: its first WINDOW_UPDATE then adds up
            self.send_window -= size
            self.session.send_window -= size
            await self.session.send(encode_data(self.id, 0, bytes(view[:size])))
            view = view[size:]

    async def close(self) -> None:
        """Half-close: we send no more (FIN)."""
        if not self.local_closed and not self.reset and not self.session.closed:
            self.local_closed = True
            await self.session.send(encode_data(self.id, FLAG_FIN, b""))

    def end_input(self) -> None:
        self.remote_closed = True
        self.incoming.put_nowait(b"")

    @property
    def open(self) -> bool:
        return not self.reset and not (self.remote_closed and self.local_closed)


StreamHandler = Callable[[SpdyStream], Awaitable[None] | None]


class SpdySession:
    """Streams over one connection. Client streams are odd, server streams even. `on_stream` is called for
    each stream the peer opens (after we have replied to it); run() reads until the connection ends."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, server: bool,
                 on_stream: StreamHandler | None = None) -> None:
        self.reader, self.writer, self.server = reader, writer, server
        self.on_stream = on_stream
        self.streams: dict[int, SpdyStream] = {}
        self._next_id = 2 if server else 1
        self._codec = HeaderCodec()
        self._frames = FrameReader()
        self._write_lock = asyncio.Lock()
        self.closed = False
        self.ended = asyncio.Event()
        self.peer_counts_windows = False
        self.peer_initial_window = INITIAL_WINDOW
        self.send_window = INITIAL_WINDOW
        self.window_open = asyncio.Event()
        self._session_unacknowledged = 0
        self._last_peer_stream = 0

    async def send(self, frame: bytes) -> None:
        if self.closed:
            raise SpdyError("the session is closed")
        async with self._write_lock:
            self.writer.write(frame)
            await self.writer.drain()

    async def open_stream(self, headers: Headers, *, wait_reply: bool = True) -> SpdyStream:
        self._forget_ended()  # a client's session (the vk's relay) may open streams for as long as a pod serves
        stream_id, self._next_id = self._next_id, self._next_id + 2
        stream = SpdyStream(self, stream_id, headers, send_window=self.peer_initial_window)
        self.streams[stream_id] = stream
        async with self._write_lock:  # ids must reach the wire in order, and header blocks share one zlib
            payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + self._codec.encode(headers)
            self.writer.write(encode_control(SYN_STREAM, 0, payload))
            await self.writer.drain()
        if wait_reply:
            await stream.replied.wait()
            if stream.reset:
                raise SpdyError(f"the peer refused stream {stream_id} ({headers})")
        return stream

    async def _reply(self, stream: SpdyStream, headers: Headers | None = None) -> None:
        async with self._write_lock:
            payload = struct.pack(">I", stream.id) + self._codec.encode(headers or {})
            self.writer.write(encode_control(SYN_REPLY, 0, payload))
            await self.writer.drain()

    async def reset_stream(self, stream_id: int, status: int = RST_CANCEL) -> None:
        stream = self.streams.get(stream_id)
        if stream is not None:
            stream.reset = True
            if not stream.remote_closed:
                stream.end_input()  # nothing more comes in: its reader sees the end after what it has not read
        with contextlib.suppress(SpdyError, ConnectionError):
            await self.send(encode_control(RST_STREAM, 0, struct.pack(">II", stream_id, status)))

    def consumed(self, stream: SpdyStream, size: int) -> None:
        """Grant the peer back what the reader took, in steps of half a window (stream and session)."""
        stream.unacknowledged += size
        self._session_unacknowledged += size
        updates = b""
        if stream.unacknowledged >= INITIAL_WINDOW // 2 and not stream.remote_closed:
            updates += encode_control(WINDOW_UPDATE, 0, struct.pack(">II", stream.id, stream.unacknowledged))
            stream.unacknowledged = 0
        if self._session_unacknowledged >= INITIAL_WINDOW // 2:
            updates += encode_control(WINDOW_UPDATE, 0, struct.pack(">II", 0, self._session_unacknowledged))
            self._session_unacknowledged = 0
        if updates and not self.closed:
            self.writer.write(updates)  # small and rare: no drain needed, ordering is kept by the transport

    async def run(self) -> None:
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for frame in self._frames.feed(data):
                    await self._handle(frame)
                # A stream whose reader is behind holds the whole session, as spdystream's does: the peer's
                # sending then waits on TCP, and nothing here grows without end.
                for stream in list(self.streams.values()):
                    await self._room_in(stream)
        except (ConnectionError, asyncio.IncompleteReadError, SpdyError, struct.error):
            pass  # the peer left, or sent what is not SPDY: the session ends either way
        finally:
            self._end()

    async def _room_in(self, stream: SpdyStream) -> None:
        """Wait until `stream` has room again. Meanwhile nothing is read, so the peer's leaving would go unseen
        (and its streams' steps run on): the socket says whether the peer closed or reset the connection."""
        while not stream.room.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stream.room.wait(), HANGUP_CHECK_SECONDS)
            if not stream.room.is_set() and _hung_up(self.writer):
                raise ConnectionResetError("the peer went away while the session was paused")

    def _end(self) -> None:
        self.closed = True
        for stream in self.streams.values():
            if not stream.remote_closed:
                stream.end_input()
            stream.window_open.set()
            stream.replied.set()
            stream.room.set()
        self.window_open.set()
        self.ended.set()

    async def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(SpdyError, ConnectionError):
                await self.send(encode_control(GOAWAY, 0, struct.pack(">II", self._last_peer_stream, 0)))
        self._end()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    def _forget_ended(self) -> None:
        """Drop streams over at both ends or reset (a long session opens many; each read looks at every stream
        the session holds). Their readers keep the streams themselves, and read what is left, then the end."""
        for stream_id in [i for i, s in self.streams.items() if not s.open and s.remote_closed]:
            del self.streams[stream_id]

    async def _handle(self, frame: Frame) -> None:
        if isinstance(frame, DataFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is None or stream.remote_closed:
                return  # a stream we reset or finished: its late data is dropped
            if frame.data:
                stream.incoming.put_nowait(frame.data)
                stream.buffered += len(frame.data)
                if stream.buffered >= MAX_STREAM_BUFFER:
                    stream.room.clear()
            if frame.flags & FLAG_FIN:
                stream.end_input()
            return
        payload = frame.payload
        if frame.kind == SYN_STREAM:
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = self._codec.decode(payload[10:])  # decode always: the zlib stream must stay in step
            if stream_id % 2 == (0 if self.server else 1) or stream_id <= self._last_peer_stream:
                await self.reset_stream(stream_id, RST_PROTOCOL_ERROR)  # ids only grow (SPDY/3 2.3.2)
                return
            self._forget_ended()
            if sum(1 for s in self.streams.values() if s.open) >= MAX_OPEN_STREAMS:
                self._last_peer_stream = stream_id
                await self.reset_stream(stream_id, RST_REFUSED_STREAM)
                return
            self._last_peer_stream = stream_id
            stream = SpdyStream(self, stream_id, headers, send_window=self.peer_initial_window)
            stream.replied.set()
            self.streams[stream_id] = stream
            await self._reply(stream)
            if frame.flags & FLAG_FIN:
                stream.end_input()
            if frame.flags & FLAG_UNIDIRECTIONAL:
                stream.local_closed = True
            if self.on_stream is not None:
                result = self.on_stream(stream)
                if result is not None:
                    await result
        elif frame.kind in (SYN_REPLY, HEADERS):
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            headers = self._codec.decode(payload[4:])
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.reply_headers.update(headers)
                stream.replied.set()
                if frame.flags & FLAG_FIN:
                    stream.end_input()
        elif frame.kind == RST_STREAM:
            stream_id = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.reset = True
                stream.end_input()
                stream.replied.set()
                stream.window_open.set()
        elif frame.kind == SETTINGS:
            (count,) = struct.unpack_from(">I", payload)
            for index in range(count):
                id_flags, value = struct.unpack_from(">II", payload, 4 + 8 * index)
                if id_flags & 0xFFFFFF == SETTINGS_INITIAL_WINDOW_SIZE:
                    self.peer_counts_windows = True
                    for stream in self.streams.values():
                        stream.send_window += value - self.peer_initial_window
                    self.peer_initial_window = value
        elif frame.kind == PING:
            (ping_id,) = struct.unpack_from(">I", payload)
            if ping_id % 2 == (1 if self.server else 0):  # the peer's ping: echo it
                await self.send(encode_control(PING, 0, payload[:4]))
        elif frame.kind == WINDOW_UPDATE:
            stream_id, delta = struct.unpack_from(">II", payload)
            self.peer_counts_windows = True
            if stream_id == 0:
                self.send_window += delta & 0x7FFFFFFF
                self.window_open.set()
            elif (stream := self.streams.get(stream_id & 0x7FFFFFFF)) is not None:
                stream.send_window += delta & 0x7FFFFFFF
                stream.window_open.set()
        elif frame.kind == GOAWAY:
            raise SpdyError("the peer went away")


def _hung_up(writer: asyncio.StreamWriter) -> bool:
    """The peer has closed or reset the connection, even with its last bytes still unread here (POLLRDHUP: the
    socket's receiving side was shut down). False where there is no socket to ask."""
    sock = writer.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLRDHUP)
    return bool(poller.poll(0))
