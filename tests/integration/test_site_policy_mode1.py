"""Per-VO site policy on the real SLURM, mode 1 (`slurmlink proxy` in front of slurmrestd) — must show, for
submissions straight to the proxy (what a user could send without any slurmlink API in between):

- each VO's jobs carry its account, partition and time limit; the `X-Slurmlink-VO` header chooses among the
  caller's VOs;
- a VO the caller is not a member of, another VO's account, a partition outside the list, a time limit above
  the VO's maximum: 403 naming the rule, and no job in SLURM;
- the per-user cap: 429 naming the rule once the caller has that many queued or running jobs (counted in
  SLURM, so neither a proxy restart nor bypassing the API resets it), also when many arrive at once;
- the answer to a placed submission tells the placement (`X-Slurmlink-Placement`).
The rules are the same module's as mode 2's (test_site_policy.py). Then pods through the whole mode-1 stack:
the `slurmlink.io/vo` annotation travels to the proxy as the header, the API's /create answer tells the
placement the proxy told it (the pod's Submitted event), and an out-of-policy pod ends Failed with the rule's
own reason and the proxy's sentence."""

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
from slurmlink.checks.sitepolicy import check_with_slurmrestd
from slurmlink.devcluster import DevCluster
from slurmlink.sitepolicy.config import SitePolicySection
from standins.checkin import CheckinStandin
from tests.harness.pods import GATE_VOLUME, gated_container, make_pod, open_gate, squeue_jobs
from tests.harness.ports import free_port
from tests.harness.sitepolicy import ALPHA, BETA, clear_accounts, entitlements, memory_per_cpu, policy_config
from tests.harness.waiting import wait_until
from tests.integration.mode1 import Mode1, start_mode1
from tests.integration.proxy_fixtures import ProxyServer, V, bearer, job_ids, proxy_config, submit_body


@pytest.fixture(scope="module")
def members(checkin: CheckinStandin) -> dict[str, str]:
    subjects = {name: checkin.new_subject() for name in ("alice", "bob")}
    checkin.set_user(subjects["alice"], eduperson_entitlement=entitlements(ALPHA, BETA))
    checkin.set_user(subjects["bob"], eduperson_entitlement=entitlements(ALPHA))
    return subjects


@pytest.fixture(scope="module")
def proxy(slurm_cluster: DevCluster, checkin: CheckinStandin, members: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    users = tmp_path_factory.mktemp("policy-proxy") / "users.txt"
    users.write_text(f"{checkin.issuer} {members['alice']} {slurm_cluster.users[0]}\n"
                     f"{checkin.issuer} {members['bob']} {slurm_cluster.users[1]}\n")
    config = proxy_config(slurm_cluster, checkin, Path(users), site_policy=policy_config(slurm_cluster))
    config.identity.policy.vos = [ALPHA, BETA]
    clear_accounts(slurm_cluster)
    server = ProxyServer(config).start()
    yield server
    server.stop()
    clear_accounts(slurm_cluster)


def submit(proxy: ProxyServer, token: str, vo: str | None = None, script: str = "#!/bin/bash\ntrue",
           **job: Any) -> httpx.Response:
    body = submit_body("policy-mode1", script)
    body["job"].update(job)
    headers = {**bearer(token), **({"X-Slurmlink-VO": vo} if vo else {})}
    return httpx.post(f"{proxy.url}/slurm/{V}/job/submit", headers=headers, json=body, timeout=30)


def fields(cluster: DevCluster, job_id: str) -> tuple[str, str, str]:
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-j", job_id, "-o", "%a|%P|%l"],
                         env={**os.environ, **cluster.env}, capture_output=True, text=True, check=True).stdout
    account, partition, limit = out.strip().split("|")
    return account, partition, limit


