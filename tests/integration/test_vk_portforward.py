# ruff: noqa: F811 - the `chain` fixture is named as a parameter
"""`kubectl port-forward` end to end (issue 15, item 2): kubectl → the apiserver stand-in (SPDY tunnelled in
WebSocket, unwrapped; or plain SPDY with KUBECTL_PORT_FORWARD_WEBSOCKETS=false) → the vk's kubelet endpoint
(authorised on nodes/proxy) → the API (mode 2) → a step of the running job on the test SLURM, as the pod's
account, connecting to the server inside the job."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator

import pytest

from slurmlink.streams.remotecommand import PROTOCOL_HEADER
from slurmlink.streams.upgrade import SPDY, dial
from tests.harness.pods import pod_manifest
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import KUBECTL, Chain

pytestmark = pytest.mark.timeout(180)
POD = "pf-target"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


SERVER_PORT = free_port()  # the pod's server, on the job's node (this host)
CLOSED_PORT = free_port()  # nothing listens there


@pytest.fixture(scope="module")
def running(chain: Chain) -> Iterator[Chain]:
    script = (f"cd \"$(mktemp -d)\" && echo hello-from-the-job > hello.txt && "
              f"exec python3 -m http.server {SERVER_PORT} --bind 127.0.0.1")
    chain.apply(pod_manifest(POD, script))
    chain.wait_phase(POD, ("Running",), timeout=90)
    yield chain
    chain.kubectl("delete", "pod", POD, "--wait=false")


class Forward:
    """A `kubectl port-forward` running in the background, on a local port of its own."""

    def __init__(self, chain: Chain, remote: int, *, websockets: bool = True, pod: str = POD) -> None:
        self.local = free_port()
        env = {**os.environ, "KUBECONFIG": str(chain.standin.kubeconfig),
               "KUBECACHEDIR": str(chain.workdir / "kubecache")}
        if not websockets:
            env["KUBECTL_PORT_FORWARD_WEBSOCKETS"] = "false"
        self.process = subprocess.Popen(
            [str(KUBECTL), "port-forward", pod, f"{self.local}:{remote}", "--address=127.0.0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def wait_listening(self) -> None:
        """Until kubectl says it forwards (its session is open then). Not by connecting: a connection to a
        port nothing listens on in the pod would end the forward."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.communicate()
            ready = select.select([self.process.stdout], [], [], 0.5)[0]
            if ready and "Forwarding from" in self.process.stdout.readline():
                return
        raise AssertionError("kubectl port-forward did not start forwarding")

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.local}{path}", timeout=60) as answer:
            return str(answer.read().decode())

    def stop(self) -> tuple[str, str]:
        self.process.terminate()
        out, err = self.process.communicate(timeout=30)
        return out, err


def _wait_listening_in_job(port: int) -> None:
    def answering() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0
    wait_until(answering, 60, "the job's HTTP server to listen")


def _wait_server(running: Chain) -> None:
    _wait_listening_in_job(SERVER_PORT)


@pytest.mark.parametrize("websockets", [True, False], ids=["websocket-tunnel", "spdy"])
def test_an_http_request_reaches_the_server_in_the_job(running: Chain, websockets: bool) -> None:
    _wait_server(running)
    forward = Forward(running, SERVER_PORT, websockets=websockets)
    try:
        forward.wait_listening()
        assert forward.get("/hello.txt") == "hello-from-the-job\n"
        # a second connection through the same forward
        assert forward.get("/hello.txt") == "hello-from-the-job\n"
    finally:
        out, err = forward.stop()
    assert "Handling connection" in out, (out, err)


def test_a_port_nothing_listens_on_gives_kubectl_an_error(running: Chain) -> None:
    forward = Forward(running, CLOSED_PORT)
    try:
        forward.wait_listening()
        with socket.create_connection(("127.0.0.1", forward.local), timeout=60) as conn:
            conn.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert conn.recv(100) == b""  # closed without an answer
    finally:
        _out, err = forward.stop()
    # kubectl prints the error stream's text; this kubectl then gives up the whole forward, as with a kubelet
    assert "An error occurred forwarding" in err, err
    assert f"error forwarding port {CLOSED_PORT}: failed to connect to localhost:{CLOSED_PORT}" in err, err
    assert "srun:" not in err, err


def _portforward_directly(running: Chain, token: str) -> tuple[int, str]:
    async def go() -> tuple[int, str]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        port = int(running.vk.url.rsplit(":", 1)[1])
        answer = await dial("127.0.0.1", port, f"/portForward/default/{POD}?port={SERVER_PORT}",
                            [("Upgrade", SPDY), (PROTOCOL_HEADER, "portforward.k8s.io"),
                             ("Authorization", f"Bearer {token}")], ssl_context=context)
        if answer.streams is not None:
            answer.streams[1].close()
        return answer.status, answer.body.decode()
    return asyncio.run(go())


