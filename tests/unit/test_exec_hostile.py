"""Property test: the argv of `kubectl exec` reaches the command exactly, and is never run by a shell.

exec_argv's bash script runs under a real bash (no SLURM needed: the step only starts it), with the host
runtime; the command is a Python program that reports its argv and environment. In mode 1 the argv also
travels from the API to the proxy (a JSON body) and into the proxy's step argv: that path is checked too.
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
from slurmlink.proxy.interactive import command_of
from slurmlink.steps.srun import as_account, step_argv
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


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=st.lists(hostile, max_size=6))
def test_hostile_arguments_reach_the_command_exactly_through_the_proxy(args: list[str]) -> None:
    """Mode 1: the API sends exec_argv's argv as `{"command": argv}`, the proxy reads it back and puts it after
    `srun ... --` in its step (behind setpriv): the words after `--` are the API's, and run as they did above."""
    with tempfile.TemporaryDirectory() as workdir:
        pod = _pod()
        argv = exec_argv(pod, "main", [sys.executable, "-c", REPORT, *args], site=SiteConfig(), workdir=workdir)
        command = command_of(json.dumps({"command": argv}).encode())  # what the proxy takes from the body
        step = as_account(step_argv("srun", "7", workdir, list(command), pty=False), "nobody")
        srun_at = step.index("srun")
        assert step[:srun_at].count("--") == 1 and step[srun_at - 1] == "--"  # setpriv's options end there
        tail = step[step.index("--", srun_at) + 1:]
        assert tail == argv
        subprocess.run(tail, cwd=workdir, check=True, timeout=30)  # what srun starts on the node
        assert json.loads((Path(workdir) / "report.json").read_text())["argv"] == args
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
