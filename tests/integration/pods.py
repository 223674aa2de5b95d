"""Test helpers: send pods to a running `slurmlink api` over HTTP and wait for their outcome."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx

from slurmlink.interlink.types import PodStatus, parse_statuses
from slurmlink.translate.status import Phase, pod_phase
from tests.integration.conftest import wait_until


def make_pod(containers: list[dict[str, Any]], *, namespace: str = "default", name: str | None = None,
             **spec: Any) -> dict[str, Any]:
    uid = str(uuid.uuid4())
    for container in containers:
        container.setdefault("image", "docker.io/library/debian:bookworm")
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name or f"t-{uid[:8]}", "namespace": namespace, "uid": uid},
            "spec": {"restartPolicy": "Never", "containers": containers, **spec}}


class Client:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)

    def create(self, pod: dict[str, Any], configmaps: list[Any] | None = None,
               secrets: list[Any] | None = None) -> httpx.Response:
        body = {"pod": pod, "configmaps": configmaps, "secrets": secrets, "projectedvolumesmaps": None,
                "jobscriptURL": ""}
        return self.http.post("/create", content=json.dumps(body))

    def submit(self, pod: dict[str, Any], **kw: Any) -> str:
        response = self.create(pod, **kw)
        assert response.status_code == 200, response.text
        return str(response.json()["PodJID"])

    def status(self, pod: dict[str, Any]) -> PodStatus:
        response = self.http.request("GET", "/status", content=json.dumps([pod]))
        assert response.status_code == 200, response.text
        [status] = parse_statuses(response.json())
        return status

    def phase(self, pod: dict[str, Any]) -> Phase:
        status = self.status(pod)
        return pod_phase(status.containers, status.init_containers)

    def wait_phase(self, pod: dict[str, Any], phases: tuple[str, ...], timeout: float = 90) -> Phase:
        return wait_until(lambda: (p := self.phase(pod)).phase in phases and p, timeout,
                          f"pod {pod['metadata']['name']} to be {'/'.join(phases)}")

    def finish(self, pod: dict[str, Any], timeout: float = 90) -> tuple[Phase, PodStatus]:
        phase = self.wait_phase(pod, ("Succeeded", "Failed"), timeout)
        return phase, self.status(pod)

    def logs(self, pod: dict[str, Any], container: str, **opts: Any) -> bytes:
        meta = pod["metadata"]
        body = {"Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"],
                "ContainerName": container, "Opts": opts}
        response = self.http.request("GET", "/getLogs", content=json.dumps(body))
        assert response.status_code == 200, response.text
        return response.content

    def delete(self, pod: dict[str, Any]) -> httpx.Response:
        return self.http.request("DELETE", "/delete", content=json.dumps(pod))


def exit_codes(status: PodStatus) -> dict[str, int | None]:
    return {c["name"]: c["state"].get("terminated", {}).get("exitCode")
            for c in status.init_containers + status.containers}


def terminated(status: PodStatus, name: str) -> dict[str, Any]:
    for c in status.init_containers + status.containers:
        if c["name"] == name:
            return dict(c["state"].get("terminated") or {})
    raise KeyError(name)


def squeue_jobs(env: dict[str, str], name: str) -> list[list[str]]:
    """(job id, state, user) of every job with this name, straight from squeue."""
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-n", name, "-o", "%i|%T|%u"],
                         env=env, capture_output=True, text=True, check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]
