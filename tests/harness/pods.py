"""Pods for the tests: the one pod factory (`make_pod`, and `pod_manifest` for what kubectl applies to the
vk's node), and an interLink client that sends pods to a running `slurmlink api` and waits for their outcome."""

from __future__ import annotations

import json
import subprocess
import uuid
from typing import Any

import httpx

from slurmlink.interlink.types import PodStatus, parse_statuses
from slurmlink.translate.status import Phase, pod_phase
from tests.harness.waiting import wait_until

IMAGE = "docker.io/library/debian:bookworm"
NODE = "slurmlink-test-node"  # the node the tests' vk registers
TOLERATION = {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"}


def make_pod(containers: list[dict[str, Any]], /, *, namespace: str = "default", name: str | None = None,
             uid: str | None = None, restart_policy: str | None = "Never", **spec: Any) -> dict[str, Any]:
    """A pod as the API receives it from a vk (uid set, bound); a fresh uid and name unless given. Containers
    without an image get Debian's; `restart_policy` None leaves it out (Kubernetes' default, Always); `spec`
    keys are added to (or replace) the containers."""
    uid = uid or str(uuid.uuid4())
    for container in containers:
        container.setdefault("image", IMAGE)
    policy = {"restartPolicy": restart_policy} if restart_policy else {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name or f"t-{uid[:8]}", "namespace": namespace, "uid": uid},
            "spec": {**policy, "containers": containers, **spec}}


def pod_manifest(name: str, script: str, *, containers: list[dict[str, Any]] | None = None,
                 **spec: Any) -> dict[str, Any]:
    """A pod to apply for the tests' vk node: selector, toleration, and a shell script as its one container."""
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": NODE},
                 "tolerations": [TOLERATION], "terminationGracePeriodSeconds": 5,
                 # bwrap cannot mount the default token volume at /var/run/secrets (a symlink on the host)
                 "automountServiceAccountToken": False,
                 "containers": containers or [{"name": "main", "image": IMAGE,
                                               "command": ["sh", "-c", script]}], **spec}}
    return body


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
