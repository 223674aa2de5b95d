# ruff: noqa: F811 - fixtures are named as parameters
"""`kubectl exec` and `port-forward` in mode 1 (issue 15, item 1): kubectl → the apiserver stand-in → the vk →
the mode-1 API (`backend: rest`), which relays the SPDY/3.1 connection to the proxy's interactive extension
with the pod's own Check-in token → `setpriv` to the token's account and `srun --overlap` into the running job
on the test SLURM. Every part is a real process on loopback but Check-in (its stand-in). The extension off is
test_vk_mode1.py's (the default)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator

import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.streams import remotecommand as rc
from slurmlink.streams.upgrade import SPDY, dial
from tests.harness.waiting import wait_until
from tests.integration.kubectl_sessions import (
    background_exec,
    exec_on_a_terminal,
    kubectl_env,
    running_steps,
    session_limit_holds,
)
from tests.integration.mode1 import ALICE_SECRET, Mode1, alice_pod, secret, start_mode1
from tests.integration.vk_harness import KUBECTL, Chain, ready_chain

pytestmark = pytest.mark.timeout(180)
POD = "m1i-target"
PROXY_SESSIONS = 2  # the proxy's limit per account, below the API's per pod (4): the proxy's is met first
SERVER_PORT = 18000 + os.getpid() % 1000  # the job's HTTP server, on the test SLURM's (shared) host


@pytest.fixture(scope="module")
def stack(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Chain, Mode1]]:
    """The mode-1 stack with the proxy's interactive extension on, a vk chain in front, and a running pod of
    alice's that serves HTTP on SERVER_PORT inside its job."""
    work = tmp_path_factory.mktemp("mode1-interactive")
    srun = str(slurm_cluster.bin_dir / "srun") if slurm_cluster.bin_dir else shutil.which("srun") or "/usr/bin/srun"
    mode1 = start_mode1(slurm_cluster, work, proxy_keys={"interactive": {
        "enabled": True, "srun": srun, "slurm_conf": str(slurm_cluster.conf_path),
        "max_sessions_per_user": PROXY_SESSIONS}})
    try:
        with ready_chain(slurm_cluster, mode1.api, work) as chain:
            chain.apply(secret(ALICE_SECRET, mode1.checkin.mint(mode1.subjects["alice"])))
            chain.apply(alice_pod(POD, f"cd \"$(mktemp -d)\" && echo hello-from-the-job > hello.txt && "
                                       f"exec python3 -m http.server {SERVER_PORT} --bind 127.0.0.1"))
            chain.wait_phase(POD, ("Running",), timeout=90)
            yield chain, mode1
            chain.kubectl("delete", "pod", POD, "--wait=false")
    finally:
        mode1.stop()


def _job_id(chain: Chain) -> str:
    uid = chain.pod(POD)["metadata"]["uid"]  # type: ignore[index]
    [[job_id, _state, _user]] = wait_until(lambda: [j for j in chain.jobs(uid) if j[1] == "RUNNING"], 30,
                                           "the pod's job to run")
    return str(job_id)


