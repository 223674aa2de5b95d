"""Mode 2 with Check-in identity: each pod's own token decides whether and as whom its job runs."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from slurmlink.devcluster import DevCluster
from standins.checkin import CheckinStandin, new_key
from tests.harness.pods import Client, make_pod, squeue_jobs
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config

VO = "vo.example.org"


@pytest.fixture(scope="module")
def identity_api(slurm_cluster: DevCluster, checkin: CheckinStandin, people: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    workdir = tmp_path_factory.mktemp("identity-api")
    users = workdir / "users.txt"
    users.write_text("".join(f"{checkin.issuer} {people[who]} {account}\n" for who, account in
                             (("alice", slurm_cluster.users[0]), ("bob", slurm_cluster.users[1]),
                              ("eve", slurm_cluster.users[2]))))
    identity = {"issuers": [{"issuer": checkin.issuer}], "policy": {"vos": [VO]},
                "mapping": [{"static": {"path": str(users)}}]}
    process = ApiProcess(api_config(slurm_cluster, free_port(), identity=identity, users={}), workdir)
    process.start()
    yield process
    process.stop()


def pod_with_token(token: str) -> tuple[dict[str, object], dict[str, object]]:
    pod = make_pod([{"name": "main", "command": ["id", "-un"]}])
    pod["metadata"]["annotations"] = {"slurmlink.io/token-secret": "checkin"}
    secret = {"metadata": {"name": "checkin", "namespace": "default"}, "stringData": {"access_token": token}}
    return pod, secret


def test_two_members_of_the_vo_run_as_their_own_accounts(identity_api: ApiProcess, checkin: CheckinStandin,
                                                         people: dict[str, str], slurm_cluster: DevCluster) -> None:
    client = Client(identity_api.url)
    env = {**os.environ, **slurm_cluster.env}
    for who, account in (("alice", slurm_cluster.users[0]), ("bob", slurm_cluster.users[1])):
        pod, secret = pod_with_token(checkin.mint(people[who]))
        job_id = client.submit(pod, secrets=[secret])
        phase, _ = client.finish(pod)
        assert phase.phase == "Succeeded"
        assert client.logs(pod, "main") == f"{account}\n".encode()
        [[seen_id, _, user]] = squeue_jobs(env, f"slurmlink-{pod['metadata']['uid']}")
        assert (seen_id, user) == (job_id, account)


@pytest.mark.parametrize("who, reason, words", [
    ("eve", "NotAuthorized", "not a member of vo.example.org"),
    ("nomap", "NoAccountMapping", ""),
])
def test_refused_users_get_a_failed_pod_and_no_job(identity_api: ApiProcess, checkin: CheckinStandin,
                                                   people: dict[str, str], slurm_cluster: DevCluster,
                                                   who: str, reason: str, words: str) -> None:
    client = Client(identity_api.url)
    pod, secret = pod_with_token(checkin.mint(people[who]))
    assert client.submit(pod, secrets=[secret]) == ""
    phase, _ = client.finish(pod, timeout=10)
    assert (phase.phase, phase.reason) == ("Failed", reason)
    assert words in phase.message
    env = {**os.environ, **slurm_cluster.env}
    assert squeue_jobs(env, f"slurmlink-{pod['metadata']['uid']}") == []


def test_forged_and_missing_tokens(identity_api: ApiProcess, checkin: CheckinStandin,
                                   people: dict[str, str]) -> None:
    client = Client(identity_api.url)
    forged = checkin.sign(checkin.access_claims(people["alice"]), key=new_key("RS256", checkin.rsa_kid))
    pod, secret = pod_with_token(forged)
    client.submit(pod, secrets=[secret])
    phase, _ = client.finish(pod, timeout=10)
    assert (phase.phase, phase.reason) == ("Failed", "TokenRejected")
    assert forged not in phase.message

    bare = make_pod([{"name": "main", "command": ["true"]}])
    client.submit(bare)
    phase, _ = client.finish(bare, timeout=10)
    assert (phase.phase, phase.reason) == ("Failed", "NoToken")
    assert "slurmlink.io/token-secret" in phase.message
