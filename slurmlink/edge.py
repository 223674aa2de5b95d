"""The HTTP edge of the proxy and the API: what a client can do before its request is whole, which the app
never sees.

uvicorn's httptools protocol (llhttp, in C: cheaper per request than h11, bench/README.md), tightened: a
connection must send its request's headers within `header_timeout` seconds of connecting (or of its first byte
after an answer; idle keep-alive connections are uvicorn's `timeout_keep_alive`); a head larger than
`max_header_bytes` is a 431, counted in raw bytes as they arrive (httptools itself holds a head of any size),
and so are the chunk lines and trailers of a chunked body (`since_body`; the trailers are then dropped);
what llhttp reads but the service does not serve is refused with the head (`head_refusal`: other HTTP versions,
targets that are not paths, CONNECT, an upgrade it cannot ignore, a body framed twice or by another coding, a
missing Host); at most `MAX_QUEUED` pipelined requests wait behind the one being answered (uvicorn would
queue any number);
an answer to an `Expect: 100-continue` request that did not read its body closes the connection (the client
may send that body or its next request); connections are capped per client address and in total; and every refusal
made here has the service's own shape (`edge_protocol`'s `render`: the proxy's JSON, errors.py; the API's
plain text), malformed HTTP included. A refusal here closes the connection.

Switching protocols (`Upgrade: SPDY/3.1`: the proxy's interactive extension; the API's exec, attach and
port-forward): llhttp would read the request's body as the new protocol's first bytes, and uvicorn's httptools
protocol can hand a connection only to WebSocket. So a POST asking for SPDY/3.1 as a connection's first request,
or on an idle kept-alive one with its head whole in one read (`idle_head_here`: what a client sends that pools its
connections, as the vk does), is handed, with every byte received of it, to `UpgradeEdge`: uvicorn's h11 protocol
able to switch (streams/upgrade.py), which reads that one request again, body included, serves it and closes the
connection unless it switched. The connection stays counted as one until it switches (then it leaves the caps: the
service's session limits count it, the proxy's interactive.max_sessions, the API's exec.max_sessions_*). Any other
upgrade (h2c, websocket) is ignored (RFC 9110 7.8): on a request without a body llhttp reads on after its head as
HTTP (`parse`); the connection's first request with a body is handed to UpgradeEdge too (it never switches to
anything but SPDY); a later one with a body is refused, llhttp would read its body as requests.

The writes of one answer are also coalesced here (`CoalescingTransport`): uvicorn writes a response's head
and its body separately, which would be two sends (and two wake-ups of the client) per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import httptools
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from slurmlink.core.errors import SlurmlinkError
from slurmlink.streams.upgrade import DROP, SPDY, UpgradableH11

log = logging.getLogger(__name__)

REASONS = {400: "Bad Request", 408: "Request Timeout", 429: "Too Many Requests", 431: "Request Header Fields "
           "Too Large", 503: "Service Unavailable"}
MAX_QUEUED = 8  # pipelined requests waiting behind the one being answered
# In a request's scope["state"]: whether a send would wait now (the client's socket is full), so that the app
# times only such sends (app.py's send timeout) instead of setting a timer around every one.
SEND_WOULD_WAIT = "slurmlink.send_would_wait"
# And whether the request's whole body has arrived (then reading it waits for nothing: no timer).
BODY_ARRIVED = "slurmlink.body_arrived"
# llhttp strict, whatever uvicorn sets: only bytes after a `Connection: close` request are read (uvicorn answers
# that request, then closes). Every leniency of httptools' parser is named (a test checks it)
LLHTTP_LENIENCIES = {"lenient_headers": False, "lenient_chunked_length": False, "lenient_keep_alive": False,
                     "lenient_transfer_encoding": False, "lenient_version": False, "lenient_data_after_close": True,
                     "lenient_optional_lf_after_cr": False, "lenient_optional_cr_before_lf": False,
                     "lenient_optional_crlf_after_chunk": False, "lenient_spaces_after_chunk_size": False}
HEAD_END = b"\r\n\r\n"  # llhttp (strict) ends a head at its first empty line: bare LF line ends are refused


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
            return 503, "TooManyConnections", (f"the server has {limits.max_connections} connections open; "
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

    @property
    def underlying(self) -> asyncio.Transport:
        return self._transport

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
    """A whole HTTP/1.1 answer that closes the connection, in the shape of the proxy's errors.error_response.
    Pure."""
    return _closing_answer(status, "application/json", json.dumps({"error": error, "reason": reason}).encode())


def text_refusal_bytes(status: int, error: str, reason: str) -> bytes:
    """The same in the API's shape (api/app.py's error_response): the reason as a line of text. Pure."""
    return _closing_answer(status, "text/plain; charset=utf-8", f"{reason}\n".encode())


def _closing_answer(status: int, content_type: str, body: bytes) -> bytes:
    head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}", f"content-type: {content_type}",
            f"content-length: {len(body)}", "connection: close"]
    if status in (429, 503):
        head.append("retry-after: 5")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


Refused = tuple[int, str, str]  # (status, error, reason): an answer in the shape of errors.error_response


def head_refusal(*, method: str, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]],
                 upgrade: bool, may_switch: bool, max_header_bytes: int) -> Refused | None:
    """What llhttp (httptools) lets through and the services do not serve, judged on a request's whole head; None if
    it may go on. Header names are lower case, as uvicorn gives them. `may_switch`: the request is handed to h11
    (UpgradeEdge: a request asking for SPDY/3.1 first or on an idle connection, or a first one asking for another
    upgrade with a body). Pure.

    llhttp itself refuses a body framed twice (Content-Length with Transfer-Encoding, two Content-Lengths),
    malformed lengths, bad header lines and control characters; the framing rules are checked here again so
    that they hold whatever the parser's leniencies (a framing read two ways is how requests are smuggled)."""
    if head_bytes(target, headers) > max_header_bytes:
        return too_large(max_header_bytes)
    if http_version not in ("1.0", "1.1"):  # llhttp reads HTTP/0.9 and 2.0 request lines too
        return 400, "BadRequest", f"HTTP/{http_version} is not served: HTTP/1.1 or 1.0"
    if not target.startswith(b"/") or b"#" in target:  # llhttp's URL parser would take the path of the rest
        return 400, "BadRequest", f"{method} with a target that is not a path (origin form) is not served"
    names = [name for name, _ in headers]
    if upgrade and not may_switch and (method == "CONNECT" or offers_spdy(headers) or has_body(headers)):
        # another upgrade is ignored (RFC 9110 7.8), but llhttp reads no body after an upgrade's head: what
        # follows it is read as the next request, so a body would be taken for requests
        return 400, "BadRequest", (f"the server switches protocols only to {SPDY}, by POST, as a connection's "
                                   "first request or on an idle one (exec and port-forward); it ignores another "
                                   "Upgrade on a connection's first request or a request without a body; no CONNECT")
    if http_version == "1.1" and names.count(b"host") != 1:  # RFC 9112 3.2
        return 400, "BadRequest", "an HTTP/1.1 request has exactly one Host header"
    codings = [value for name, value in headers if name == b"transfer-encoding"]
    if codings and b"content-length" in names:  # RFC 9112 6.1 allows refusing it
        return 400, "BadRequest", "both Content-Length and Transfer-Encoding frame the body"
    if codings and (http_version == "1.0" or len(codings) > 1 or codings[0].strip().lower() != b"chunked"):
        return 400, "BadRequest", "Transfer-Encoding other than one `chunked` in HTTP/1.1 is not served"
    return None