def test_exec_runs_as_alices_account_in_her_job(stack: tuple[Chain, Mode1]) -> None:
    chain, mode1 = stack
    result = chain.kubectl("exec", POD, "--", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n"), result
    who = chain.kubectl("exec", POD, "--", "sh", "-c", 'id -un; echo "$SLURM_JOB_ID"')
    assert who.stdout.split() == [mode1.accounts["alice"], _job_id(chain)]
    assert _proxy_count(mode1, "POST /slurmlink/v1/jobs/{id}/exec", "101") >= 2  # served there, not by the API


def _proxy_count(mode1: Mode1, route: str, status: str) -> float:
    pattern = re.compile(r'^slurmlink_proxy_requests_total\{(.*)\} (\S+)$')
    total = 0.0
    for line in mode1.proxy.admin_get("/metrics").text.splitlines():
        match = pattern.match(line)
        if match and f'route="{route}"' in match.group(1) and f'status="{status}"' in match.group(1):
            total += float(match.group(2))
    return total


def test_arguments_and_stdin_reach_the_command_uninterpreted(stack: tuple[Chain, Mode1]) -> None:
    chain, _ = stack
    hostile = "$(touch /tmp/pwned-m1); `id`; 'quoted' \"double\" * ~ %00 &x=1"
    assert chain.kubectl("exec", POD, "--", "printf", "%s|", hostile, "two words").stdout == f"{hostile}|two words|"
    piped = chain.kubectl("exec", "-i", POD, "--", "tr", "a-z", "A-Z", input="hello\n")
    assert piped.stdout == "HELLO\n"


def test_the_exit_code_reaches_kubectl(stack: tuple[Chain, Mode1]) -> None:
    chain, _ = stack
    result = chain.kubectl("exec", POD, "--", "sh", "-c", "echo out; exit 7", check=False)
    assert result.returncode == 7, result
    assert result.stdout == "out\n"
    assert "command terminated with exit code 7" in result.stderr


def test_a_tty_gets_the_terminals_size(stack: tuple[Chain, Mode1]) -> None:
    chain, _ = stack
    code, seen = exec_on_a_terminal(chain, POD, 29, 97, "stty size; [ -t 0 ] && echo on-a-terminal; exit 4")
    assert code == 4, seen
    assert "29 97" in seen and "on-a-terminal" in seen, seen


def test_attach_follows_the_output_through_the_log_extension(stack: tuple[Chain, Mode1]) -> None:
    chain, _ = stack
    chain.apply(alice_pod("m1i-attach", "i=0; while [ $i -lt 30 ]; do echo line$i; i=$((i+1)); sleep 0.5; done"))
    chain.wait_phase("m1i-attach", ("Running",), timeout=90)
    result = chain.kubectl("attach", "m1i-attach", timeout=60)
    chain.kubectl("delete", "pod", "m1i-attach", "--wait=false")
    lines = result.stdout.split()
    assert lines and lines[-1] == "line29", result
    first = int(lines[0].removeprefix("line"))
    assert lines == [f"line{i}" for i in range(first, 30)], result  # from attaching on, no gaps


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_port_forward_carries_an_http_request_to_the_server_in_the_job(stack: tuple[Chain, Mode1]) -> None:
    chain, _ = stack

    def answering() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", SERVER_PORT)) == 0
    wait_until(answering, 60, "the job's HTTP server to listen")
    local = _free_port()
    process = subprocess.Popen([str(KUBECTL), "port-forward", POD, f"{local}:{SERVER_PORT}", "--address=127.0.0.1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=kubectl_env(chain))
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while "Forwarding from" not in (process.stdout.readline() if select.select(
                [process.stdout], [], [], 0.5)[0] else ""):
            assert process.poll() is None and time.monotonic() < deadline, "kubectl port-forward did not start"
        for _ in range(2):  # two connections, each a step of the job
            with urllib.request.urlopen(f"http://127.0.0.1:{local}/hello.txt", timeout=60) as answer:
                assert answer.read() == b"hello-from-the-job\n"
    finally:
        process.terminate()
        out, err = process.communicate(timeout=30)
    assert "Handling connection" in out, (out, err)


def _exec_at_the_proxy(mode1: Mode1, job_id: str, token: str) -> tuple[int, str]:
    """An exec upgrade straight to the proxy, as the mode-1 API sends it."""
    proxy = urllib.parse.urlsplit(mode1.proxy.url)
    query = urllib.parse.urlencode(rc.ExecOptions((), False, True, True, False).kubelet_query())

    async def go() -> tuple[int, str]:
        answer = await dial(proxy.hostname or "", proxy.port or 0, f"/slurmlink/v1/jobs/{job_id}/exec?{query}",
                            [("Authorization", f"Bearer {token}"), ("Upgrade", SPDY), (rc.PROTOCOL_HEADER, rc.V4)],
                            body=json.dumps({"command": ["id"]}).encode())
        if answer.streams is not None:
            answer.streams[1].close()
        return answer.status, answer.body.decode()
    return asyncio.run(go())


def test_a_token_of_another_user_is_refused(stack: tuple[Chain, Mode1]) -> None:
    chain, mode1 = stack
    job_id = _job_id(chain)
    status, body = _exec_at_the_proxy(mode1, job_id, mode1.checkin.mint(mode1.subjects["bob"]))
    assert status == 403 and "belongs to another user" in json.loads(body)["reason"], body
    # the API's own service identity reads status and logs, and runs nothing
    status, body = _exec_at_the_proxy(mode1, job_id, mode1.checkin.mint(mode1.subjects["service"]))
    assert status == 403 and json.loads(body)["rule"] == "service-scope", body
    # alice's own token is let through (and switches protocols)
    assert _exec_at_the_proxy(mode1, job_id, mode1.checkin.mint(mode1.subjects["alice"]))[0] == 101


def test_the_proxy_limits_sessions_per_account_and_ends_steps_whose_client_left(stack: tuple[Chain, Mode1]) -> None:
    # once the kubectls are gone, the vk, the API and the proxy close the sessions, and the proxy kills the steps
    chain, _ = stack
    session_limit_holds(chain, POD, PROXY_SESSIONS, "TooManySessions", lambda: running_steps(chain, _job_id(chain)))


def test_a_proxy_restart_ends_open_sessions_and_says_why(stack: tuple[Chain, Mode1]) -> None:
    chain, mode1 = stack
    def steps() -> int:
        return running_steps(chain, _job_id(chain))
    before = steps()
    session = background_exec(chain, POD, "sleep", "300")
    try:
        wait_until(lambda: steps() == before + 1, 60, "the session's step to run")
        process = mode1.proxy.process
        assert process is not None
        process.terminate()
        assert process.wait(30) == 0  # it stopped by itself: the open session did not hold its shutdown
        assert session.wait(timeout=30) != 0
        assert session.stderr is not None and "the site's slurmlink proxy is shutting down" in session.stderr.read()
    finally:
        session.kill()
        mode1.proxy.start()
    wait_until(lambda: steps() == before, 60, "the step to be killed")
    wait_until(lambda: chain.kubectl("exec", POD, "--", "echo", "again", check=False).stdout == "again\n", 60,
               "exec to work again after the restart")
