"""The full chain for the vk tests: the Kubernetes stand-in (in this process) → `slurmlink vk` (a process) →
`slurmlink api` (a process, mode 2) → the test SLURM. kubectl talks to the stand-in as users do."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from slurmlink.devcluster import DevCluster
from standins.kube import KubeStandin
from tests.harness.pods import NODE, squeue_jobs
from tests.harness.services import ApiProcess, VkProcess, node_kubeconfig, vk_config
from tests.harness.waiting import wait_until

KUBECTL = Path(sys.executable).parent / "kubectl"


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


@contextlib.contextmanager
def ready_chain(cluster: DevCluster, api: ApiProcess, workdir: Path, **overrides: Any) -> Iterator[Chain]:
    """open_chain, once the vk's /healthz answers 200 (VkProcess.start returns on any answer, 503 too) and its
    node is Ready."""
    with open_chain(cluster, api, workdir, **overrides) as chain:
        wait_until(lambda: chain.vk.get("/healthz").status_code == 200, 20, "the vk's /healthz to answer 200")
        wait_node_ready(chain)
        yield chain


def ready(chain: Chain) -> bool:
    node = chain.standin.get("nodes", NODE)
    conditions = {c["type"]: c["status"] for c in ((node or {}).get("status") or {}).get("conditions") or []}
    return conditions.get("Ready") == "True"


def wait_node_ready(chain: Chain, timeout: float = 20) -> None:
    wait_until(lambda: ready(chain), timeout, "the node to be Ready")
