"""The one client of an interLink API (slurmlink's own, or upstream interLink): one method per route.

Used by the vk, by the `slurmlink run/get/logs/delete` commands and by the tests. Every failure is an
ApiCallError naming the route; status 0 means the API could not be reached.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from slurmlink.core.errors import SlurmlinkError
from slurmlink.wire import names
from slurmlink.wire.changes import Changes
from slurmlink.wire.gojson import Obj, WireError
from slurmlink.wire.interlink import (
    ContainerLogOpts,
    CreateStruct,
    LogStruct,
    PingResponse,
    PodCreateRequests,
    PodStatus,
    parse_ping,
    parse_statuses,
)
from slurmlink.wire.projected import ProjectedWrite

MAX_ERROR_TEXT = 2000
UNIX_SCHEME = "unix://"


class ApiCallError(SlurmlinkError):
    """The API answered something other than 200, or could not be reached (status 0). `transient`: worth
    retrying (unreachable, overloaded, or not ready yet); a 4xx is the pod's own problem."""

    default_reason = "ApiCallFailed"

    def __init__(self, route: str, status: int, message: str) -> None:
        super().__init__(message, transient=status == 0 or status >= 500 or status in (401, 403, 408, 429))
        self.route = route
        self.status = status

    def __str__(self) -> str:
        return f"{self.route}: {'unreachable' if self.status == 0 else f'HTTP {self.status}'}: {self.message}"


class RouteUnsupported(ApiCallError):
    """The API has no such route (upstream interLink) or cannot serve it (mode 1): do not ask it again."""


@dataclass(frozen=True)
class Created:
    """`/create`'s answer: the job id, and the options slurmlink's API says it dropped (its header; none
    upstream). The names are the API's word: the receiver keeps those it knows."""

    pod_jid: str
    dropped_flags: list[str] = field(default_factory=list)
    placement: str = ""  # the VO, account and partition the API's site policy gave the job (its header)


def create_body(pod: Obj, configmaps: list[Obj] | None = None, secrets: list[Obj] | None = None) -> Obj:
    """A `/create` body as the Go virtual kubelet sends it."""
    return PodCreateRequests(pod=pod, configmaps=configmaps or [], secrets=secrets or []).to_wire()


def log_request(pod: Obj, container: str, *, follow: bool = False, tail: int = 0, limit_bytes: int = 0,
                previous: bool = False) -> LogStruct:
    meta = pod["metadata"]
    return LogStruct(namespace=meta["namespace"], pod_uid=meta["uid"], pod_name=meta.get("name", ""),
                     container_name=container,
                     opts=ContainerLogOpts(tail=tail, limit_bytes=limit_bytes, follow=follow, previous=previous))


def token_file_reader(path: str | None) -> Callable[[], str | None]:
    """A bearer token read again for every request: a sidecar may rotate the file."""
    return lambda: Path(path).read_text().strip() if path else None


