"""Per-VO site policy on the real SLURM, mode 2 (`slurmlink api` with Check-in identity) — must show:

- each VO's jobs carry its account, partition and QoS (the dev cluster has partitions debug and batch);
- a user in both VOs chooses with the `slurmlink.io/vo` annotation, and `/create` names VO, account and
  partition (the vk's Submitted event);
- out-of-policy pods end Failed with the rule: a VO the owner is not a member of, `-A` of another VO's account,
  a partition outside the VO's list, a time limit above its maximum; no job is made for them;
- a VO's per-user cap holds pods (503, the vk keeps them Pending) and holds across an API restart (counted in
  SLURM), and lets them in once the user's jobs end.

Without slurmdbd SLURM takes any account name as given (no associations to check): what is shown is the
account slurmlink gave the job. Mode 1 (the proxy) is in test_site_policy_mode1.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from slurmlink.checks.report import Report
from slurmlink.checks.sitepolicy import check_with_commands
from slurmlink.devcluster import DevCluster
from slurmlink.sitepolicy.config import SitePolicySection
from standins.checkin import CheckinStandin
from tests.harness.pods import Client, gated_container, make_pod, open_gate, pod_manifest, squeue_jobs
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config
from tests.harness.sitepolicy import ALPHA, BETA, clear_accounts, entitlements, memory_per_cpu, policy_config
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import open_chain

GATE = {"volumes": [{"name": "gate", "emptyDir": {}}]}


@pytest.fixture(scope="module")
def members(checkin: CheckinStandin) -> dict[str, str]:
    """alice is in both VOs, bob in alpha only, carol a manager of alpha."""
    subjects = {name: checkin.new_subject() for name in ("alice", "bob", "carol")}
    checkin.set_user(subjects["alice"], eduperson_entitlement=entitlements(ALPHA, BETA))
    checkin.set_user(subjects["bob"], eduperson_entitlement=entitlements(ALPHA))
    checkin.set_user(subjects["carol"], eduperson_entitlement=entitlements(ALPHA, role="manager"))
    return subjects


@pytest.fixture(scope="module")
def policy_api(slurm_cluster: DevCluster, checkin: CheckinStandin, members: dict[str, str],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    workdir = tmp_path_factory.mktemp("policy-api")
    users = workdir / "users.txt"
    users.write_text(f"{checkin.issuer} {members['alice']} {slurm_cluster.users[0]}\n"
                     f"{checkin.issuer} {members['bob']} {slurm_cluster.users[1]}\n"
                     f"{checkin.issuer} {members['carol']} {slurm_cluster.users[2]}\n")
    identity = {"issuers": [{"issuer": checkin.issuer}], "policy": {"vos": [ALPHA, BETA]},
                "mapping": [{"static": {"path": str(users)}}]}
    process = ApiProcess(api_config(slurm_cluster, free_port(), identity=identity, users={},
                                    site_policy=policy_config(slurm_cluster)), workdir)
    clear_accounts(slurm_cluster)
    process.start()
    yield process
    process.stop()
    clear_accounts(slurm_cluster)


def token_pod(checkin: CheckinStandin, subject: str, containers: list[dict[str, Any]] | None = None, *,
              vo: str | None = None, flags: str | None = None, **spec: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = make_pod(containers or [{"name": "main", "command": ["true"]}], **spec)
    annotations = {"slurmlink.io/token-secret": "checkin"}
    annotations |= {"slurmlink.io/vo": vo} if vo else {}
    annotations |= {"slurm-job.vk.io/flags": flags} if flags else {}
    pod["metadata"]["annotations"] = annotations
    secret = {"metadata": {"name": "checkin", "namespace": "default"},
              "stringData": {"access_token": checkin.mint(subject)}}
    return pod, secret


def job_fields(cluster: DevCluster, pod: dict[str, Any]) -> tuple[str, str, str, str]:
    """(account, partition, time limit, user) of the pod's job, from squeue."""
    env = {**os.environ, **cluster.env}
    out = subprocess.run(["squeue", "-h", "-a", "--states=all", "-n", f"slurmlink-{pod['metadata']['uid']}",
                          "-o", "%a|%P|%l|%u"], env=env, capture_output=True, text=True, check=True).stdout
    [line] = out.splitlines()
    account, partition, limit, user = line.split("|")
    return account, partition, limit, user


