"""A small client of the interLink API, for people (`slurmlink run/get/logs/delete`) and for tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml

from slurmlink.core.errors import SlurmlinkError
from slurmlink.interlink.types import PodStatus, parse_statuses


class ApiError(SlurmlinkError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def load_manifests(paths: Iterable[str | Path]) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """One Pod plus the ConfigMaps and Secrets it uses, from YAML files (several documents allowed)."""
    pods: list[dict[str, Any]] = []
    configmaps: list[dict[str, Any]] = []
    secrets: list[dict[str, Any]] = []
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not doc:
                continue
            kind = doc.get("kind")
            {"Pod": pods, "ConfigMap": configmaps, "Secret": secrets}.get(kind, []).append(doc)
            if kind not in ("Pod", "ConfigMap", "Secret"):
                raise ValueError(f"{path}: kind {kind!r} is not a Pod, ConfigMap or Secret")
    if len(pods) != 1:
        raise ValueError(f"expected exactly one Pod, found {len(pods)}")
    pod = pods[0]
    meta = pod.setdefault("metadata", {})
    meta.setdefault("namespace", "default")
    meta.setdefault("uid", str(uuid.uuid4()))
    return pod, configmaps, secrets


class InterlinkClient:
    def __init__(self, base_url: str, token: str | None = None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout)

    async def __aenter__(self) -> InterlinkClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def _call(self, method: str, path: str, body: Any) -> httpx.Response:
        response = await self.http.request(method, path, content=json.dumps(body),
                                           headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise ApiError(response.status_code, response.text.strip())
        return response

    async def create(self, pod: dict[str, Any], configmaps: list[dict[str, Any]] | None = None,
                     secrets: list[dict[str, Any]] | None = None) -> str:
        body = {"pod": pod, "configmaps": configmaps or None, "secrets": secrets or None,
                "projectedvolumesmaps": None, "jobscriptURL": ""}
        return str((await self._call("POST", "/create", body)).json().get("PodJID", ""))

    async def status(self, pods: list[dict[str, Any]]) -> list[PodStatus]:
        return parse_statuses((await self._call("GET", "/status", pods)).json())

    async def delete(self, pod: dict[str, Any]) -> str:
        return (await self._call("DELETE", "/delete", pod)).text

    async def ping(self) -> dict[str, Any]:
        return dict((await self._call("POST", "/pinglink", None)).json())

    async def logs(self, pod: dict[str, Any], container: str, *, follow: bool = False, tail: int = 0,
                   limit_bytes: int = 0, previous: bool = False) -> AsyncIterator[bytes]:
        meta = pod["metadata"]
        body = {"Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta.get("name", ""),
                "ContainerName": container,
                "Opts": {"Tail": tail, "Bytes": limit_bytes, "Follow": follow, "Timestamps": False,
                         "Previous": previous, "SinceSeconds": 0, "SinceTime": "0001-01-01T00:00:00Z"}}
        # A followed log may stay quiet for long: no read timeout then.
        timeout = httpx.Timeout(30.0, read=None) if follow else httpx.USE_CLIENT_DEFAULT
        async with self.http.stream("GET", "/getLogs", content=json.dumps(body), timeout=timeout) as response:
            if response.status_code != 200:
                raise ApiError(response.status_code, (await response.aread()).decode(errors="replace").strip())
            async for chunk in response.aiter_bytes():
                yield chunk
