"""The vk's client of an interLink API (slurmlink's own, or upstream interLink): one method per route."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from slurmlink.api import projected
from slurmlink.core.errors import SlurmlinkError
from slurmlink.interlink.types import (
    CreateStruct,
    LogStruct,
    PingResponse,
    PodStatus,
    WireError,
    parse_ping,
    parse_statuses,
)
from slurmlink.translate import flags
from slurmlink.vk.config import InterlinkApiConfig

Obj = dict[str, Any]


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


@dataclass(frozen=True)
class Created:
    """`/create`'s answer: the job id, and the flags slurmlink's API dropped (its header; none upstream)."""

    pod_jid: str
    dropped_flags: list[str] = field(default_factory=list)


class RouteUnsupported(ApiCallError):
    """The API has no such route (upstream interLink) or cannot serve it (mode 1): do not ask it again."""


class InterlinkApi:
    def __init__(self, config: InterlinkApiConfig) -> None:
        self.config = config
        verify: Any = config.ca_file or True
        self.http = httpx.AsyncClient(base_url=config.url, timeout=config.timeout_seconds, verify=verify,
                                      limits=httpx.Limits(max_connections=32))

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.config.token_file:  # re-read each time: a sidecar may rotate it
            headers["Authorization"] = f"Bearer {Path(self.config.token_file).read_text().strip()}"
        return headers

    async def _call(self, method: str, route: str, body: Any) -> httpx.Response:
        try:
            response = await self.http.request(method, route, content=json.dumps(body), headers=self._headers())
        except httpx.HTTPError as exc:
            raise ApiCallError(route, 0, str(exc) or type(exc).__name__) from exc
        if response.status_code != 200:
            raise ApiCallError(route, response.status_code, response.text.strip()[:2000])
        return response

    async def create(self, body: Obj) -> Created:
        response = await self._call("POST", "/create", body)
        try:
            answer = CreateStruct.from_wire(response.content)
        except WireError as exc:
            raise ApiCallError("/create", 502, f"unreadable answer: {exc}") from exc
        return Created(answer.pod_jid, flags.from_header(response.headers.get(flags.DROPPED_HEADER)))

    async def delete(self, pod: Obj) -> str:
        return (await self._call("DELETE", "/delete", pod)).text

    async def statuses(self, pods: list[Obj]) -> list[PodStatus]:
        response = await self._call("GET", "/status", pods)
        try:
            return parse_statuses(response.content)
        except WireError as exc:
            raise ApiCallError("/status", 502, f"unreadable answer: {exc}") from exc

    async def write_projected(self, body: Obj) -> None:
        """slurmlink's own route: new content for token files of a running pod's projected volumes."""
        route = projected.ROUTE
        try:
            response = await self.http.post(route, content=json.dumps(body), headers=self._headers())
        except httpx.HTTPError as exc:
            raise ApiCallError(route, 0, str(exc) or type(exc).__name__) from exc
        text = response.text.strip()[:2000]
        if response.status_code == 501 or (response.status_code in (404, 405)
                                           and projected.UNKNOWN_POD_HEADER not in response.headers):
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
        timeout = httpx.Timeout(self.config.timeout_seconds, read=None) if query.opts.follow else \
            httpx.USE_CLIENT_DEFAULT
        request = self.http.build_request("GET", "/getLogs", content=json.dumps(query.to_wire()),
                                          headers=self._headers(), timeout=timeout)
        try:
            response = await self.http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ApiCallError("/getLogs", 0, str(exc) or type(exc).__name__) from exc
        try:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace").strip()
                raise ApiCallError("/getLogs", response.status_code, text[:2000])
            yield response.aiter_raw()
        finally:
            await response.aclose()

    async def close(self) -> None:
        await self.http.aclose()
