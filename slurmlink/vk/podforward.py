"""The vk as a port-forward client of the API, for one pod (vk `services`): what kubectl and the apiserver do
for `kubectl port-forward`, without them.

One upgraded connection to the API's `/portForward` per pod (SPDY/3.1, `portforward.k8s.io`), opened at the
first TCP connection and opened again after it ended (an API restart); per TCP connection one pair of SPDY
streams with the same `requestID` and the pod's `port`: `error` (read only: the API writes a failure there as
text) and `data` (the connection's bytes). The API then relays the pair through a step of the pod's job
(steps/portforward.py). The session counts as one of the pod's sessions at the API (`exec.max_sessions_per_pod`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any, cast

from slurmlink.core.errors import SlurmlinkError
from slurmlink.streams.portforward import PROTOCOL
from slurmlink.streams.remotecommand import PROTOCOL_HEADER
from slurmlink.streams.spdy import SpdySession, SpdyStream
from slurmlink.streams.upgrade import SPDY
from slurmlink.wire.client import ApiCallError, InterlinkClient
from slurmlink.wire.names import PORTFORWARD_ROUTE

Obj = dict[str, Any]


class ForwardRefused(SlurmlinkError):
    """The API did not open a port-forward session for the pod (its words, or why it could not be asked)."""


class _NetworkReader:
    """An httpcore network stream (the API's upgraded connection) read as SpdySession reads a StreamReader."""

    def __init__(self, network: Any) -> None:
        self.network = network

    async def read(self, size: int) -> bytes:
        try:
            return bytes(await self.network.read(size))
        except Exception as exc:  # httpcore's ReadError and the like: the session sees the connection lost
            raise ConnectionError(str(exc) or type(exc).__name__) from exc


class _NetworkWriter:
    """The same stream written as SpdySession writes a StreamWriter: `write` queues (SpdySession writes
    WINDOW_UPDATEs without draining, so the queue is flushed by a task of its own), `drain` waits for it."""

    def __init__(self, network: Any) -> None:
        self.network = network
        self._pending = bytearray()
        self._flushing: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        self._pending += data
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.create_task(self._flush())
            self._flushing.add_done_callback(_seen)  # its failure is drain's to tell, if anyone drains

    async def _flush(self) -> None:
        while self._pending:
            chunk = bytes(self._pending)
            self._pending.clear()
            await self.network.write(chunk)

    async def drain(self) -> None:
        while self._flushing is not None and not self._flushing.done():
            try:
                await asyncio.shield(self._flushing)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                raise ConnectionError(str(exc) or type(exc).__name__) from exc

    def close(self) -> None:
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self.drain()
        with contextlib.suppress(Exception):
            await self.network.aclose()

    async def wait_closed(self) -> None:
        if self._closing is not None:
            await asyncio.shield(self._closing)


def _seen(task: asyncio.Task[None]) -> None:
    """Mark a task's exception as retrieved: the connection's loss is seen by the session's reads."""
    if not task.cancelled():
        task.exception()


class PodForward:
    """Port-forward streams to one pod through the API; `pod` is read at each (re)connection."""

    def __init__(self, api: InterlinkClient, pod: Obj) -> None:
        self.api, self.pod = api, pod
        self._session: SpdySession | None = None
        self._reading: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._request_ids = itertools.count()
        self._attempts = 0  # sessions asked for so far
        self._failure: ForwardRefused | None = None  # why the last one was not opened
        self.closed = False

    async def _open_session(self) -> SpdySession:
        attempt = self._attempts
        async with self._lock:
            if self.closed:
                raise ForwardRefused("the pod's ports are no longer served")
            if self._session is not None and not self._session.closed:
                return self._session
            if self._attempts != attempt and self._failure is not None:
                # it failed while this connection waited: the API is not asked again at once, nor waited for
                raise ForwardRefused(str(self._failure))
            self._attempts += 1
            try:
                session = await self._ask_api()
            except BaseException as exc:  # a timeout included: the waiters do not each wait as long again
                self._failure = exc if isinstance(exc, ForwardRefused) else ForwardRefused(
                    f"the API did not open a session within {self.api.timeout:g}s")
                raise
            self._failure = None
            return session

    async def _ask_api(self) -> SpdySession:
        """A new session: the API's port-forward upgrade for the pod."""
        meta = self.pod["metadata"]
        params = [("namespace", str(meta["namespace"])), ("pod", str(meta["name"])), ("uid", str(meta["uid"])),
                  ("container", "")]
        headers = [("Connection", "Upgrade"), ("Upgrade", SPDY), (PROTOCOL_HEADER, PROTOCOL)]
        try:
            status, _headers, body, network = await self.api.upgrade(PORTFORWARD_ROUTE, params, headers,
                                                                     self.pod)
        except ApiCallError as exc:
            raise ForwardRefused(str(exc)) from exc
        if network is None:
            raise ForwardRefused(body.decode(errors="replace").strip() or f"the API answered {status}")
        reader, writer = _NetworkReader(network), _NetworkWriter(network)
        session = SpdySession(cast(asyncio.StreamReader, reader), cast(asyncio.StreamWriter, writer),
                              server=False)
        self._session, self._reading = session, asyncio.create_task(session.run())
        return session

    async def open(self, port: int) -> tuple[SpdyStream, SpdyStream]:
        """(error, data) streams of a new connection to `port` in the pod, as kubectl opens them."""
        request_id = str(next(self._request_ids))
        session = None
        try:
            # An API that stopped answering is not waited for, whether for the session (the client's upgrade
            # has no read timeout: the session lives on) or for the streams.
            async with asyncio.timeout(self.api.timeout):
                session = await self._open_session()
                error = await session.open_stream({"streamtype": "error", "port": str(port),
                                                   "requestid": request_id})
                await error.close()  # the client never writes on the error stream
                data = await session.open_stream({"streamtype": "data", "port": str(port),
                                                  "requestid": request_id})
        except (SlurmlinkError, ConnectionError) as exc:  # the session ended under us, or the API refused
            if isinstance(exc, ForwardRefused):
                raise
            raise ForwardRefused(f"the port-forward session to the pod failed: {exc}") from exc
        except TimeoutError:
            if session is None:
                raise ForwardRefused(f"the API did not open a session within {self.api.timeout:g}s") from None
            await session.close()  # the next connection opens a new one
            raise ForwardRefused(f"the API did not open streams within {self.api.timeout:g}s") from None
        return error, data

    async def close(self) -> None:
        """The pod's ports are no longer served: the session and every connection in it end."""
        async with self._lock:
            self.closed = True
            session, reading = self._session, self._reading
            self._session = None
        if session is not None:
            await session.close()
        if reading is not None:
            reading.cancel()
            with contextlib.suppress(BaseException):
                await reading
