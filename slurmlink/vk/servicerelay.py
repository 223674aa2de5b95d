"""Pod ports reachable as Services (vk `services`): the vk serves each running pod's declared TCP ports on an
address of its own, and relays every connection to the pod through the API's port-forward (podforward.py).

The controller asks `place` for a pod's address whenever it writes the pod's status: a Running pod with TCP
containerPorts gets an address (podaddresses.py) and a listener on (address, port) for each port, bound with
IP_FREEBIND so that the address need not be on an interface of the vk's host (the site routes the range to
it); the address goes into status.podIP, from which the cluster's EndpointSlice controller lists the pod
behind its Services once it is Ready. A terminating pod is served while its job runs (its grace period, as a
kubelet does) and keeps its address until its object is gone; a pod that finished frees its address.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from slurmlink.streams.spdy import SpdyError, SpdyStream
from slurmlink.vk import metrics
from slurmlink.vk.config import VkConfig
from slurmlink.vk.podaddresses import PodAddresses
from slurmlink.vk.podforward import ForwardRefused, PodForward
from slurmlink.wire.client import InterlinkClient

log = logging.getLogger(__name__)
Obj = dict[str, Any]
CHUNK = 64 * 1024
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)  # Linux's value; Python 3.11 does not name it
BACKLOG = 128
ERROR_WAIT_SECONDS = 5.0  # after the data stream ended: how long the API may take to close the error stream
TERMINAL = ("Succeeded", "Failed")
MAX_SESSIONS = 4096  # pods whose connections are relayed at once (one API connection each), whatever the range

PodWarning = tuple[str, str]  # (reason, message) of a Warning event on the pod
Warn = Callable[[Obj, str, str], Awaitable[None]]  # (pod, reason, message): emit a Warning event


@dataclass(frozen=True)
class ServingRules:
    """What the relay may serve, and what of the vk's own host it leaves alone."""

    ports: tuple[int, int] = (1024, 65535)  # services.ports
    host_ports: Mapping[int, str] = field(default_factory=dict)  # the vk's own listeners' ports: whose
    host_addresses: tuple[str, ...] = ()  # never handed to a pod
    max_ports: int = 16  # per pod
    max_connections: int = 32  # per pod, at once

    @classmethod
    def of(cls, config: VkConfig) -> ServingRules:
        services = config.services
        return cls(services.port_range, config.own_ports(), tuple(config.own_addresses()),
                   services.max_ports_per_pod, services.max_connections_per_pod)

    def refusal(self, port: int) -> str:
        """Why `port` is not served ("" when it is)."""
        if port in self.host_ports:
            return self.host_ports[port]
        first, last = self.ports
        return "" if first <= port <= last else f"outside services.ports {first}-{last}"


def _namespace_name(pod: Obj) -> tuple[str, str]:
    return pod["metadata"]["namespace"], pod["metadata"]["name"]


def relay_sessions(pod_addresses: str) -> int:
    """How many API connections the relay may hold: one per pod with an address, at most MAX_SESSIONS."""
    return min(PodAddresses(pod_addresses).size, MAX_SESSIONS)


def tcp_ports(pod: Obj) -> tuple[list[int], list[str]]:
    """The pod's TCP containerPorts (each once), and what is not served and why."""
    ports: set[int] = set()
    skipped: list[str] = []
    for container in (pod.get("spec") or {}).get("containers") or []:
        for declared in container.get("ports") or []:
            number, protocol = declared.get("containerPort"), str(declared.get("protocol") or "TCP")
            if protocol != "TCP":
                skipped.append(f"{protocol} port {number} of container {container.get('name')}")
            elif isinstance(number, int) and 0 < number < 65536:
                ports.add(number)
    return sorted(ports), skipped


