# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""`kubectl exec` end to end (issue 15, item 1): kubectl → the apiserver stand-in (WebSocket, translated to
SPDY/3.1) → the vk's kubelet endpoint (authorised on nodes/proxy) → the API (mode 2) → `srun --overlap` into
the running job on the test SLURM, as the pod's account."""

from __future__ import annotations

import asyncio
import ssl

import pytest

from slurmlink.streams import remotecommand as rc
from slurmlink.streams.upgrade import SPDY, dial
from tests.harness.pods import pod_manifest
from tests.integration.vk_harness import Chain

pytestmark = pytest.mark.timeout(180)
POD = "exec-target"


@pytest.fixture(scope="module")
def running(chain: Chain) -> Chain:
    """A pod that keeps running, with a file of its own to look at."""
    chain.apply(pod_manifest(POD, "echo ready > /tmp/mark; sleep 600"))
    chain.wait_phase(POD, ("Running",), timeout=90)
    return chain


def test_exec_prints_the_commands_output(running: Chain) -> None:
    result = running.kubectl("exec", POD, "--", "echo", "hi")
    assert (result.returncode, result.stdout) == (0, "hi\n")


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