def test_each_vos_submissions_carry_its_account_and_partition(proxy: ProxyServer, checkin: CheckinStandin,
                                                               members: dict[str, str],
                                                               slurm_cluster: DevCluster) -> None:
    token = checkin.mint(members["alice"])
    first = submit(proxy, token)
    assert first.status_code == 200, first.text
    assert first.headers["X-Slurmlink-Placement"] == f"VO {ALPHA}, account alpha, partition debug"
    job = {k: v for k, v in submit_body("x")["job"].items() if k == "time_limit"}  # the body's own: 10 minutes
    assert fields(slurm_cluster, str(first.json()["job_id"])) == ("alpha", "debug", f"{job['time_limit']}:00")
    chosen = submit(proxy, token, vo=BETA)
    assert chosen.status_code == 200, chosen.text
    assert fields(slurm_cluster, str(chosen.json()["job_id"]))[:2] == ("beta", "batch")
    assert chosen.headers["X-Slurmlink-Placement"] == f"VO {BETA}, account beta, partition batch"
    assert memory_per_cpu(slurm_cluster, str(chosen.json()["job_id"])) == "256M"  # beta's default per CPU
    assert memory_per_cpu(slurm_cluster, str(first.json()["job_id"])) == ""  # alpha has none


@pytest.mark.parametrize(("vo", "job", "rule"), [
    (BETA, {}, "vo"), (None, {"account": "beta"}, "account"), (None, {"partition": "batch"}, "partitions"),
    (None, {"partition": "debug,batch"}, "partitions"), (None, {"time_limit": 120}, "max_time_minutes"),
])
def test_out_of_policy_submissions_are_refused_before_slurmrestd(
        proxy: ProxyServer, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster,
        vo: str | None, job: dict[str, Any], rule: str) -> None:
    before = job_ids(slurm_cluster)
    answer = submit(proxy, checkin.mint(members["bob"]), vo=vo, **job)
    assert answer.status_code == 403, answer.text
    assert answer.json()["rule"] == rule
    assert f"rule {rule}:" in answer.json()["reason"] or (rule == "vo" and "not an admitted member" in answer.text)
    assert job_ids(slurm_cluster) == before


def test_the_per_user_cap_holds_however_the_jobs_were_submitted(
        proxy: ProxyServer, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster) -> None:
    token = checkin.mint(members["bob"])
    running = []
    try:
        for _ in range(2):
            answer = submit(proxy, token, script="#!/bin/bash\nsleep 300")
            assert answer.status_code == 200, answer.text
            running.append(str(answer.json()["job_id"]))
        refused = submit(proxy, token)
        assert refused.status_code == 429, refused.text
        assert refused.json()["rule"] == "max_jobs_per_user" and refused.headers["retry-after"]
        assert submit(proxy, checkin.mint(members["alice"])).status_code == 200  # another user is not held
        again = ProxyServer(proxy.config.model_copy(update={"listen": proxy.config.listen.model_copy(
            update={"port": free_port()}), "admin": proxy.config.admin.model_copy(update={"port": free_port()})}))
        again.start()  # a second proxy, as after a restart: the count is SLURM's, not the first proxy's
        try:
            assert submit(again, token).status_code == 429
        finally:
            again.stop()
    finally:
        subprocess.run(["scancel", *running], env={**os.environ, **slurm_cluster.env}, check=False)


def test_submissions_arriving_at_once_do_not_overshoot_the_cap(
        proxy: ProxyServer, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster) -> None:
    """Six submissions at the same moment against bob's cap of 2: exactly 2 are taken (the count is held
    until slurmrestd has each job), the others are 429 naming the cap."""
    token = checkin.mint(members["bob"])
    body = submit_body("policy-mode1", "#!/bin/bash\nsleep 300")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as http:
            return await asyncio.gather(*(http.post(f"{proxy.url}/slurm/{V}/job/submit", headers=bearer(token),
                                                    json=body) for _ in range(6)))

    answers = asyncio.run(burst())
    taken = [str(a.json()["job_id"]) for a in answers if a.status_code == 200]
    try:
        assert sorted(a.status_code for a in answers) == [200, 200, 429, 429, 429, 429], [a.text for a in answers]
        assert all(a.json()["rule"] == "max_jobs_per_user" for a in answers if a.status_code == 429)
    finally:
        subprocess.run(["scancel", *taken], env={**os.environ, **slurm_cluster.env}, check=False)
        clear_accounts(slurm_cluster)