def listening_socket(address: str, port: int) -> socket.socket:
    """A TCP socket listening on (address, port); the address need not be configured on this host."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)
        sock.bind((address, port))
        sock.listen(BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@dataclass
class PodListeners:
    """One pod's address: its listeners, and the port-forward session their connections go through."""

    address: str
    forward: PodForward
    warn: Warn | None = None  # a Warning event on the pod, when its connections cannot be relayed
    rules: ServingRules = field(default_factory=ServingRules)
    servers: dict[int, asyncio.Server] = field(default_factory=dict)
    connections: set[asyncio.Task[None]] = field(default_factory=set)
    refused: bool = False  # the last session the vk asked the API for was refused (told once, until one works)
    turned_away: int = 0  # connections closed at once: the pod had max_connections in flight

    async def listen(self, ports: list[int]) -> list[str]:
        """Listen on the ports not yet served; what could not be bound, said for the pod's events."""
        problems = []
        for port in ports:
            if port in self.servers:
                continue
            refusal = self.rules.refusal(port)
            if not refusal and len(self.servers) >= self.rules.max_ports:
                refusal = f"more than services.max_ports_per_pod ({self.rules.max_ports}) ports"
            if refusal:
                problems.append(f"{self.address}:{port}: {refusal}")
                continue
            try:
                sock = listening_socket(self.address, port)
            except OSError as exc:
                problems.append(f"{self.address}:{port}: {exc.strerror or exc}")
                continue
            self.servers[port] = await asyncio.start_server(functools.partial(self._accepted, port), sock=sock)
        return problems

    async def _accepted(self, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.connections) >= self.rules.max_connections:
            writer.close()
            self.turned_away += 1
            if self.turned_away == 1:  # said once per pod; the count is in the vk's metrics
                log.warning("pod %s/%s has %d connections at %s in flight (services.max_connections_per_pod): "
                            "further ones are closed at once", *_namespace_name(self.forward.pod),
                            len(self.connections), self.address)
            metrics.SERVICE_CONNECTIONS_TURNED_AWAY.inc()
            return
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        try:
            refusal = await relay_connection(self.forward, port, reader, writer)
            first, self.refused = bool(refusal) and not self.refused, bool(refusal)
            if first and self.warn is not None:
                await self.warn(self.forward.pod, "ServiceRelayFailed",
                                f"a connection to port {port} at {self.address} could not be relayed: {refusal}")
        except Exception:  # one connection's bug must not go unseen, nor leave the client hanging
            log.exception("relaying a connection to %s:%d failed", self.address, port)
        finally:
            writer.close()
            self.connections.discard(task)

    async def close(self) -> None:
        for server in self.servers.values():
            server.close()  # no new connections; the open ones end with the session
        self.servers.clear()
        await self.forward.close()
        relaying = list(self.connections)
        for task in relaying:
            task.cancel()
        await asyncio.gather(*relaying, return_exceptions=True)  # each has closed its client's connection


