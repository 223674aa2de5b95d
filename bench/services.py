"""What the benches share: slurmlink's services as processes of their own, with the configuration each bench
measures, free ports, and waiting with a deadline.

The benches import nothing from tests/ (tests/unit/test_bench_imports.py checks it): a bench's numbers must
not move because a test changed its configuration or its harness, and a bench wants what a test does not (a
process's PID to meter its CPU, the services' defaults rather than the tests' short intervals, errors that
carry the service's log tail). So this module is the benches' own, small and independent of the tests'
harness (tests/harness). What both need and neither owns, the stand-ins of outside services, is in standins/.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import httpx
import yaml

from slurmlink.devcluster import DevCluster
from slurmlink.identity.pod_token import ACCESS_TOKEN_KEY
from slurmlink.steps import srun
from slurmlink.wire.names import TOKEN_SECRET_ANNOTATION
from standins.checkin import CheckinStandin
from standins.kube import KubeStandin

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


class BenchError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Call `check` every `interval` (a period, not a pause between calls) until it returns something truthy."""
    start = time.perf_counter()
    for tick in range(1, sys.maxsize):
        if result := check():
            return result
        if time.perf_counter() - start > timeout:
            raise BenchError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(max(0.0, start + tick * interval - time.perf_counter()))
    raise AssertionError("unreachable")


class Service:
    """`slurmlink <command> --config <yaml>` on loopback, started at once (a context manager: stopped by its
    PID on exit). Runs with the bench's environment minus SLURMLINK_* variables, so that it measures the
    configuration written here. `client` (cert, key): presented to an HTTPS endpoint (the vk's kubelet port)."""

    def __init__(self, command: str, config: dict[str, Any], workdir: Path, *, port: int, https: bool = False,
                 ready_path: str = "/healthz", client: tuple[Path, Path] | None = None) -> None:
        self.command, self.ready_path, self.client = command, ready_path, client
        self.url = f"{'https' if https else 'http'}://127.0.0.1:{port}"
        config_path, self.log_path = workdir / f"{command}-{port}.yaml", workdir / f"{command}-{port}.log"
        config_path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURMLINK_")} | {"PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "slurmlink.cli", command, "--config", str(config_path)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            wait_until(self.healthy, 90, f"slurmlink {command} (pid {self.proc.pid}) to answer {ready_path} with 200",
                       0.2)
        except BaseException:
            self.stop()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        died = self.proc.poll() is not None
        self.stop()
        if exc_type is not None and died:
            self.check_alive()  # whatever failed, the service's death is the news: raise with its log tail

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-30:])
            raise BenchError(f"slurmlink {self.command} exited with status {self.proc.returncode}; log tail:\n{tail}")

    def get(self, path: str, timeout: float = 10) -> httpx.Response:
        verify: ssl.SSLContext | bool = client_context(self.client) if self.url.startswith("https") else True
        return httpx.get(f"{self.url}{path}", verify=verify, timeout=timeout)

    def healthy(self) -> bool:
        self.check_alive()
        try:
            return self.get(self.ready_path, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def metric(self, name: str) -> float:
        """Sum of a Prometheus metric's samples over all labels."""
        return sum(float(line.rsplit(" ", 1)[1]) for line in self.get("/metrics").text.splitlines()
                   if line.startswith((name + "{", name + " ")))

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def client_context(client: tuple[Path, Path] | None) -> ssl.SSLContext:
    """TLS towards the vk's self-signed endpoint (not verified), presenting `client` (cert, key) if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    if client is not None:
        context.load_cert_chain(str(client[0]), str(client[1]))
    return context


# --- the benches' configurations -----------------------------------------------------------------------------

def api_config(cluster: DevCluster, user: str, poll_interval: float, port: int, **overrides: Any) -> dict[str, Any]:
    """A mode-2 API (cli backend) running pods on the host as `user`; `overrides` replace top-level keys."""
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "cli": {"slurm_conf": str(cluster.conf_path), "bin_dir": str(cluster.bin_dir) if cluster.bin_dir else None},
        "job_root": str(cluster.job_root), "poll_interval": poll_interval,
        "users": {"default": user}, "site": {"runtime": "host"}, "auth": {"allow_unauthenticated": True},
    }
    return config | overrides


def sticky_job_root(cluster: DevCluster) -> Path:
    """Where mode-1 jobs make their own directories (the proxy's files extension): like /tmp, but nobody may
    list it."""
    root = cluster.state_dir / "jobs-mode1"
    root.mkdir(exist_ok=True)
    os.chown(root, 0, 0)
    root.chmod(0o1733)
    return root


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--state-dir and --ports: another dev cluster than the default one (e.g. a test cluster of one's own)."""
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/slurmlink/dev-cluster"),
                        help="the dev cluster's state directory (default: the default dev cluster)")
    parser.add_argument("--ports", default="6820,6817,6818", help="its slurmrestd,slurmctld,slurmd ports")


def cluster_of(args: argparse.Namespace) -> DevCluster:
    rest, ctld, slurmd = (int(port) for port in args.ports.split(","))
    return DevCluster(args.state_dir, rest_port=rest, ctld_port=ctld, slurmd_port=slurmd)


def api_service(config: dict[str, Any], workdir: Path) -> Service:
    return Service("api", config, workdir, port=config["listen"]["port"])


def proxy_config(cluster: DevCluster, issuer: str, users_file: Path, port: int, vo: str,
                 **overrides: Any) -> dict[str, Any]:
    """The proxy's defaults, one Check-in issuer and a static map, except the per-user rate limit (10/s would
    measure the limiter, not the proxy)."""
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": port},
        "upstream": cluster.rest_url,
        "identity": {"issuers": [{"issuer": issuer}], "policy": {"vos": [vo]},
                     "mapping": [{"static": {"path": str(users_file)}}],
                     "accounts": {"slurm_user": cluster.slurm_user}},
        "slurm_user": cluster.slurm_user,
        "jwt_key_file": str(cluster.jwt_key_path),
        "rate_limit": {"requests_per_second": 100_000, "burst": 100_000},
        "state_dir": str(users_file.parent / "proxy-state"),  # its ledger: not the machine's /var/lib/slurmlink
    }
    return config | overrides


