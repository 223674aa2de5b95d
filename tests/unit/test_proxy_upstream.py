"""The proxy's lean client to slurmrestd (slurmlink/proxy/upstream.py) against a real asyncio server on loopback
that answers with canned bytes: how each framing is read, when a connection is kept, reused or closed, and that
a broken or late answer is an UpstreamError / UpstreamTimeout (the forwarder's 502 / 503), never a hang. The
real slurmrestd behind the real proxy is in tests/integration/test_proxy.py."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from slurmlink.proxy.upstream import UpstreamError, UpstreamPool, UpstreamTimeout, valid_target

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
THEN_CLOSE = b"<then the server closes the connection>"


def then_close(answer: bytes) -> bytes:
    return answer + THEN_CLOSE


class CannedServer:
    """Reads each request whole (head, then Content-Length bytes) and writes the next canned answer;
    records every request and every connection."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers  # None: close the connection without answering
        self.requests: list[bytes] = []
        self.reads_per_request: list[int] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while self.answers:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                answer = self.answers.pop(0)
                if answer is None:
                    break
                writer.write(answer.removesuffix(THEN_CLOSE))
                await writer.drain()
                if answer.endswith(THEN_CLOSE):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()


Scenario = Callable[[UpstreamPool, CannedServer], Awaitable[None]]


def run(answers: list[bytes | None], scenario: Scenario, timeout: float = 5.0) -> CannedServer:
    canned = CannedServer(answers)

    async def main() -> None:
        server = await asyncio.start_server(canned.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        pool = UpstreamPool(f"http://127.0.0.1:{port}", max_connections=2, timeout=timeout, connect_timeout=timeout)
        try:
            await scenario(pool, canned)
        finally:
            await pool.aclose()
            server.close()

    asyncio.run(main())
    return canned


async def body_of(pool: UpstreamPool, method: str = "GET", body: bytes = b"") -> tuple[int, bytes | None]:
    answer = await pool.send(method, "/slurm/v0.0.38/ping/", [("Content-Type", "application/json")], body)
    try:
        return answer.status_code, await answer.read(1 << 20)
    finally:
        await answer.aclose()


def test_a_request_is_sent_whole_with_its_length_and_the_connection_is_kept_for_the_next() -> None:
    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        assert await body_of(pool, "POST", b'{"job": {}}') == (200, b"{}")
        assert await body_of(pool) == (200, b"{}")

    canned = run([OK, OK], scenario)
    assert canned.connections == 1
    first = canned.requests[0]
    assert first.startswith(b"POST /slurm/v0.0.38/ping/ HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"job\": {}}" in first
    assert b"content-length" not in canned.requests[1].lower()  # a GET without a body says nothing of one


def test_chunked_and_close_delimited_bodies_are_read_whole() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\n")
    close_delimited = then_close(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")

    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        assert await body_of(pool) == (200, b"abcde")
        assert await body_of(pool) == (200, b"until the end")

    canned = run([chunked, close_delimited, OK], scenario)
    assert canned.connections == 1  # the chunked answer left the connection reusable


def test_connection_close_and_an_unread_body_are_not_reused() -> None:
    closing = then_close(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}")

    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        assert await body_of(pool) == (200, b"{}")
        answer = await pool.send("GET", "/a", [], b"")
        await answer.aclose()  # body never read: the connection cannot be used again
        assert await body_of(pool) == (200, b"{}")

    canned = run([closing, OK, OK], scenario)
    assert canned.connections == 3


def test_a_connection_with_bytes_after_the_answer_is_not_reused() -> None:
    """A second answer smuggled after the first one's end must never be taken for the next request's answer."""
    smuggled = OK + b'HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n{"other":"x"}'

    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        assert await body_of(pool) == (200, b"{}")
        assert await body_of(pool) == (200, b"{}")

    canned = run([smuggled, OK], scenario)
    assert canned.connections == 2


def test_a_body_over_the_limit_is_none() -> None:
    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        answer = await pool.send("GET", "/a", [], b"")
        assert await answer.read(1) is None
        await answer.aclose()

    run([OK], scenario)


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n Folded: header\r\n\r\n",
    then_close(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}"),
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    None,  # closed without an answer
])
def test_a_broken_answer_is_an_upstream_error(answer: bytes | None) -> None:
    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        with pytest.raises(UpstreamError) as caught:
            await body_of(pool)
        assert not isinstance(caught.value, UpstreamTimeout)

    run([answer], scenario)


def test_a_silent_upstream_is_a_timeout_and_frees_its_connection_slot() -> None:
    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        for _ in range(3):  # more than max_connections: each timeout gave its slot back
            with pytest.raises(UpstreamTimeout):
                await pool.send("GET", "/a", [], b"")

    run([b"HTTP/1.1 200 OK\r\n"] * 4, scenario, timeout=0.2)  # the last is never sent: no close


def test_nothing_listening_is_an_upstream_error() -> None:
    async def scenario() -> None:
        pool = UpstreamPool("http://127.0.0.1:1", max_connections=1, timeout=2, connect_timeout=2)
        with pytest.raises(UpstreamError):
            await pool.send("GET", "/a", [], b"")

    asyncio.run(scenario())


def test_targets_and_headers_that_would_change_the_request_are_refused() -> None:
    assert valid_target("/slurm/v0.0.38/jobs/?update_time=1")
    for target in ("/a b", "/a\r\nX: y", "/\x00", "/é", "a"):
        assert not valid_target(target)

    async def scenario(pool: UpstreamPool, canned: CannedServer) -> None:
        for name, value in (("X-A", "b\r\nX-SLURM-USER-NAME: root"), ("Bad Name", "v"), ("X-A", "\x00")):
            with pytest.raises(ValueError):
                await pool.send("GET", "/a", [(name, value)], b"")
        assert await body_of(pool) == (200, b"{}")  # no slot was lost to the refusals

    canned = run([OK], scenario)
    assert len(canned.requests) == 1


def test_a_refused_connect_is_tried_again_until_slurmrestd_listens() -> None:
    # slurmrestd restarting: the port refuses for a moment, then answers; nothing was sent, so the send waits.
    async def main() -> None:
        canned = CannedServer([OK])
        probe = await asyncio.start_server(canned.handle, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        pool = UpstreamPool(f"http://127.0.0.1:{port}", max_connections=2, timeout=5, connect_timeout=5)
        servers = []

        async def listen_later() -> None:
            await asyncio.sleep(0.3)
            servers.append(await asyncio.start_server(canned.handle, "127.0.0.1", port))
        later = asyncio.create_task(listen_later())
        try:
            assert await body_of(pool) == (200, b"{}")
        finally:
            await later
            await pool.aclose()
            servers[0].close()

    asyncio.run(main())


def test_a_port_that_keeps_refusing_is_an_upstream_error_after_the_connect_timeout() -> None:
    async def main() -> None:
        probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        pool = UpstreamPool(f"http://127.0.0.1:{port}", max_connections=2, timeout=5, connect_timeout=0.3)
        with pytest.raises(UpstreamError, match="ConnectionRefusedError"):
            await body_of(pool)

    asyncio.run(main())
