"""The full chain for the vk tests: the Kubernetes stand-in (in this process) → `slurmlink vk` (a process) →
`slurmlink api` (a process, mode 2) → the test SLURM. kubectl talks to the stand-in as users do."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from slurmlink.devcluster import DevCluster
from standins.kube import KubeStandin
from tests.integration.conftest import ApiProcess, ServiceProcess, free_port, wait_until
from tests.integration.pods import squeue_jobs

KUBECTL = Path(sys.executable).parent / "kubectl"
NODE = "slurmlink-test-node"
TOLERATION = {"key": "virtual-node.interlink/no-schedule", "operator": "Exists", "effect": "NoSchedule"}


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


def client_context(client: tuple[Path, Path] | None) -> ssl.SSLContext:
    """TLS towards the vk's self-signed endpoint (not verified), presenting `client` (cert, key) if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


class VkProcess(ServiceProcess):
    """`slurmlink vk -c vk.yaml` as its own process; `kill()` is kill -9, `start()` brings it back. `get()`
    presents `client` (cert, key) to the kubelet endpoint: the stand-in's kubelet-client certificate, as the
    apiserver would, so that /metrics and /containerLogs answer."""

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
    }
    config.update(overrides)
    return config


@dataclass
class Chain:
    standin: KubeStandin
    vk: VkProcess
    api: ApiProcess
    cluster: DevCluster
    workdir: Path

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 30
                ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.standin.kubeconfig),
               "KUBECACHEDIR": str(self.workdir / "kubecache")}
        result = subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True, env=env,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def apply(self, *objects: dict[str, Any], namespace: str = "default") -> None:
        self.kubectl("apply", "-n", namespace, "-f", "-", input="\n---\n".join(json.dumps(o) for o in objects))

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.standin.get("pods", name, namespace)

    def phase(self, name: str, namespace: str = "default") -> str:
        pod = self.pod(name, namespace)
        return str(((pod or {}).get("status") or {}).get("phase") or "")

    def wait_phase(self, name: str, phases: tuple[str, ...], timeout: float = 60,
                   namespace: str = "default") -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            pod = self.pod(name, namespace)
            return pod if pod and (pod.get("status") or {}).get("phase") in phases else None
        try:
            return wait_until(reached, timeout, f"pod {name} to be {'/'.join(phases)}")  # type: ignore[no-any-return]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\npod: {json.dumps(self.pod(name, namespace))[:3000]}\n"
                                 f"vk log:\n{self.vk.log_text()[-3000:]}") from None

    def wait_gone(self, name: str, timeout: float = 60, namespace: str = "default") -> None:
        wait_until(lambda: self.pod(name, namespace) is None, timeout, f"pod {name} to go away")

    def api_metrics(self) -> str:
        return httpx.get(f"{self.api.url}/metrics", timeout=5).text

    def jobs(self, uid: str) -> list[list[str]]:
        """(job id, state, user) of every SLURM job of the pod: one, never two."""
        return squeue_jobs(self.cluster.env, f"slurmlink-{uid}")


def pod_manifest(name: str, script: str, *, containers: list[dict[str, Any]] | None = None,
                 **spec: Any) -> dict[str, Any]:
    """A pod for the vk's node: selector, toleration, and a shell script as its one container."""
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "nodeSelector": {"kubernetes.io/hostname": NODE},
                 "tolerations": [TOLERATION], "terminationGracePeriodSeconds": 5,
                 # bwrap cannot mount the default token volume at /var/run/secrets (a symlink on the host)
                 "automountServiceAccountToken": False,
                 "containers": containers or [{"name": "main", "image": "docker.io/library/debian:bookworm",
                                               "command": ["sh", "-c", script]}], **spec}}
    return body


@contextlib.contextmanager
def open_chain(cluster: DevCluster, api: ApiProcess, workdir: Path, **overrides: Any) -> Iterator[Chain]:
    """A stand-in and a vk of their own in front of `api`; the vk is stopped on exit (the API is not).
    `overrides`: vk configuration keys."""
    with KubeStandin(workdir / "standin", bookmark_interval=1.0) as standin:
        kubeconfig = node_kubeconfig(standin, workdir / "node.kubeconfig", NODE)
        vk = VkProcess(vk_config(standin, kubeconfig, api.url, **overrides), workdir, standin.kubelet_client_cert)
        vk.start()
        try:
            yield Chain(standin, vk, api, cluster, workdir)
        finally:
            vk.stop()


@pytest.fixture(scope="session")
def chain(slurm_cluster: DevCluster, api: ApiProcess, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Chain]:
    with open_chain(slurm_cluster, api, tmp_path_factory.mktemp("vk")) as opened:
        yield opened


def ready(chain: Chain) -> bool:
    node = chain.standin.get("nodes", NODE)
    conditions = {c["type"]: c["status"] for c in ((node or {}).get("status") or {}).get("conditions") or []}
    return conditions.get("Ready") == "True"


def wait_node_ready(chain: Chain, timeout: float = 20) -> None:
    wait_until(lambda: ready(chain), timeout, "the node to be Ready")


def now() -> float:
    return time.monotonic()