def proxy_service(config: dict[str, Any], workdir: Path, ready_path: str = "/healthz") -> Service:
    return Service("proxy", config, workdir, port=config["listen"]["port"], ready_path=ready_path)


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


def vk_config(standin: KubeStandin, node: str, kubeconfig: Path, api_url: str, **overrides: Any) -> dict[str, Any]:
    """A vk for `node`, whose kubelet endpoint accepts client certificates of the stand-in's CA and leaves the
    rest to TokenReview and SubjectAccessReview."""
    config: dict[str, Any] = {
        "node": {"name": node, "internal_ip": "127.0.0.1"},
        "kube": {"kubeconfig": str(kubeconfig)},
        "api": {"url": api_url},
        "kubelet": {"host": "127.0.0.1", "port": free_port(),
                    "authentication": {"x509": {"client_ca_file": str(standin.ca_path)}}},
        "state_dir": str(kubeconfig.parent / f"vk-state-{node}"),  # not the machine's /var/lib/slurmlink/vk
    }
    return config | overrides


def vk_service(config: dict[str, Any], workdir: Path, client: tuple[Path, Path] | None,
               ready_path: str = "/healthz") -> Service:
    return Service("vk", config, workdir, port=config["kubelet"]["port"], https=True, ready_path=ready_path,
                   client=client)


# --- one long pod on a virtual node, for the interactive benches (exec_latency.py, portforward_throughput.py) --

KUBECTL = Path(sys.executable).parent / "kubectl"
POD_USER = "sltest1"  # the account the pods run as (the API's `users` default)


@dataclass(frozen=True)
class RunningPod:
    name: str
    job: str  # its SLURM job
    pod_ip: str  # status.podIP once Running ("" without one: the vk's `services` off, or no ports)
    kube_env: dict[str, str]  # kubectl's environment, towards the stand-in
    slurm_env: dict[str, str]  # SLURM's commands' environment, towards the cluster


def pod_on(node: str, name: str, command: list[str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeSelector": {"kubernetes.io/hostname": node}, "restartPolicy": "Never",
                     "tolerations": [{"key": "virtual-node.interlink/no-schedule", "operator": "Exists",
                                      "effect": "NoSchedule"}],
                     "automountServiceAccountToken": False,
                     "containers": [{"name": "main", "image": "debian", "command": command}]}}


