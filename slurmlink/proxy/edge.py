"""The proxy's HTTP edge: what a client can do before its request is whole, which the app never sees.

uvicorn's httptools protocol (llhttp, in C: cheaper per request than h11, bench/README.md), tightened: a
connection must send its request's headers within `header_timeout` seconds of connecting (or of its first byte
after an answer; idle keep-alive connections are uvicorn's `timeout_keep_alive`); headers larger than
`max_header_bytes` are a 431, whether whole or still arriving (httptools itself holds a head of any size);
what llhttp reads but the proxy does not serve is refused with the head (`head_refusal`: other HTTP versions,
targets that are not paths, upgrades, a body framed twice or by another coding, a missing Host); trailers
of a chunked body are dropped; connections are capped per client address and in total; and every refusal
made here has the proxy's JSON shape (errors.py), malformed HTTP included. A refusal here closes the
connection.

The writes of one answer are also coalesced here (`CoalescingTransport`): uvicorn writes a response's head
and its body separately, which would be two sends (and two wake-ups of the client) per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


Refused = tuple[int, str, str]  # (status, error, reason): an answer in the shape of errors.error_response


def head_refusal(*, method: str, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]],
                 upgrade: bool, max_header_bytes: int) -> Refused | None:
    """What llhttp (httptools) lets through and the proxy does not, judged on a request's whole head; None if
    it may go on. Header names are lower case, as uvicorn gives them. Pure.

    llhttp itself refuses a body framed twice (Content-Length with Transfer-Encoding, two Content-Lengths),
    malformed lengths, bad header lines and control characters; the framing rules are checked here again so
    that they hold whatever the parser's leniencies (a framing read two ways is how requests are smuggled)."""
    if head_bytes(target, headers) > max_header_bytes:
        return too_large(max_header_bytes)
    if http_version not in ("1.0", "1.1"):  # llhttp reads HTTP/0.9 and 2.0 request lines too
        return 400, "BadRequest", f"HTTP/{http_version} is not served: HTTP/1.1 or 1.0"
    if not target.startswith(b"/") or b"#" in target:  # llhttp's URL parser would take the path of the rest
        return 400, "BadRequest", f"{method} with a target that is not a path (origin form) is not served"
    if upgrade:  # the proxy switches to no other protocol; llhttp would stop reading the connection as HTTP
        return 400, "BadRequest", "the proxy does not switch protocols (Upgrade, CONNECT)"
    names = [name for name, _ in headers]
    if http_version == "1.1" and names.count(b"host") != 1:  # RFC 9112 3.2
        return 400, "BadRequest", "an HTTP/1.1 request has exactly one Host header"
    codings = [value for name, value in headers if name == b"transfer-encoding"]
    if codings and b"content-length" in names:  # RFC 9112 6.1 allows refusing it
        return 400, "BadRequest", "both Content-Length and Transfer-Encoding frame the body"
    if codings and (http_version == "1.0" or len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
        return 400, "BadRequest", "Transfer-Encoding other than one `chunked` in HTTP/1.1 is not served"
    return None


def head_bytes(target: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """The size of a request line and its headers, about as sent. Pure."""
    return len(target) + 16 + sum(len(name) + len(value) + 4 for name, value in headers)


class _Refusal(Exception):
    """Raised in a parser callback: stops llhttp, and says what to answer."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused[2])
        self.refused = refused


def edge_protocol(limits: EdgeLimits) -> type[HttpToolsProtocol]:
    """The protocol class for one listener (uvicorn's `http=`), with its own count of open connections."""
    connections = OpenConnections()

    class EdgeProtocol(HttpToolsProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.counted_as: str | None = None
            # One timer per connection, not one per request: each request moves the deadline it checks
            # (None: no request's headers are awaited now), and it re-arms itself when it finds one later.
            self.headers_due: float | None = None
            self.header_timer: asyncio.TimerHandle | None = None
            # A head still arriving is held by httptools whole, without a limit: its bytes are counted here.
            self.in_head = True
            self.head_seen = 0
            self.message_ended = False  # in the bytes being parsed now
            # a refusal of a pipelined request, sent once the answers to the requests before it are out
            self.deferred: Refused | None = None

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
            if self.counted_as is not None:
                connections.release(self.counted_as)
                self.counted_as = None
            self.cancel_header_timer()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.counted_as is None or self.deferred is not None or self.transport.is_closing():
                return  # refused: nothing more is read
            if self.waiting_for_headers():
                self.await_headers()
            self._unset_keepalive_if_required()
            self.message_ended = False
            try:
                self.parser.feed_data(data)
            except httptools.HttpParserError as exc:  # the callback errors too, with our _Refusal as context
                self.refuse_request(exc)
                return
            except httptools.HttpParserUpgrade:  # not reached: upgrades are refused with their head
                self.refuse_request(_Refusal((400, "BadRequest", "the proxy does not switch protocols")))
                return
            if self.in_head and not self.message_ended:  # (a head begun after a message in the same bytes:
                self.head_seen += len(data)              # counted from the next bytes on)
                if self.head_seen > limits.max_header_bytes:
                    self.refuse_request(_Refusal(too_large(limits.max_header_bytes)))
                    return
            if not self.waiting_for_headers():
                self.headers_due = None

        # --- llhttp's callbacks, around uvicorn's -------------------------------------------------------
        def on_header(self, name: bytes, value: bytes) -> None:
            if self.in_head:  # not a trailer after a chunked body: uvicorn would add it to the request's headers
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            refused = head_refusal(method=self.parser.get_method().decode("ascii", "replace"), target=self.url,
                                   http_version=self.parser.get_http_version(), headers=self.headers,
                                   upgrade=self.parser.should_upgrade(), max_header_bytes=limits.max_header_bytes)
            if refused is not None:
                raise _Refusal(refused)
            self.in_head, self.head_seen = False, 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self.in_head, self.head_seen, self.message_ended = True, 0, True
            super().on_message_complete()

        # --- refusals -----------------------------------------------------------------------------------
        def refuse_request(self, exc: BaseException) -> None:
            """A request the parser or head_refusal refused. Answered unless the app has begun answering the
            request whose body broke (then the connection is only closed: one answer per request)."""
            cause = exc if isinstance(exc, _Refusal) else exc.__context__
            refused = cause.refused if isinstance(cause, _Refusal) else (
                400, "BadRequest", f"the request is not valid HTTP/1.1: {str(cause or exc)[:200]}")
            log.info("refused a request from %s: %s", self.counted_as, refused[2])
            broken = None if self.in_head else self.cycle  # the request whose body broke
            if broken is not None and broken.response_started:
                self.cancel_header_timer()
                self.transport.close()
                return
            # uvicorn parses pipelined requests ahead and queues them (newest first): the answers to the
            # requests before this one go out first, in order, and a queued broken request never runs
            queued = bool(self.pipeline) and self.pipeline[0][0] is broken
            if queued:
                self.pipeline.popleft()
            if queued or self.pipeline or (broken is None and not self.waiting_for_headers()):
                self.deferred = refused
                return
            self.refuse(*refused)

        def on_response_complete(self) -> None:
            more = bool(self.pipeline)  # then uvicorn starts the next queued request
            super().on_response_complete()
            if self.deferred is not None and not more:
                self.refuse(*self.deferred)

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


def too_large(max_header_bytes: int) -> Refused:
    return 431, "HeadersTooLarge", f"the request's headers exceed {max_header_bytes} bytes"
