"""`python -m standins.kube [--port N] [--http] [--kubeconfig PATH]`: run the stand-in until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from .server import KubeStandin


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the kube-apiserver stand-in (for tests and debugging).")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    parser.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    parser.add_argument("--kubeconfig", type=Path, help="also write the kubeconfig here")
    parser.add_argument("--no-scheduler", action="store_true", help="leave pods unbound unless a test binds them")
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with KubeStandin(tls=not args.http, port=args.port, scheduler=not args.no_scheduler) as kube:
        if args.kubeconfig:
            kube.write_kubeconfig(args.kubeconfig)
        print(f"serving {kube.url}; kubeconfig {args.kubeconfig or kube.kubeconfig}", flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