def tls_context(ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
                ) -> ssl.SSLContext:
    """Verification of an https:// API's certificate (by `ca_file`, else the system's CAs), presenting a client
    certificate when the API requires one."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


class InterlinkClient:
    """`url`: http(s)://host:port, or unix:///path/to/socket (then `verify` does not apply)."""

    def __init__(self, url: str, *, token: str | Callable[[], str | None] | None = None, timeout: float = 30.0,
                 verify: Any = True, max_connections: int = 32) -> None:
        self.timeout = timeout
        self._token = token if callable(token) else (lambda: token)
        limits = httpx.Limits(max_connections=max_connections)
        transport = None
        if url.startswith(UNIX_SCHEME):
            transport = httpx.AsyncHTTPTransport(uds=url.removeprefix(UNIX_SCHEME), limits=limits)
            url = "http://localhost"  # the Host header; the socket is the address
        self.http = httpx.AsyncClient(base_url=url, timeout=timeout, verify=verify, limits=limits,
                                      transport=transport)

    async def __aenter__(self) -> InterlinkClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        token = self._token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _send(self, method: str, route: str, body: Any) -> httpx.Response:
        try:
            return await self.http.request(method, route, content=json.dumps(body), headers=self._headers())
        except httpx.HTTPError as exc:
            raise ApiCallError(route, 0, str(exc) or type(exc).__name__) from exc

    async def _call(self, method: str, route: str, body: Any) -> httpx.Response:
        response = await self._send(method, route, body)
        if response.status_code != 200:
            raise ApiCallError(route, response.status_code, response.text.strip()[:MAX_ERROR_TEXT])
        return response

    async def create(self, body: Obj) -> Created:
        """`body`: a PodCreateRequests as JSON (see create_body)."""
        response = await self._call("POST", "/create", body)
        try:
            answer = CreateStruct.from_wire(response.content)
        except WireError as exc:
            raise ApiCallError("/create", 502, f"unreadable answer: {exc}") from exc
        placement = "".join(c for c in response.headers.get(names.PLACEMENT_HEADER, "") if c.isprintable())
        return Created(answer.pod_jid, names.dropped_flags(response.headers.get(names.DROPPED_FLAGS_HEADER)),
                       placement[:names.MAX_PLACEMENT])

    async def delete(self, pod: Obj) -> str:
        return (await self._call("DELETE", "/delete", pod)).text

    async def statuses(self, pods: list[Obj]) -> list[PodStatus]:
        response = await self._call("GET", "/status", pods)
        try:
            return parse_statuses(response.content)
        except WireError as exc:
            raise ApiCallError("/status", 502, f"unreadable answer: {exc}") from exc

    async def changes(self, cursor: str, wait: float) -> Changes:
        """slurmlink's change feed: blocks until some pod changed after `cursor` or `wait` seconds passed
        (`cursor` empty: a snapshot at once). Raises RouteUnsupported when the API has no feed (upstream
        interLink answers 404 or 405), ApiCallError otherwise."""
        route = names.CHANGES_ROUTE
        # the answer may take `wait` seconds by design: only the rest of the call is bound by the timeout
        timeout = httpx.Timeout(self.timeout, read=wait + self.timeout)
        try:
            response = await self.http.get(route, params={"since": cursor, "wait": f"{wait:g}"},
                                           headers=self._headers(), timeout=timeout)
        except httpx.HTTPError as exc:
            raise ApiCallError(route, 0, str(exc) or type(exc).__name__) from exc
        text = response.text.strip()[:MAX_ERROR_TEXT]
        if response.status_code in (404, 405):
            raise RouteUnsupported(route, response.status_code, text)
        if response.status_code != 200:
            raise ApiCallError(route, response.status_code, text)
        try:
            return Changes.from_wire(response.content)
        except WireError as exc:
            raise ApiCallError(route, 502, f"unreadable answer: {exc}") from exc

    async def write_projected(self, request: ProjectedWrite) -> None:
        """slurmlink's own route: new content for token files of a running pod's projected volumes."""
        route = names.PROJECTED_ROUTE
        response = await self._send("POST", route, request.to_wire())
        text = response.text.strip()[:MAX_ERROR_TEXT]
        if response.status_code == 501 or (response.status_code in (404, 405)
                                           and names.UNKNOWN_POD_HEADER not in response.headers):
            raise RouteUnsupported(route, response.status_code, text)
        if response.status_code != 200:
            raise ApiCallError(route, response.status_code, text)

    async def ping(self) -> tuple[PingResponse | None, str]:
        """(the parsed capacity if the API sent one, the raw answer); raises ApiCallError when unreachable.
        An object that is not a PingResponse comes back as None: the caller keeps what it had."""
        response = await self._call("POST", "/pinglink", None)
        try:
            return parse_ping(response.content), response.text
        except WireError:
            return None, response.text

    @asynccontextmanager
    async def logs(self, query: LogStruct) -> AsyncIterator[AsyncIterator[bytes]]:
        """The log as a byte stream; a followed log may stay quiet for long, so no read timeout then."""
        timeout = httpx.Timeout(self.timeout, read=None) if query.opts.follow else httpx.USE_CLIENT_DEFAULT
        request = self.http.build_request("GET", "/getLogs", content=json.dumps(query.to_wire()),
                                          headers=self._headers(), timeout=timeout)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ApiCallError("/getLogs", 0, str(exc) or type(exc).__name__) from exc
        try:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace").strip()
                raise ApiCallError("/getLogs", response.status_code, text[:MAX_ERROR_TEXT])
            yield response.aiter_raw()
        finally:
            await response.aclose()

    async def upgrade(self, route: str, params: list[tuple[str, str]], headers: list[tuple[str, str]],
                      body: Obj | None = None) -> tuple[int, list[tuple[str, str]], bytes, Any]:
        """One upgrade request (`kubectl exec` relayed as SPDY/3.1, with the pod as its JSON body): (status,
        headers, body, the connection as an httpcore network stream after a 101, else None)."""
        sent = [*self._headers().items(), *headers]
        timeout = httpx.Timeout(self.timeout, read=None)
        request = self.http.build_request("POST", route, params=tuple(params), headers=sent, timeout=timeout,
                                          content=json.dumps(body or {}))
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ApiCallError(route, 0, str(exc) or type(exc).__name__) from exc
        answer_headers = list(response.headers.multi_items())
        if response.status_code == 101:
            return 101, answer_headers, b"", response.extensions["network_stream"]
        try:
            text = await response.aread()
        finally:
            await response.aclose()
        return response.status_code, answer_headers, text[:MAX_ERROR_TEXT], None

    async def close(self) -> None:
        await self.http.aclose()
