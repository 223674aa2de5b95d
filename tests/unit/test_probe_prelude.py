"""The prelude's probe and hook machinery under a real bash, without SLURM (the job script is plain bash; the
host runtime runs the containers): timeouts, startup failures, and preStop within the grace period."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slurmlink.translate import layout
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from standins.kube.pki import CertificateAuthority
from tests.harness.pods import make_pod
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until

# The container waits (at most 30 s) until the job has noted something about it, then ends.
WAIT_FOR_A_NOTE = "for i in $(seq 300); do [ -s status/c.events ] && exit 0; sleep 0.1; done; exit 1"


def pod(container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return make_pod([{"name": "c", "image": "x", **container}], name="p", uid="u-1", **spec)


@contextmanager
def job(p: dict[str, Any], path: str | None = None, site: SiteConfig | None = None
        ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "pod"
        script = build_job(p, workdir=str(workdir), site=site or SiteConfig(runtime="host")).script
        process = subprocess.Popen(["bash", "-c", script], cwd=tmp, env={"PATH": path or os.environ["PATH"]},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            yield process, workdir
        finally:
            if process.poll() is None:
                process.kill()
            process.wait(10)


def record(workdir: Path) -> Any:
    files = {f.name: f.read_text() for f in (workdir / "status").iterdir() if not f.name.startswith(".")}
    return layout.container_records(files)["c"]


def wait_for(path: Path, timeout: float = 30, containing: str = "") -> None:
    wait_until(lambda: path.exists() and containing in path.read_text(), timeout,
               f"{path} to appear (with {containing!r})", 0.05)


def test_a_check_slower_than_its_timeout_fails() -> None:
    probe = {"exec": {"command": ["sleep", "5"]}, "timeoutSeconds": 1, "periodSeconds": 1}
    with job(pod({"command": ["sh", "-c", WAIT_FOR_A_NOTE], "readinessProbe": probe})) as (process, workdir):
        assert process.wait(60) == 0
        [note] = record(workdir).notes
    assert (note.type, note.reason, note.message) == ("Warning", "Unhealthy",
                                                      "Readiness probe failed: timed out after 1s")


def test_a_liveness_kill_past_the_sites_restart_limit_promises_no_restart() -> None:
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    container = {"command": ["sh", "-c", "while :; do sleep 0.1; done"], "livenessProbe": probe}
    site = SiteConfig(runtime="host", max_restarts=0)
    with job(pod(container, restartPolicy="OnFailure", terminationGracePeriodSeconds=5), site=site
             ) as (process, workdir):
        process.wait(60)
        done = record(workdir)
    assert done.restarts == 0
    assert ("Killing", "Container c failed liveness probe") in [(n.reason, n.message) for n in done.notes]


def test_a_failed_startup_probe_kills_the_container_and_never_restarts_it_under_never() -> None:
    # a generous timeout: on a loaded machine the default 1 s can pass before sh answers, and the note changes
    probe = {"exec": {"command": ["sh", "-c", "echo not yet; exit 1"]}, "periodSeconds": 1, "failureThreshold": 2,
             "timeoutSeconds": 10}
    container = {"command": ["sh", "-c", "while :; do sleep 0.1; done"], "startupProbe": probe,
                 "readinessProbe": {"exec": {"command": ["true"]}}}
    with job(pod(container, terminationGracePeriodSeconds=5)) as (process, workdir):
        process.wait(60)
        done = record(workdir)
    assert done.exit_code == 143 and done.restarts == 0
    assert (done.startup, done.ready) == (False, False)  # never started, so never ready
    assert [(n.reason, n.message) for n in done.notes] == [
        ("Unhealthy", "Startup probe failed: not yet"), ("Unhealthy", "Startup probe failed: not yet"),
        ("Killing", "Container c failed startup probe")]


def test_pre_stop_gets_at_most_the_grace_period_before_sigterm() -> None:
    hook = {"preStop": {"exec": {"command": ["sh", "-c", "touch hook-began; sleep 30; touch hook-ended"]}}}
    container = {"command": ["sh", "-c", "trap 'touch got-term; exit 0' TERM; while :; do sleep 0.1; done"],
                 "lifecycle": hook}
    with job(pod(container, terminationGracePeriodSeconds=2)) as (process, workdir):
        wait_for(workdir / "status" / "c.started")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, process.stderr.read() if process.stderr else ""
        notes = [(n.reason, n.message) for n in record(workdir).notes]
        assert (workdir / "hook-began").exists() and (workdir / "got-term").exists()
        assert not (workdir / "hook-ended").exists()  # cut off when the grace period was spent
    assert notes == [("FailedPreStopHook", 'Exec lifecycle hook ([sh -c touch hook-began; sleep 30; touch '
                                          'hook-ended]) for Container "c" failed - error: timed out after 2s, '
                                          'message: ""')]


def test_grpc_probes_use_grpc_health_probe_when_the_node_has_it(tmp_path: Path) -> None:
    # This machine has no grpc_health_probe: a stand-in with its name and exit codes (0 = SERVING) shows the
    # call the job makes. Without it, the probe errors (tests/integration/test_probes_e2e.py).
    tool = tmp_path / "bin" / "grpc_health_probe"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\necho "$@" > grpc-args\nexit 0\n')
    tool.chmod(0o755)
    container = {"command": ["sh", "-c", "for i in $(seq 300); do grep -q true status/c.ready && exit 0; "
                                         "sleep 0.1; done; exit 1"],
                 "readinessProbe": {"grpc": {"port": 50051, "service": "my.Service"}, "periodSeconds": 1}}
    with job(pod(container), path=f"{tool.parent}:{os.environ['PATH']}") as (process, workdir):
        assert process.wait(60) == 0
        assert (workdir / "grpc-args").read_text() == "-addr=127.0.0.1:50051 -service=my.Service\n"
        assert record(workdir).notes == ()


HTTPS_SERVER = r"""
import http.server, os, ssl, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open("seen", "w").write(self.path + " " + self.headers.get("X-Probe", ""))
        self.send_response(200)
        self.end_headers()
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[2], sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
server.timeout = 0.2
for _ in range(300):
    server.handle_request()
    if open("status/c.ready").read().strip() == "true":
        sys.exit(0)
