"""Pod -> batch job translation: scheduling options, policy refusals and the runtimes' command lines."""

from __future__ import annotations

from typing import Any

import pytest

from slurmlink.core.errors import PodRejected
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from tests.harness.pods import make_pod


def pod(**spec: Any) -> dict[str, Any]:
    return make_pod([{"name": "c", "image": "img", "command": ["true"]}], name="p", namespace="ns", uid="u-1",
                    restart_policy=None, **spec)


def job(p: dict[str, Any], site: SiteConfig | None = None, **kw: Any) -> Any:
    return build_job(p, workdir="/jobs/ns-u-1", site=site or SiteConfig(), **kw)


def test_defaults_never_one_megabyte() -> None:
    j = job(pod())
    assert (j.cpus_per_task, j.memory_mb, j.time_limit_minutes) == (1, 2048, None)
    assert j.name == "slurmlink-u-1" and j.comment == "ns/p"


def test_effective_resources_sum_apps_and_max_inits() -> None:
    p = pod(containers=[
        {"name": "a", "command": ["x"], "resources": {"limits": {"cpu": "1500m", "memory": "1Gi"}}},
        {"name": "b", "command": ["x"], "resources": {"requests": {"cpu": "1", "memory": "512Mi"},
                                                     "limits": {"nvidia.com/gpu": 2}}},
    ], initContainers=[{"name": "i", "command": ["x"], "resources": {"limits": {"cpu": "8", "memory": "100M"}}}])
    j = job(p)
    assert j.cpus_per_task == 8  # the init container alone needs more than both app containers
    assert j.memory_mb == 1536
    assert j.gres == "gpu:2"


def test_deadline_sets_time_limit_with_a_margin() -> None:
    assert job(pod(activeDeadlineSeconds=61)).time_limit_minutes == 3


def test_flags_annotation_allowed_and_structured() -> None:
    p = pod()
    p["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--qos=high -A proj --mem=4G --partition debug"}
    j = job(p)
    assert j.memory_mb == 4096 and j.partition == "debug"
    assert j.extra_options == ("--qos=high", "--account=proj")


@pytest.mark.parametrize("flags", ["--uid=0", "--export=ALL", "-u 0", "--array=1-3", "--dependency=afterok:1",
                                   "--wrap=id", "--get-user-env", "--expo=ALL", "rm -rf /", "--account",
                                   "-A", "--qos --account=x", "--exclusive=x"])
def test_flags_annotation_refuses_dangerous_options(flags: str) -> None:
    p = pod()
    p["metadata"]["annotations"] = {"slurm-job.vk.io/flags": flags}
    with pytest.raises(PodRejected) as err:
        job(p)
    assert "slurm-job.vk.io/flags" in err.value.message


def test_pre_exec_needs_the_site() -> None:
    p = pod()
    p["metadata"]["annotations"] = {"slurm-job.vk.io/pre-exec": "module load x"}
    with pytest.raises(PodRejected, match="not enabled"):
        job(p)
    assert "module load x" in job(p, SiteConfig(allow_pre_exec=True)).script


@pytest.mark.parametrize("change, message", [
    ({"volumes": [{"name": "v", "hostPath": {"path": "/etc"}}]}, "hostPath /etc is not allowed"),
    ({"volumes": [{"name": "v", "persistentVolumeClaim": {"claimName": "x"}}]}, "not supported"),
    ({"volumes": [{"name": "v", "configMap": {"name": "missing"}}]}, 'configmap "missing" not found'),
    ({"volumes": [{"name": "v", "configMap": {"name": "cm", "items": [{"key": "k", "path": "../x"}]}}]},
     "without '..'"),
    ({"containers": [{"name": "Bad_Name", "command": ["x"]}]}, "not a DNS label"),
    ({"containers": [{"name": "c", "command": ["x"], "env": [{"name": "A", "valueFrom":
                                                             {"secretKeyRef": {"name": "nope", "key": "k"}}}]}]},
     'secret "nope" not found'),
    ({"containers": [{"name": "c"}]}, "cannot run an image's default entrypoint"),
    ({"terminationGracePeriodSeconds": -1}, "non-negative"),
    ({"containers": [{"name": "c", "image": "--bind=/etc:/mnt://x", "command": ["x"]}]}, "must not start with '-'"),
    ({"volumes": [{"name": "v", "emptyDir": {}}],
      "containers": [{"name": "c", "command": ["x"], "volumeMounts": [{"name": "v", "mountPath": "//x"}]}]},
     "normalised absolute path"),
    ({"containers": [{"name": "c", "command": ["x"], "env": [{"name": "A", "valueFrom": {"resourceFieldRef": {
        "resource": "limits.cpu", "divisor": "0"}}}], "resources": {"limits": {"cpu": "1"}}}]}, "divisor"),
])
def test_unrunnable_pods_are_refused_with_a_reason(change: dict[str, Any], message: str) -> None:
    with pytest.raises(PodRejected) as err:
        job(pod(**change), configmaps=[{"metadata": {"name": "cm"}, "data": {"k": "v"}}])
    assert message in err.value.message


def test_host_path_allowed_below_a_site_prefix() -> None:
    p = pod(volumes=[{"name": "v", "hostPath": {"path": "/scratch/data"}}],
            containers=[{"name": "c", "command": ["x"], "volumeMounts": [{"name": "v", "mountPath": "/data"}]}])
    assert "/scratch/data" in job(p, SiteConfig(host_path_prefixes=("/scratch",))).script


def test_apptainer_command_line() -> None:
    p = pod(containers=[{"name": "c", "image": "python:3.12", "args": ["-V"], "env": [{"name": "A", "value": "1"}],
                         "volumeMounts": [{"name": "v", "mountPath": "/cfg", "readOnly": True}]}],
            volumes=[{"name": "v", "emptyDir": {}}])
    script = job(p, SiteConfig(runtime="apptainer")).script
    assert ("apptainer run --containall --cleanenv --no-eval --bind /jobs/ns-u-1/volumes/v:/cfg:ro "
            "docker://python:3.12 -V") in script
    assert "APPTAINERENV_A=1" in script


def test_secret_files_are_never_group_or_world_readable() -> None:
    p = pod(volumes=[{"name": "s", "secret": {"secretName": "s", "defaultMode": 0o644}}])
    script = job(p, secrets=[{"metadata": {"name": "s"}, "data": {"k": "dg=="}}]).script
    assert "sl_file volumes/s/k 600 <<" in script


def test_kubernetes_variable_expansion() -> None:
    p = pod(containers=[{"name": "c", "command": ["echo", "$(A)-$(B)-$$(A)"], "env": [
        {"name": "A", "value": "x"}, {"name": "B", "value": "$(A)y"}]}])
    assert "'x-xy-$(A)'" in job(p).script
