"""`slurmlink demo`: the whole path on this machine, with nothing to configure.

A real single-node SLURM (the dev cluster), `slurmlink api` as its own process, and an example pod
sent through the API, followed to its end, with its logs printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml
from rich.console import Console

from slurmlink import examples
from slurmlink.devcluster import DevCluster

EXAMPLE_POD = examples.pod_path("hello-pod")


def api_config(cluster: DevCluster, port: int, user: str) -> dict[str, object]:
    return {
        "listen": {"host": "127.0.0.1", "port": port},
        "cli": {"slurm_conf": str(cluster.conf_path)},
        "job_root": str(cluster.job_root),
        "poll_interval": 1.0,
        "users": {"default": user},
        "auth": {"allow_unauthenticated": True},  # loopback, for the demo only
        # Containers run rootless under bubblewrap, over this machine's own root filesystem as "image".
        "site": {"runtime": "bwrap" if shutil.which("bwrap") else "host"},
    }


def wait_healthy(url: str, process: subprocess.Popen[bytes], deadline_seconds: float = 60.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"slurmlink api exited with code {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("slurmlink api did not become healthy in time")


def run_demo(pod: Path | None, port: int, console: Console) -> int:
    import asyncio

    from slurmlink.runner import ApiTarget, run_pod

    cluster = DevCluster()
    console.print("[bold]1.[/] starting a local SLURM (munge, slurmctld, slurmd, slurmrestd)")
    cluster.up()
    with tempfile.TemporaryDirectory(prefix="slurmlink-demo-") as tmp:
        config = Path(tmp) / "api.yaml"
        config.write_text(yaml.safe_dump(api_config(cluster, port, cluster.users[0])))
        url = f"http://127.0.0.1:{port}"
        console.print(f"[bold]2.[/] starting slurmlink api on {url} (jobs run as {cluster.users[0]})")
        log = open(Path(tmp) / "api.log", "wb")  # noqa: SIM115 - closed below
        process = subprocess.Popen([sys.executable, "-m", "slurmlink.cli", "api", "--config", str(config)],
                                   stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        try:
            wait_healthy(url, process)
            console.print(f"[bold]3.[/] running {pod or EXAMPLE_POD}")
            phase = asyncio.run(run_pod([pod or EXAMPLE_POD], ApiTarget(url), 600.0, console))
            console.print(f"[bold]pod {phase}[/]; the SLURM dev cluster stays up "
                          "(`slurmlink dev-cluster down` stops it)")
            return 0 if phase == "Succeeded" else 1
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()
