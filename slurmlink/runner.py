"""`slurmlink run/get/logs`: follow a pod through the API with readable output."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.table import Table

from slurmlink.translate.status import pod_phase
from slurmlink.wire.client import ApiCallError, InterlinkClient, create_body, log_request, tls_context
from slurmlink.wire.interlink import PodStatus

POLL_SECONDS = 1.0


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


def describe_state(state: dict[str, Any]) -> str:
    if "running" in state:
        return f"running since {state['running'].get('startedAt')}"
    if "terminated" in state:
        t = state["terminated"]
        text = f"terminated: exit {t.get('exitCode')} ({t.get('reason', '')})"
        return f"{text}: {t['message']}" if t.get("message") else text
    waiting = state.get("waiting", {})
    return f"waiting: {waiting.get('reason', '')}" + (f" ({waiting['message']})" if waiting.get("message") else "")


def status_table(status: PodStatus) -> Table:
    table = Table(title=f"pod {status.namespace}/{status.name}  job {status.jid or '-'}")
    table.add_column("container")
    table.add_column("state")
    table.add_column("restarts", justify="right")
    for kind, items in (("init", status.init_containers), ("", status.containers)):
        for item in items:
            label = f"{item['name']} (init)" if kind else item["name"]
            table.add_row(label, describe_state(item.get("state", {})), str(item.get("restartCount", 0)))
    return table


@dataclass(frozen=True)
class ApiTarget:
    """The API the commands talk to: its URL (http, https or unix://), bearer token and, for https, the CA that
    signed its certificate (None: the system's) and a client certificate if the API requires one."""

    url: str
    token: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None

    def client(self) -> InterlinkClient:
        verify = tls_context(self.ca_file, self.cert_file, self.key_file) if self.ca_file or self.cert_file else True
        return InterlinkClient(self.url, token=self.token, verify=verify)


async def run_pod(paths: Iterable[Path], api: ApiTarget, timeout: float, console: Console) -> str:
    pod, configmaps, secrets = load_manifests(paths)
    meta = pod["metadata"]
    async with api.client() as client:
        job_id = (await client.create(create_body(pod, configmaps, secrets))).pod_jid
        console.print(f"pod [bold]{meta['namespace']}/{meta['name']}[/] (uid {meta['uid']}) -> "
                      f"{'SLURM job ' + job_id if job_id else 'no job'}")
        phase = await watch(client, pod, timeout, console)
        await print_all_logs(client, pod)
        return phase


async def watch(client: InterlinkClient, pod: dict[str, Any], timeout: float, console: Console) -> str:
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            [status] = await client.statuses([pod])
        except ApiCallError as exc:
            if exc.status != 503:
                raise
            console.print(f"[yellow]API not ready:[/] {exc.message}")
            await asyncio.sleep(POLL_SECONDS)
            continue
        phase = pod_phase(status.containers, status.init_containers)
        summary = (phase.phase, tuple(describe_state(c.get("state", {}))
                                      for c in status.init_containers + status.containers))
        if summary != last:
            console.print(f"[bold]{phase.phase}[/]" + (f" ({phase.reason})" if phase.reason else ""))
            console.print(status_table(status))
            last = summary
        if phase.phase in ("Succeeded", "Failed"):
            return phase.phase
        if time.monotonic() > deadline:
            console.print("[red]timed out waiting for the pod to finish[/]")
            return phase.phase
        await asyncio.sleep(POLL_SECONDS)


async def print_all_logs(client: InterlinkClient, pod: dict[str, Any]) -> None:
    spec = pod.get("spec") or {}
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        sys.stdout.write(f"--- logs of {container['name']} ---\n")
        sys.stdout.flush()
        async with client.logs(log_request(pod, container["name"])) as stream:
            async for chunk in stream:
                sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


async def get_pod(pod: dict[str, Any], api: ApiTarget, console: Console) -> None:
    async with api.client() as client:
        [status] = await client.statuses([pod])
        phase = pod_phase(status.containers, status.init_containers)
        console.print(f"[bold]{phase.phase}[/] {phase.reason}")
        console.print(status_table(status))


async def print_logs(pod: dict[str, Any], container: str, follow: bool, tail: int, api: ApiTarget,
                     previous: bool = False) -> None:
    query = log_request(pod, container, follow=follow, tail=tail, previous=previous)
    async with api.client() as client, client.logs(query) as stream:
        async for chunk in stream:
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