@contextlib.contextmanager
def running_pod(cluster: DevCluster, node: str, pod: dict[str, Any], *, mode1: bool = False,
                **vk_overrides: Any) -> Iterator[RunningPod]:
    """The Kubernetes stand-in, a mode-2 `slurmlink api` (`mode1`: a Check-in stand-in, `slurmlink proxy` with its
    interactive extension on and a mode-1 api) and a `slurmlink vk` for `node` (`vk_overrides`: its
    configuration keys), and `pod` applied with kubectl and Running; the pod is deleted at the end."""
    cluster.up()
    name = pod["metadata"]["name"]
    with (tempfile.TemporaryDirectory(prefix="slbench-pod-") as tmp, KubeStandin(Path(tmp) / "standin") as standin,
          contextlib.ExitStack() as stack):
        work = Path(tmp)
        for part in ("api", "vk", "proxy"):
            (work / part).mkdir()
        config = api_config(cluster, POD_USER, 0.5, free_port())
        kube_env = {**os.environ, "KUBECONFIG": str(standin.kubeconfig), "KUBECACHEDIR": str(work / "cache")}
        if mode1:
            config |= mode1_api_settings(stack, cluster, work / "proxy", standin)
            pod = {**pod, "metadata": {**pod["metadata"], "annotations": {TOKEN_SECRET_ANNOTATION: MODE1_SECRET}}}
        api = stack.enter_context(api_service(config, work / "api"))
        kubeconfig = node_kubeconfig(standin, work / "node.kubeconfig", node)
        vk = vk_service(vk_config(standin, node, kubeconfig, api.url, **vk_overrides), work / "vk",
                        standin.kubelet_client_cert)
        with vk:
            subprocess.run([str(KUBECTL), "apply", "-f", "-"], input=json.dumps(pod).encode(), env=kube_env,
                           check=True, capture_output=True)

            def running() -> dict[str, Any]:
                found = standin.get("pods", name, "default") or {}
                return found if (found.get("status") or {}).get("phase") == "Running" else {}

            found = wait_until(running, 120, "the pod to run")
            uid, pod_ip = found["metadata"]["uid"], str(found["status"].get("podIP") or "")
            job = subprocess.run(["squeue", "--noheader", "--format=%i", "--name", f"slurmlink-{uid}"],
                                 capture_output=True, text=True, env=cluster.env, check=True).stdout.split()[0]
            try:
                yield RunningPod(name, job, pod_ip, kube_env, {**os.environ, **cluster.env})
            finally:
                subprocess.run([str(KUBECTL), "delete", "pod", name, "--wait=false"], env=kube_env,
                               capture_output=True)


MODE1_SECRET = "bench-checkin"  # noqa: S105 - a Secret's name: the pod's Check-in token in mode 1


def mode1_api_settings(stack: contextlib.ExitStack, cluster: DevCluster, work: Path,
                       standin: KubeStandin) -> dict[str, Any]:
    """Start a Check-in stand-in and a proxy (files and interactive extensions on) mapping one subject to
    POD_USER; put that subject's token in MODE1_SECRET; the api settings of mode 1 in front of them."""
    checkin = stack.enter_context(CheckinStandin())
    subject, service = checkin.new_subject(), checkin.new_subject()
    users_file = work / "users.txt"
    users_file.write_text(f"{checkin.issuer} {subject} {POD_USER}\n")
    job_root = sticky_job_root(cluster)
    srun = str(cluster.bin_dir / "srun") if cluster.bin_dir else shutil.which("srun") or "/usr/bin/srun"
    proxy = stack.enter_context(proxy_service(proxy_config(
        cluster, checkin.issuer, users_file, free_port(), "vo.example.org", files={"job_root": str(job_root)},
        interactive={"enabled": True, "srun": srun, "slurm_conf": str(cluster.conf_path)},
        service_identities=[{"issuer": checkin.issuer, "subject": service, "account": cluster.users[2]}]), work,
        ready_path="/metrics"))
    # the api's own identity: its node's capacity before any pod brings a token
    token_file = work / "service.token"
    token_file.write_text(checkin.mint(service, lifetime=7200))
    token_file.chmod(0o600)
    token = checkin.mint(subject, lifetime=7200)
    standin.create("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": MODE1_SECRET},
                               "type": "Opaque",
                               "data": {ACCESS_TOKEN_KEY: base64.b64encode(token.encode()).decode()}}, "default")
    return {"backend": "rest", "job_root": str(job_root),
            "rest": {"url": proxy.url, "service_token_file": str(token_file)}}


def step_argv(job: str, *, unbuffered: bool = False) -> list[str]:
    """The start of a new step of `job` as the pods' account, as the API starts exec and port-forward steps
    (runuser, then steps.srun's argv): the step's own command follows."""
    return ["runuser", "-u", POD_USER, "--",
            *srun.step_argv("srun", job, "/tmp", [], pty=False, unbuffered=unbuffered)]