def test_a_user_without_nodes_proxy_is_refused(running: Chain) -> None:
    running.standin.add_user_token("tok-pf-dora", "pf-dora")
    running.standin.grant("user:pf-dora", ("get", "create"), ("pods", "pods/portforward"))  # not nodes/proxy
    assert _portforward_directly(running, "tok-pf-dora") == (
        403, "Forbidden (user=pf-dora, verb=create, resource=nodes, subresource=proxy)")
    running.standin.add_user_token("tok-pf-erin", "pf-erin")
    running.standin.grant("user:pf-erin", ("create",), ("nodes/proxy",))
    assert _portforward_directly(running, "tok-pf-erin")[0] == 101


def test_a_pod_that_is_not_running_is_refused(chain: Chain) -> None:
    chain.apply(pod_manifest("pf-finished", "true"))
    chain.wait_phase("pf-finished", ("Succeeded",), timeout=90)
    result = chain.kubectl("port-forward", "pf-finished", f"{free_port()}:80", check=False)
    assert result.returncode != 0
    assert "unable to forward port because pod is not running. Current status=Succeeded" in result.stderr

    async def straight_to_the_standin() -> int:  # what kubectl checks itself, the apiserver checks too
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        host, port = chain.standin.url.removeprefix("https://").rsplit(":", 1)
        answer = await dial(host, int(port), "/api/v1/namespaces/default/pods/pf-finished/portforward?ports=80",
                            [("Upgrade", SPDY), (PROTOCOL_HEADER, "portforward.k8s.io"),
                             ("Authorization", f"Bearer {chain.standin.admin_token}")], ssl_context=context)
        return answer.status
    assert asyncio.run(straight_to_the_standin()) == 400
    chain.kubectl("delete", "pod", "pf-finished", "--wait=false")


def test_deleting_the_pod_closes_its_forwards(chain: Chain) -> None:
    port = free_port()
    chain.apply(pod_manifest("pf-deleted", f"exec python3 -m http.server {port} --bind 127.0.0.1"))
    chain.wait_phase("pf-deleted", ("Running",), timeout=90)

    _wait_listening_in_job(port)
    forward = Forward(chain, port, pod="pf-deleted")
    try:
        forward.wait_listening()
        with socket.create_connection(("127.0.0.1", forward.local), timeout=90) as held:
            held.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive: the server keeps it open
            assert held.recv(12).startswith(b"HTTP/1.")
            chain.kubectl("delete", "pod", "pf-deleted", "--wait=false")
            while held.recv(65536):  # the rest of the answer, then the end
                pass
        assert forward.process.wait(timeout=90) != 0  # kubectl lost its connection to the pod
    finally:
        forward.process.kill()
        forward.process.wait()


def test_forwards_count_against_the_pods_session_limit(chain: Chain) -> None:
    # a server to forward to: wait_listening's probe is a connection, and an error on one ends a kubectl forward
    port = free_port()
    chain.apply(pod_manifest("pf-limits", f"exec python3 -m http.server {port} --bind 127.0.0.1"))
    chain.wait_phase("pf-limits", ("Running",), timeout=90)
    _wait_listening_in_job(port)
    forwards = [Forward(chain, port, pod="pf-limits") for _ in range(4)]  # the API's default limit
    try:
        for forward in forwards:
            forward.wait_listening()  # kubectl listens once its session is open
        assert [forward.process.poll() for forward in forwards] == [None] * 4
        refused = chain.kubectl("port-forward", "pf-limits", f"{free_port()}:{port}", check=False)
        assert refused.returncode != 0 and "too many exec sessions" in refused.stderr, \
            (refused, [forward.process.poll() for forward in forwards])
    finally:
        for forward in forwards:
            forward.process.kill()
            forward.process.wait()
        chain.kubectl("delete", "pod", "pf-limits", "--wait=false")


def test_an_api_restart_ends_open_forwards(running: Chain) -> None:
    # last in the module: the API restarts under the module's pod
    _wait_server(running)
    forward = Forward(running, SERVER_PORT)
    process = running.api.process
    assert process is not None
    try:
        forward.wait_listening()
        assert forward.get("/hello.txt") == "hello-from-the-job\n"
        process.terminate()
        assert process.wait(30) == 0  # the open forward did not hold the API's shutdown
        assert forward.process.wait(timeout=60) != 0  # kubectl lost its connection to the pod
    finally:
        forward.process.kill()
        forward.process.wait()
        running.api.start()
    wait_until(lambda: _one_forward_answers(running), 60, "port-forward to work again after the restart")


def _one_forward_answers(running: Chain) -> bool:
    """A new kubectl port-forward and one request; False if kubectl gave up (the API may still recover)."""
    forward = Forward(running, SERVER_PORT)
    try:
        def listening_or_gone() -> bool:
            with socket.socket() as probe:
                return forward.process.poll() is not None or probe.connect_ex(("127.0.0.1", forward.local)) == 0
        wait_until(listening_or_gone, 30, "kubectl port-forward to listen or give up")
        return forward.process.poll() is None and forward.get("/hello.txt") == "hello-from-the-job\n"
    finally:
        forward.stop()
