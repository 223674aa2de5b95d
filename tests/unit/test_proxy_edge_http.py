"""The proxy's HTTP edge (slurmlink/edge.py) as uvicorn serves it, on loopback with uvloop as in
`slurmlink proxy`, in front of an app that records every request it is given: what llhttp (httptools) reads
but the proxy must not serve, request smuggling, heads too large whether whole or still arriving, trailers,
pipelining, and one answer per request; and the one upgrade it serves (SPDY/3.1, handed to h11). The whole
proxy at its edges: tests/integration/test_proxy_edges.py.

Requests are written on raw sockets, byte for byte."""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httptools
import pytest
import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from slurmlink import edge as edge_module
from slurmlink.edge import (
    BODY_ARRIVED,
    MAX_QUEUED,
    SEND_WOULD_WAIT,
    CoalescingTransport,
    EdgeLimits,
    EdgeProtocol,
    edge_protocol,
)
from slurmlink.streams.upgrade import SPDY, drop_connection, switch_protocols
from tests.harness.waiting import wait_until

HEADER_TIMEOUT = 1.0


class Recorder:
    """An ASGI app that reads each request's body whole and answers 200 with what it was given, except
    `/early`, answered before its body is read, `/hold`, answered once `release` is set, `/drop`, whose
    answer is cut short by closing the connection, and `/switch`, which switches protocols after reading its
    body and then sends the body back and echoes what comes. `seen` holds (method, path, headers, body)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, list[tuple[bytes, bytes]], bytes]] = []
        # what the edge's BODY_ARRIVED said before the body was read and after, and SEND_WOULD_WAIT before the answer
        self.told: list[tuple[bool | None, bool | None, bool | None]] = []
        self.holding = threading.Event()
        self.release = threading.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        state = scope.get("state") or {}
        arrived_before = state[BODY_ARRIVED]() if BODY_ARRIVED in state else None
        if scope["path"] == "/hold":
            self.holding.set()
            while not self.release.is_set():  # the test's condition, polled without blocking the loop
                await asyncio.sleep(0.01)
        body = b""
        if scope["path"] != "/early":
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
        self.seen.append((scope["method"], scope["path"], list(scope["headers"]), body))
        self.told.append((arrived_before, state[BODY_ARRIVED]() if BODY_ARRIVED in state else None,
                          state[SEND_WOULD_WAIT]() if SEND_WOULD_WAIT in state else None))
        if scope["path"] == "/drop":  # as the proxy's send timeout does
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
            assert drop_connection(scope)
            await send({"type": "http.response.body", "body": b"dropped"})
            return
        if scope["path"] == "/switch":
            reader, writer = switch_protocols(scope, [("Upgrade", SPDY)])
            writer.write(body)
            while data := await reader.read(1024):
                writer.write(data)
            writer.close()
            return
        answer = json.dumps({"path": scope["path"], "body": body.decode("latin-1")}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]})
        await send({"type": "http.response.body", "body": answer})


class Edge:
    def __init__(self, app: Recorder) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        protocol = edge_protocol(EdgeLimits(header_timeout=HEADER_TIMEOUT))
        self.server = uvicorn.Server(uvicorn.Config(app, http=protocol, lifespan="off", log_level="warning",
                                                    log_config=None, timeout_keep_alive=30))
        self.thread = threading.Thread(target=lambda: uvloop.run(self.server.serve(sockets=[self.sock])),
                                       daemon=True)


@pytest.fixture(scope="module")
def edge() -> Iterator[Edge]:
    served = Edge(Recorder())
    served.thread.start()
    wait_until(lambda: served.server.started, 20, "the edge to listen")
    yield served
    served.server.should_exit = True
    served.thread.join(15)


@pytest.fixture()
def app(edge: Edge) -> Recorder:
    edge.app.seen.clear()
    edge.app.told.clear()
    edge.app.holding.clear()
    edge.app.release.clear()
    return edge.app


def exchange(port: int, *parts: bytes, timeout: float = 10) -> bytes:
    """Everything the edge sends back until it closes the connection (or `timeout` passes: then the bytes so
    far), after writing `parts` one send each."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        for part in parts:
            try:
                sock.sendall(part)
            except (BrokenPipeError, ConnectionResetError):  # refused and closed before all was sent
                break
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data