async def relay_connection(forward: PodForward, port: int, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> str:
    """Copy one accepted connection to the pod's port and back, until the pod's side ends; why it could not
    be relayed at all ("" when it was)."""
    try:
        error, data = await forward.open(port)
    except ForwardRefused as exc:
        log.warning("a connection to port %d of pod %s/%s is refused: %s", port,
                    forward.pod["metadata"]["namespace"], forward.pod["metadata"]["name"], exc)
        writer.close()
        return str(exc)
    failure = asyncio.create_task(_read_all(error))

    async def inward() -> None:
        try:
            while chunk := await reader.read(CHUNK):
                await data.write(chunk)
            await data.close()  # half-close: the step shuts the write side of its socket to the server
        except (ConnectionError, SpdyError):
            await data.session.reset_stream(data.id)  # the client went away: so does the way back

    async def outward() -> None:
        with contextlib.suppress(ConnectionError):
            while chunk := await data.read():
                writer.write(chunk)
                await writer.drain()

    feeding = asyncio.create_task(inward())
    try:
        await outward()
    finally:
        feeding.cancel()
        writer.close()
        if data.open:
            await data.session.reset_stream(data.id)
    try:
        text = await asyncio.wait_for(failure, ERROR_WAIT_SECONDS)
    except TimeoutError:
        await error.session.reset_stream(error.id)  # so that the session forgets it
        text = b""
    if text:
        log.info("a connection to port %d of pod %s/%s: %s", port, forward.pod["metadata"]["namespace"],
                 forward.pod["metadata"]["name"], text.decode(errors="replace").strip())
    return ""


async def _read_all(stream: SpdyStream, keep: int = 4096) -> bytes:
    """The stream to its end; only its first `keep` bytes are kept (an error's text)."""
    text = b""
    while chunk := await stream.read():
        text += chunk[:max(0, keep - len(text))]
    return text


class ServiceRelay:
    """Addresses and listeners for the node's pods (one per vk)."""

    def __init__(self, pod_addresses: str, api: InterlinkClient, warn: Warn | None = None,
                 rules: ServingRules | None = None) -> None:
        self.rules = rules or ServingRules()
        self.addresses = PodAddresses(pod_addresses, self.rules.host_addresses)
        self.api, self.warn = api, warn
        self.served: dict[str, PodListeners] = {}

    def observe(self, pod: Obj) -> None:
        """A pod seen by the watch: the address a running one shows stays its own (a vk restart)."""
        status = pod.get("status") or {}
        shown = status.get("podIP")
        if shown and status.get("phase") not in TERMINAL:  # deleting ones too: held until they are gone
            self.addresses.keep(str(pod["metadata"]["uid"]), str(shown))

    async def place(self, pod: Obj, phase: str) -> tuple[str | None, list[PodWarning]]:
        """The podIP to report for the pod in `phase` (None: report none), and what to warn about. Opens
        and closes listeners to match."""
        uid = str(pod["metadata"]["uid"])
        shown = (pod.get("status") or {}).get("podIP") or None
        ports, skipped = tcp_ports(pod)
        warnings: list[PodWarning] = []
        if phase == "Running" and skipped:
            warnings.append(("ServicePortUnsupported", f"not served (only TCP is relayed): {', '.join(skipped)}"))
        if phase in TERMINAL or not ports:
            await self.release(uid)
            # a kubelet leaves a finished pod's podIP in its status; the endpoints controller skips such pods
            return (shown if phase in TERMINAL else None), warnings
        if phase != "Running":  # requeued by SLURM (Pending again): nothing to relay to, but the podIP it
            await self.stop_serving(uid)  # shows stays its own, for when it runs again
            return self.addresses.address_of(uid), warnings
        address = self.addresses.assign(uid)
        if address is None:
            size = self.addresses.size
            warnings.append(("ServiceAddressUnavailable", f"no address left in services.pod_addresses "
                             f"{self.addresses.network} ({size} in use): the pod's ports are not reachable "
                             "from the cluster until another pod ends"))
            return None, warnings
        listeners = self.served.get(uid)
        if listeners is None:
            listeners = self.served[uid] = PodListeners(address, PodForward(self.api, pod), self.warn,
                                                                self.rules)
        listeners.forward.pod = pod  # the newest copy, which the API gets when the session is (re)opened
        problems = await listeners.listen(ports)
        if problems:
            warnings.append(("ServicePortUnavailable", f"cannot listen on {'; '.join(problems)}"))
        if not listeners.servers:  # an address where nothing listens is not reported
            await self.stop_serving(uid)
            if shown == address:
                return address, warnings  # shown already (before a vk restart): it stays the pod's
            self.addresses.release(uid)
            return None, warnings
        return address, warnings

    async def stop_serving(self, uid: str) -> None:
        """Close the pod's listeners and connections; it keeps its address (still shown in its status)."""
        listeners = self.served.pop(uid, None)
        if listeners is not None:
            await listeners.close()

    async def release(self, uid: str) -> None:
        """The pod has finished or is gone: its listeners close and its address is free again."""
        await self.stop_serving(uid)
        self.addresses.release(uid)

    async def close(self) -> None:
        for uid in list(self.served):
            await self.release(uid)