sys.exit(1)
"""


def test_https_probes_go_through_curl_without_verifying_the_certificate(tmp_path: Path) -> None:
    issued = CertificateAuthority().issue_server(["127.0.0.1"])  # signed by a CA the probe does not know
    (tmp_path / "cert.pem").write_bytes(issued.cert_pem)
    (tmp_path / "key.pem").write_bytes(issued.key_pem)
    port = free_port()
    probe = {"httpGet": {"scheme": "HTTPS", "port": port, "path": "/healthz",
                         "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}, "periodSeconds": 1}
    container = {"command": [sys.executable, "-c", HTTPS_SERVER, str(port), str(tmp_path / "cert.pem"),
                             str(tmp_path / "key.pem")], "readinessProbe": probe}
    with job(pod(container)) as (process, workdir):
        assert process.wait(60) == 0, (workdir / "logs" / "c.log").read_text()
        assert (workdir / "seen").read_text() == "/healthz yes"


def test_https_probes_error_without_curl(tmp_path: Path) -> None:
    # every tool of the machine but curl
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in ("/usr/local/bin", "/usr/bin", "/bin"):
        for name in os.listdir(directory):
            if name != "curl" and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(directory, name))
    probe = {"httpGet": {"scheme": "HTTPS", "port": free_port()}, "periodSeconds": 1}
    with job(pod({"command": ["sh", "-c", WAIT_FOR_A_NOTE], "readinessProbe": probe}), path=str(bin_dir)) \
            as (process, workdir):
        assert process.wait(60) == 0
        done = record(workdir)
    assert [(n.reason, n.message) for n in done.notes] == [
        ("Unhealthy", "Readiness probe errored: HTTPS probes need curl on the compute node")]
    assert done.ready is False  # an errored probe keeps its result: not ready


ANSWERS_500 = r"""
import http.server, signal, sys
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        open("paths", "a").write(self.path + "\n")
        self.send_response(500)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_an_http_answer_fails_a_probe_by_its_status_but_not_a_hook() -> None:
    port = free_port()
    container = {"command": [sys.executable, "-c", ANSWERS_500, str(port)],
                 "readinessProbe": {"httpGet": {"port": port, "path": "/ready"}, "periodSeconds": 1},
                 "lifecycle": {"preStop": {"httpGet": {"port": port, "path": "/bye"}}}}
    with job(pod(container, terminationGracePeriodSeconds=5)) as (process, workdir):
        wait_for(workdir / "status" / "c.events", containing="statuscode: 500")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
        notes = {(n.reason, n.message) for n in record(workdir).notes}
        paths = (workdir / "paths").read_text().split()
    assert ("Unhealthy", "Readiness probe failed: HTTP probe failed with statuscode: 500") in notes
    assert not [reason for reason, _ in notes if reason != "Unhealthy"]
    assert paths[-1] == "/bye"  # the preStop hook got its answer: a 500 is no hook failure for the kubelet