def test_the_proxys_capacity_counts_only_the_vos_partitions(
        proxy: ProxyServer, checkin: CheckinStandin, members: dict[str, str]) -> None:
    """What the mode-1 node's allocatable and /pinglink show: the nodes of the policy's partitions only (the
    dev cluster's one node is in both of them; a policy of a partition without nodes counts nothing)."""
    token = bearer(checkin.mint(members["alice"]))
    whole = httpx.get(f"{proxy.url}/slurmlink/v1/capacity", headers=token, timeout=30)
    assert whole.status_code == 200 and whole.json()["cpus"] > 0, whole.text
    elsewhere = {"vos": [{**v, "partitions": ["nowhere"]} for v in policy_config_entries(proxy)]}
    other = ProxyServer(proxy.config.model_copy(update={
        "site_policy": SitePolicySection.model_validate(elsewhere),
        "listen": proxy.config.listen.model_copy(update={"port": free_port()}),
        "admin": proxy.config.admin.model_copy(update={"port": free_port()})})).start()
    try:
        narrowed = httpx.get(f"{other.url}/slurmlink/v1/capacity", headers=token, timeout=30)
        assert narrowed.status_code == 200 and narrowed.json()["cpus"] == 0, narrowed.text
        asked = httpx.get(f"{other.url}/slurmlink/v1/capacity?partition=debug", headers=token, timeout=30)
        assert asked.status_code == 200 and asked.json()["cpus"] > 0  # the partition the API names counts too
    finally:
        other.stop()


def policy_config_entries(proxy: ProxyServer) -> list[dict[str, Any]]:
    return [v.model_dump(exclude_none=True) for v in proxy.config.site_policy.vos]


# --- pods through the whole mode-1 stack: vk's /create -> slurmlink api (rest) -> slurmlink proxy -> slurmrestd ---

@pytest.fixture(scope="module")
def stack(slurm_cluster: DevCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mode1]:
    clear_accounts(slurm_cluster)
    stack = start_mode1(slurm_cluster, tmp_path_factory.mktemp("policy-mode1"),
                        proxy_keys={"site_policy": policy_config(slurm_cluster)}, vos=[ALPHA, BETA])
    stack.checkin.set_user(stack.subjects["alice"], eduperson_entitlement=entitlements(ALPHA, BETA))
    stack.checkin.set_user(stack.subjects["bob"], eduperson_entitlement=entitlements(ALPHA))
    yield stack
    stack.stop()
    clear_accounts(slurm_cluster)


def test_a_pods_vo_annotation_reaches_the_proxy_and_places_its_job(stack: Mode1, slurm_cluster: DevCluster) -> None:
    client = stack.client()  # namespace default: alice; team-b: bob
    chosen = make_pod([{"name": "main", "command": ["true"]}])
    chosen["metadata"]["annotations"] = {"slurmlink.io/vo": BETA}
    plain = make_pod([{"name": "main", "command": ["true"]}])
    told = {}
    for pod in (chosen, plain):
        answer = client.create(pod)
        assert answer.status_code == 200 and answer.json()["PodJID"], answer.text
        told[pod["metadata"]["name"]] = answer.headers.get("X-Slurmlink-Placement")  # the pod's Submitted event
    for pod in (chosen, plain):
        assert client.finish(pod)[0].phase == "Succeeded"
    assert pod_job(slurm_cluster, chosen)[:2] == ["beta", "batch"]
    assert pod_job(slurm_cluster, plain)[:2] == ["alpha", "debug"]
    assert told == {chosen["metadata"]["name"]: f"VO {BETA}, account beta, partition batch",
                    plain["metadata"]["name"]: f"VO {ALPHA}, account alpha, partition debug"}


