# ruff: noqa: F811 - the `mode1` fixture is imported and then named as a parameter
"""The full chain in mode 1: kubectl → stand-in apiserver → slurmlink vk → slurmlink api (backend rest) →
slurmlink proxy → slurmrestd → the test SLURM. Pods name a Secret holding alice's Check-in token
(`slurmlink.io/token-secret`); the vk sends it with the pod, and the proxy runs the job as alice's account."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.waiting import wait_until
from tests.integration.mode1 import ALICE_SECRET, Mode1, alice_pod, secret
from tests.integration.vk_harness import Chain, ready_chain

pytestmark = pytest.mark.timeout(120)

EXPIRED_SECRET = "alice-expired"  # noqa: S105 - a Secret's name
LOG_ROUTE = "GET /slurmlink/v1/jobs/{id}/logs/{container}"


@pytest.fixture(scope="module")
def chain1(mode1: Mode1, slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """The vk chain of vk_harness, but in front of the mode-1 API, with alice's token Secrets applied by kubectl."""
    workdir = tmp_path_factory.mktemp("vk-mode1")
    with ready_chain(slurm_cluster, mode1.api, workdir) as chain:
        alice = mode1.subjects["alice"]
        chain.apply(secret(ALICE_SECRET, mode1.checkin.mint(alice)),
                    secret(EXPIRED_SECRET, mode1.checkin.mint(alice, lifetime=-600)))
        yield chain


def terminated(pod: dict[str, Any]) -> dict[str, Any]:
    [status] = pod["status"]["containerStatuses"]
    return status["state"].get("terminated") or {}


def proxy_log_reads(mode1: Mode1) -> float:
    total = 0.0
    for line in mode1.proxy.admin_get("/metrics").text.splitlines():
        if line.startswith("slurmlink_proxy_requests_total{") and f'route="{LOG_ROUTE}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_pods_succeed_and_fail_as_alices_account_with_logs_through_the_kubelet(chain1: Chain, mode1: Mode1) -> None:
    chain1.apply(alice_pod("m1-ok", "echo hello from slurm; id -un"),
                 alice_pod("m1-fails", "echo about to fail; exit 3"))
    ok = chain1.wait_phase("m1-ok", ("Succeeded", "Failed"))
    failed = chain1.wait_phase("m1-fails", ("Succeeded", "Failed"))
    assert ok["status"]["phase"] == "Succeeded", ok["status"]
    assert terminated(ok)["exitCode"] == 0
    assert failed["status"]["phase"] == "Failed", failed["status"]
    assert terminated(failed)["exitCode"] == 3

    account = mode1.accounts["alice"]
    for pod in (ok, failed):
        # One job per pod, named after its uid, owned by the account the proxy maps alice's token to.
        [[job_id, _state, user]] = chain1.jobs(pod["metadata"]["uid"])
        assert user == account
        conditions = {c["type"]: c for c in pod["status"]["conditions"]}
        assert conditions["slurmlink.io/SlurmJob"]["message"] == f"SLURM job {job_id}"

    # kubectl logs → stand-in pods/log → the vk's kubelet endpoint → /getLogs → the proxy's log extension.
    reads = proxy_log_reads(mode1)
    assert chain1.kubectl("logs", "m1-ok").stdout == f"hello from slurm\n{account}\n"
    assert chain1.kubectl("logs", "m1-fails").stdout == "about to fail\n"
    assert chain1.kubectl("logs", "m1-ok", "--tail=1").stdout == f"{account}\n"
    assert proxy_log_reads(mode1) > reads
    direct = chain1.vk.get("/containerLogs/default/m1-ok/main")
    assert direct.status_code == 200 and direct.text == f"hello from slurm\n{account}\n"


def test_kubectl_delete_cancels_alices_running_job(chain1: Chain, mode1: Mode1) -> None:
    chain1.apply(alice_pod("m1-delete", "echo started; sleep 300"))
    pod = chain1.wait_phase("m1-delete", ("Running",))
    uid = pod["metadata"]["uid"]
    [[_job_id, _state, user]] = wait_until(lambda: [j for j in chain1.jobs(uid) if j[1] == "RUNNING"], 20,
                                           "the job to run")
    assert user == mode1.accounts["alice"]
    chain1.kubectl("delete", "pod", "m1-delete", "--wait=true", timeout=40)
    assert chain1.pod("m1-delete") is None
    wait_until(lambda: all(state != "RUNNING" for _id, state, _user in chain1.jobs(uid)), 20,
               "the job to be cancelled")
    assert len(chain1.jobs(uid)) == 1


def test_an_expired_token_in_the_secret_fails_the_pod_with_a_token_reason(chain1: Chain) -> None:
    chain1.apply(alice_pod("m1-expired", "echo never runs", token_secret=EXPIRED_SECRET))
    pod = chain1.wait_phase("m1-expired", ("Succeeded", "Failed"), timeout=20)
    status = pod["status"]
    assert status["phase"] == "Failed", status
    # The API asks the proxy who the token is before submitting; the proxy's refusal becomes the pod's reason.
    assert status["reason"] == "TokenRefused", status
    assert re.search(r"\btoken\b.*\bexpired\b", status["message"], re.IGNORECASE), status["message"]
    assert terminated(pod)["reason"] == "TokenRefused"
    assert chain1.jobs(pod["metadata"]["uid"]) == []


def test_exec_is_refused_with_a_clear_message_and_an_event(chain1: Chain) -> None:
    # slurmrestd cannot start an interactive step; the proxy's interactive extension can, but is off by default
    # (test_vk_mode1_interactive.py has it on)
    chain1.apply(alice_pod("m1-exec", "sleep 300"))
    chain1.wait_phase("m1-exec", ("Running",))
    result = chain1.kubectl("exec", "m1-exec", "--", "echo", "hi", check=False)
    assert result.returncode != 0 and "exec is not enabled at this site" in result.stderr, result
    assert "interactive.enabled: false" in result.stderr, result
    # port-forward too, in its own words (kubectl fails at its first connection: it dials the pod then)
    forwarded = chain1.kubectl("port-forward", "m1-exec", ":8080", check=False)
    assert forwarded.returncode != 0 and "port-forward is not enabled at this site" in forwarded.stderr, \
        forwarded
    events = json.loads(chain1.kubectl("get", "events", "-o", "json", "--field-selector",
                                       "involvedObject.name=m1-exec").stdout)["items"]
    assert any(e["reason"] == "ExecNotSupported" and "exec is not enabled at this site" in e["message"]
               for e in events), events
    assert any(e["reason"] == "PortForwardNotSupported" for e in events), events
    chain1.kubectl("delete", "pod", "m1-exec", "--wait=false")
