"""Property test: the argv of `kubectl exec` reaches the command exactly, and is never run by a shell.

exec_argv's bash script runs under a real bash (no SLURM needed: the step only starts it), with the host
runtime; the command is a Python program that reports its argv and environment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slurmlink.core.errors import PodRejected
from slurmlink.translate.env import expand
from slurmlink.translate.execcmd import exec_argv
from slurmlink.translate.site import SiteConfig
from tests.unit.test_script_hostile import INJECTIONS

REPORT = "import json, os, sys; json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, open('report.json', 'w'))"
hostile = st.one_of(st.sampled_from(INJECTIONS),
                    st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40))


def _pod(env: list[dict[str, object]] | None = None, runtime: str | None = None) -> dict[str, object]:
    notes = {"slurmlink.io/runtime": runtime} if runtime else {}
    return {"metadata": {"name": "p", "namespace": "n", "uid": "u", "annotations": notes},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "600"],
                                     "env": env or []}]}}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(hostile, max_size=6), value=hostile)
def test_hostile_arguments_reach_the_command_exactly(args: list[str], value: str) -> None:
    with tempfile.TemporaryDirectory() as workdir:
        pod = _pod(env=[{"name": "GIVEN", "value": value}])
        argv = exec_argv(pod, "main", [sys.executable, "-c", REPORT, *args], site=SiteConfig(), workdir=workdir)
        subprocess.run(argv, cwd=workdir, check=True, timeout=30)  # what srun starts, without srun
        report = json.loads((Path(workdir) / "report.json").read_text())
        assert report["argv"] == args
        assert report["env"]["GIVEN"] == expand(value, {})  # Kubernetes' $(VAR) expansion, nothing more
        assert not (Path(workdir) / "CANARY").exists()


def test_values_from_secrets_are_not_given() -> None:
    pod = _pod(env=[{"name": "PLAIN", "value": "v"},
                    {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}])
    script = exec_argv(pod, "main", ["env"], site=SiteConfig(), workdir="/w")[2]
    assert "PLAIN=v" in script and "SECRET=" not in script


def test_refusals() -> None:
    with pytest.raises(PodRejected, match="at least one command"):
        exec_argv(_pod(), "main", [], site=SiteConfig(), workdir="/w")
    with pytest.raises(PodRejected, match="not valid"):
        exec_argv(_pod(), "other", ["id"], site=SiteConfig(), workdir="/w")
    with pytest.raises(PodRejected, match="apptainer runtime"):
        exec_argv(_pod(runtime="apptainer"), "main", ["id"], site=SiteConfig(), workdir="/w")
