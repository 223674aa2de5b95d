"""Where the services listen: a TCP port (plain or TLS, optionally requiring client certificates), a unix
socket, and the plain admin listener for /healthz and /metrics. Every server of a service runs in one event loop
and stops with the others (SIGTERM/SIGINT, or one of them ending)."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import socket
import ssl
import stat
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from slurmlink.config import AdminListen, ConfigError

log = logging.getLogger(__name__)
SOCKET_MODE = 0o660  # the owner and its group; the socket's permissions are its access control


def tls_options(cert_file: str, key_file: str, client_ca_file: str | None = None) -> dict[str, Any]:
    """uvicorn's TLS options; with a client CA, a client certificate it signed is required."""
    options: dict[str, Any] = {"ssl_certfile": cert_file, "ssl_keyfile": key_file}
    if client_ca_file:
        options.update(ssl_ca_certs=client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def bind_tcp(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def bind_unix(path: str, group: str | None = None) -> socket.socket:
    """A unix socket at `path`, mode 0660 from its creation (never world-writable, not even for a moment).
    A stale socket (nobody answers on it) is replaced; a live one, or a file that is not a socket, is an error."""
    target = Path(path)
    if target.exists() or target.is_symlink():
        if not stat.S_ISSOCK(target.lstat().st_mode):
            raise ConfigError(f"listen.socket: {path} exists and is not a socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(path)
            except OSError:
                target.unlink()  # left by a process that died
            else:
                raise ConfigError(f"listen.socket: another server is listening on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o777 & ~SOCKET_MODE)
    try:
        sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, SOCKET_MODE)
    if group is not None:
        try:
            os.chown(path, -1, grp.getgrnam(group).gr_gid)
        except (KeyError, PermissionError) as exc:
            sock.close()
            target.unlink()
            raise ConfigError(f"listen.socket_group: cannot give {path} to group {group!r}: {exc}") from exc
    return sock


class QuietServer(uvicorn.Server):
    """uvicorn inside a loop of ours: the service handles signals itself, for all its servers at once."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Listener:
    """One server: an app on a bound socket, with uvicorn's options (TLS, lifespan, ...)."""

    app: ASGIApp
    sock: socket.socket
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # a unix socket's file, and its inode: removed at exit only if no successor has replaced it
        self.unix_path = str(self.sock.getsockname()) if self.sock.family == socket.AF_UNIX else None
        self.unix_inode = os.stat(self.unix_path).st_ino if self.unix_path else None

    def server(self, log_level: str = "info") -> QuietServer:
        # log_config=None: uvicorn's loggers go through ours (and its format), not handlers of its own
        options = {"log_level": log_level, "access_log": False, "lifespan": "off", "log_config": None,
                   **self.options}
        return QuietServer(uvicorn.Config(self.app, **options))


class Servers:
    """A service's servers in one event loop: `serve()` runs them until `stop()` or until one of them ends."""

    def __init__(self, listeners: list[Listener], log_level: str = "info",
                 on_stop: Callable[[], None] | None = None) -> None:
        self.listeners = listeners
        self.servers = [item.server(log_level) for item in listeners]
        self.on_stop = on_stop  # e.g. end the API's long polls, which the servers would wait for

    @property
    def started(self) -> bool:
        return all(server.started for server in self.servers)

    def stop(self) -> None:
        for server in self.servers:
            server.should_exit = True
        if self.on_stop is not None:
            self.on_stop()

    async def serve(self) -> None:
        tasks = [asyncio.create_task(server.serve(sockets=[item.sock]))
                 for server, item in zip(self.servers, self.listeners, strict=True)]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            self.stop()
            await asyncio.gather(*tasks)
        finally:
            self._remove_sockets()

    def _remove_sockets(self) -> None:
        for item in self.listeners:
            if item.unix_path:
                with contextlib.suppress(OSError):
                    if os.stat(item.unix_path).st_ino == item.unix_inode:
                        os.unlink(item.unix_path)

    def run(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None) -> None:
        """Serve until SIGTERM or SIGINT, in a loop from `loop_factory` (asyncio's default if None)."""
        async def main() -> None:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.stop)
            await self.serve()

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(main())


def main_listener(app: ASGIApp, host: str, port: int, tls: dict[str, Any] | None = None,
                  socket_path: str | None = None, socket_group: str | None = None,
                  **options: Any) -> Listener:
    """A service's main server: on the unix socket if one is given, else on host:port (TLS if `tls`, see
    tls_options); its app's lifespan runs with it."""
    sock = bind_unix(socket_path, socket_group) if socket_path else bind_tcp(host, port)
    return Listener(app, sock, {"lifespan": "on", **(tls or {}), **options})


Health = Callable[[], Awaitable[Response]]


def admin_app(health: Health, registry: CollectorRegistry | None = None) -> Starlette:
    """The admin listener's app: GET /healthz and /metrics (Prometheus), nothing else, no authentication.
    Put it on loopback or a private network: it tells what the service's public port keeps to itself."""
    async def healthz(request: Request) -> Response:
        return await health()

    async def metrics(request: Request) -> Response:
        data = generate_latest(registry) if registry is not None else generate_latest()
        return Response(data, media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", healthz), Route("/metrics", metrics)])


def admin_listener(admin: AdminListen, health: Health, registry: CollectorRegistry | None = None
                   ) -> list[Listener]:
    """The admin listener if a port is configured (none or one, to add to a service's listeners)."""
    if admin.port is None:
        return []
    return [Listener(admin_app(health, registry), bind_tcp(admin.host, admin.port))]
