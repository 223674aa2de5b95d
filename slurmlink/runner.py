"""`slurmlink run/get/logs`: follow a pod through the API with readable output."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from slurmlink.client import ApiError, InterlinkClient, load_manifests
from slurmlink.interlink.types import PodStatus
from slurmlink.translate.status import pod_phase

POLL_SECONDS = 1.0


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


async def run_pod(paths: Iterable[Path], api_url: str, token: str | None, timeout: float, console: Console) -> str:
    pod, configmaps, secrets = load_manifests(paths)
    meta = pod["metadata"]
    async with InterlinkClient(api_url, token) as client:
        job_id = await client.create(pod, configmaps, secrets)
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
            [status] = await client.status([pod])
        except ApiError as exc:
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
        async for chunk in client.logs(pod, container["name"]):
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


async def get_pod(pod: dict[str, Any], api_url: str, token: str | None, console: Console) -> None:
    async with InterlinkClient(api_url, token) as client:
        [status] = await client.status([pod])
        phase = pod_phase(status.containers, status.init_containers)
        console.print(f"[bold]{phase.phase}[/] {phase.reason}")
        console.print(status_table(status))


async def print_logs(pod: dict[str, Any], container: str, follow: bool, tail: int, api_url: str,
                     token: str | None, previous: bool = False) -> None:
    async with InterlinkClient(api_url, token) as client:
        async for chunk in client.logs(pod, container, follow=follow, tail=tail, previous=previous):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
