"""Per-VO site policy (slurmlink.sitepolicy): the VO chosen, defaults filled, out-of-policy asks refused naming
the rule, the same way on a mode-2 batch job (through the real flags parsing) and a mode-1 job description."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from slurmlink.api.backends import capacity_partitions
from slurmlink.api.config import ApiConfig
from slurmlink.checks.report import Report
from slurmlink.checks.sitepolicy import check_site_policy, compare
from slurmlink.core.errors import PodRejected
from slurmlink.identity.entitlements import EntitlementPolicy
from slurmlink.proxy.sitepolicy import count_active
from slurmlink.sitepolicy.batchjob import place_job, site_for
from slurmlink.sitepolicy.config import SitePolicySection
from slurmlink.sitepolicy.jobdesc import place_body
from slurmlink.sitepolicy.rules import (
    JobAsk,
    PolicyRefused,
    asked_vo,
    check_cap,
    choose_vo,
    fill_and_check,
    gpus_in,
    time_minutes,
)
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from slurmlink.wire.names import FLAGS_ANNOTATION

POLICY = SitePolicySection.model_validate({"vos": [
    {"vo": "alpha.example.org", "account": "alpha", "partitions": ["debug"], "qos": ["normal"],
     "default_time_minutes": 30, "max_time_minutes": 60, "max_gpus": 0, "max_jobs_per_user": 2, "max_jobs": 3},
    {"vo": "beta.example.org", "account": "beta", "partitions": ["batch", "debug"], "default_partition": "batch",
     "max_gpus": 2},
]})
SITE = SiteConfig(partition="debug", default_time_minutes=None)


def pod(flags: str | None = None, **spec: Any) -> dict[str, Any]:
    annotations = {FLAGS_ANNOTATION: flags} if flags is not None else {}
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["true"]}], **spec}}


def placed(member_of: list[str], flags: str | None = None, vo: str | None = None, **spec: Any):
    placement = choose_vo(POLICY, member_of, vo)
    job = build_job(pod(flags, **spec), workdir="/jobs/ns-u1", site=site_for(SITE, placement))
    return placement, place_job(job, placement, SITE)


def test_a_pod_asking_nothing_gets_its_vos_defaults() -> None:
    placement, job = placed(["alpha.example.org", "beta.example.org"])
    assert placement.vo == "alpha.example.org"  # the first in the site's order
    assert (job.partition, job.time_limit_minutes) == ("debug", 30)
    assert "--account=alpha" in job.extra_options and "--qos=normal" in job.extra_options


def test_the_annotation_chooses_among_the_owners_vos() -> None:
    placement, job = placed(["alpha.example.org", "beta.example.org"], vo="beta.example.org")
    assert placement.vo == "beta.example.org"
    assert job.partition == "batch" and "--account=beta" in job.extra_options
    assert job.time_limit_minutes is None  # neither the VO nor the site sets one: the partition's


@pytest.mark.parametrize("asked", ["beta.example.org", "gamma.example.org", " alpha.example.org:sub", ""])
def test_a_vo_the_owner_is_not_a_member_of_is_refused(asked: str) -> None:
    with pytest.raises(PolicyRefused) as refused:
        choose_vo(POLICY, ["alpha.example.org"], asked)
    assert refused.value.reason == "VoNotMember" and refused.value.rule == "vo"


@pytest.mark.parametrize("flags", ["--account=beta", "--account beta", "-A beta", "-Abeta", "-A=beta",
                                   "--account=alpha --account=beta"])
def test_the_account_of_another_vo_is_refused_however_it_is_spelt(flags: str) -> None:
    with pytest.raises(PolicyRefused) as refused:
        placed(["alpha.example.org", "beta.example.org"], flags)
    assert refused.value.reason == "AccountNotAllowed" and "rule account" in refused.value.message


def test_an_abbreviated_account_option_never_reaches_sbatch() -> None:
    with pytest.raises(PodRejected) as refused:  # sbatch would read --acc as --account
        placed(["alpha.example.org"], "--acc=beta")
    assert refused.value.reason == "FlagNotAllowed"


def test_the_vos_own_account_in_the_flags_is_fine() -> None:
    _, job = placed(["alpha.example.org"], "-A alpha")
    assert [o for o in job.extra_options if o.startswith("--account")] == ["--account=alpha"]


@pytest.mark.parametrize("flags", ["--partition=batch", "-p batch", "-pbatch", "--partition=debug,batch"])
def test_a_partition_outside_the_list_is_refused(flags: str) -> None:
    with pytest.raises(PolicyRefused) as refused:
        placed(["alpha.example.org"], flags)
    assert refused.value.reason == "PartitionNotAllowed" and "'batch'" in refused.value.message


@pytest.mark.parametrize(("flags", "reason"), [
    ("--qos=high", "QosNotAllowed"), ("-q high", "QosNotAllowed"),
    ("--time=61", "TimeLimitExceeded"), ("-t 1-0", "TimeLimitExceeded"), ("--time=2:00:00", "TimeLimitExceeded"),
    ("--time=UNLIMITED", "TimeLimitExceeded"), ("--gpus=1", "GpuLimitExceeded"),
    ("--gres=gpu:a100:1", "GpuLimitExceeded"), ("--gpus-per-node=a100:1", "GpuLimitExceeded"),
])
def test_other_out_of_policy_flags_are_refused(flags: str, reason: str) -> None:
    with pytest.raises(PolicyRefused) as refused:
        placed(["alpha.example.org"], flags)
    assert refused.value.reason == reason


def test_a_deadline_past_the_vos_longest_time_is_refused() -> None:
    with pytest.raises(PolicyRefused, match="max_time_minutes"):
        placed(["alpha.example.org"], activeDeadlineSeconds=7200)


def test_gpus_as_a_pod_resource_count_too() -> None:
    resources = {"limits": {"nvidia.com/gpu": "3"}}
    spec = {"containers": [{"name": "main", "image": "busybox", "command": ["true"], "resources": resources}]}
    with pytest.raises(PolicyRefused, match="3 GPUs"):
        placed(["beta.example.org"], **spec)


def test_a_vo_without_an_entry_keeps_the_sites_settings() -> None:
    placement, job = placed(["other.example.org"], "--account=anything")
    assert placement.policy is None and job.partition == "debug" and "--account=anything" in job.extra_options


def test_caps_count_the_users_and_the_vos_jobs() -> None:
    placement = choose_vo(POLICY, ["alpha.example.org"], None)
    check_cap(placement, "u", 1, 2)
    with pytest.raises(PolicyRefused, match="max_jobs_per_user") as refused:
        check_cap(placement, "u", 2, 2)
    assert refused.value.reason == "JobCapReached"
    with pytest.raises(PolicyRefused, match="rule max_jobs:"):
        check_cap(placement, "u", 0, 3)


def test_a_job_description_is_filled_and_checked_like_a_batch_job() -> None:
    placement = choose_vo(POLICY, ["alpha.example.org"], None)
    body: dict[str, Any] = {"job": {"name": "x", "time_limit": {"set": True, "number": 20}}, "script": "#!/bin/sh"}
    place_body(body, placement)
    assert {k: body["job"][k] for k in ("account", "partition", "qos", "time_limit")} == {
        "account": "alpha", "partition": "debug", "qos": "normal", "time_limit": 20}


@pytest.mark.parametrize(("job", "reason"), [
    ({"account": "beta"}, "AccountNotAllowed"), ({"partition": "debug,batch"}, "PartitionNotAllowed"),
    ({"qos": "high"}, "QosNotAllowed"), ({"time_limit": 61}, "TimeLimitExceeded"),
    ({"time_limit": {"set": True, "infinite": True}}, "TimeLimitExceeded"),
    ({"time_limit": "1:00"}, "TimeLimitExceeded"),
    ({"tres_per_job": "gres/gpu:1"}, "GpuLimitExceeded"), ({"gpus_per_task": "1"}, "GpuLimitExceeded"),
    ({"tres_per_node": ["odd"]}, "GpuLimitExceeded"), ({"account": ["alpha"]}, "InvalidJob"),
])
def test_a_job_description_outside_the_policy_is_refused(job: dict[str, Any], reason: str) -> None:
    placement = choose_vo(POLICY, ["alpha.example.org"], None)
    with pytest.raises(PolicyRefused) as refused:
        place_body({"job": {"name": "x", **job}}, placement)
    assert refused.value.reason == reason


def test_every_part_of_a_heterogeneous_job_is_checked() -> None:
    placement = choose_vo(POLICY, ["alpha.example.org"], None)
    with pytest.raises(PolicyRefused, match="partition"):
        place_body({"jobs": [{"name": "a"}, {"name": "b", "partition": "batch"}]}, placement)
    with pytest.raises(PolicyRefused, match="no job description"):
        place_body({"script": "x"}, placement)


@pytest.mark.parametrize(("text", "minutes"), [("30", 30), ("1:30", 2), ("2:00:00", 120), ("1-0", 1440),
                                               ("1-2:30", 1590), ("0-0:0:1", 1), ("UNLIMITED", None), ("", None)])
def test_slurm_time_spellings(text: str, minutes: int | None) -> None:
    assert time_minutes(text) == minutes


@pytest.mark.parametrize(("spec", "gpus"), [("gpu:2", 2), ("gpu", 1), ("gpu:a100:2,gres/gpu:1", 3),
                                            ("gres/gpu=2", 2), ("gpu:a100", 1), ("mps:100", 0), ("gpu:x:y", None)])
def test_gpu_counts(spec: str, gpus: int | None) -> None:
    assert gpus_in(spec) == gpus


def test_fill_leaves_an_unrestricted_field_as_asked() -> None:
    placement = choose_vo(POLICY, ["beta.example.org"], None)
    assert fill_and_check(placement, JobAsk(qos="any")).qos == "any"


@pytest.mark.parametrize("entry", [
    {"vo": "a", "partitions": ["x"], "default_partition": "y"}, {"vo": "a", "qos": ["x"], "default_qos": "y"},
    {"vo": "a", "default_time_minutes": 10, "max_time_minutes": 5}, {"vo": "a", "max_jobs": 1},
])
def test_inconsistent_entries_fail_at_load(entry: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SitePolicySection.model_validate({"vos": [entry]})


def test_check_config_compares_the_policy_with_what_slurm_lists() -> None:
    report = Report("api.yaml")
    compare(report, POLICY, {"debug"}, None, {"normal"}, "sinfo/sacctmgr")
    lines = {(f.level, f.key): f.message for f in report.findings}
    assert lines[("ok", "site_policy.vos.0.partitions")] == "debug: known to SLURM"
    assert "batch: no such partition" in lines[("error", "site_policy.vos.1.partitions")]
    assert "cannot list each account" in lines[("warning", "site_policy.vos")]


def test_check_config_wants_each_vo_admitted() -> None:
    report = Report("proxy.yaml")
    check_site_policy(report, POLICY, ["alpha.example.org"])
    assert [(f.level, f.key) for f in report.findings] == [("ok", "site_policy.vos.0"),
                                                           ("error", "site_policy.vos.1.vo")]
    report = Report("api.yaml")
    check_site_policy(report, POLICY, None)
    assert report.findings[0].level == "warning"


def test_capacity_is_counted_in_the_vos_partitions() -> None:
    config = ApiConfig.model_validate({"site": {"partition": "debug"}, "site_policy": {"vos": [
        {"vo": "a", "partitions": ["gpu", "debug"]}, {"vo": "b", "partitions": ["long"]}]}})
    assert capacity_partitions(config) == "debug,gpu,long"
    config.site_policy.vos[1].partitions.clear()  # a VO that may use any partition: the site's choice
    assert capacity_partitions(config) == "debug"


ROLE_POLICY = SitePolicySection.model_validate({"vos": [
    {"vo": "alpha.example.org", "role": "manager", "account": "alpha-managers", "max_time_minutes": 2880},
    {"vo": "alpha.example.org", "group": "gpu", "account": "alpha-gpu", "partitions": ["gpu"], "max_gpus": 4},
    {"vo": "alpha.example.org", "account": "alpha", "max_time_minutes": 60},
]})


@pytest.mark.parametrize(("entitlements", "account"), [
    (["urn:mace:egi.eu:group:alpha.example.org:role=member#aai.egi.eu"], "alpha"),
    (["urn:mace:egi.eu:group:alpha.example.org:role=member#aai.egi.eu",
      "urn:mace:egi.eu:group:alpha.example.org:role=manager#aai.egi.eu"], "alpha-managers"),
    (["urn:mace:egi.eu:group:alpha.example.org:role=member#aai.egi.eu",
      "urn:mace:egi.eu:group:alpha.example.org:gpu:role=member#aai.egi.eu"], "alpha-gpu"),
    # a manager of the subgroup only is not a manager of the VO; an untrusted authority counts for nothing
    (["urn:mace:egi.eu:group:alpha.example.org:role=member#aai.egi.eu",
      "urn:mace:egi.eu:group:alpha.example.org:gpu:role=manager#aai.egi.eu"], "alpha-gpu"),
    (["urn:mace:egi.eu:group:alpha.example.org:role=member#aai.egi.eu",
      "urn:mace:egi.eu:group:alpha.example.org:role=manager#evil.example.org"], "alpha"),
])
def test_entries_per_group_and_role_follow_the_entitlements(entitlements: list[str], account: str) -> None:
    decision = EntitlementPolicy.from_dict({"vos": ["alpha.example.org"]}).decide(
        {"eduperson_entitlement": entitlements})
    assert decision.allowed
    placement = choose_vo(ROLE_POLICY, decision.vos, None, decision.groups)
    assert placement.policy is not None and placement.policy.account == account


def test_an_entry_per_role_is_distinct_from_the_vos_own() -> None:
    with pytest.raises(ValidationError, match="two entries"):
        SitePolicySection.model_validate({"vos": [{"vo": "a", "role": "x"}, {"vo": "a", "role": "x"}]})
    assert [e.name for e in ROLE_POLICY.vos] == ["alpha.example.org#role=manager", "alpha.example.org:gpu",
                                                 "alpha.example.org"]


def test_the_proxy_counts_queued_and_running_jobs_of_the_account_per_user() -> None:
    jobs = {"jobs": [
        {"account": "alpha", "user_name": "u1", "job_state": "PENDING"},
        {"account": "alpha", "user_name": "u1", "job_state": ["RUNNING", "COMPLETING"]},  # v0.0.40+: a list
        {"account": "alpha", "user_name": "u2", "job_state": "RUNNING"},
        {"account": "alpha", "user_name": "u1", "job_state": "COMPLETED"},
        {"account": "beta", "user_name": "u1", "job_state": "RUNNING"},
        "junk",
    ]}
    assert count_active(jobs, "alpha") == {"u1": 2, "u2": 1}
    assert count_active({"jobs": None}, "alpha") == {}


def test_a_member_through_a_subgroup_only_still_gets_the_vos_plain_entry() -> None:
    decision = EntitlementPolicy.from_dict({"vos": ["alpha.example.org"], "subgroups_count": True}).decide(
        {"eduperson_entitlement": ["urn:mace:egi.eu:group:alpha.example.org:other:role=member#aai.egi.eu"]})
    placement = choose_vo(ROLE_POLICY, decision.vos, None, decision.groups)
    assert placement.policy is not None and placement.policy.account == "alpha"  # never unrestricted


def test_check_config_warns_of_a_vo_with_group_or_role_entries_only() -> None:
    report = Report("api.yaml")
    only_roles = SitePolicySection.model_validate({"vos": [{"vo": "a", "role": "manager"}]})
    check_site_policy(report, only_roles, ["a"])
    assert report.findings[0].level == "warning" and "add an entry without group and role" in report.findings[0].message


@pytest.mark.parametrize("text", ["vo.example.org\nX-Evil: 1", "vo.example.org\r\n\r\nx", "vö.example.org", "", "-x",
                                  "a" * 300])
def test_what_cannot_be_a_vo_name_never_reaches_a_header(text: str) -> None:
    with pytest.raises(PolicyRefused, match="is not a VO name"):
        asked_vo(text)
    assert asked_vo(" vo.example.org ") == "vo.example.org" and asked_vo(None) is None


# --- what a review found: limits that other spellings passed ---------------------------------------------------

@pytest.mark.parametrize("flags", ["-t 0", "--time=0", "--time=00:00", "--time=0-0"])
def test_a_time_limit_of_zero_is_no_limit_and_is_refused_under_a_max(flags: str) -> None:
    with pytest.raises(PolicyRefused, match="means no limit") as refused:
        placed(["alpha.example.org"], flags)
    assert refused.value.rule == "max_time_minutes"


@pytest.mark.parametrize("limit", [0, -1, -2, {"set": True, "number": 0}, {"set": True, "number": -1}])
def test_a_job_description_with_a_time_limit_of_zero_or_less_is_refused(limit: Any) -> None:
    placement = choose_vo(POLICY, ["alpha.example.org"], None)
    with pytest.raises(PolicyRefused, match="means no limit"):
        place_body({"job": {"name": "x", "time_limit": limit}}, placement)


@pytest.mark.parametrize(("flags", "allowed"), [
    ("--gres=gpu:2", True), ("--gres=gpu:1 --nodes=2", True), ("--gres=gpu:1 --nodes=64", False),
    ("--gres=gpu:1 -N 1-3", False), ("--gpus-per-node=1 --ntasks=3", False), ("--gres=gpu:1 --ntasks=2", True),
    ("--gpus=2 --nodes=8", True), ("--gres=gpu:1 --nodes=x", False),
])
def test_per_node_gpus_count_once_per_node_the_job_may_get(flags: str, allowed: bool) -> None:
    if allowed:
        placed(["beta.example.org"], flags)
    else:
        with pytest.raises(PodRejected) as refused:
            placed(["beta.example.org"], flags)
        assert refused.value.reason == "GpuLimitExceeded"


@pytest.mark.parametrize(("job", "allowed"), [
    ({"gres": "gpu:1", "nodes": 2}, True), ({"gres": "gpu:1", "nodes": 64}, False),
    ({"gres": "gpu:1", "maximum_nodes": 3}, False), ({"gres": "gpu:1", "nodes": "1-3"}, False),
    ({"gres": "gpu:1", "tasks": 64}, False), ({"gpus_per_node": "1", "minimum_nodes": 1}, True),
    ({"gpus_per_task": 1, "tasks": 64}, False), ({"tres_per_task": "gres/gpu:1"}, False),
    ({"tres_per_job": "gres/gpu:2", "nodes": 64}, True),
])
def test_job_description_gpus_count_per_node_and_refuse_per_task(job: dict[str, Any], allowed: bool) -> None:
    placement = choose_vo(POLICY, ["beta.example.org"], None)
    body = {"job": {"name": "x", **job}}
    if allowed:
        place_body(body, placement)
    else:
        with pytest.raises(PolicyRefused) as refused:
            place_body(body, placement)
        assert refused.value.reason == "GpuLimitExceeded"


@pytest.mark.parametrize("body", [
    {"job": {"name": "x", "array": "0-9999"}},
    {"jobs": [{"name": "a"}, {"name": "b"}]},
])
def test_arrays_and_heterogeneous_jobs_are_refused_under_a_cap(body: dict[str, Any]) -> None:
    with pytest.raises(PolicyRefused, match="arrays and heterogeneous") as refused:
        place_body(copy.deepcopy(body), choose_vo(POLICY, ["alpha.example.org"], None))
    assert refused.value.reason == "JobCapReached"
    place_body(copy.deepcopy(body), choose_vo(POLICY, ["beta.example.org"], None))  # no cap: taken
