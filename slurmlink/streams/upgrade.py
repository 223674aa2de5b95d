"""HTTP/1.1 connection upgrades outside WebSocket (`Upgrade: SPDY/3.1`), on both ends.

Server: uvicorn serves HTTP/1.1 through h11 and only knows how to hand a connection to WebSocket. An
UpgradableH11 protocol puts a `take over` function in each request's scope state; a route that decided to
switch (after the usual authentication and authorisation) calls `switch_protocols`, which answers 101 on the
raw transport and turns it into an asyncio stream pair. uvicorn forgets the request (its cycle counts as
disconnected), so nothing it would send later reaches the wire, but keeps the connection among its own until it
closes: a server shutdown closes it (the session ends) instead of waiting for it.

Client: `dial` sends one upgrade request over TCP (or TLS) and returns the stream pair after a 101, or the
status and body of any other answer.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from slurmlink.core.errors import SlurmlinkError

TAKE_OVER = "slurmlink.take_over"
ON_SHUTDOWN = "slurmlink.on_shutdown"
DROP = "slurmlink.drop"  # a listener that cannot switch protocols may still close a request's connection
SPDY = "SPDY/3.1"
MAX_HEAD = 64 * 1024


class UpgradeUnavailable(SlurmlinkError):
    """The server under this route cannot switch protocols (not an UpgradableH11 connection)."""


class UpgradableH11(H11Protocol):
    """uvicorn's HTTP/1.1, able to give a request's connection to another protocol (switch_protocols)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.app_state = {**self.app_state, TAKE_OVER: self._take_over, ON_SHUTDOWN: self._on_shutdown}
        self._switched = False
        self._closer: Callable[[], None] | None = None

    def _on_shutdown(self, closer: Callable[[], None]) -> None:
        self._closer = closer

    def _unsupported_upgrade_warning(self) -> None:
        if (self._get_upgrade() or b"").lower() != SPDY.lower().encode():  # SPDY is ours to switch to
            super()._unsupported_upgrade_warning()

    def _take_over(self) -> tuple[asyncio.Transport, bytes, Callable[[], None]]:
        if self.cycle is not None:
            self.cycle.disconnected = True  # whatever the app sends after this is dropped
        self._switched = True
        leftover, _closed = self.conn.trailing_data  # bytes the client sent after its request
        return self.transport, bytes(leftover), lambda: self.connections.discard(self)

    def shutdown(self) -> None:
        # uvicorn's shutdown asks every connection to end: a switched one is closed (its session sees the end)
        if self._switched:
            if self._closer is not None:
                self._closer()  # the session says goodbye in its own protocol, then closes
            else:
                self.transport.close()
            self.connections.discard(self)
            return
        super().shutdown()


class _Switched(asyncio.StreamReaderProtocol):
    """The stream protocol of a switched connection, telling uvicorn when the connection is gone."""

    def __init__(self, reader: asyncio.StreamReader, on_lost: Callable[[], None]) -> None:
        super().__init__(reader)
        self._on_lost = on_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_lost()
        super().connection_lost(exc)


Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def listener_hook(scope: MutableMapping[str, Any], key: str) -> Any:
    """What the request's listener offers under `key` in its scope's state (TAKE_OVER, DROP, the edge's
    SEND_WOULD_WAIT and BODY_ARRIVED, the vk's peer certificate...); None where it offers nothing there."""
    return (scope.get("state") or {}).get(key)


def can_switch(scope: MutableMapping[str, Any]) -> bool:
    """Whether switch_protocols can switch this request's connection (a listener able to, and a request that
    asked to in a way the listener's protocol took as an upgrade)."""
    return listener_hook(scope, TAKE_OVER) is not None


def asks_for_spdy(scope: MutableMapping[str, Any]) -> bool:
    """The request asked to switch to SPDY/3.1 in a way its listener can serve: `Upgrade: SPDY/3.1` and
    `Connection: Upgrade` (without the latter the edge reads it as plain HTTP, and nothing can switch it)."""
    offered = next((value for name, value in scope.get("headers") or () if name == b"upgrade"), b"")
    return offered.decode("latin-1").lower() == SPDY.lower() and can_switch(scope)


def switch_protocols(scope: MutableMapping[str, Any], headers: Sequence[tuple[str, str]]) -> Streams:
    """Answer 101 with `headers` (plus Connection: Upgrade) and return the connection as streams."""
    take_over: Callable[[], tuple[asyncio.Transport, bytes, Callable[[], None]]] | None = \
        listener_hook(scope, TAKE_OVER)
    if take_over is None:
        raise UpgradeUnavailable("this listener cannot switch protocols")
    transport, leftover, on_lost = take_over()
    head = "".join(f"{name}: {value}\r\n" for name, value in [("Connection", "Upgrade"), *headers])
    transport.write(f"HTTP/1.1 101 Switching Protocols\r\n{head}\r\n".encode("latin-1"))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_HEAD)
    protocol = _Switched(reader, on_lost)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    if leftover:
        reader.feed_data(leftover)
    transport.resume_reading()
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def drop_connection(scope: MutableMapping[str, Any]) -> bool:
    """Close the request's connection at once, its answer unfinished (uvicorn counts it as the client's going,
    not as an app that returned too early); False where the listener cannot (neither an UpgradableH11 one nor
    one that offers DROP, as the proxy's httptools edge does)."""
    drop: Callable[[], None] | None = listener_hook(scope, DROP)
    if drop is not None:
        drop()
        return True
    take_over = listener_hook(scope, TAKE_OVER)
    if take_over is None:
        return False
    transport, _leftover, _on_lost = take_over()
    transport.abort()  # not close(): that would wait for the unread answer to drain first
    return True


def on_server_shutdown(scope: MutableMapping[str, Any], closer: Callable[[], None]) -> None:
    """What a switched connection's session does when the server shuts down (instead of a bare close)."""
    register = listener_hook(scope, ON_SHUTDOWN)
    if register is not None:
        register(closer)


@dataclass
class Answer:
    """The server's answer to an upgrade request: `streams` after a 101, else status and body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""
    streams: Streams | None = None

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


async def dial(host: str, port: int, target: str, headers: Sequence[tuple[str, str]], *,
               ssl_context: ssl.SSLContext | None = None, method: str = "POST", timeout: float = 30.0,
               body: bytes = b"") -> Answer:
    """Send an upgrade request; `target` is the path with its query, already encoded."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=ssl_context, limit=MAX_HEAD), timeout)
    try:
        head = "".join(f"{name}: {value}\r\n" for name, value in [
            ("Host", f"{host}:{port}"), ("Connection", "Upgrade"), ("Content-Length", str(len(body))), *headers])
        writer.write(f"{method} {target} HTTP/1.1\r\n{head}\r\n".encode("latin-1") + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status_line, *lines = raw.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        answer_headers = [(name.strip(), value.strip()) for name, _, value in
                          (line.partition(":") for line in lines if line)]
        answer = Answer(status, answer_headers)
        if status == 101:
            answer.streams = (reader, writer)
            return answer
        length = int(answer.header("content-length") or 0)
        answer.body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else \
            await asyncio.wait_for(reader.read(MAX_HEAD), timeout)
    except BaseException:
        writer.close()
        raise
    writer.close()
    return answer
