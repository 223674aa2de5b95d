"""SPDY/3.1 frames, header blocks and flow-control windows (slurmlink/streams/spdy.py); sessions over a real
socket pair. Interop with Go's SPDY is shown end to end by kubectl (tests/integration/test_vk_exec.py)."""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slurmlink.streams import spdy
from slurmlink.streams.spdy import (
    HEADER_DICTIONARY,
    INITIAL_WINDOW,
    ControlFrame,
    DataFrame,
    FrameReader,
    HeaderCodec,
    SpdySession,
    SpdyStream,
    encode_control,
    encode_data,
)


def test_the_dictionary_is_the_protocols() -> None:
    # 1423 bytes, Adler-32 0xe3c6a7c2: what zlib's FDICT check of a Go or Chromium peer expects
    assert len(HEADER_DICTIONARY) == 1423
    assert zlib.adler32(HEADER_DICTIONARY) == 0xE3C6A7C2
    assert HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert HEADER_DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


@given(stream_id=st.integers(1, 2**31 - 1), flags=st.integers(0, 255), data=st.binary(max_size=3000),
       split=st.integers(1, 50))
def test_frames_round_trip_however_the_bytes_arrive(stream_id: int, flags: int, data: bytes, split: int) -> None:
    wire = encode_data(stream_id, flags, data) + encode_control(spdy.PING, 0, struct.pack(">I", 7))
    reader, frames = FrameReader(), []
    for start in range(0, len(wire), split):
        frames += reader.feed(wire[start:start + split])
    assert frames == [DataFrame(stream_id, flags, data), ControlFrame(spdy.PING, 0, struct.pack(">I", 7))]


def test_a_frame_of_another_version_is_refused() -> None:
    with pytest.raises(spdy.SpdyError, match="version 2"):
        FrameReader().feed(struct.pack(">HHI", 0x8002, 1, 0))


headers = st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12),
                          st.text(max_size=40), max_size=6)


@given(blocks=st.lists(headers, min_size=1, max_size=8))
def test_header_blocks_share_one_zlib_stream_per_direction(blocks: list[dict[str, str]]) -> None:
    sender, receiver = HeaderCodec(), HeaderCodec()
    for block in blocks:
        assert receiver.decode(sender.encode(block)) == block


def test_header_blocks_use_the_dictionary_and_sync_flush() -> None:
    encoded = HeaderCodec().encode({"streamtype": "stdout"})
    assert encoded.endswith(b"\x00\x00\xff\xff")  # each block ends on a sync flush
    inflater = zlib.decompressobj(zdict=HEADER_DICTIONARY)
    block = inflater.decompress(encoded)
    assert block == struct.pack(">I", 1) + struct.pack(">I", 10) + b"streamtype" + struct.pack(">I", 6) + b"stdout"
    with pytest.raises(zlib.error):
        zlib.decompressobj().decompress(encoded)  # a peer without the dictionary cannot read it


def test_upper_case_header_names_are_refused() -> None:
    with pytest.raises(spdy.SpdyError):
        HeaderCodec().encode({"StreamType": "x"})


async def _pair() -> tuple[SpdySession, SpdySession, list[SpdyStream]]:
    left, right = socket.socketpair()
    arrived: list[SpdyStream] = []
    client = SpdySession(*await asyncio.open_connection(sock=left), server=False)
    server = SpdySession(*await asyncio.open_connection(sock=right), server=True, on_stream=arrived.append)
    return client, server, arrived


@pytest.mark.anyio
async def test_streams_carry_data_both_ways_and_fin() -> None:
    client, server, arrived = await _pair()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = await client.open_stream({"streamtype": "stdin"})
    assert opened.id == 1 and arrived[0].headers == {"streamtype": "stdin"}
    await opened.write(b"hello")
    await opened.close()
    theirs = arrived[0]
    assert await theirs.read() == b"hello" and await theirs.read() == b""
    await theirs.write(b"back")
    assert await opened.read() == b"back"
    second = await client.open_stream({"streamtype": "stdout"})
    assert second.id == 3  # client streams are odd, in order
    await client.close()
    await asyncio.wait_for(server.ended.wait(), 5)
    for task in tasks:
        task.cancel()


