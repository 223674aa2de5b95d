"""The proxy's HTTP edge: what a client can do before its request is whole, which the app never sees.

uvicorn's h11 protocol, tightened: a connection must send its request's headers within `header_timeout`
seconds of connecting (or of its first byte after an answer; idle keep-alive connections are uvicorn's
`timeout_keep_alive`); headers larger than `max_header_bytes` are a 431; connections are capped per client
address and in total; and every refusal made here has the proxy's JSON shape (errors.py), malformed HTTP
included. A refusal here closes the connection.

The writes of one answer are also coalesced here (`CoalescingTransport`): uvicorn writes a response's head
and its body separately, which would be two sends (and two wake-ups of the client) per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from slurmlink.streams.upgrade import UpgradableH11

log = logging.getLogger("slurmlink.proxy")

REASONS = {400: "Bad Request", 408: "Request Timeout", 429: "Too Many Requests", 431: "Request Header Fields "
           "Too Large", 503: "Service Unavailable"}


@dataclass(frozen=True)
class EdgeLimits:
    header_timeout: float = 10.0
    max_header_bytes: int = 16 * 1024
    max_connections: int = 1000
    max_connections_per_address: int = 200


@dataclass
class OpenConnections:
    """The connections open now on one listener, in total and per client address."""

    total: int = 0
    by_address: dict[str, int] = field(default_factory=dict)

    def admit(self, address: str, limits: EdgeLimits) -> tuple[int, str, str] | None:
        """None (and the connection counted), or the refusal (status, error, reason)."""
        if self.total >= limits.max_connections:
            return 503, "TooManyConnections", (f"the proxy has {limits.max_connections} connections open; "
                                               "try again shortly")
        if self.by_address.get(address, 0) >= limits.max_connections_per_address:
            return 429, "TooManyConnections", (f"{limits.max_connections_per_address} connections from this "
                                               "address are open; reuse them (keep-alive) or close some")
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.pop(address) - 1
        if left:
            self.by_address[address] = left


class CoalescingTransport:
    """A transport whose writes within one turn of the event loop leave in one send, at the end of that turn.
    Everything else is the real transport's; closing sends what is pending first."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not data:
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:  # asked several times per request: not through __getattr__
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def refusal_bytes(status: int, error: str, reason: str) -> bytes:
    """A whole HTTP/1.1 answer that closes the connection, in the shape of errors.error_response. Pure."""
    body = json.dumps({"error": error, "reason": reason}).encode()
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    if status in (429, 503):
        head.append("retry-after: 5")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class _RememberingConnection(h11.Connection):
    """h11's connection, remembering why the client's bytes were not HTTP (uvicorn drops the exception).
    h11 limits only headers still arriving; headers that arrived whole are measured here."""

    def __init__(self, max_header_bytes: int) -> None:
        super().__init__(h11.SERVER, max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.last_error: h11.RemoteProtocolError | None = None

    def next_event(self) -> Any:
        try:
            event = super().next_event()
            if isinstance(event, h11.Request):
                check_request(event, self.max_header_bytes)
            return event
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


def check_request(request: h11.Request, max_header_bytes: int) -> None:
    """What h11 lets through and the proxy does not: headers that arrived whole but too large, and a body
    framed twice (RFC 9112 6.1 allows refusing it; a framing read two ways is how requests are smuggled)."""
    if header_bytes(request) > max_header_bytes:
        raise h11.RemoteProtocolError("headers too large", error_status_hint=431)
    names = {name for name, _ in request.headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        raise h11.RemoteProtocolError("both Content-Length and Transfer-Encoding frame the body")


def header_bytes(request: h11.Request) -> int:
    """The size of a request line and its headers, about as sent. Pure."""
    return len(request.target) + 16 + sum(len(name) + len(value) + 4 for name, value in request.headers)


def edge_protocol(limits: EdgeLimits) -> type[H11Protocol]:
    """The protocol class for one listener (uvicorn's `http=`), with its own count of open connections."""
    connections = OpenConnections()

    class EdgeProtocol(UpgradableH11):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.remembering = _RememberingConnection(limits.max_header_bytes)
            self.conn = self.remembering
            self.counted_as: str | None = None
            # One timer per connection, not one per request: each request moves the deadline it checks
            # (None: no request's headers are awaited now), and it re-arms itself when it finds one later.
            self.headers_due: float | None = None
            self.header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
            address = self.client[0] if self.client else ""
            refused = connections.admit(address, limits)
            if refused is not None:
                log.warning("refused a connection from %s: %s", address, refused[1])
                self.refuse(*refused)
                return
            self.counted_as = address
            self.await_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self.release()
            super().connection_lost(exc)

        def release(self) -> None:
            if self.counted_as is not None:
                connections.release(self.counted_as)
                self.counted_as = None
            self.cancel_header_timer()

        def _take_over(self) -> tuple[asyncio.Transport, bytes, Callable[[], None]]:
            """A switched connection (interactive.py) leaves the client caps: in mode 1 every session comes from
            the API's host, whose REST calls must not be refused for them (interactive.max_sessions caps them)."""
            self.release()
            return super()._take_over()

        def data_received(self, data: bytes) -> None:
            if self.counted_as is None:  # refused: nothing it sends is read
                return
            if self.waiting_for_headers():
                self.await_headers()
            super().data_received(data)
            if not self.waiting_for_headers():
                self.headers_due = None

        def send_400_response(self, msg: str) -> None:
            error = self.remembering.last_error
            if error is not None and error.error_status_hint == 431:
                self.refuse(431, "HeadersTooLarge", f"the request's headers exceed {limits.max_header_bytes} bytes")
                return
            said = str(error)[:200] if error is not None else msg
            self.refuse(400, "BadRequest", f"the request is not valid HTTP/1.1: {said}")

        def waiting_for_headers(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def await_headers(self) -> None:
            if self.headers_due is not None:
                return
            self.headers_due = self.loop.time() + limits.header_timeout
            if self.header_timer is None and not self.transport.is_closing():
                self.header_timer = self.loop.call_at(self.headers_due, self.headers_too_slow)

        def cancel_header_timer(self) -> None:
            self.headers_due = None
            if self.header_timer is not None:
                self.header_timer.cancel()
                self.header_timer = None

        def headers_too_slow(self) -> None:
            self.header_timer = None
            if self.headers_due is None:  # no headers awaited now; the next request arms a timer again
                return
            if self.headers_due > self.loop.time():  # a later request's deadline
                self.header_timer = self.loop.call_at(self.headers_due, self.headers_too_slow)
                return
            if self.waiting_for_headers() and not self.transport.is_closing():
                log.info("closed a connection from %s: no whole request within %g s", self.counted_as,
                         limits.header_timeout)
                self.refuse(408, "RequestTimeout", f"no whole request headers within {limits.header_timeout:g} s")

        def refuse(self, status: int, error: str, reason: str) -> None:
            self.cancel_header_timer()
            if not self.transport.is_closing():
                self.transport.write(refusal_bytes(status, error, reason))
                self.transport.close()

    return EdgeProtocol
