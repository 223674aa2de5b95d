"""The apptainer runtime, run for real by bash against a stand-in `apptainer` (standins/apptainer)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from slurmlink.translate.script import build_job
from slurmlink.translate.site import ApptainerSettings, SiteConfig
from tests.harness.pods import make_pod

STANDIN = Path(__file__).resolve().parents[2] / "standins" / "apptainer"


def run_pod(tmp_path: Path, containers: list[dict[str, object]]) -> tuple[Path, list[dict[str, object]]]:
    pod = make_pod(containers, name="app", namespace="ns", uid="u-1",
                   volumes=[{"name": "cfg", "configMap": {"name": "cm"}}])
    site = SiteConfig(runtime="apptainer", apptainer=ApptainerSettings(executable=str(STANDIN)))
    workdir = tmp_path / "pod"
    workdir.mkdir()
    job = build_job(pod, workdir=str(workdir), site=site,
                    configmaps=[{"metadata": {"name": "cm"}, "data": {"k": "v"}}])
    done = subprocess.run(["bash", "-c", job.script], capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    calls = (workdir / "apptainer-calls.jsonl").read_text().splitlines()
    return workdir, [json.loads(line) for line in calls]


def test_exec_with_env_binds_and_working_dir(tmp_path: Path) -> None:
    workdir, [call] = run_pod(tmp_path, [{
        "name": "c", "image": "python:3.12", "command": ["sh", "-c", 'echo "$GREETING"; pwd'], "workingDir": "/tmp",
        "env": [{"name": "GREETING", "value": "hi $(x) 'q'"}],
        "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": True}]}])
    assert call["verb"] == "exec" and call["image"] == "docker://python:3.12"
    assert call["options"] == ["--containall", "--cleanenv", "--no-eval"]
    assert call["binds"] == [f"{workdir}/volumes/cfg:/etc/cfg:ro"]
    assert call["argv"] == ["sh", "-c", 'echo "$GREETING"; pwd']
    assert (workdir / "logs" / "c.log").read_bytes() == b"hi $(x) 'q'\n/tmp\n"


def test_run_uses_the_image_entrypoint_when_no_command(tmp_path: Path) -> None:
    workdir, [call] = run_pod(tmp_path, [{"name": "c", "image": "/images/tool.sif", "args": ["hello", "$(x)"]}])
    assert (call["verb"], call["image"], call["argv"]) == ("run", "/images/tool.sif", ["hello", "$(x)"])
    assert (workdir / "logs" / "c.log").read_bytes() == b"hello $(x)\n"