def answers(data: bytes) -> list[tuple[int, Any]]:
    """(status, JSON body) of each answer in `data`, in order (each has a Content-Length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:"))
        found.append((int(lines[0].split(b" ", 2)[1]), json.loads(rest[:length])))
        data = rest[length:]
    return found


def refused_with(data: bytes, status: int, error: str) -> dict[str, Any]:
    (answered, body), = answers(data)
    assert (answered, body["error"]) == (status, error), body
    assert body["reason"], body
    return body


HEAD = b"POST /slurm/v0.0.40/job/submit HTTP/1.1\r\nHost: a\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"


@pytest.mark.parametrize("request_bytes", [
    HEAD + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n" + SMUGGLED,
    HEAD + b"Content-Length: 0\r\nContent-Length: 39\r\n\r\n" + SMUGGLED,
    HEAD + b"Content-Length: 0, 39\r\n\r\n" + SMUGGLED,
    HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + SMUGGLED,
    HEAD + b"Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n" + SMUGGLED,
    HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\nabcde\n0\n\n" + SMUGGLED,
    HEAD + b"X: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n" + SMUGGLED,  # obs-fold
    b"POST /slurm/v0.0.40/job/submit HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
    b"POST /slurm/v0.0.40/job/submit HTTP/1.1\nHost: a\nContent-Length: 0\n\n" + SMUGGLED,
], ids=["length-then-chunked", "chunked-then-length", "two-lengths", "length-list", "other-coding",
        "two-codings", "space-before-colon", "bare-lf-chunks", "obs-fold", "chunked-in-1.0", "bare-lf-head"])
def test_a_body_framed_two_ways_is_refused_and_nothing_reaches_the_app(edge: Edge, app: Recorder,
                                                                       request_bytes: bytes) -> None:
    refused_with(exchange(edge.port, request_bytes), 400, "BadRequest")
    assert app.seen == []


@pytest.mark.parametrize("request_bytes", [
    b"GET http://evil.example.org/slurm/v0.0.40/jobs HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /slurm/v0.0.40/jobs#x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
    b"CONNECT evil.example.org:443 HTTP/1.1\r\nHost: evil.example.org:443\r\n\r\n",
    b"GET /slurm/v0.0.40/jobs\r\n\r\n",
    b"GET /slurm/v0.0.40/jobs HTTP/2.0\r\nHost: a\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /slurm/v0.0.40/jobs HTTP/1.1\r\n\r\n",
    b"GET /slurm/v0.0.40/jobs HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    b"BREW /slurm/v0.0.40/jobs HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /slurm/v0.0.40/jobs\xff HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /switch HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\r\n",
    b"POST /switch HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1, h2c\r\n"
    b"Content-Length: 0\r\n\r\n",
], ids=["absolute-form", "fragment", "asterisk-form", "connect", "http-0.9", "http-2.0", "h2-preface", "no-host",
        "two-hosts", "unknown-method", "non-ascii-target", "spdy-by-get", "spdy-among-others"])
def test_what_llhttp_reads_but_the_proxy_does_not_serve(edge: Edge, app: Recorder, request_bytes: bytes) -> None:
    refused_with(exchange(edge.port, request_bytes), 400, "BadRequest")
    assert app.seen == []


def test_a_head_still_arriving_past_the_limit_is_431(edge: Edge, app: Recorder) -> None:
    """httptools holds an unfinished header whole, however large: the edge counts the bytes as they come."""
    pieces = [b"GET /slurm/v0.0.40/jobs HTTP/1.1\r\nHost: a\r\nX-Endless: "] + [b"x" * 4096] * 8
    refused_with(exchange(edge.port, *pieces), 431, "HeadersTooLarge")
    assert app.seen == []


def test_a_whole_head_past_the_limit_is_431(edge: Edge, app: Recorder) -> None:
    headers = b"".join(b"X-Many-%d: %s\r\n" % (i, b"y" * 100) for i in range(200))
    refused_with(exchange(edge.port, b"GET /slurm/v0.0.40/jobs HTTP/1.1\r\nHost: a\r\n" + headers + b"\r\n"),
                 431, "HeadersTooLarge")
    assert app.seen == []


def test_a_head_of_8_kib_in_small_pieces_is_served(edge: Edge, app: Recorder) -> None:
    head = b"GET /ok HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer " + b"t" * 8192 + b"\r\nConnection: close\r\n\r\n"
    data = exchange(edge.port, *[head[i:i + 512] for i in range(0, len(head), 512)])
    assert [status for status, _ in answers(data)] == [200]


def test_trailers_never_join_the_requests_headers(edge: Edge, app: Recorder) -> None:
    data = exchange(edge.port, HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    b"5\r\nabcde\r\n0\r\nX-Slurm-User-Name: root\r\nContent-Type: text/evil\r\n\r\n")
    assert [(status, body["body"]) for status, body in answers(data)] == [(200, "abcde")]
    (_, _, headers, _), = app.seen
    assert [name for name, _ in headers] == [b"host", b"transfer-encoding", b"connection"]


def test_pipelined_requests_are_answered_in_order_once_each(edge: Edge, app: Recorder) -> None:
    requests = (b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc"
                b"GET /two HTTP/1.1\r\nHost: a\r\n\r\n"
                b"GET /three HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data = exchange(edge.port, requests)
    assert [(status, body["path"]) for status, body in answers(data)] == [(200, "/one"), (200, "/two"),
                                                                          (200, "/three")]


@pytest.mark.parametrize("refused", [
    b"GARBAGE\r\n\r\n",
    b"GET http://evil.example.org/x HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
], ids=["not-http", "absolute-form", "broken-body"])
def test_a_refused_pipelined_request_is_answered_after_those_before_it(edge: Edge, app: Recorder,
                                                                       refused: bytes) -> None:
    data = exchange(edge.port, b"GET /one HTTP/1.1\r\nHost: a\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\n"
                    b"Content-Length: 2\r\n\r\nok" + refused)
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)] == [
        (200, "/one"), (200, "/two"), (400, "BadRequest")]
    assert [path for _, path, _, _ in app.seen] == ["/one", "/two"]


def test_a_body_broken_after_the_answer_began_closes_without_a_second_answer(edge: Edge, app: Recorder) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        wait_until(lambda: app.seen, 10, "the app to answer before the body")
        sock.sendall(b"zz\r\nnot a chunk\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert [status for status, _ in answers(data)] == [200]


def test_headers_that_do_not_come_are_a_408(edge: Edge, app: Recorder) -> None:
    data = exchange(edge.port, b"GET /slurm/v0.0.40/jobs HTTP/1.1\r\nHost: a\r\n", timeout=HEADER_TIMEOUT + 10)
    refused_with(data, 408, "RequestTimeout")
    assert app.seen == []


def test_the_writes_of_one_turn_leave_in_one_send() -> None:
    sent: list[bytes] = []

    class Transport:
        def write(self, data: bytes) -> None:
            sent.append(data)

        def is_closing(self) -> bool:
            return False

    async def answer() -> None:
        transport = CoalescingTransport(Transport(), asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"head")
        transport.write(b"body")
        await asyncio.sleep(0)
        transport.write(b"next")
        await asyncio.sleep(0)

    asyncio.run(answer())
    assert sent == [b"headbody", b"next"]


# --- the review of the httptools edge (issue 14): what uvicorn's httptools protocol held without a limit ----

def edge_protocols(edge: Edge) -> list[EdgeProtocol]:
    return [protocol for protocol in edge.server.server_state.connections if isinstance(protocol, EdgeProtocol)]


def test_pipelined_requests_past_the_queue_are_refused_and_never_held(edge: Edge, app: Recorder) -> None:
    """A client that writes requests without reading the answers: uvicorn would parse and queue every one."""
    flood = b"GET /n HTTP/1.1\r\nHost: a\r\n\r\n" * 2000  # 58 KB, one read or a few
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"GET /hold HTTP/1.1\r\nHost: a\r\n\r\n")
        wait_until(app.holding.is_set, 10, "the first request to be held")
        sock.sendall(flood)
        wait_until(lambda: any(p.deferred for p in edge_protocols(edge)), 10, "the refusal past the queue")
        assert max(len(p.pipeline) for p in edge_protocols(edge)) <= MAX_QUEUED
        app.release.set()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    found = answers(data)
    assert [(status, body.get("path")) for status, body in found[:-1]] == [(200, "/hold")] + [(200, "/n")] * (
        len(found) - 2)
    assert len(found) - 1 <= 1 + 2 * MAX_QUEUED  # the held one, the queue, and one more queue at most
    refused_with(refusal_bytes_of(data, found), 429, "TooManyPipelinedRequests")


def refusal_bytes_of(data: bytes, found: list[tuple[int, Any]]) -> bytes:
    """The last answer in `data` alone."""
    return data[data.rindex(b"HTTP/1.1 "):] if found else data


def test_trailers_past_the_limit_are_431(edge: Edge, app: Recorder) -> None:
    """httptools joins a header's pieces until its line ends: an endless trailer would be held whole."""
    pieces = [HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\nX-Trailer: "] + [b"t" * 4096] * 8
    refused_with(exchange(edge.port, *pieces), 431, "HeadersTooLarge")
    assert app.seen == []


def test_endless_chunk_lines_are_431(edge: Edge, app: Recorder) -> None:
    pieces = [HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"5;ext="] + [b"e" * 4096] * 8
    refused_with(exchange(edge.port, *pieces), 431, "HeadersTooLarge")
    assert app.seen == []


def test_a_chunked_body_of_many_small_chunks_is_served(edge: Edge, app: Recorder) -> None:
    chunks = [b"1\r\nx\r\n" * 1000 for _ in range(8)]  # 48 KB of chunk lines, each read with body in it
    data = exchange(edge.port, HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", *chunks,
                    b"0\r\nX-T: 1\r\n\r\n")
    assert [(status, len(body["body"])) for status, body in answers(data)] == [(200, 8000)]


@pytest.mark.parametrize("request_bytes", [
    b"GET /x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b" " * 20_000 + b"a" + b"\t" * 20_000 + b"\r\n\r\n",
    b"\r\n" * 5 + b"GET /x HTTP/1.1\r\nHost: a\r\nX-Pad:" + b" " * 17_000 + b"a\r\n\r\n",
], ids=["padded-value", "after-empty-lines"])
def test_a_whole_head_is_counted_in_raw_bytes(edge: Edge, app: Recorder, request_bytes: bytes) -> None:
    """llhttp drops the whitespace around a value: a head that arrives in one read is counted as sent."""
    refused_with(exchange(edge.port, request_bytes), 431, "HeadersTooLarge")
    assert app.seen == []


def test_a_head_whose_empty_line_spans_reads_is_served(edge: Edge, app: Recorder) -> None:
    data = exchange(edge.port, b"GET /one HTTP/1.1\r\nHost: a\r\nConnection: close", b"\r", b"\n\r", b"\n")
    assert [(status, body["path"]) for status, body in answers(data)] == [(200, "/one")]


@pytest.mark.parametrize("before", [
    b"POST /one HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"POST /one HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
], ids=["after-a-length", "after-chunks"])
def test_a_padded_head_pipelined_in_the_same_read_is_counted(edge: Edge, app: Recorder, before: bytes) -> None:
    padded = b"GET /two HTTP/1.1\r\nHost: a\r\nX-Pad: " + b" " * 20_000 + b"a\r\n\r\n"
    data = exchange(edge.port, before + padded)
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)] == [
        (200, "/one"), (431, "HeadersTooLarge")]
    assert [path for _, path, _, _ in app.seen] == ["/one"]


