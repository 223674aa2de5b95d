"""Benchmark (not a test) of issue 15, items 2 and 3: what a `kubectl port-forward` to a server in a running
pod costs, and a connection to the pod's address as a Service's endpoint (the vk's `services`), against a
direct connection to the same server.

The chain: kubectl → the Kubernetes stand-in (in this process; SPDY tunnelled in WebSocket, kubectl's default)
→ `slurmlink vk` → `slurmlink api` (mode 2) → per connection, an `srun --overlap` step of the pod's job as its
account, connected to the server on 127.0.0.1 → an echo server in the job. The baseline connects to the echo
server directly (the dev cluster's node is this host); a third path, `step`, runs the API's connecting step
by hand for each connection (`runuser -u <user> -- srun --overlap --unbuffered ... python3 -c CONNECTOR`, its
stdin and stdout the socket): what the step design costs on its own, apart from kubectl, stand-in, vk and API.
A fourth, `service`, connects to the pod's address (status.podIP, from `services.pod_addresses`, here a
loopback range) on the declared port, where the vk listens and relays through the API's port-forward: the
path a client in the cluster takes to a Service's endpoint (minus kube-proxy), without kubectl and the
apiserver.

- connect: `--connects` (20) new connections, each until its first echoed byte (through the forward, a new
  step each), p50 and p95;
- round trip: `--pings` (200) one-byte round trips on one open connection, p50 and p95;
- throughput: `--megabytes` (20) MB sent and echoed back on one connection, MB/s each way.

The phases run in the order direct, step, forward, service, service, forward, step, direct and are averaged.

With `--mode1` the forward goes through mode 1 instead: kubectl → stand-in → vk → `slurmlink api --backend
rest` → (the same bytes relayed) `slurmlink proxy` with its interactive extension → per connection a step
started by the proxy (`setpriv` to the account, then the same srun) → the echo server. The `step` path is the
same in both modes.

    .venv/bin/python bench/portforward_throughput.py [--mode1]
    .venv/bin/python bench/portforward_throughput.py --state-dir /var/lib/slurmlink/test-cluster-NAME --ports R,C,D

Results go to bench/results/portforward_throughput.json (`--mode1`: portforward_throughput-mode1.json;
git-ignored). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # bench.services and the kube-apiserver stand-in (standins/) are not installed

from bench.services import (  # noqa: E402
    KUBECTL,
    add_cluster_options,
    cluster_of,
    free_port,
    pod_on,
    running_pod,
    step_argv,
    wait_until,
)
from slurmlink.steps.portforward import connector_argv  # noqa: E402

RESULTS = REPO / "bench" / "results" / "portforward_throughput.json"
NODE = "bench-pf-node"
POD_ADDRESSES = "127.78.0.0/16"  # the vk's `services` range: loopback, so nothing to route
POD = "pf-bench"
ECHO_SERVER = """
import socket, sys, threading
def echo(conn):
    with conn:
        while data := conn.recv(65536):
            conn.sendall(data)
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    threading.Thread(target=echo, args=(server.accept()[0],), daemon=True).start()
"""


def _ms(values: list[float]) -> tuple[float, float]:
    values = sorted(values)
    return statistics.median(values) * 1000, values[int(0.95 * (len(values) - 1))] * 1000


def _recv_exactly(conn: socket.socket, size: int) -> None:
    while size:
        chunk = conn.recv(min(size, 1 << 20))
        if not chunk:
            raise ConnectionError("closed early")
        size -= len(chunk)


def phase(address: tuple[str, int], connects: int, pings: int, megabytes: int) -> dict[str, float]:
    setups = []
    for _ in range(connects):
        start = time.perf_counter()
        with socket.create_connection(address, timeout=60) as conn:
            conn.sendall(b"x")
            _recv_exactly(conn, 1)
        setups.append(time.perf_counter() - start)
    with socket.create_connection(address, timeout=60) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sendall(b"x")
        _recv_exactly(conn, 1)  # the connection is set up before the clock runs
        trips = []
        for _ in range(pings):
            start = time.perf_counter()
            conn.sendall(b"x")
            _recv_exactly(conn, 1)
            trips.append(time.perf_counter() - start)
        size = megabytes * 1024 * 1024
        block = b"\0" * (1 << 20)
        def send_all() -> None:
            for _ in range(megabytes):
                conn.sendall(block)
        sender = threading.Thread(target=send_all)
        start = time.perf_counter()
        sender.start()
        _recv_exactly(conn, size)
        seconds = time.perf_counter() - start
        sender.join()
    connect_p50, connect_p95 = _ms(setups)
    trip_p50, trip_p95 = _ms(trips)
    return {"connect_p50_ms": connect_p50, "connect_p95_ms": connect_p95, "rtt_p50_ms": trip_p50,
            "rtt_p95_ms": trip_p95, "mb_per_s": megabytes / seconds}


def step_listener(job: str, server_port: int, env: dict[str, str]) -> int:
    """A local port whose every connection is handed to a new connecting step, as the API starts it."""
    listener = socket.create_server(("127.0.0.1", 0))
    argv = [*step_argv(job, unbuffered=True), *connector_argv(server_port)]

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            subprocess.Popen(argv, stdin=conn.fileno(), stdout=conn.fileno(), env=env)
            conn.close()  # the step holds it now

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connects", type=int, default=20)
    parser.add_argument("--pings", type=int, default=200)
    parser.add_argument("--megabytes", type=int, default=20)
    parser.add_argument("--mode1", action="store_true", help="forward through the mode-1 API and the proxy")
    add_cluster_options(parser)
    args = parser.parse_args()
    cluster = cluster_of(args)
    server_port = free_port()
    pod_body = pod_on(NODE, POD, ["python3", "-c", ECHO_SERVER, str(server_port)])
    pod_body["spec"]["containers"][0]["ports"] = [{"containerPort": server_port}]
    with running_pod(cluster, NODE, pod_body, mode1=args.mode1,
                     services={"enabled": True, "pod_addresses": POD_ADDRESSES}) as pod:
        wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", server_port)) == 0, 60,
                   "the echo server to listen")
        local = free_port()
        forward = subprocess.Popen([str(KUBECTL), "port-forward", POD, f"{local}:{server_port}",
                                    "--address=127.0.0.1"], env=pod.kube_env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        try:
            wait_until(lambda: socket.socket().connect_ex(("127.0.0.1", local)) == 0, 60,
                       "kubectl port-forward to listen")
            if not pod.pod_ip:
                raise SystemExit("the pod got no address: is the vk's `services` section taken?")
            step = step_listener(pod.job, server_port, pod.slurm_env)
            ports = {"direct": ("127.0.0.1", server_port), "step": ("127.0.0.1", step),
                     "forward": ("127.0.0.1", local), "service": (pod.pod_ip, server_port)}
            order = ["direct", "step", "forward", "service", "service", "forward", "step", "direct"]
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in ports}
            for name in order:
                runs[name].append(phase(ports[name], args.connects, args.pings, args.megabytes))
                print(f"{name:>8}: {runs[name][-1]}", flush=True)
        finally:
            forward.terminate()
            forward.wait(30)
    report = {name: {key: statistics.mean(run[key] for run in phases) for key in phases[0]}
              for name, phases in runs.items()}
    print(f"\n{'path':>8} {'connect p50':>12} {'p95':>8} {'rtt p50 ms':>11} {'p95':>8} {'MB/s':>8}")
    for name, numbers in report.items():
        print(f"{name:>8} {numbers['connect_p50_ms']:12.1f} {numbers['connect_p95_ms']:8.1f} "
              f"{numbers['rtt_p50_ms']:11.2f} {numbers['rtt_p95_ms']:8.2f} {numbers['mb_per_s']:8.1f}")
    load = os.getloadavg()
    print(f"load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    results = RESULTS.with_stem(f"{RESULTS.stem}-mode1") if args.mode1 else RESULTS
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps({"mode": 1 if args.mode1 else 2, "connects": args.connects, "pings": args.pings,
                                   "megabytes": args.megabytes, "order": order, "runs": runs, "mean": report,
                                   "load": load}, indent=2))


if __name__ == "__main__":
    main()
