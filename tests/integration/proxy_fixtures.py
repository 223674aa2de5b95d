"""What the proxy test modules share: the proxy served in-process, its configuration, and request helpers."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

import uvloop

from slurmlink.devcluster import DevCluster
from slurmlink.listeners import Servers
from slurmlink.proxy import ProxyConfig, create_app
from slurmlink.proxy.app import listeners
from slurmlink.slurm import rest_shapes
from standins.checkin import CheckinStandin
from tests.harness.cluster import TEST_REST_VERSION
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until

VO = "vo.example.org"
V = TEST_REST_VERSION  # v0.0.38 on 22.05; the newest (or SLURMLINK_TEST_REST_VERSION) on another release
MAX_BODY = 64 * 1024


class ProxyServer:
    """The proxy app served in a thread of this process, on free loopback ports, by the listeners
    `slurmlink proxy` has: the public port, and the admin listener when the configuration has one."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.app = create_app(config)
        self.port = config.listen.port
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{config.admin.port}" if config.admin.port else self.url
        self.servers = Servers(listeners(config, self.app), log_level="warning",
                               on_stop=self.app.state.proxy.end_long_polls)
        # on uvloop, the event loop `slurmlink proxy` runs on (cli.py)
        self.thread = threading.Thread(target=lambda: uvloop.run(self.servers.serve()), daemon=True)

    def start(self) -> ProxyServer:
        self.thread.start()
        wait_until(lambda: self.servers.started, 20, "the proxy to listen")
        return self

    def stop(self) -> None:
        self.servers.stop()
        self.thread.join(15)


def proxy_config(cluster: DevCluster, checkin: CheckinStandin, users_file: Path, **overrides: Any) -> ProxyConfig:
    data: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "admin": {"port": free_port()},  # /healthz in full and /metrics; the public port says ok/unavailable only
        "upstream": cluster.rest_url,
        "identity": {"issuers": [{"issuer": checkin.issuer}], "policy": {"vos": [VO]},
                     "mapping": [{"static": {"path": str(users_file)}}],
                     "accounts": {"slurm_user": cluster.slurm_user}},
        "slurm_user": cluster.slurm_user,
        "jwt_key_file": str(cluster.jwt_key_path),
        # the proxy's own requests: the version under test when one is named, else what it negotiates
        "api_version": os.environ.get("SLURMLINK_TEST_REST_VERSION") or "auto",
        "max_body_bytes": MAX_BODY,
        "upstream_timeout_seconds": 20,
        "rate_limit": {"requests_per_second": 1000, "burst": 1000},
    }
    data.update(overrides)
    if "state_dir" not in data:  # its ledger: never in the machine's /var/lib/slurmlink/proxy
        data["state_dir"] = tempfile.mkdtemp(prefix="proxy-state-", dir=users_file.parent)
    return ProxyConfig.model_validate(data)


def submit_body(name: str, script: str = "#!/bin/bash\nid -un", pad: int = 0) -> dict[str, Any]:
    env = {"PATH": "/usr/bin:/bin"}
    if pad:
        env["PAD"] = "x" * pad
    job: dict[str, Any] = {"name": name, "current_working_directory": "/tmp", "environment": env,
                           "standard_output": "/dev/null", "time_limit": 10}
    if rest_shapes.number(V) >= 41:  # the script inside the job, the environment a list (see rest_shapes)
        return {"job": {**job, "script": script, "environment": [f"{k}={v}" for k, v in env.items()]}}
    return {"script": script, "job": job}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def job_ids(cluster: DevCluster) -> set[str]:
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-o", "%i"], env={**os.environ, **cluster.env},
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return set(out.split())


def job_state(cluster: DevCluster, job_id: str) -> tuple[str, str]:
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-j", job_id, "-o", "%T|%u"],
                         env={**os.environ, **cluster.env}, capture_output=True, text=True, timeout=30).stdout
    state, _, user = out.strip().partition("|")
    return state, user


def raw_request(port: int, method: str, target: str, headers: list[tuple[str, str]], body: bytes = b"",
                *, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """One request written byte for byte (no normalisation of target or headers); `Connection: close`."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    if chunked:
        lines.append("Transfer-Encoding: chunked")
    elif body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if chunked:
        size = 8192
        body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
                        for i in range(0, len(body), size)) + b"0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # the proxy may answer (413) and close before reading it all; the answer is still there
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