def test_an_answer_before_an_announced_body_closes_the_connection(edge: Edge, app: Recorder) -> None:
    """The client waits for 100 Continue and may send its next request instead of the body: what follows
    cannot be read in one way only, so the connection ends with the answer."""
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"POST /early HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 37\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):  # until the edge closes (the keep-alive timeout is 30 s)
            data += chunk
    assert [status for status, _ in answers(data)] == [200]


def test_a_body_sent_unasked_after_an_early_answer_is_not_read_as_requests(edge: Edge, app: Recorder) -> None:
    """Whether the 37 bytes are the body or the client's next request cannot be known: nothing more is read."""
    data = exchange(edge.port, b"POST /early HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 37\r\n\r\n"
                    b"GET /next HTTP/1.1\r\nHost: a\r\n\r\nGET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [status for status, _ in answers(data)] == [200]
    assert [path for _, path, _, _ in app.seen] == ["/early"]


def test_a_body_sent_after_100_continue_keeps_the_connection(edge: Edge, app: Recorder) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"POST /one HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
        assert sock.recv(65536) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        sock.sendall(b"GET /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert [(status, body["path"], body["body"]) for status, body in answers(data)] == [(200, "/one", "abc"),
                                                                                       (200, "/two", "")]


SWITCH = b"POST /switch HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: %d\r\n\r\n"


def switch_on(sock: socket.socket, body: bytes) -> None:
    """Send /switch with `body` and the new protocol's first frames; the 101 and all of them come back."""
    sock.sendall(SWITCH % len(body) + body + b"first frames")
    data = b""
    while b"first frames" not in data:
        chunk = sock.recv(65536)
        assert chunk, data[:200]
        data += chunk
    head, _, switched = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 101 Switching Protocols"
    assert switched == body + b"first frames"


def test_an_upgrade_to_spdy_reads_its_body_before_switching(edge: Edge, app: Recorder) -> None:
    """llhttp would take the body for the new protocol's first bytes: the edge hands the connection to h11."""
    body = json.dumps({"command": ["sh", "-c", "x" * 30_000]}).encode()  # larger than one head may be
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        switch_on(sock, body)
        sock.sendall(b"more")
        assert sock.recv(65536) == b"more"
    (method, path, _, seen_body), = app.seen
    assert (method, path, seen_body) == ("POST", "/switch", body)


def read_answer(sock: socket.socket) -> bytes:
    """One answer with a Content-Length, read whole from a kept-alive connection."""
    data = b""
    while not answers_whole(data):
        chunk = sock.recv(65536)
        assert chunk, data[:200]
        data += chunk
    return data


def test_an_upgrade_on_an_idle_kept_alive_connection_switches(edge: Edge, app: Recorder) -> None:
    """What a pooling client (the vk's httpx) sends: an exec on the connection a log read used."""
    body = b'{"command": ["true"]}'
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
        assert answers(read_answer(sock)) == [(200, {"path": "/first", "body": ""})]
        switch_on(sock, body)
    assert [(path, seen_body) for _, path, _, seen_body in app.seen] == [("/first", b""), ("/switch", body)]


@pytest.mark.parametrize("split", [False, True], ids=["pipelined", "head-in-two-reads"])
def test_an_upgrade_on_a_busy_connection_or_split_over_reads_is_refused(edge: Edge, app: Recorder,
                                                                       split: bool) -> None:
    """Only a head that began in one read on an idle connection is this read's from its start: any other
    later upgrade is refused (llhttp would read its body as requests)."""
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        if split:
            sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n")
            read_answer(sock)
            sock.sendall((SWITCH % 0)[:20])
            time.sleep(0.2)  # a read of its own (a sleeping look: the edge says nothing until the head is whole)
            sock.sendall((SWITCH % 0)[20:])
        else:
            sock.sendall(b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n" + SWITCH % 0)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)][-1] == (
        400, "BadRequest")
    assert [path for _, path, _, _ in app.seen] == ["/first"]


def test_an_upgrade_not_switched_is_answered_once_and_closes(edge: Edge, app: Recorder) -> None:
    request = SWITCH.replace(b"/switch", b"/refused") % 5 + b"hello" + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n"
    data = exchange(edge.port, request)
    assert [(status, body["path"], body["body"]) for status, body in answers(data)] == [(200, "/refused", "hello")]
    assert [path for _, path, _, _ in app.seen] == ["/refused"]


def test_an_upgrade_is_served_only_as_a_connections_first_request(edge: Edge, app: Recorder) -> None:
    data = exchange(edge.port, b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n" + SWITCH % 0)
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)] == [
        (200, "/one"), (400, "BadRequest")]
    assert [path for _, path, _, _ in app.seen] == ["/one"]