@pytest.mark.anyio
async def test_a_counting_peer_holds_the_sender_to_its_window() -> None:
    client, server, arrived = await _pair()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = await client.open_stream({"streamtype": "stdout"})
    theirs = arrived[0]
    # the server shows it counts (SETTINGS initial window), and makes the window small
    await server.send(encode_control(spdy.SETTINGS, 0, struct.pack(">III", 1, spdy.SETTINGS_INITIAL_WINDOW_SIZE,
                                                                     1000)))
    await asyncio.sleep(0)  # let the client read it
    while not client.peer_counts_windows:
        await asyncio.sleep(0.01)
    writing = asyncio.create_task(opened.write(b"x" * 3000))
    received = b""
    while len(received) < 1000:
        received += await theirs.incoming.get()
    await asyncio.sleep(0.1)
    assert not writing.done() and theirs.incoming.empty()  # held at 1000 bytes until a WINDOW_UPDATE
    await server.send(encode_control(spdy.WINDOW_UPDATE, 0, struct.pack(">II", opened.id, 2000)))
    while len(received) < 3000:
        received += await theirs.incoming.get()
    await asyncio.wait_for(writing, 5)
    assert received == b"x" * 3000
    await client.close()
    for task in tasks:
        task.cancel()


@pytest.mark.anyio
async def test_the_reader_grants_windows_back_as_it_consumes() -> None:
    client, server, arrived = await _pair()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = await client.open_stream({"streamtype": "stdin"})
    await opened.write(b"y" * INITIAL_WINDOW)
    theirs, taken = arrived[0], 0
    while taken < INITIAL_WINDOW:
        taken += len(await theirs.read())
    while not client.peer_counts_windows:  # the server's WINDOW_UPDATEs reached the client
        await asyncio.sleep(0.01)
    assert opened.send_window == INITIAL_WINDOW and client.send_window == INITIAL_WINDOW
    await client.close()
    for task in tasks:
        task.cancel()


@pytest.mark.anyio
async def test_a_peer_that_never_counts_is_not_waited_for() -> None:
    # moby/spdystream sends no WINDOW_UPDATE: more than a window must still go through
    client, server, arrived = await _pair()
    server.consumed = lambda stream, size: None  # type: ignore[method-assign]  # a server that never grants
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = await client.open_stream({"streamtype": "stdin"})
    await asyncio.wait_for(opened.write(b"z" * (3 * INITIAL_WINDOW)), 5)
    await client.close()
    for task in tasks:
        task.cancel()


@pytest.mark.anyio
async def test_pings_from_the_peer_are_answered() -> None:
    client, server, _ = await _pair()
    tasks = [asyncio.create_task(server.run())]
    client.writer.write(encode_control(spdy.PING, 0, struct.pack(">I", 1)))
    reply = await asyncio.wait_for(client.reader.readexactly(12), 5)
    assert FrameReader().feed(reply) == [ControlFrame(spdy.PING, 0, struct.pack(">I", 1))]
    await server.close()
    for task in tasks:
        task.cancel()


# --- what a hostile peer can make us hold -------------------------------------------------------------------

def test_frames_over_the_limits_end_the_session_before_they_are_buffered() -> None:
    with pytest.raises(spdy.SpdyError, match="more than this end takes"):
        FrameReader().feed(struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, spdy.MAX_CONTROL_FRAME + 1))
    with pytest.raises(spdy.SpdyError, match="more than this end takes"):
        FrameReader().feed(struct.pack(">II", 1, spdy.MAX_DATA_FRAME + 1))


def test_a_header_block_that_inflates_without_end_is_refused() -> None:
    # 10 MB of one header value compresses to a few kB: decompression stops at the limit
    bomb = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)
    block = struct.pack(">I", 1) + struct.pack(">I", 1) + b"a" + struct.pack(">I", 10_000_000) + b"x" * 10_000_000
    data = bomb.compress(block) + bomb.flush(zlib.Z_SYNC_FLUSH)
    assert len(data) < spdy.MAX_CONTROL_FRAME
    with pytest.raises(spdy.SpdyError, match="more than"):
        HeaderCodec().decode(data)


def test_a_header_block_that_claims_more_than_it_holds_is_refused() -> None:
    sender = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, HEADER_DICTIONARY)
    lying = struct.pack(">I", 1) + struct.pack(">I", 4) + b"name" + struct.pack(">I", 500) + b"short"
    with pytest.raises(spdy.SpdyError, match="truncated"):
        HeaderCodec().decode(sender.compress(lying) + sender.flush(zlib.Z_SYNC_FLUSH))