def test_each_vos_jobs_carry_its_account_and_partition_and_the_annotation_chooses(
        policy_api: ApiProcess, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster) -> None:
    client = Client(policy_api.url)
    first, secret = token_pod(checkin, members["alice"])
    answer = client.create(first, secrets=[secret])
    assert answer.status_code == 200
    assert answer.headers["X-Slurmlink-Placement"] == f"VO {ALPHA}, account alpha, partition debug"
    chosen, secret = token_pod(checkin, members["alice"], vo=BETA)
    answer = client.create(chosen, secrets=[secret])
    assert answer.headers["X-Slurmlink-Placement"] == f"VO {BETA}, account beta, partition batch"
    assert memory_per_cpu(slurm_cluster, answer.json()["PodJID"]) == "256M"  # beta's default per CPU, no total
    for pod in (first, chosen):
        assert client.finish(pod)[0].phase == "Succeeded"
    assert job_fields(slurm_cluster, first) == ("alpha", "debug", "30:00", slurm_cluster.users[0])
    assert job_fields(slurm_cluster, chosen)[:2] == ("beta", "batch")
    audit = [json.loads(line[line.index("{"):]) for line in policy_api.log_text().splitlines()
             if '"event":"decision"' in line and "site policy" in line]
    assert {(a["vo"], a["account"], a["partition"]) for a in audit if a["client"] == f"pod default/"
            f"{chosen['metadata']['name']}"} == {(BETA, "beta", "batch")}  # the choice is in the audit log


@pytest.mark.parametrize(("vo", "flags", "spec", "reason", "words"), [
    (BETA, None, {}, "VoNotMember", "not an admitted member"),
    (None, "-A beta", {}, "AccountNotAllowed", "rule account"),
    (None, "--account beta", {}, "AccountNotAllowed", "rule account"),
    (None, "-p batch", {}, "PartitionNotAllowed", "rule partitions"),
    (None, "--time=2:00:00", {}, "TimeLimitExceeded", "rule max_time_minutes"),
    (None, None, {"activeDeadlineSeconds": 7200}, "TimeLimitExceeded", "rule max_time_minutes"),
])
def test_out_of_policy_pods_fail_with_the_rule_and_make_no_job(
        policy_api: ApiProcess, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster,
        vo: str | None, flags: str | None, spec: dict[str, Any], reason: str, words: str) -> None:
    client = Client(policy_api.url)
    pod, secret = token_pod(checkin, members["bob"], vo=vo, flags=flags, **spec)
    assert client.submit(pod, secrets=[secret]) == ""
    phase, _ = client.finish(pod, timeout=10)
    assert (phase.phase, phase.reason) == ("Failed", reason)
    assert words in phase.message
    assert squeue_jobs({**os.environ, **slurm_cluster.env}, f"slurmlink-{pod['metadata']['uid']}") == []


def test_the_per_user_cap_holds_pods_and_holds_across_a_restart(
        policy_api: ApiProcess, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster) -> None:
    client = Client(policy_api.url)
    running = [token_pod(checkin, members["bob"], [gated_container()], **GATE) for _ in range(2)]
    for pod, secret in running:
        assert client.submit(pod, secrets=[secret])
    held, secret = token_pod(checkin, members["bob"])
    answer = client.create(held, secrets=[secret])
    assert answer.status_code == 503
    assert "max_jobs_per_user" in answer.text and "JobCapReached" in answer.text

    policy_api.stop()
    policy_api.start()
    answer = client.create(held, secrets=[secret])
    assert answer.status_code == 503 and "max_jobs_per_user" in answer.text  # counted in SLURM, not in memory

    other, other_secret = token_pod(checkin, members["alice"])  # another user of the VO is not held
    assert client.submit(other, secrets=[other_secret])
    for pod, _ in running:
        open_gate(slurm_cluster.job_root, "default", pod["metadata"]["uid"])
    for pod, _ in running:
        client.finish(pod)
    wait_until(lambda: client.create(held, secrets=[secret]).status_code == 200, 60,
               "the held pod to be taken once bob's jobs ended")
    assert client.finish(held)[0].phase == "Succeeded"