def test_a_padded_upgrade_head_is_431(edge: Edge, app: Recorder) -> None:
    padded = SWITCH.replace(b"Upgrade: SPDY", b"X-Pad: " + b" " * 20_000 + b"a\r\nUpgrade: SPDY") % 0
    refused_with(exchange(edge.port, padded), 431, "HeadersTooLarge")
    assert app.seen == []


@pytest.mark.parametrize("request_bytes", [
    b"GET /drop HTTP/1.1\r\nHost: a\r\n\r\n",
    SWITCH.replace(b"/switch", b"/drop") % 0,  # on the h11 protocol an upgrade is handed to
], ids=["httptools", "h11"])
def test_an_app_can_drop_the_connection_of_an_answer_it_began(edge: Edge, app: Recorder, request_bytes: bytes,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    data = exchange(edge.port, request_bytes)
    wait_until(lambda: not edge.server.server_state.tasks, 10, "the app to return")
    assert b"dropped" not in data
    assert [path for _, path, _, _ in app.seen] == ["/drop"]
    assert not [r for r in caplog.records if "ASGI" in r.getMessage()], caplog.records


def test_the_edge_says_when_a_body_has_arrived_and_when_a_send_would_wait(edge: Edge, app: Recorder) -> None:
    # The proxy sets its body and send timers only when there is something to wait for (BODY_ARRIVED,
    # SEND_WOULD_WAIT); a body still arriving must never look whole.
    head = b"POST /%s HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
    assert answers(exchange(edge.port, head % b"a" + b"hello"))[0][1]["body"] == "hello"
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(head % b"hold" + b"he")
        wait_until(app.holding.is_set, 10, "the app to begin the request")
        sock.sendall(b"llo")
        app.release.set()
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    assert app.told == [(True, True, False), (False, True, False)]


# --- the second review of the httptools edge (rev14) ------------------------------------------------------

def test_the_uvicorn_and_httptools_internals_the_edge_relies_on_are_unchanged() -> None:
    """edge.py replaces uvicorn's data_received and reads its protocol's and cycle's state; uvicorn and httptools
    are pinned below the next versions (pyproject.toml): raising a pin must pass this first."""
    for name in ("_start_asgi_task", "_unset_keepalive_if_required", "_should_upgrade", "on_message_begin",
                 "on_header", "on_headers_complete", "on_body", "on_message_complete", "on_response_complete"):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    protocol = inspect.getsource(HttpToolsProtocol)
    for used in ("self.pipeline.appendleft((self.cycle, app))",  # queued newest first...
                 "cycle, app = self.pipeline.pop()",  # ...and started oldest first (refuse_request's order)
                 "self.flow = FlowControl(", "self.expect_100_continue = True"):
        assert used in protocol, used
    cycle = inspect.getsource(RequestResponseCycle)
    for used in ("self.disconnected = False", "self.body = bytearray()", "self.more_body = True",
                 "self.response_started = False", "self.response_complete = False"):
        assert used in cycle, used
    leniencies = inspect.signature(httptools.HttpRequestParser.set_dangerous_leniencies).parameters
    assert set(leniencies) - {"self"} == set(edge_module.LLHTTP_LENIENCIES)  # a new leniency would be llhttp's default


def test_a_chunked_body_whose_data_looks_like_its_chunk_lines_is_served(edge: Edge, app: Recorder) -> None:
    """Chunk lines are followed in raw bytes, not by finding each chunk's data in the read (data `1` would be
    found in the line `1` before it, and the body counted as chunk lines)."""
    data = exchange(edge.port, HEAD + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    + b"1\r\n1\r\n" * 200_000 + b"0\r\n\r\n")
    assert [(status, len(body["body"])) for status, body in answers(data)] == [(200, 200_000)]


@pytest.mark.parametrize("size", [1000, 60_000])
def test_a_request_pipelined_after_a_chunked_one_is_counted_from_its_own_start(edge: Edge, app: Recorder,
                                                                               size: int) -> None:
    """The end of a chunked body is known exactly: the next request's head is not counted with its body."""
    data = exchange(edge.port, b"POST /one HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n"
                    b"0\r\nX-T: 1\r\n\r\nPOST /two HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n" % size + b"b" * size)
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)] == [
        (200, "/one"), (200, "/two")]