@pytest.mark.anyio
async def test_streams_past_the_limit_are_refused_and_ended_ones_do_not_count() -> None:
    client, server, arrived = await _pair()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = [await client.open_stream({"n": str(i)}) for i in range(spdy.MAX_OPEN_STREAMS)]
    with pytest.raises(spdy.SpdyError, match="refused"):
        await asyncio.wait_for(client.open_stream({"n": "one too many"}), 5)
    # Two streams end at both ends: two more may open.
    for stream in opened[:2]:
        await stream.close()
    for theirs in arrived[:2]:
        assert await theirs.read() == b""
        await theirs.close()
    for stream in opened[:2]:
        assert await asyncio.wait_for(stream.read(), 5) == b""
    await asyncio.wait_for(client.open_stream({"n": "again"}), 5)
    await client.close()
    for task in tasks:
        task.cancel()


@pytest.mark.anyio
async def test_a_stream_nobody_reads_holds_the_session_not_the_memory() -> None:
    client, server, arrived = await _pair()
    server.consumed = lambda stream, size: None  # type: ignore[method-assign]
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = await client.open_stream({"streamtype": "stdin"})
    # A peer that does not count windows (as spdystream) writes on; the server reads no more once the stream holds
    # MAX_STREAM_BUFFER, so the writer ends up waiting on the socket.
    writing = asyncio.create_task(opened.write(b"z" * (16 * spdy.MAX_STREAM_BUFFER)))
    await asyncio.sleep(0.5)
    assert not writing.done()
    assert arrived[0].buffered <= spdy.MAX_STREAM_BUFFER + spdy.MAX_FRAME_DATA * 4
    got = 0
    while got < 16 * spdy.MAX_STREAM_BUFFER:  # the reader catches up: everything arrives
        got += len(await asyncio.wait_for(arrived[0].read(), 5))
    await asyncio.wait_for(writing, 5)
    await client.close()
    for task in tasks:
        task.cancel()


@pytest.mark.anyio
async def test_a_paused_session_notices_its_peer_going_away() -> None:
    # `kubectl exec -i pod -- sleep infinity < bigfile`, then ^C: the server's session holds a full stream nobody
    # reads, so it reads nothing more; it must still end (and its step with it) when the client's connection goes.
    client, server, arrived = await _pair()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    opened = await client.open_stream({"streamtype": "stdin"})
    writing = asyncio.create_task(opened.write(b"z" * (4 * spdy.MAX_STREAM_BUFFER)))
    async with asyncio.timeout(10):
        while arrived[0].room.is_set():  # the session is paused on the full stream
            await asyncio.sleep(0.05)
    client.writer.transport.abort()
    await asyncio.wait_for(server.ended.wait(), 10 * spdy.HANGUP_CHECK_SECONDS)
    assert server.closed
    for task in [writing, *tasks]:
        task.cancel()


@pytest.mark.anyio
async def test_a_long_client_session_forgets_the_streams_that_ended() -> None:
    # The vk's relay is a client session that lives as long as its pod serves, and the API never opens a stream
    # to it: ended streams must be forgotten when the client opens the next, or the session grows without end.
    client, server, arrived = await _pair()
    tasks = [asyncio.create_task(client.run()), asyncio.create_task(server.run())]
    for n in range(3 * spdy.MAX_OPEN_STREAMS):
        ours = await client.open_stream({"n": str(n)})
        theirs = arrived[-1]
        if n % 2:  # ended at both ends
            await ours.close()
            assert await asyncio.wait_for(theirs.read(), 5) == b""
            await theirs.write(b"bye")
            await theirs.close()
            assert await asyncio.wait_for(ours.read(), 5) == b"bye"
            assert await asyncio.wait_for(ours.read(), 5) == b""
        else:  # reset by the client, the peer's late data unread
            await theirs.write(b"late")
            await client.reset_stream(ours.id)
            assert await asyncio.wait_for(theirs.read(), 5) == b""
    last = await client.open_stream({"n": "last"})
    assert set(client.streams) <= {last.id, last.id - 2}  # the newest, and the one before if its end is on its way
    await client.close()
    for task in tasks:
        task.cancel()