def test_check_config_finds_the_policys_partitions_in_slurm(slurm_cluster: DevCluster) -> None:
    """What `check-config api --online` runs: sinfo knows debug and batch, not `nope`; without slurmdbd the
    accounts cannot be listed, which is a warning, not an error."""
    policy = SitePolicySection.model_validate(policy_config(slurm_cluster))
    policy.vos[1].partitions.append("nope")
    report = Report("api.yaml")
    asyncio.run(check_with_commands(report, policy, str(slurm_cluster.bin_dir) if slurm_cluster.bin_dir else None,
                                    str(slurm_cluster.conf_path)))
    found = {(f.level, f.key) for f in report.findings}
    assert ("ok", "site_policy.vos.0.partitions") in found
    assert ("error", "site_policy.vos.1.partitions") in found
    assert any("nope: no such partition" in f.message for f in report.findings)
    assert ("warning", "site_policy.vos") in found or ("ok", "site_policy.vos.0.account") in found


def test_pinglink_counts_the_vos_partitions(policy_api: ApiProcess) -> None:
    """sinfo takes the VOs' partitions as one list (debug,batch: the same node, counted once)."""
    answer = policy_api.get("/pinglink")
    assert answer.status_code == 200, answer.text
    assert int(answer.json()["resources"]["cpu"]) > 0


def test_the_pods_events_name_its_vo_account_and_partition(
        policy_api: ApiProcess, checkin: CheckinStandin, members: dict[str, str], slurm_cluster: DevCluster,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Through kubectl, the stand-in apiserver and a vk: the Submitted event, and a refused pod's Failed status."""
    with open_chain(slurm_cluster, policy_api, tmp_path_factory.mktemp("policy-chain")) as chain:
        secrets = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": f"checkin-{who}"},
                    "stringData": {"access_token": checkin.mint(members[who], lifetime=3600)}}
                   for who in ("alice", "bob")]
        chosen = pod_manifest("policy-beta", "true")
        chosen["metadata"]["annotations"] = {"slurmlink.io/token-secret": "checkin-alice", "slurmlink.io/vo": BETA}
        refused = pod_manifest("policy-refused", "true")
        refused["metadata"]["annotations"] = {"slurmlink.io/token-secret": "checkin-bob",
                                              "slurm-job.vk.io/flags": "--partition=batch"}
        chain.apply(*secrets, chosen, refused)
        assert chain.wait_phase("policy-beta", ("Succeeded", "Failed"))["status"]["phase"] == "Succeeded"
        events = chain.kubectl("get", "events", "--field-selector", "involvedObject.name=policy-beta", "-o",
                               "jsonpath={.items[*].message}").stdout
        assert f"(VO {BETA}, account beta, partition batch)" in events, events
        failed = chain.wait_phase("policy-refused", ("Succeeded", "Failed"))
        assert failed["status"]["phase"] == "Failed"
        assert "rule partitions" in json.dumps(failed["status"]), failed["status"]


def test_a_roles_entry_applies_to_its_holders(policy_api: ApiProcess, checkin: CheckinStandin,
                                              members: dict[str, str], slurm_cluster: DevCluster) -> None:
    """carol, a manager of alpha, may use the batch partition that alpha's other members may not (bob's
    `-p batch` fails above)."""
    client = Client(policy_api.url)
    pod, secret = token_pod(checkin, members["carol"], flags="-p batch")
    assert client.submit(pod, secrets=[secret])
    assert client.finish(pod)[0].phase == "Succeeded"
    assert job_fields(slurm_cluster, pod)[:2] == ("alpha", "batch")
