"""Per-VO site policy with accounting (slurmdbd, AccountingStorageEnforce=associations), mode 2 and mode 1 (the
proxy in front of the same cluster's slurmrestd) — must show:
the dev cluster's VO accounts have associations for the test users (alpha: sltest1, sltest2; beta: sltest1),
each VO's jobs run charged to its account with its QoS (sacct says so), `check-config --online` finds the
accounts and QoS the policy names, and SLURM itself refuses an account the mapped user has no association
with."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slurmlink.checks.report import Report
from slurmlink.checks.sitepolicy import check_with_commands
from slurmlink.devcluster import DevCluster
from slurmlink.sitepolicy.config import SitePolicySection
from standins.checkin import CheckinStandin
from tests.harness.pods import GATE_VOLUME, Client, gated_container, make_pod, open_gate
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.sitepolicy import ALPHA, BETA, entitlements, policy_config
from tests.harness.waiting import wait_until
from tests.integration.proxy_fixtures import ProxyServer, V, bearer, proxy_config, submit_body


@pytest.fixture(scope="module")
def members(checkin: CheckinStandin) -> dict[str, str]:
    """alice (sltest1) is in both VOs; carol (sltest3) in alpha, but sltest3 has no association with alpha."""
    subjects = {name: checkin.new_subject() for name in ("alice", "carol")}
    checkin.set_user(subjects["alice"], eduperson_entitlement=entitlements(ALPHA, BETA))
    checkin.set_user(subjects["carol"], eduperson_entitlement=entitlements(ALPHA))
    return subjects


@pytest.fixture(scope="module")
def accounting_api(slurm_accounting_cluster: DevCluster, checkin: CheckinStandin, members: dict[str, str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    cluster = slurm_accounting_cluster
    workdir = tmp_path_factory.mktemp("policy-acct-api")
    users = workdir / "users.txt"
    users.write_text(f"{checkin.issuer} {members['alice']} {cluster.users[0]}\n"
                     f"{checkin.issuer} {members['carol']} {cluster.users[2]}\n")
    identity = {"issuers": [{"issuer": checkin.issuer}], "policy": {"vos": [ALPHA, BETA]},
                "mapping": [{"static": {"path": str(users)}}]}
    policy = policy_config(cluster)
    for entry in policy["vos"]:
        entry["qos"] = ["normal"]  # the QoS every slurmdbd has
    process = ApiProcess(api_config(cluster, free_port(), identity=identity, users={}, site_policy=policy), workdir)
    process.start()
    yield process
    process.stop()


def pod_for(checkin: CheckinStandin, subject: str, vo: str | None = None,
            gated: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = make_pod([gated_container()], volumes=[GATE_VOLUME]) if gated else \
        make_pod([{"name": "main", "command": ["true"]}])
    pod["metadata"]["annotations"] = {"slurmlink.io/token-secret": "checkin", **({"slurmlink.io/vo": vo} if vo else {})}
    return pod, {"metadata": {"name": "checkin", "namespace": "default"},
                 "stringData": {"access_token": checkin.mint(subject)}}


def slurm_says(cluster: DevCluster, command: list[str]) -> str:
    """The first non-empty answer of a SLURM command, within a deadline."""
    env = {**os.environ, **cluster.env}

    def answer() -> str:
        return subprocess.run(command, env=env, capture_output=True, text=True, check=False).stdout.strip()

    return str(wait_until(answer, 60, f"an answer from {command[0]}"))


def test_the_vo_accounts_have_associations(slurm_accounting_cluster: DevCluster) -> None:
    found = set(slurm_accounting_cluster.associations())
    users = slurm_accounting_cluster.users
    assert {(users[0], "alpha"), (users[1], "alpha"), (users[0], "beta")} <= found
    assert (users[2], "alpha") not in found


def test_each_vos_jobs_are_charged_to_its_account(accounting_api: ApiProcess, checkin: CheckinStandin,
                                                  members: dict[str, str],
                                                  slurm_accounting_cluster: DevCluster) -> None:
    client = Client(accounting_api.url)
    cluster = slurm_accounting_cluster
    for vo, account in ((None, "alpha"), (BETA, "beta")):
        pod, secret = pod_for(checkin, members["alice"], vo, gated=True)
        job_id = client.submit(pod, secrets=[secret])
        assert job_id
        # while it runs: slurmctld's QoS (22.05's sacct may say "Unknown" for it); then accounting's account
        assert slurm_says(cluster, ["squeue", "-h", "-j", job_id, "-o", "%a|%q"]) == f"{account}|normal"
        open_gate(cluster.job_root, "default", pod["metadata"]["uid"])
        assert client.finish(pod)[0].phase == "Succeeded"
        assert slurm_says(cluster, ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "Account"]) == account


def test_slurm_refuses_an_account_without_an_association(accounting_api: ApiProcess, checkin: CheckinStandin,
                                                         members: dict[str, str]) -> None:
    client = Client(accounting_api.url)
    pod, secret = pod_for(checkin, members["carol"])
    assert client.submit(pod, secrets=[secret]) == ""
    phase, _ = client.finish(pod, timeout=15)
    assert (phase.phase, phase.reason) == ("Failed", "SlurmRejected")
    assert "account" in phase.message.lower()


def test_check_config_finds_the_accounts_and_qos(slurm_accounting_cluster: DevCluster) -> None:
    cluster = slurm_accounting_cluster
    data = policy_config(cluster)
    data["vos"][0]["qos"] = ["normal"]
    data["vos"][1]["account"] = "gamma"
    report = Report("api.yaml")
    asyncio.run(check_with_commands(report, SitePolicySection.model_validate(data),
                                    str(cluster.bin_dir) if cluster.bin_dir else None, str(cluster.conf_path)))
    found = {(f.level, f.key): f.message for f in report.findings}
    assert ("ok", "site_policy.vos.0.account") in found and ("ok", "site_policy.vos.0.qos") in found
    assert "gamma: no such account" in found[("error", "site_policy.vos.1.account")]


# --- mode 1: the proxy places the job; SLURM's accounting charges it -----------------------------------------

@pytest.fixture(scope="module")
def accounting_proxy(slurm_accounting_cluster: DevCluster, checkin: CheckinStandin, members: dict[str, str],
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    cluster = slurm_accounting_cluster
    users = tmp_path_factory.mktemp("policy-acct-proxy") / "users.txt"
    users.write_text(f"{checkin.issuer} {members['alice']} {cluster.users[0]}\n"
                     f"{checkin.issuer} {members['carol']} {cluster.users[2]}\n")
    policy = policy_config(cluster)
    for entry in policy["vos"]:
        entry["qos"] = ["normal"]
    config = proxy_config(cluster, checkin, Path(users), site_policy=policy)
    config.identity.policy.vos = [ALPHA, BETA]
    server = ProxyServer(config).start()
    yield server
    server.stop()


def test_through_the_proxy_each_vos_jobs_are_charged_to_its_account(
        accounting_proxy: ProxyServer, checkin: CheckinStandin, members: dict[str, str],
        slurm_accounting_cluster: DevCluster) -> None:
    token = checkin.mint(members["alice"])
    for vo, account in ((None, "alpha"), (BETA, "beta")):
        headers = {**bearer(token), **({"X-Slurmlink-VO": vo} if vo else {})}
        answer = httpx.post(f"{accounting_proxy.url}/slurm/{V}/job/submit", headers=headers, timeout=30,
                            json=submit_body("policy-acct-mode1", "#!/bin/bash\ntrue"))
        assert answer.status_code == 200 and not answer.json().get("errors"), answer.text
        job_id = str(answer.json()["job_id"])
        assert slurm_says(slurm_accounting_cluster,
                          ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "Account"]) == account


def test_through_the_proxy_slurm_refuses_an_account_without_an_association(
        accounting_proxy: ProxyServer, checkin: CheckinStandin, members: dict[str, str]) -> None:
    answer = httpx.post(f"{accounting_proxy.url}/slurm/{V}/job/submit", headers=bearer(checkin.mint(members["carol"])),
                        json=submit_body("policy-acct-mode1", "#!/bin/bash\ntrue"), timeout=30)
    assert answer.status_code != 200 or answer.json().get("errors"), answer.text
    assert "account" in answer.text.lower() or "association" in answer.text.lower(), answer.text
