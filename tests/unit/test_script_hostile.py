"""Property test: hostile pod fields reach the container exactly, and are never run by a shell.

The generated job script runs under a real bash (no SLURM needed: the script is plain bash), with the
host runtime; the container is a Python program that reports its argv, environment and mounted files.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurmlink.translate.env import expand
from slurmlink.translate.probes import PATH_SAFE
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from tests.harness.ports import free_port

REPORT = r"""
import json, os, sys
mounts = os.environ["SLURMLINK_MOUNTS"]
files = {}
for root, _, names in os.walk(os.path.join(mounts, "data"), followlinks=True):
    for name in names:
        path = os.path.join(root, name)
        files[os.path.relpath(path, os.path.join(mounts, "data"))] = open(path, "rb").read().hex()
json.dump({"argv": sys.argv[1:], "env": dict(os.environ), "files": files}, open("report.json", "w"))
"""

INJECTIONS = ["$(touch CANARY)", "`touch CANARY`", "; touch CANARY", "' ; touch CANARY ; '", '" ; touch CANARY"',
              "\n touch CANARY \n", "$((1+1))", "${PATH}", "$HOME", "\\", "'", '"', "-e", "--", "=", "a=b",
              "__SLURMLINK_EOF__", "\n__SLURMLINK_EOF__\ntouch CANARY\n", "%s%n", "✓ üñí 中文", "$$(x)", "\t"]

hostile = st.one_of(st.sampled_from(INJECTIONS),
                    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40))
env_names = st.text(st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="="), min_size=1,
                    max_size=12).map(lambda s: "X" + s)
segments = st.one_of(st.sampled_from(["a b", "$(x)", "`x`", ";", "'q'", "\"d\"", "new\nline", "ü"]),
                     st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00/"),
                             min_size=1, max_size=12)).filter(lambda s: s not in (".", ".."))
file_paths = st.lists(segments, min_size=1, max_size=3).map("/".join)


@settings(max_examples=int(os.environ.get("SLURMLINK_HOSTILE_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(hostile, max_size=5),
       env=st.lists(st.tuples(env_names, hostile), max_size=5, unique_by=lambda kv: kv[0]),
       files=st.dictionaries(file_paths, st.binary(max_size=200), max_size=3))
def test_hostile_fields_reach_the_container_exactly(args: list[str], env: list[tuple[str, str]],
                                                     files: dict[str, bytes]) -> None:
    # One key may not be both a file and a directory of another key.
    keys = sorted(files)
    if any(b.startswith(a + "/") for a in keys for b in keys):
        return
    items = [{"key": f"k{i}", "path": path} for i, path in enumerate(keys)]
    secret = {"metadata": {"name": "s"}, "data": {f"k{i}": base64.b64encode(files[p]).decode()
                                                  for i, p in enumerate(keys)}}
    pod = {
        "metadata": {"name": "hostile", "namespace": "default", "uid": "11111111-2222"},
        "spec": {
            "restartPolicy": "Never",
            "volumes": [{"name": "data", "secret": {"secretName": "s", "items": items}}],
            "containers": [{
                "name": "c", "image": "ignored", "command": [sys.executable, "-c", REPORT], "args": args,
                "env": [{"name": k, "value": v} for k, v in env],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "pod"
        workdir.mkdir()
        job = build_job(pod, workdir=str(workdir), site=SiteConfig(runtime="host"), secrets=[secret])
        done = subprocess.run(["bash", "-c", job.script], cwd=tmp, capture_output=True, timeout=60,
                              env={"PATH": os.environ["PATH"]})
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        report = json.loads((workdir / "report.json").read_text())
        canaries = [p for p in Path(tmp).rglob("CANARY")]
        assert not canaries, "injected text was executed"

    expected_env: dict[str, str] = {}
    for name, value in env:
        expected_env[name] = expand(value, expected_env)
    assert report["argv"] == [expand(a, expected_env) for a in args]
    for name, value in expected_env.items():
        assert report["env"][name] == value
    assert {k: bytes.fromhex(v) for k, v in report["files"].items()} == files


# --- probes and lifecycle hooks ------------------------------------------------------------------------------

# The container: a one-request HTTP server that keeps the raw request, then waits for the hook's and the
# exec probe's reports (written by ARGV_REPORT) before it exits.
SERVER = r"""
import os, socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
conn, _ = server.accept()
data = b""
while b"\r\n\r\n" not in data:
    chunk = conn.recv(65536)
    if not chunk:
        break
    data += chunk
open("request.bin", "wb").write(data)
conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
conn.close()
deadline = time.time() + 30
while not (os.path.exists("hook.json") and os.path.exists("probe.json")) and time.time() < deadline:
    time.sleep(0.05)
"""
ARGV_REPORT = "import json, sys; json.dump(sys.argv[2:], open(sys.argv[1], 'w'))"
header_values = hostile.map(lambda s: s.replace("\r", "").replace("\n", ""))


@settings(max_examples=int(os.environ.get("SLURMLINK_HOSTILE_PROBE_EXAMPLES", "25")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(probe_args=st.lists(hostile, max_size=4), hook_args=st.lists(hostile, max_size=4), path=hostile,
       header=header_values, env_value=hostile)
def test_hostile_probe_and_hook_fields_reach_their_programs_exactly(
        probe_args: list[str], hook_args: list[str], path: str, header: str, env_value: str) -> None:
    port = free_port()
    pod = {
        "metadata": {"name": "hostile", "namespace": "default", "uid": "11111111-2222"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "c", "image": "ignored", "command": [sys.executable, "-c", SERVER, str(port)],
            "env": [{"name": "HOSTILE", "value": env_value}],
            "readinessProbe": {"exec": {"command": [sys.executable, "-c", ARGV_REPORT, "probe.json", *probe_args,
                                                    "$(HOSTILE)"]}, "periodSeconds": 1, "timeoutSeconds": 10},
            "livenessProbe": {"httpGet": {"port": port, "path": path, "httpHeaders": [
                {"name": "X-Hostile", "value": header}]}, "periodSeconds": 1, "timeoutSeconds": 10,
                "failureThreshold": 1000},
            "lifecycle": {"postStart": {"exec": {"command": [sys.executable, "-c", ARGV_REPORT, "hook.json",
                                                             *hook_args]}}},
        }]},
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "pod"
        workdir.mkdir()
        job = build_job(pod, workdir=str(workdir), site=SiteConfig(runtime="host"))
        done = subprocess.run(["bash", "-c", job.script], cwd=tmp, capture_output=True, timeout=60,
                              env={"PATH": os.environ["PATH"]})
        assert done.returncode == 0, done.stderr.decode(errors="replace") + (workdir / "logs/c.log").read_text()
        assert not list(Path(tmp).rglob("CANARY")), "injected text was executed"
        probe_argv = json.loads((workdir / "probe.json").read_text())
        hook_argv = json.loads((workdir / "hook.json").read_text())
        request = (workdir / "request.bin").read_bytes()

    # the kubelet expands $(VAR) in probe commands, never in hook commands
    container_env = {"HOSTILE": expand(env_value, {})}  # the env value is expanded first, as the kubelet does
    assert probe_argv == [expand(a, container_env) for a in [*probe_args, "$(HOSTILE)"]]
    assert hook_argv == hook_args
    request_line, *headers = request.split(b"\r\n")
    target = quote(path if path.startswith("/") else "/" + path, safe=PATH_SAFE)
    assert request_line == f"GET {target} HTTP/1.1".encode()
    assert f"X-Hostile: {header}".encode() in headers
