"""The port-forward session (steps/portforward.py) without SLURM: a real SPDY client on loopback, the real
connector program (run directly instead of as a job step) and a real TCP server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

import pytest

from slurmlink.steps import portforward
from slurmlink.steps.portforward import CONNECTOR, PortForwardSession
from slurmlink.streams.spdy import SpdySession, SpdyStream


def _step_for(port: int) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-c", CONNECTOR, str(port)], {}


async def _read_all(stream: SpdyStream) -> bytes:
    data = b""
    while chunk := await stream.read():
        data += chunk
    return data


async def _forward(port: str, request_id: str, payload: bytes, api_port: int) -> tuple[bytes, bytes]:
    """One forwarded connection as kubectl makes it: the error stream (closed at once), then the data stream."""
    client = SpdySession(*await asyncio.open_connection("127.0.0.1", api_port), server=False)
    reading = asyncio.create_task(client.run())
    try:
        headers = {"port": port, "requestid": request_id}
        error = await client.open_stream({"streamtype": "error", **headers})
        await error.close()
        data = await client.open_stream({"streamtype": "data", **headers})
        await data.write(payload)
        await data.close()
        return await asyncio.wait_for(_read_all(data), 30), await asyncio.wait_for(_read_all(error), 30)
    finally:
        await client.close()
        reading.cancel()


async def _with_servers(test: Callable[[int, int, int], Awaitable[None]]) -> None:
    """`test(echo port, API port, a closed port)`; the echo server answers in upper case."""
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data.upper())
            await writer.drain()
        writer.close()

    async def serve_api(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await PortForwardSession(SpdySession(reader, writer, server=True), _step_for).run()

    echo_server = await asyncio.start_server(echo, "127.0.0.1", 0)
    api_server = await asyncio.start_server(serve_api, "127.0.0.1", 0)
    closed = await asyncio.start_server(echo, "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    try:
        await test(echo_server.sockets[0].getsockname()[1], api_server.sockets[0].getsockname()[1], closed_port)
    finally:
        echo_server.close()
        api_server.close()


def test_bytes_go_both_ways_and_the_end_of_input_reaches_the_server() -> None:
    async def test(echo: int, api: int, _closed: int) -> None:
        payload = b"hello through the forward\n" * 5000  # more than one window
        answer, error = await _forward(str(echo), "0", payload, api)
        assert (answer, error) == (payload.upper(), b"")
    asyncio.run(_with_servers(test))


def test_a_port_nothing_listens_on_is_reported_on_the_error_stream() -> None:
    async def test(_echo: int, api: int, closed: int) -> None:
        answer, error = await _forward(str(closed), "1", b"x", api)
        assert answer == b""
        assert error.decode().startswith(f"error forwarding port {closed}: failed to connect to "
                                         f"localhost:{closed} inside the pod's job"), error
    asyncio.run(_with_servers(test))


def test_a_port_that_is_no_port_is_refused_without_a_step() -> None:
    async def test(_echo: int, api: int, _closed: int) -> None:
        for port in ("http", "0", "70000", "1; id"):
            answer, error = await _forward(port, "2", b"x", api)
            assert (answer, error) == (b"", f"invalid port {port!r}".encode())
    asyncio.run(_with_servers(test))


def test_a_stream_whose_pair_never_comes_is_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(portforward, "STREAMS_TIMEOUT", 0.2)

    async def test(echo: int, api: int, _closed: int) -> None:
        client = SpdySession(*await asyncio.open_connection("127.0.0.1", api), server=False)
        reading = asyncio.create_task(client.run())
        try:
            lonely = await client.open_stream({"streamtype": "data", "port": str(echo), "requestid": "7"})
            assert await asyncio.wait_for(lonely.read(), 30) == b""  # reset: no error stream came
            assert lonely.reset
        finally:
            await client.close()
            reading.cancel()
    asyncio.run(_with_servers(test))
