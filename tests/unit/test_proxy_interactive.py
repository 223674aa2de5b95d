"""The proxy's interactive extension without SLURM: its routes in the allow-list, the exec body it accepts, the
step argv it builds (steps/srun.py), and the HTTP edge handing an upgraded connection over (a real uvicorn on
loopback) while still counting it against `clients.max_connections`. The whole chain on the real SLURM is
tests/integration/test_vk_mode1_interactive.py."""

from __future__ import annotations

import asyncio
import json
import pwd
from typing import Any

import pytest
import uvicorn

from slurmlink.edge import EdgeLimits, edge_protocol
from slurmlink.proxy import policy
from slurmlink.proxy.config import InteractiveSection
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.interactive import command_of
from slurmlink.proxy.policy import ServiceAccess, decide
from slurmlink.steps.srun import StepRefused, account_env, as_account, step_argv
from slurmlink.streams.upgrade import SPDY, dial, switch_protocols
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until_async

NOBODY = "nobody"  # a local account that is not root, on every test machine


@pytest.mark.parametrize("verb, rule", [("exec", policy.EXEC), ("portforward", policy.PORTFORWARD)])
def test_the_upgrade_routes_are_users_only_and_answered_by_the_proxy(verb: str, rule: str) -> None:
    verdict = decide("POST", f"/slurmlink/v1/jobs/42/{verb}", "input=1&output=1")
    assert (verdict.allowed, verdict.rule, verdict.upgrade, verdict.extension) == (True, rule, True, False)
    assert policy.BY_NAME[rule].service_access("POST") is ServiceAccess.REFUSED
    assert not decide("GET", f"/slurmlink/v1/jobs/42/{verb}").allowed
    assert decide("POST", f"/slurmlink/v1/jobs/042/{verb}").status == 404
    assert not decide("POST", f"/slurmlink/v1/jobs/42/{verb}/x").allowed


def test_the_exec_body_is_a_non_empty_list_of_strings() -> None:
    assert command_of(json.dumps({"command": ["sh", "-c", "echo $x; `id`"]}).encode()) == ("sh", "-c", "echo $x; `id`")
    for body in (b"", b"{", b"[]", b'"x"', b'{"command": []}', b'{"command": "id"}', b'{"command": ["id", 1]}',
                 b'{"command": ["a\\u0000b"]}', b'{"cmd": ["id"]}', b"\xff"):
        with pytest.raises(Refusal) as refused:
            command_of(body)
        assert (refused.value.status, refused.value.error) == (400, "BadRequest"), body


def test_the_step_argv_ends_with_the_command_word_for_word() -> None:
    command = ["--", "-c", "$(id)", "a b", ""]
    step = step_argv("/usr/bin/srun", "17", "/jobs/p", command, pty=True, unbuffered=True)
    assert step[:step.index("--")] == ["/usr/bin/srun", "--overlap", "--jobid=17", "--nodes=1", "--ntasks=1",
                                       "--mem=0", "--quiet", "--chdir=/jobs/p", "--pty", "--unbuffered"]
    assert step[step.index("--") + 1:] == command
    with pytest.raises(StepRefused, match="not a job id"):
        step_argv("srun", "17 --uid=0", "/w", ["id"], pty=False)


def test_the_account_switch_drops_every_capability_and_never_becomes_root() -> None:
    account = pwd.getpwnam(NOBODY)
    switched = as_account(["srun", "--", "id"], NOBODY, setpriv="/usr/bin/setpriv")
    assert switched == ["/usr/bin/setpriv", f"--reuid={account.pw_uid}", f"--regid={account.pw_gid}",
                        "--init-groups", "--inh-caps=-all", "--ambient-caps=-all", "--", "srun", "--", "id"]
    with pytest.raises(StepRefused, match="never runs steps as root"):
        as_account(["id"], "root")
    with pytest.raises(StepRefused, match="no local user"):
        as_account(["id"], "no-such-user-here")
    env = account_env(NOBODY, {"PATH": "/usr/bin"})
    assert env == {"PATH": "/usr/bin", "HOME": account.pw_dir, "USER": NOBODY, "LOGNAME": NOBODY,
                   "SHELL": account.pw_shell}


async def _echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An app that switches every request to an echo of its bytes (as interactive.py switches to SPDY)."""
    if scope["type"] != "http":
        return
    reader, writer = switch_protocols(scope, [("Upgrade", SPDY)])
    while data := await reader.read(1024):
        writer.write(data)
        await writer.drain()
    writer.close()


async def _upgraded_connections_leave_the_client_caps() -> None:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(_echo, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           http=edge_protocol(EdgeLimits(max_connections=1))))
    serving = asyncio.create_task(server.serve())
    opened = []
    try:
        async def started() -> bool:
            return bool(server.started)
        await wait_until_async(started, 10, "uvicorn to start")
        for _ in range(3):  # one connection allowed, and yet three sessions: they are interactive.py's to cap
            answer = await dial("127.0.0.1", port, "/up", [("Upgrade", SPDY)])
            assert answer.status == 101 and answer.streams is not None
            opened.append(answer.streams)
            reader, writer = answer.streams
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
    finally:
        for _, writer in opened:
            writer.close()
        server.should_exit = True
        await asyncio.wait_for(serving, 10)


def test_an_upgraded_connection_leaves_the_client_caps() -> None:
    """In mode 1 every session comes from the API's host: sessions count against interactive.max_sessions, not
    against the caps that keep its REST calls flowing (clients.max_connections*)."""
    asyncio.run(_upgraded_connections_leave_the_client_caps())


@pytest.mark.parametrize("key", ["srun", "setpriv"])
def test_the_commands_started_with_cap_setuid_are_full_paths(key: str) -> None:
    with pytest.raises(ValueError, match=f"interactive.{key} must be a full path"):
        InteractiveSection.model_validate({"enabled": True, key: key})
    assert InteractiveSection().setpriv == "/usr/bin/setpriv"
