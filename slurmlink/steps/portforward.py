"""`kubectl port-forward` at the site, served as a kubelet serves `/portForward` over SPDY/3.1 (by the API in
mode 2, by the proxy's interactive extension in mode 1).

Per forwarded connection the client opens two streams with the same `requestID`: `error` (where we write a
failure as text) and `data` (the TCP connection's bytes), each naming the pod's `port`. We do not connect to
the compute node from the service's host: each connection is a new step of the pod's job, run as the pod's own
account (`runuser -u <user> -- srun --overlap --jobid=<job> -- python3 -c CONNECTOR <port>`), which connects
to 127.0.0.1:<port> on the job's node and copies its stdin and stdout to and from that socket. So only what
the pod's account may reach from inside the job is reached, never as root, and compute nodes need not be
reachable from the service's host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from slurmlink.steps.ending import end_step, start_step
from slurmlink.streams.spdy import SpdySession, SpdyStream

log = logging.getLogger(__name__)
STREAMS_TIMEOUT = 30.0  # the kubelet's streamCreationTimeout: how long the pair of a requestID may take
READ_SIZE = 32 * 1024

# Run on the compute node, inside the job, as the pod's account: argv[1] is the port (an integer we checked).
# stdin -> socket and socket -> stdout; the end of stdin half-closes the socket; an error is one line on
# stderr and exit status 1.
CONNECTOR = r"""
import os, selectors, socket, sys
port = int(sys.argv[1])
try:
    conn = socket.create_connection(("127.0.0.1", port), timeout=10)
except OSError as exc:
    try:
        conn = socket.create_connection(("::1", port), timeout=10)
    except OSError:
        sys.stderr.write(f"failed to connect to localhost:{port} inside the pod's job: {exc.strerror or exc}\n")
        sys.exit(1)
conn.settimeout(None)
sel = selectors.DefaultSelector()
sel.register(0, selectors.EVENT_READ)
sel.register(conn, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj == 0:
            data = os.read(0, 65536)
            if not data:
                sel.unregister(0)
                conn.shutdown(socket.SHUT_WR)
            else:
                conn.sendall(data)
        else:
            data = conn.recv(65536)
            if not data:
                sys.exit(0)
            view = memoryview(data)
            while view:
                view = view[os.write(1, view):]
"""


def connector_argv(port: int) -> list[str]:
    return ["python3", "-c", CONNECTOR, str(port)]


StepFor = Callable[[int], tuple[list[str], dict[str, str]]]  # port -> argv and env of the connecting step


class PortForwardSession:
    """One port-forward connection from the client: pairs its streams by requestID and relays each pair
    through a step of the job, until the client or the pod goes."""

    def __init__(self, session: SpdySession, step_for: StepFor) -> None:
        self.session = session
        self.step_for = step_for
        self.pairs: dict[str, dict[str, SpdyStream]] = {}
        self.relays: set[asyncio.Future[None]] = set()
        session.on_stream = self._arrived

    def interrupt(self) -> None:
        """The server is shutting down: the session ends (kubectl sees the connection lost)."""
        self._goodbye = asyncio.ensure_future(self.session.close())

    def _arrived(self, stream: SpdyStream) -> None:
        request_id = stream.headers.get("requestid", "")
        kind = stream.headers.get("streamtype", "")
        if request_id not in self.pairs:
            asyncio.get_running_loop().call_later(STREAMS_TIMEOUT, self._give_up, request_id)
        pair = self.pairs.setdefault(request_id, {})
        pair[kind] = stream
        if {"error", "data"} <= pair.keys():
            del self.pairs[request_id]
            task = asyncio.create_task(self._forward(pair["error"], pair["data"]))
            self.relays.add(task)
            task.add_done_callback(self.relays.discard)

    def _give_up(self, request_id: str) -> None:
        """The other stream of a pair never came (the kubelet's rule): reset the one that did."""
        for stream in self.pairs.pop(request_id, {}).values():
            if not self.session.closed:
                task = asyncio.ensure_future(self.session.reset_stream(stream.id))
                self.relays.add(task)
                task.add_done_callback(self.relays.discard)

    async def run(self) -> None:
        try:
            await self.session.run()
        finally:
            relays = list(self.relays)
            for task in relays:
                task.cancel()
            if relays:  # each ends its step: the caller's count holds until every srun is reaped
                await asyncio.wait(relays)
            with contextlib.suppress(Exception):
                await self.session.close()

    async def _forward(self, error: SpdyStream, data: SpdyStream) -> None:
        text = ""
        try:
            port = _port(data.headers.get("port", ""))
            if port is None:
                text = f"invalid port {data.headers.get('port', '')!r}"
                return
            argv, env = self.step_for(port)
            text = await _relay_through_step(argv, env, data, port)
        finally:
            with contextlib.suppress(Exception):
                if text:
                    await error.write(text.encode())
                await error.close()
            with contextlib.suppress(Exception):
                await data.close()


def _port(value: str) -> int | None:
    try:
        port = int(value)
    except ValueError:
        return None
    return port if 0 < port < 65536 else None


async def _relay_through_step(argv: list[str], env: dict[str, str], data: SpdyStream, port: int) -> str:
    """Copy the data stream through the step both ways; the step's error text ("" when it ended well)."""
    proc = await start_step(*argv, env=env, start_new_session=True, stdin=asyncio.subprocess.PIPE,
                            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin, stdout, stderr = proc.stdin, proc.stdout, proc.stderr

    async def inward() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await data.read():
                stdin.write(chunk)
                await stdin.drain()
            stdin.close()

    async def outward() -> None:
        while chunk := await stdout.read(READ_SIZE):
            await data.write(chunk)

    feeding, sending = asyncio.create_task(inward()), asyncio.create_task(outward())
    try:
        await asyncio.gather(sending, proc.wait())
        said = (await stderr.read()).decode(errors="replace").splitlines()
        problem = " ".join(line for line in said if not line.startswith("srun: "))  # srun's own: not the pod's
        if proc.returncode != 0:
            return f"error forwarding port {port}: {problem or f'the step ended with status {proc.returncode}'}"
        return ""
    finally:
        feeding.cancel()
        sending.cancel()
        await asyncio.wait([feeding, sending])  # over: the step's pipes have no reader left but end_step's
        await end_step(proc)
