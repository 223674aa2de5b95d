"""slurmlink's services as processes of their own (`slurmlink api|proxy|vk --config <yaml>`), and the tests'
configurations of them. One class, `ServiceProcess`, starts, kills and restarts any of the three."""

from __future__ import annotations

import base64
import os
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from slurmlink.devcluster import DevCluster
from standins.kube import KubeStandin
from tests.harness.pods import NODE
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until


class ServiceProcess:
    """One slurmlink service as a process of its own; `kill()` is kill -9, `start()` brings it back on the
    same port. Subclasses name the command, the path that answers 200 once it is ready, and its port."""

    command = ""
    ready_path = "/healthz"

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config = config
        self.port = self.listen_port(config)
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_port: int | None = (config.get("admin") or {}).get("port")
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

    def admin_get(self, path: str) -> httpx.Response:
        """/healthz or /metrics from the admin listener, or from the main port where there is none."""
        if self.admin_port is None:
            return self.get(path)
        return httpx.get(f"http://127.0.0.1:{self.admin_port}{path}", timeout=5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"slurmlink {self.command} exited:\n{self.log_text()[-3000:]}")
        try:
            return self.admin_get(self.ready_path).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus metric's samples (over all labels, or those with these values)."""
        total = 0.0
        for line in self.admin_get("/metrics").text.splitlines():
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
    """`url` follows the configuration: unix:///path with listen.socket, https:// with listen.tls (then `tls`
    is the client's context: the CA to verify with, and a client certificate if the API requires one)."""

    command = "api"

    def __init__(self, config: dict[str, Any], workdir: Path, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(config, workdir)
        self.tls = tls
        listen = config["listen"]
        if listen.get("socket"):
            self.url = f"unix://{listen['socket']}"
        elif listen.get("tls"):
            self.url = f"https://127.0.0.1:{self.port}"

    def http(self) -> httpx.Client:
        if self.url.startswith("unix://"):
            transport = httpx.HTTPTransport(uds=self.url.removeprefix("unix://"))
            return httpx.Client(transport=transport, base_url="http://localhost", timeout=5)
        return httpx.Client(base_url=self.url, verify=self.tls or True, timeout=5)

    def get(self, path: str) -> httpx.Response:
        with self.http() as client:
            return client.get(path)


class ProxyProcess(ServiceProcess):
    command = "proxy"
    ready_path = "/metrics"  # /healthz also needs slurmrestd, which some tests stop on purpose


class VkProcess(ServiceProcess):
    """`get()` presents `client` (cert, key) to the kubelet endpoint: the stand-in's kubelet-client
    certificate, as the apiserver would, so that /metrics and /containerLogs answer."""

    command = "vk"

    def __init__(self, config: dict[str, Any], workdir: Path, client: tuple[Path, Path] | None = None) -> None:
        super().__init__(config, workdir)
        self.url = f"https://127.0.0.1:{self.port}"
        self.client = client

    @staticmethod
    def listen_port(config: dict[str, Any]) -> int:
        return int(config["kubelet"]["port"])

    def get(self, path: str, headers: dict[str, str] | None = None,
            client: tuple[Path, Path] | None | bool = True) -> httpx.Response:
        """`client`: True for the process's own, None for no certificate, or another (cert, key)."""
        chosen = self.client if client is True else client if isinstance(client, tuple) else None
        return httpx.get(f"{self.url}{path}", verify=client_context(chosen), headers=headers, timeout=5)


def client_context(client: tuple[Path, Path] | None) -> ssl.SSLContext:
    """TLS towards the vk's self-signed endpoint (not verified), presenting `client` (cert, key) if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def api_config(cluster: DevCluster, port: int, **overrides: Any) -> dict[str, Any]:
    """A mode-2 API (the cli backend) in front of the test SLURM; `overrides` replace top-level keys."""
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "cli": {"slurm_conf": str(cluster.conf_path), "bin_dir": str(cluster.bin_dir) if cluster.bin_dir else None},
        "job_root": str(cluster.job_root),
        "poll_interval": 0.5,
        "log_follow_interval": 0.2,
        "users": {"default": cluster.users[0], "namespaces": {"team-b": cluster.users[1]}},
        "site": {"runtime": "bwrap", "restart_backoff_seconds": 1},
        "auth": {"allow_unauthenticated": True},
        "state_dir": str(cluster.state_dir / "api-state"),  # never the machine's /var/lib/slurmlink/api
    }
    config.update(overrides)
    return config


def node_kubeconfig(standin: KubeStandin, path: Path, node: str) -> Path:
    """A kubeconfig with the node's own identity (system:node:<name>), as a real vk would have."""
    cert, key = standin.issue_client_cert(f"system:node:{node}", ("system:nodes",))
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "standin", "cluster": {
                  "server": standin.url,
                  "certificate-authority-data": base64.b64encode(standin.ca_path.read_bytes()).decode()}}],
              "users": [{"name": "node", "user": {"client-certificate": str(cert), "client-key": str(key)}}],
              "contexts": [{"name": "node", "context": {"cluster": "standin", "user": "node"}}],
              "current-context": "node"}
    path.write_text(yaml.safe_dump(config))
    return path


def token_kubeconfig(standin: KubeStandin, path: Path, token: str) -> Path:
    """A kubeconfig with a bearer token, e.g. a ServiceAccount's (as a vk deployed by the Helm chart has)."""
    config = {"apiVersion": "v1", "kind": "Config",
              "clusters": [{"name": "standin", "cluster": {
                  "server": standin.url,
                  "certificate-authority-data": base64.b64encode(standin.ca_path.read_bytes()).decode()}}],
              "users": [{"name": "account", "user": {"token": token}}],
              "contexts": [{"name": "account", "context": {"cluster": "standin", "user": "account"}}],
              "current-context": "account"}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def vk_config(standin: KubeStandin, kubeconfig: Path, api_url: str, **overrides: Any) -> dict[str, Any]:
    """The tests' vk configuration; its kubelet endpoint accepts client certificates of the stand-in's CA and
    leaves the rest to TokenReview and SubjectAccessReview (the defaults)."""
    config: dict[str, Any] = {
        "node": {"name": NODE, "labels": {"slurmlink.io/site": "test"}, "internal_ip": "127.0.0.1",
                 "taints": [{"key": "slurmlink.io/test", "value": "yes", "effect": "PreferNoSchedule"}]},
        "kube": {"kubeconfig": str(kubeconfig)},
        "api": {"url": api_url},
        "kubelet": {"host": "127.0.0.1", "port": free_port(),
                    "authentication": {"x509": {"client_ca_file": str(standin.ca_path)}}},
        "workers": 4, "status_interval": 0.5, "ping_interval": 0.5, "lease_duration_seconds": 10,
        "missing_reference_timeout": 6, "watch_timeout_seconds": 30,
        "state_dir": str(kubeconfig.parent / "vk-state"),  # never the machine's /var/lib/slurmlink/vk
    }
    config.update(overrides)
    return config
