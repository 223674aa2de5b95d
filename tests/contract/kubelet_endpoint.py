"""A tiny kubelet HTTPS endpoint: `/containerLogs/{ns}/{pod}/{container}` from canned lines, for the pods/log path.

It answers what the apiserver forwards (tailLines, limitBytes, timestamps, follow) and records each request, so a
test can see that `kubectl logs` went apiserver → node address → this endpoint.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from standins.kube.pki import CertificateAuthority, subject_identity

STAMP = "2026-01-01T00:00:00.000000000Z"


@dataclass
class Stream:
    lines: list[str] = field(default_factory=list)
    finished: bool = True  # a follow ends once every line is sent and the container is finished


class _PeerCert(H11Protocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        self.app_state = {**self.app_state, "peer_cert": ssl_object.getpeercert() if ssl_object else None}


class KubeletEndpoint:
    def __init__(self, workdir: Path, bind: str = "127.0.0.1", client_ca: Path | None = None) -> None:
        self.streams: dict[tuple[str, str, str], Stream] = {}
        self.requests: list[dict[str, Any]] = []
        self._workdir, self._bind, self._client_ca = workdir, bind, client_ca
        self.port = 0

    def add(self, namespace: str, pod: str, container: str, lines: list[str], finished: bool = True) -> Stream:
        stream = self.streams[(namespace, pod, container)] = Stream(list(lines), finished)
        return stream

    async def _logs(self, request: Request) -> Response:
        ns, pod, container = (request.path_params[k] for k in ("ns", "pod", "container"))
        params = dict(request.query_params)
        user = subject_identity(request.scope["state"].get("peer_cert") or {})[0]
        self.requests.append({"path": request.url.path, "params": params, "client_user": user})
        stream = self.streams.get((ns, pod, container))
        if stream is None:
            return PlainTextResponse(f"container {container} of pod {ns}/{pod} is not known here", 404)
        stamp = params.get("timestamps") == "true"

        def render(line: str) -> bytes:
            return (f"{STAMP} {line}\n" if stamp else f"{line}\n").encode()

        start = max(0, len(stream.lines) - int(params["tailLines"])) if "tailLines" in params else 0
        if params.get("follow") != "true":
            body = b"".join(render(line) for line in stream.lines[start:])
            if "limitBytes" in params:
                body = body[:int(params["limitBytes"])]
            return Response(body, media_type="text/plain")

        async def follow() -> AsyncIterator[bytes]:
            sent = start
            while True:
                while sent < len(stream.lines):
                    yield render(stream.lines[sent])
                    sent += 1
                if stream.finished:
                    return
                await asyncio.sleep(0.05)
        return StreamingResponse(follow(), media_type="text/plain")

    def start(self) -> KubeletEndpoint:
        ca = CertificateAuthority("contract-kubelet-ca")
        cert, key = ca.write(self._workdir, "kubelet", ca.issue_server([self._bind, "127.0.0.1", "localhost"]))
        app = Starlette(routes=[Route("/containerLogs/{ns}/{pod}/{container}", self._logs)])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self._bind, 0))
        self.port = sock.getsockname()[1]
        tls: dict[str, Any] = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        if self._client_ca is not None:  # see who the apiserver says it is
            tls.update(ssl_ca_certs=str(self._client_ca), ssl_cert_reqs=ssl.CERT_OPTIONAL)
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, http=_PeerCert,
                                                     lifespan="off", timeout_graceful_shutdown=1, **tls))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test kubelet endpoint did not start")
            time.sleep(0.02)
        self._socket = sock
        return self

    def stop(self) -> None:
        for stream in self.streams.values():
            stream.finished = True
        self._server.should_exit = True
        self._thread.join(timeout=5)
        self._socket.close()
