"""Pods for the tests: the one pod factory (`make_pod`, and `pod_manifest` for what kubectl applies to the
vk's node), and an interLink client that sends pods to a running `slurmlink api` and waits for their outcome."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from slurmlink.core.naming import pod_workdir
from slurmlink.translate.status import Phase, pod_phase
from slurmlink.wire.client import InterlinkClient, create_body, log_request
from slurmlink.wire.interlink import ContainerLogOpts, PodStatus
from tests.harness.waiting import wait_until

IMAGE = "docker.io/library/debian:bookworm"
NODE = "slurmlink-test-node"  # the node the tests' vk registers
TOLERATION = {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"}
GATE_VOLUME = {"name": "gate", "emptyDir": {}}  # the volume a gated container needs

T = TypeVar("T")


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


def gated_container(name: str = "main") -> dict[str, Any]:
    """A container that runs until the test calls `open_gate` (a file made from the host in the pod's emptyDir
    GATE_VOLUME): its pod cannot end before the test has seen what it waits for, however loaded the machine."""
    return {"name": name, "image": IMAGE, "command": ["sh", "-c", "until [ -e /gate/open ]; do sleep 0.1; done"],
            "volumeMounts": [{"name": "gate", "mountPath": "/gate"}]}


def open_gate(job_root: Path | str, namespace: str, uid: str) -> None:
    """Let the pod's gated containers end (exit 0); waits for its job to have made the volume."""
    gate = Path(pod_workdir(str(job_root), namespace, uid)) / "volumes" / str(GATE_VOLUME["name"])
    wait_until(gate.is_dir, 60, f"the gate of pod {uid} (its job's volumes)")
    (gate / "open").touch()


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
    """Tests' side of the API: the product's own interLink client (wire.client) for what a caller does, and
    `http` (plain HTTP) for tests of the wire itself (malformed bodies, odd methods, raw answers)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60)

    def api(self, call: Callable[[InterlinkClient], Awaitable[T]]) -> T:
        """One call through the interLink client (its own connection: each call runs in its own event loop)."""
        async def go() -> T:
            async with InterlinkClient(self.url, timeout=60) as client:
                return await call(client)

        return asyncio.run(go())

    def objects(self, pod: dict[str, Any], configmaps: list[Any] | None,
                secrets: list[Any] | None) -> tuple[list[Any] | None, list[Any] | None]:
        """The objects sent with a pod (a subclass adds its own)."""
        return configmaps, secrets

    def create(self, pod: dict[str, Any], configmaps: list[Any] | None = None,
               secrets: list[Any] | None = None) -> httpx.Response:
        """The raw answer to a `/create` (tests of refusals read its status and text)."""
        return self.http.post("/create", content=json.dumps(create_body(pod, *self.objects(pod, configmaps, secrets))))

    def submit(self, pod: dict[str, Any], configmaps: list[Any] | None = None,
               secrets: list[Any] | None = None) -> str:
        body = create_body(pod, *self.objects(pod, configmaps, secrets))
        return self.api(lambda client: client.create(body)).pod_jid

    def status(self, pod: dict[str, Any]) -> PodStatus:
        [status] = self.api(lambda client: client.statuses([pod]))
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
        """The whole log; `opts` in Go's spelling (Previous=True, Tail=2)."""
        query = log_request(pod, container)
        query.opts = ContainerLogOpts.from_wire(opts)

        async def read(client: InterlinkClient) -> bytes:
            async with client.logs(query) as stream:
                return b"".join([chunk async for chunk in stream])

        return self.api(read)

    def delete(self, pod: dict[str, Any]) -> str:
        return self.api(lambda client: client.delete(pod))


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