@pytest.mark.parametrize(("annotations", "reason", "rule"), [
    ({"slurmlink.io/vo": BETA}, "VoNotMember", "not an admitted member of it"),
    ({"slurmlink.io/vo": f"{ALPHA}\r\nX-SLURM-USER-NAME: root"}, "VoNotMember", "is not a VO name"),  # no header
    ({"slurm-job.vk.io/flags": "-A beta"}, "AccountNotAllowed", f"site policy of VO {ALPHA}, rule account:"),
    ({"slurm-job.vk.io/flags": "--partition=batch"}, "PartitionNotAllowed",
     f"site policy of VO {ALPHA}, rule partitions:"),
])
def test_an_out_of_policy_pod_fails_with_the_proxys_rule(stack: Mode1, slurm_cluster: DevCluster,
                                                         annotations: dict[str, str], reason: str, rule: str) -> None:
    client = stack.client()
    pod = make_pod([{"name": "main", "command": ["true"]}], namespace="team-b")  # bob: alpha only
    pod["metadata"]["annotations"] = dict(annotations)
    assert client.submit(pod) == ""
    phase, _ = client.finish(pod, timeout=30)
    assert (phase.phase, phase.reason) == ("Failed", reason) and rule in phase.message, phase
    assert squeue_jobs({**os.environ, **slurm_cluster.env}, f"slurmlink-{pod['metadata']['uid']}") == []


def pod_job(cluster: DevCluster, pod: dict[str, Any]) -> list[str]:
    """[account, partition] of the pod's job, from squeue."""
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-n", f"slurmlink-{pod['metadata']['uid']}",
                          "-o", "%a|%P"], env={**os.environ, **cluster.env}, capture_output=True, text=True,
                         check=True).stdout
    [line] = out.splitlines()
    return line.split("|")


def test_a_pod_over_its_vos_cap_waits_until_there_is_room(stack: Mode1, slurm_cluster: DevCluster) -> None:
    """The proxy's 429 reaches the vk as the API's 503: the pod stays Pending and is taken once bob's jobs end."""
    client = stack.client()
    running = [make_pod([gated_container()], namespace="team-b", volumes=[GATE_VOLUME]) for _ in range(2)]
    for pod in running:
        assert client.submit(pod)
    held = make_pod([{"name": "main", "command": ["true"]}], namespace="team-b")
    answer = client.create(held)
    assert answer.status_code == 503 and "max_jobs_per_user" in answer.text, answer.text
    for pod in running:
        open_gate(stack.job_root, "team-b", pod["metadata"]["uid"])
    for pod in running:
        client.finish(pod)
    wait_until(lambda: client.create(held).status_code == 200, 60, "the held pod to be taken")
    assert client.finish(held)[0].phase == "Succeeded"


def test_check_config_of_the_proxy_finds_the_partitions_through_slurmrestd(slurm_cluster: DevCluster) -> None:
    """What `check-config proxy --online` runs: slurmrestd's /partitions as the SlurmUser; without slurmdbd
    the accounts cannot be listed (a warning)."""
    policy = SitePolicySection.model_validate(policy_config(slurm_cluster))
    policy.vos[2].partitions.append("nope")
    headers = {"X-SLURM-USER-NAME": slurm_cluster.slurm_user,
               "X-SLURM-USER-TOKEN": slurm_cluster.token(slurm_cluster.slurm_user)}
    report = Report("proxy.yaml")
    asyncio.run(check_with_slurmrestd(report, policy, slurm_cluster.rest_url, V, headers))
    found = {(f.level, f.key): f.message for f in report.findings}
    assert found[("ok", "site_policy.vos.0.partitions")] == "debug, batch: known to SLURM"
    assert "nope: no such partition in SLURM (slurmrestd)" in found[("error", "site_policy.vos.2.partitions")]
    assert ("warning", "site_policy.vos") in found