TRAILED = b"1\r\nz\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n"


@pytest.mark.parametrize("split", range(1, len(TRAILED)))
def test_chunk_lines_and_trailers_split_anywhere_end_where_they_end(edge: Edge, app: Recorder, split: int) -> None:
    padded = b"GET /two HTTP/1.1\r\nHost: a\r\nX-Pad: " + b" " * 20_000 + b"a\r\n\r\n"
    data = exchange(edge.port, HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + TRAILED[:split],
                    TRAILED[split:] + b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n" + padded)
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)] == [
        (200, "/slurm/v0.0.40/job/submit"), (200, "/one"), (431, "HeadersTooLarge")]


UNSERVED_UPGRADES = [  # curl --http2 over plain http; a WebSocket client
    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n",
    b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
]


@pytest.mark.parametrize("upgrade", UNSERVED_UPGRADES, ids=["h2c", "websocket"])
@pytest.mark.parametrize("request_line", [b"GET /up HTTP/1.1\r\n", b"POST /up HTTP/1.1\r\nContent-Length: 0\r\n"],
                         ids=["get", "post-without-body"])
@pytest.mark.parametrize("before", [b"", b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n"], ids=["first", "pipelined"])
def test_an_upgrade_not_served_is_ignored_on_a_request_without_a_body(edge: Edge, app: Recorder, upgrade: bytes,
                                                                     request_line: bytes, before: bytes) -> None:
    """RFC 9110 7.8: a server may ignore Upgrade. llhttp stops at the head of an upgrade; what follows it is
    read on as HTTP (a body would not be: such requests are refused, above)."""
    data = exchange(edge.port, before + request_line + b"Host: a\r\n" + upgrade + b"\r\n"
                    b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    paths = ["/before"] * bool(before) + ["/up", "/after"]
    assert [(status, body["path"]) for status, body in answers(data)] == [(200, path) for path in paths]
    assert [path for _, path, _, _ in app.seen] == paths


def test_a_connection_whose_upgrade_was_ignored_stays_http(edge: Edge, app: Recorder) -> None:
    with socket.create_connection(("127.0.0.1", edge.port), timeout=10) as sock:
        sock.sendall(b"GET /up HTTP/1.1\r\nHost: a\r\n" + UNSERVED_UPGRADES[0] + b"\r\n")
        data = b""
        while not answers_whole(data):
            chunk = sock.recv(65536)
            assert chunk, data
            data += chunk
        sock.sendall(b"GET /after HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        while chunk := sock.recv(65536):
            data += chunk
    assert [(status, body["path"]) for status, body in answers(data)] == [(200, "/up"), (200, "/after")]


def answers_whole(data: bytes) -> bool:
    head, found, rest = data.partition(b"\r\n\r\n")
    lengths = [int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
               if line.lower().startswith(b"content-length:")]
    return bool(found) and bool(lengths) and len(rest) >= lengths[0]


UPGRADES_WITH_BODIES = [  # llhttp reads no body after an upgrade's head
    b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: h2c\r\nContent-Length: %d\r\n\r\n"
    % len(SMUGGLED) + SMUGGLED,
    b"POST /up HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % len(SMUGGLED) + SMUGGLED + b"\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", UPGRADES_WITH_BODIES, ids=["length", "chunked"])
def test_an_upgrade_not_served_with_a_body_is_read_by_h11_as_a_connections_first_request(
        edge: Edge, app: Recorder, request_bytes: bytes) -> None:
    """curl --http2 -d over plain http: handed to h11 (as SPDY/3.1 is), which reads the body, then closes."""
    data = exchange(edge.port, request_bytes + b"GET /after HTTP/1.1\r\nHost: a\r\n\r\n")
    assert [(status, body["path"], body["body"]) for status, body in answers(data)] == [
        (200, "/up", SMUGGLED.decode())]
    assert [path for _, path, _, _ in app.seen] == ["/up"]


@pytest.mark.parametrize("request_bytes", UPGRADES_WITH_BODIES, ids=["length", "chunked"])
def test_an_upgrade_not_served_with_a_body_is_refused_later_on_a_connection(edge: Edge, app: Recorder,
                                                                           request_bytes: bytes) -> None:
    data = exchange(edge.port, b"GET /first HTTP/1.1\r\nHost: a\r\n\r\n" + request_bytes)
    assert [(status, body.get("path", body.get("error"))) for status, body in answers(data)] == [
        (200, "/first"), (400, "BadRequest")]
    assert [path for _, path, _, _ in app.seen] == ["/first"]
