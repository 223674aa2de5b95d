# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""`kubectl exec` end to end (issue 15, item 1): kubectl → the apiserver stand-in (WebSocket, translated to
SPDY/3.1) → the vk's kubelet endpoint (authorised on nodes/proxy) → the API (mode 2) → `srun --overlap` into
the running job on the test SLURM, as the pod's account."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator

import pytest

from slurmlink.streams import remotecommand as rc
from slurmlink.streams.upgrade import SPDY, dial
from slurmlink.wire import names
from tests.harness.pods import pod_manifest
from tests.harness.waiting import wait_until
from tests.integration.kubectl_sessions import (
    background_exec,
    exec_on_a_terminal,
    kubectl_env,
    running_steps,
    session_limit_holds,
)
from tests.integration.vk_harness import KUBECTL, Chain

pytestmark = pytest.mark.timeout(180)
POD = "exec-target"


@pytest.fixture(scope="module")
def running(chain: Chain) -> Iterator[Chain]:
    """A pod that keeps running; deleted (its job cancelled) after the module."""
    chain.apply(pod_manifest(POD, "sleep 600"))
    chain.wait_phase(POD, ("Running",), timeout=90)
    yield chain
    chain.kubectl("delete", "pod", POD, "--wait=false")


def test_exec_prints_the_commands_output(running: Chain) -> None:
    result = running.kubectl("exec", POD, "--", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n")


def test_an_exec_right_after_a_log_read_switches_on_the_vks_pooled_connection(running: Chain) -> None:
    # The vk's client reuses the connection the log read left idle (the API keeps it 5 s): the upgrade is a
    # later request on it, which the edge must switch as it does a connection's first (edge.py).
    for _ in range(2):
        assert running.kubectl("logs", POD).returncode == 0
        result = running.kubectl("exec", POD, "--", "echo", "after logs")
        assert (result.returncode, result.stdout) == (0, "after logs\n"), result.stderr


def test_an_exec_without_connection_upgrade_is_refused_at_the_api_before_anything_starts(running: Chain) -> None:
    # llhttp reads a request that names an upgrade without `Connection: Upgrade` as plain HTTP: nothing can
    # switch it, so the API answers 400 instead of failing the switch (a 500 and a traceback).
    pod = running.pod(POD)
    assert pod is not None
    body = json.dumps(pod).encode()
    target = (f"{names.EXEC_ROUTE}?namespace=default&pod={POD}&uid={pod['metadata']['uid']}&container=main"
              "&command=id&output=1")
    before = _steps(running)
    with socket.create_connection(("127.0.0.1", running.api.port), timeout=30) as sock:
        sock.sendall(f"POST {target} HTTP/1.1\r\nHost: api\r\nUpgrade: {SPDY}\r\n"
                     f"{rc.PROTOCOL_HEADER}: {rc.V4}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 400 ") and b"Upgrade request required" in answer, answer[:300]
    assert _steps(running) == before


def test_arguments_reach_the_command_uninterpreted(running: Chain) -> None:
    hostile = "$(touch /tmp/pwned); `id`; 'quoted' \"double\" * ~"
    result = running.kubectl("exec", POD, "--", "printf", "%s|", hostile, "two words")
    assert result.stdout == f"{hostile}|two words|"


def test_stdin_is_piped_in(running: Chain) -> None:
    result = running.kubectl("exec", "-i", POD, "--", "sh", "-c", "tr a-z A-Z; echo done >&2",
                             input="hello\nworld\n")
    assert result.stdout == "HELLO\nWORLD\n"
    assert "done" in result.stderr


def test_the_exit_code_reaches_kubectl(running: Chain) -> None:
    result = running.kubectl("exec", POD, "--", "sh", "-c", "echo out; exit 3", check=False)
    assert result.returncode == 3
    assert result.stdout == "out\n"


def test_a_missing_command_is_127(running: Chain) -> None:
    result = running.kubectl("exec", POD, "--", "no-such-command", check=False)
    assert result.returncode == 127


def _exec_directly(running: Chain, token: str) -> tuple[int, str]:
    """An SPDY upgrade straight to the vk's kubelet endpoint with a bearer token, as a user could try."""
    async def go() -> tuple[int, str]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        port = int(running.vk.url.rsplit(":", 1)[1])
        answer = await dial("127.0.0.1", port, f"/exec/default/{POD}/main?command=id&output=1&error=1",
                            [("Upgrade", SPDY), (rc.PROTOCOL_HEADER, rc.V4), ("Authorization", f"Bearer {token}")],
                            ssl_context=context)
        if answer.streams is not None:
            answer.streams[1].close()
        return answer.status, answer.body.decode()
    return asyncio.run(go())


def test_a_user_without_nodes_proxy_is_refused(running: Chain) -> None:
    running.standin.add_user_token("tok-exec-dora", "exec-dora")
    running.standin.grant("user:exec-dora", ("get", "create"), ("pods", "pods/exec"))  # not nodes/proxy
    assert _exec_directly(running, "tok-exec-dora") == (
        403, "Forbidden (user=exec-dora, verb=create, resource=nodes, subresource=proxy)")
    running.standin.add_user_token("tok-exec-erin", "exec-erin")
    running.standin.grant("user:exec-erin", ("create",), ("nodes/proxy",))
    status, _ = _exec_directly(running, "tok-exec-erin")
    assert status == 101


def test_kubectls_own_spdy_reaches_the_job(running: Chain) -> None:
    # kubectl's SPDY executor (Go's spdystream), relayed untouched by the stand-in: our SPDY server and its
    # header compression interoperate with Go's.
    env = kubectl_env(running, KUBECTL_REMOTE_COMMAND_WEBSOCKETS="false")
    result = subprocess.run([str(KUBECTL), "exec", "-i", POD, "--", "sh", "-c", "cat; exit 5"], input="via spdy\n",
                            capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stdout) == (5, "via spdy\n"), result.stderr


def test_a_tty_gets_the_terminals_size(running: Chain) -> None:
    code, seen = exec_on_a_terminal(running, POD, 33, 101, "stty size; [ -t 0 ] && echo on-a-terminal; exit 4")
    assert code == 4, seen
    assert "33 101" in seen and "on-a-terminal" in seen, seen


def test_attach_follows_the_containers_output(chain: Chain) -> None:
    chain.apply(pod_manifest("attach-target", "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); sleep 0.5; done"))
    chain.wait_phase("attach-target", ("Running",), timeout=90)
    result = chain.kubectl("attach", "attach-target", timeout=60)
    chain.kubectl("delete", "pod", "attach-target", "--wait=false")
    # what it writes from the moment of attaching on, until it ends: a run of lines without gaps
    lines = result.stdout.splitlines()
    first = int(lines[0].removeprefix("line"))
    assert lines == [f"line{n}" for n in range(first, 40)], result


def _steps(running: Chain, pod: str = POD) -> int:
    uid = running.pod(pod)["metadata"]["uid"]  # type: ignore[index]
    [[job_id, _state, _user]] = running.jobs(uid)
    return running_steps(running, job_id)


def test_sessions_per_pod_are_limited(running: Chain) -> None:
    # the API's default limit is 4; once the kubectls are gone their sessions end and the steps are killed
    session_limit_holds(running, POD, 4, "too many exec sessions", lambda: _steps(running))


def test_deleting_the_pod_ends_its_sessions(chain: Chain) -> None:
    chain.apply(pod_manifest("exec-deleted", "sleep 600"))
    chain.wait_phase("exec-deleted", ("Running",), timeout=90)
    session = subprocess.Popen([str(KUBECTL), "exec", "exec-deleted", "--", "sleep", "300"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=kubectl_env(chain))
    try:
        wait_until(lambda: _steps(chain, "exec-deleted") == 1, 60, "the session's step to run")
        chain.kubectl("delete", "pod", "exec-deleted", "--wait=false")
        assert session.wait(timeout=60) != 0
    finally:
        session.kill()


def test_an_api_restart_ends_open_sessions(running: Chain) -> None:
    before = _steps(running)
    session = background_exec(running, POD, "sleep", "300")
    process = running.api.process
    assert process is not None
    try:
        wait_until(lambda: _steps(running) == before + 1, 60, "the session's step to run")
        process.terminate()
        assert process.wait(30) == 0  # it stopped by itself: the open session did not hold its shutdown
        assert session.wait(timeout=30) != 0  # kubectl was told why
        assert session.stderr is not None and "the slurmlink API is shutting down" in session.stderr.read()
        wait_until(lambda: _steps(running) == before, 60, "the session's step to end")
    finally:
        session.kill()
        session.wait()
        running.api.start()
    # the API knows the pod again once it recovered from SLURM and the vk told it the pod's object
    wait_until(lambda: running.kubectl("exec", POD, "--", "echo", "back", check=False).stdout == "back\n", 60,
               "exec to work again after the restart")