def switches_to_spdy(method: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """A POST asking to switch to SPDY/3.1 alone (the interactive extension's routes). Pure."""
    offered = [value for name, value in headers if name == b"upgrade"]
    return method == "POST" and len(offered) == 1 and offered[0].strip().lower() == SPDY.lower().encode()


def offers_spdy(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(SPDY.lower().encode() in value.lower() for name, value in headers if name == b"upgrade")


def has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    """A request's head frames a body (llhttp has checked the lengths: digits). Pure."""
    return any(name == b"transfer-encoding" or (name == b"content-length" and value.strip(b" \t0"))
               for name, value in headers)


def head_bytes(target: bytes, headers: list[tuple[bytes, bytes]]) -> int:
    """The size of a request line and its headers, about as sent. Pure."""
    return len(target) + 16 + sum(len(name) + len(value) + 4 for name, value in headers)


def head_end(data: bytes, start: int, tail: bytes) -> int:
    """Where the head that goes on at `start` of `data` ends (the offset after its empty line), `tail` being
    the last bytes of the same head in earlier reads; len(data) if no end is found. Pure."""
    if tail:
        across = (tail + data[:3]).find(HEAD_END)
        if across >= 0:
            return across + 4 - len(tail)
    end = data.find(HEAD_END, start)
    return len(data) if end < 0 else end + 4


def too_large(max_header_bytes: int) -> Refused:
    return 431, "HeadersTooLarge", f"the request's headers exceed {max_header_bytes} bytes"


class _Refusal(SlurmlinkError):
    """Raised in a parser callback: stops llhttp, and says what to answer."""

    def __init__(self, refused: Refused) -> None:
        super().__init__(refused[2], refused[1])
        self.refused = refused


class _HandOver(SlurmlinkError):  # noqa: N818 (not an error)
    """Raised in a parser callback: the request switches protocols (UpgradeEdge)."""


class _QueueFlow(FlowControl):
    """uvicorn's flow control, not reading while `MAX_QUEUED` pipelined requests wait (uvicorn resumes
    reading whenever a request asks for its body or an answer is done)."""

    def __init__(self, transport: asyncio.Transport, queue: deque[Any]) -> None:
        super().__init__(transport)
        self.queue = queue

    def resume_reading(self) -> None:
        if len(self.queue) < MAX_QUEUED:
            super().resume_reading()


class _Guarded:
    """What both protocols of a listener do alike: count the connection, time its headers, refuse. A mixin
    for uvicorn's protocols (their loop, transport and cycle)."""

    limits: EdgeLimits
    open_connections: OpenConnections
    render: Callable[[int, str, str], bytes]  # a refusal's whole answer (refusal_bytes, text_refusal_bytes)
    loop: asyncio.AbstractEventLoop
    transport: Any
    cycle: Any

    def guard(self) -> None:
        self.counted_as: str | None = None
        # One timer per connection, not one per request: each request moves the deadline it checks
        # (None: no request's headers are awaited now), and it re-arms itself when it finds one later.
        self.headers_due: float | None = None
        self.header_timer: asyncio.TimerHandle | None = None

    def admit(self, address: str) -> None:
        refused = self.open_connections.admit(address, self.limits)
        if refused is not None:
            log.warning("refused a connection from %s: %s", address, refused[1])
            self.refuse(*refused)
            return
        self.counted_as = address
        self.await_headers()

    def release(self) -> None:
        if self.counted_as is not None:
            self.open_connections.release(self.counted_as)
            self.counted_as = None
        self.cancel_header_timer()

    def waiting_for_headers(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def await_headers(self) -> None:
        if self.headers_due is not None:
            return
        self.headers_due = self.loop.time() + self.limits.header_timeout
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
                     self.limits.header_timeout)
            self.refuse(408, "RequestTimeout", f"no whole request headers within {self.limits.header_timeout:g} s")

    def refuse(self, status: int, error: str, reason: str) -> None:
        self.cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(self.render(status, error, reason))
            self.transport.close()


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
            if isinstance(event, h11.Request) and head_bytes(event.target, list(event.headers)) > \
                    self.max_header_bytes:
                raise h11.RemoteProtocolError("headers too large", error_status_hint=431)
            return event
        except h11.RemoteProtocolError as exc:
            self.last_error = exc
            raise


class UpgradeEdge(_Guarded, UpgradableH11):
    """uvicorn's h11 protocol for the one request of a connection that asked to switch to SPDY/3.1, handed
    over (`take_connection`) by the httptools edge, which already counted the connection and checked the
    request's head. Closes the connection after its answer unless it switched protocols."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.remembering = _RememberingConnection(self.limits.max_header_bytes)
        self.conn = self.remembering
        self.guard()

    def take_connection(self, transport: asyncio.Transport, counted_as: str, headers_due: float | None,
                        received: bytes) -> None:
        transport.set_protocol(self)
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)
        self.counted_as = counted_as
        if headers_due is not None:  # the request's headers are whole, but h11 has them only now
            self.headers_due = headers_due
            self.header_timer = self.loop.call_at(headers_due, self.headers_too_slow)
        self.data_received(received)

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        super().connection_lost(exc)

    def _take_over(self) -> tuple[asyncio.Transport, bytes, Callable[[], None]]:
        """A switched connection leaves the client caps, its service's session limits count it (the proxy's
        interactive.max_sessions, the API's exec.max_sessions_*): in mode 1 every session comes from the API's
        host, whose REST calls must not be refused for them."""
        self.release()
        return super()._take_over()

    def data_received(self, data: bytes) -> None:
        if self.counted_as is None:  # refused: nothing it sends is read
            return
        super().data_received(data)
        if not self.waiting_for_headers():
            self.headers_due = None

    def _should_upgrade(self) -> bool:  # uvicorn's: would hand a WebSocket upgrade to its WebSocket protocol
        return False

    def on_response_complete(self) -> None:
        if not self._switched:  # before h11 would start on what follows
            self.transport.close()
        super().on_response_complete()

    def send_400_response(self, msg: str) -> None:
        error = self.remembering.last_error
        if error is not None and error.error_status_hint == 431:
            self.refuse(*too_large(self.limits.max_header_bytes))
            return
        said = str(error)[:200] if error is not None else msg
        self.refuse(400, "BadRequest", f"the request is not valid HTTP/1.1: {said}")


class EdgeProtocol(_Guarded, HttpToolsProtocol):
    """The httptools edge; `edge_protocol` gives each listener its own subclass (its limits and count)."""

    upgrade_protocol: type[UpgradeEdge]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parser.set_dangerous_leniencies(**LLHTTP_LENIENCIES)
        self.guard()
        # The raw bytes of a head are counted while it arrives (httptools holds a head whole, without a
        # limit; and its callbacks do not see everything a head holds, such as whitespace around values):
        self.in_head = True         # no body is being read (a head arriving, or none begun yet)
        self.head_begun = False     # llhttp began a message's head
        self.head_seen = 0          # bytes of the current head in earlier reads
        self.head_tail = b""        # its last bytes there (an empty line may span two reads)
        self.reading = b""          # the bytes being parsed now
        self.cursor = 0             # where, in them, the bytes not yet accounted for begin (exact: chunk lines
        # and trailers are followed by their line ends, the one byte llhttp strict ends a line with)
        self.body_end = 0           # where, in them, the last body bytes end (or the body began)
        self.body_fed = False       # some of them were body
        self.chunk_has_body = False  # the chunk whose line was read last had body bytes (else: the last chunk)
        self.line_so_far = b""      # the start of a trailer line begun in earlier reads (3 bytes at most)
        self.chunked = False        # the body being read is chunked
        self.since_body = 0         # bytes of a body that were chunk lines or trailers, not body
        self.first_bytes: list[bytes] | None = []  # everything received until the first head is whole
        self.head_start = 0         # where the last head began in the read it ended in (count_head)
        self.expecting: Any = None  # the request that asked `Expect: 100-continue`
        self.running: Any = None    # the request being answered (uvicorn's protocol forgets it)
        # a refusal of a pipelined request, sent once the answers to the requests before it are out
        self.deferred: Refused | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _QueueFlow(transport, self.pipeline)
        self.transport = CoalescingTransport(transport, self.loop)  # type: ignore[assignment]
        self.app_state = {**self.app_state, DROP: self.drop, SEND_WOULD_WAIT: self.send_would_wait}
        self.admit(self.client[0] if self.client else "")

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        self.running = cycle
        super()._start_asgi_task(cycle, app)

    def drop(self) -> None:
        """Close the connection at once, the answer being sent unfinished (streams.upgrade.drop_connection:
        the proxy's send timeout); what the app sends after this is dropped, as for a client that left."""
        for cycle in (self.running, self.cycle, *(queued for queued, _ in self.pipeline)):
            if cycle is not None:
                cycle.disconnected = True
        self.transport.abort()

    def send_would_wait(self) -> bool:
        """Whether uvicorn's `send` would wait now: it waits (at its start, and only there) while the client's
        socket is full."""
        return self.flow.write_paused

    def connection_lost(self, exc: Exception | None) -> None:
        self.release()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.counted_as is None or self.deferred is not None or self.transport.is_closing():
            return  # refused: nothing more is read
        if self.waiting_for_headers():
            self.await_headers()
        self._unset_keepalive_if_required()
        if self.first_bytes is not None:
            self.first_bytes.append(data)
        self.reading, self.cursor, self.body_end, self.body_fed = data, 0, 0, False
        try:
            self.parse(data)
        except httptools.HttpParserError as exc:  # the callback errors too, with our exception as context
            if isinstance(exc.__context__, _HandOver):
                self.hand_over()
            else:
                self.refuse_request(exc)
            return
        finally:
            self.reading = b""
        if self.in_head:
            if self.head_begun:  # a head still arriving: counted from where it began (or from a lower bound)
                self.head_seen += len(data) - self.cursor
                self.head_tail = (self.head_tail + data[-3:])[-3:]
                if self.head_seen > self.limits.max_header_bytes:
                    self.refuse_request(_Refusal(too_large(self.limits.max_header_bytes)))
                    return
        else:  # within a body: the bytes after its last body bytes are chunk lines or trailers (httptools
            # holds a trailer whole)
            self.since_body = (0 if self.body_fed else self.since_body) + len(data) - self.body_end
            if self.chunked and not self.chunk_has_body:  # maybe within trailers: the line they end in
                line_start = max(data.rfind(b"\n", self.cursor) + 1, self.cursor)
                self.line_so_far = ((b"" if line_start else self.line_so_far) + data[line_start:])[:3]
            if self.since_body > self.limits.max_header_bytes:
                self.refuse_request(_Refusal((431, "HeadersTooLarge", "the request's chunk lines and trailers "
                                              f"exceed {self.limits.max_header_bytes} bytes")))
                return
        if not self.waiting_for_headers():
            self.headers_due = None

    def parse(self, data: bytes) -> None:
        """Feed llhttp. It stops reading HTTP after the head of a request asking to upgrade: the upgrade is
        ignored (head_refusal let through only requests without a body), so what follows is read on as HTTP."""
        fed = 0
        while True:
            try:
                self.parser.feed_data(data[fed:] if fed else data)
                return
            except httptools.HttpParserUpgrade as exc:
                fed += exc.args[0]

    def _should_upgrade(self) -> bool:  # uvicorn's: would hand a WebSocket upgrade to its WebSocket protocol
        return False

    # --- llhttp's callbacks, around uvicorn's -----------------------------------------------------------
    def on_message_begin(self) -> None:
        self.head_begun = True
        super().on_message_begin()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.in_head:  # not a trailer after a chunked body: uvicorn would add it to the request's headers
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.count_head()
        method = self.parser.get_method().decode("ascii", "replace")
        upgrade = self.parser.should_upgrade()
        # the connection's first request, asking for SPDY/3.1, or for another upgrade (ignored) with a body,
        # which llhttp would not read (curl --http2 -d over plain http): h11 reads it whole
        hand_over = upgrade and self.first_bytes is not None and (switches_to_spdy(method, self.headers) or (
            has_body(self.headers) and not offers_spdy(self.headers) and method != "CONNECT"))
        # or a later request asking for SPDY/3.1 on an idle kept-alive connection (clients that pool their
        # connections, as the vk does, send it on one a log read used), its head whole in this read
        hand_over = hand_over or (upgrade and switches_to_spdy(method, self.headers) and self.idle_head_here())
        refused = head_refusal(method=method, target=self.url, http_version=self.parser.get_http_version(),
                               headers=self.headers, upgrade=upgrade, may_switch=hand_over,
                               max_header_bytes=self.limits.max_header_bytes)
        if refused is not None:
            raise _Refusal(refused)
        if hand_over:
            raise _HandOver("the connection switches to SPDY/3.1")
        self.first_bytes = None
        if self.cycle is not None and not self.cycle.response_complete and len(self.pipeline) >= MAX_QUEUED:
            raise _Refusal((429, "TooManyPipelinedRequests", f"at most {MAX_QUEUED} pipelined requests wait "
                            "for their answers on one connection; send the next when one is answered"))
        self.in_head, self.head_begun, self.head_seen, self.head_tail, self.since_body = False, False, 0, b"", 0
        self.chunked = any(name == b"transfer-encoding" for name, _ in self.headers)  # chunked alone: checked
        super().on_headers_complete()
        cycle = self.cycle
        self.scope["state"][BODY_ARRIVED] = lambda: not cycle.more_body  # uvicorn's: False once the body is whole
        if self.expect_100_continue:
            self.expecting = self.cycle

    def count_head(self) -> None:
        """The raw size of the head just parsed (up to its empty line): 431 past the limit."""
        data = self.reading
        start = self.cursor
        if not self.head_seen:  # llhttp skips empty lines before a request line
            while start < len(data) and data[start] in b"\r\n":
                start += 1
        self.head_start = start  # where the head began in this read, if it did (head_seen 0)
        end = head_end(data, start, self.head_tail if self.head_seen else b"")
        raw = self.head_seen + end - self.cursor
        self.cursor = self.body_end = end
        if raw > self.limits.max_header_bytes:
            raise _Refusal(too_large(self.limits.max_header_bytes))

    def on_body(self, body: bytes) -> None:
        self.cursor += len(body)
        self.body_end, self.body_fed, self.chunk_has_body = self.cursor, True, True
        super().on_body(body)

    # A chunked body's lines, followed in raw bytes (llhttp strict: each ends in CRLF, no other LF within):
    def on_chunk_header(self) -> None:  # after a chunk's size line
        self.cursor = self.reading.find(b"\n", self.cursor) + 1
        self.chunk_has_body, self.line_so_far = False, b""

    def on_chunk_complete(self) -> None:  # after a chunk's data and its CRLF, or the last chunk's trailers
        if self.chunk_has_body:
            self.cursor = self.reading.find(b"\n", self.cursor) + 1
            return
        line, start = self.line_so_far, self.cursor  # trailer lines, up to the empty one
        while (end := self.reading.find(b"\n", start)) >= 0:
            line += self.reading[start:end]
            start = end + 1
            if line == b"\r":
                break
            line = b""
        self.cursor = start

    def on_message_complete(self) -> None:
        self.chunked = False
        self.in_head, self.head_begun = True, False
        super().on_message_complete()

    # --- switching protocols ----------------------------------------------------------------------------
    def idle_head_here(self) -> bool:
        """The head just parsed came on an idle connection (every earlier request answered, none queued)
        and began in this read, so this read from `head_start` on is the request's every byte so far."""
        return self.first_bytes is None and not self.head_seen and not self.pipeline and (
            self.cycle is None or self.cycle.response_complete)

    def hand_over(self) -> None:
        """The request asks to switch to SPDY/3.1 (or is a first one UpgradeEdge reads): UpgradeEdge reads it
        from its first byte (body included, which llhttp would take for the new protocol's) and serves it."""
        assert self.counted_as is not None
        transport = self.transport.underlying  # type: ignore[attr-defined]
        received = b"".join(self.first_bytes) if self.first_bytes is not None else self.reading[self.head_start:]
        counted_as, headers_due = self.counted_as, self.headers_due
        self.first_bytes, self.counted_as = None, None  # counted from now on by its successor
        self.cancel_header_timer()
        self.connections.discard(self)
        # the successor's own (without SEND_WOULD_WAIT, the app times each of its sends)
        state = {key: value for key, value in self.app_state.items() if key not in (DROP, SEND_WOULD_WAIT)}
        successor = self.upgrade_protocol(self.config, self.server_state, state, _loop=self.loop)
        successor.take_connection(transport, counted_as, headers_due, received)

    # --- refusals -------------------------------------------------------------------------------------
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
        expecting = self.expecting
        if expecting is not None and expecting.response_complete:
            self.expecting = None
            if expecting.more_body or expecting.body:  # answered, its body unread (no 100 Continue was sent):
                # the client may send that body, or its next request instead, and the two cannot be told apart
                log.info("closed a connection from %s: answered without reading the body it announced "
                         "(Expect: 100-continue)", self.counted_as)
                self.transport.close()
                return
        if self.deferred is not None and not more:
            self.refuse(*self.deferred)


def edge_protocol(limits: EdgeLimits, render: Callable[[int, str, str], bytes] = refusal_bytes
                  ) -> type[EdgeProtocol]:
    """The protocol class for one listener (uvicorn's `http=`), with its own count of open connections;
    `render` gives a refusal's answer in the service's shape."""
    connections = OpenConnections()

    class ListenerUpgradeEdge(UpgradeEdge):
        pass

    class ListenerEdge(EdgeProtocol):
        upgrade_protocol = ListenerUpgradeEdge

    for protocol in (ListenerUpgradeEdge, ListenerEdge):
        protocol.limits, protocol.open_connections = limits, connections
        protocol.render = staticmethod(render)  # type: ignore[assignment]
    return ListenerEdge
