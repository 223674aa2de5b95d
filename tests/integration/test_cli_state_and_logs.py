"""The real `slurmlink vk` command at start: its state directory is made, a tmpfs under it is warned about once
(naming the key and the path), and `--log-format json` / SLURMLINK_LOG_FORMAT make that warning a JSON line.

Each case exits before serving anything (the kubeconfig is missing on purpose): no SLURM, no apiserver."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from slurmlink.statepaths import parse_mountinfo, volatile


@pytest.fixture
def tmpfs_dir() -> Iterator[Path]:
    shm = Path("/dev/shm")  # noqa: S108 - a tmpfs on Linux, the place state must not be
    with open("/proc/self/mountinfo") as fh:
        if not shm.is_dir() or volatile(str(shm), parse_mountinfo(fh.read())) is None:
            pytest.skip("/dev/shm is not a tmpfs here")
    path = shm / f"slurmlink-test-{uuid.uuid4().hex[:8]}"
    yield path
    shutil.rmtree(path, ignore_errors=True)


def start_vk(tmp_path: Path, state_dir: Path, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    config = {"kube": {"kubeconfig": str(tmp_path / "missing.kubeconfig")}, "kubelet": {"tls": "csr"},
              "state_dir": str(state_dir)}
    path = tmp_path / "vk.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([sys.executable, "-m", "slurmlink.cli", "vk", "-c", str(path), *args],
                          capture_output=True, text=True, timeout=60, check=False, env=env)


def test_state_on_tmpfs_is_warned_about_in_json(tmp_path: Path, tmpfs_dir: Path) -> None:
    result = start_vk(tmp_path, tmpfs_dir, "--log-format", "json")
    assert result.returncode == 2, result.stderr  # the missing kubeconfig, after the state was prepared
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [warning] = [line for line in lines if line["logger"] == "slurmlink.statepaths"]
    assert warning["level"] == "WARNING" and (warning["key"], warning["path"]) == ("state_dir", str(tmpfs_dir))
    assert warning["message"].startswith(f"state_dir: {tmpfs_dir} (kubelet serving certificate) is on a tmpfs")
    assert stat.S_IMODE(tmpfs_dir.stat().st_mode) == 0o700
    assert "configuration error: " in result.stderr and "kube.kubeconfig" in result.stderr


def test_the_log_format_comes_from_the_environment_too(tmp_path: Path, tmpfs_dir: Path) -> None:
    as_json = start_vk(tmp_path, tmpfs_dir, env={**os.environ, "SLURMLINK_LOG_FORMAT": "json"})
    assert any(line.startswith('{"time": ') for line in as_json.stderr.splitlines()), as_json.stderr
    as_text = start_vk(tmp_path, tmpfs_dir)
    assert f"WARNING slurmlink.statepaths: state_dir: {tmpfs_dir} " in as_text.stderr, as_text.stderr
    wrong = start_vk(tmp_path, tmpfs_dir, "--log-format", "xml")
    assert wrong.returncode == 2 and "--log-format" in wrong.stderr


def test_a_state_dir_that_cannot_be_made_names_the_key(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = start_vk(tmp_path, blocker / "vk")
    assert result.returncode == 2
    assert f"state_dir: cannot make the directory {blocker}/vk" in result.stderr, result.stderr
