"""`slurmlink api` as a real process on loopback, in front of the test SLURM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slurmlink.devcluster import DevCluster


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class ServiceProcess:
    """One slurmlink service (`slurmlink <command> --config <yaml>`) as a process of its own; `kill()` is
    kill -9, `start()` brings it back on the same port."""

    command = ""
    ready_path = "/healthz"  # answers 200 once the service is ready

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.port = self.listen_port(config)
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = workdir / f"{self.command}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{self.command}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [sys.executable, "-m", "slurmlink.cli", self.command, "--config", str(self.config_path)],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_until(self.healthy, 60, f"slurmlink {self.command} to become ready")

    @staticmethod
    def listen_port(config: dict[str, Any]) -> int:
        return int(config["listen"]["port"])

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"slurmlink {self.command} exited:\n{self.log_text()[-3000:]}")
        try:
            return self.get(self.ready_path).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples (over all labels, or those with these values)."""
        total = 0.0
        for line in self.get("/metrics").text.splitlines():
            named = line.startswith(name + "{") or line.startswith(name + " ")
            if named and all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()


class ApiProcess(ServiceProcess):
    command = "api"


def api_config(cluster: DevCluster, port: int, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "cli": {"slurm_conf": str(cluster.conf_path), "bin_dir": str(cluster.bin_dir) if cluster.bin_dir else None},
        "job_root": str(cluster.job_root),
        "poll_interval": 0.5,
        "log_follow_interval": 0.2,
        "users": {"default": cluster.users[0], "namespaces": {"team-b": cluster.users[1]}},
        "site": {"runtime": "bwrap", "restart_backoff_seconds": 1},
        "auth": {"allow_unauthenticated": True},
    }
    config.update(overrides)
    return config


@pytest.fixture(scope="session")
def api(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    process = ApiProcess(api_config(slurm_cluster, free_port()), tmp_path_factory.mktemp("api"))
    process.start()
    yield process
    process.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
