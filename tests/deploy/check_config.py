"""Helpers of tests/deploy/test_check_config.py: the shipped example configurations, a staged site tree in which
each of them is complete (what a site prepares: its files, job root and commands), and the command itself."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from slurmlink.api.config import ApiConfig
from slurmlink.checks.files import PUBLIC_KEYS, SECRET_KEYS, STATE_FILE_KEYS, named_paths
from slurmlink.checks.run import MODELS
from slurmlink.config import load_config
from slurmlink.proxy.config import ProxyConfig
from slurmlink.slurm.cli import COMMANDS, CliConfig
from slurmlink.slurm.runner import DEFAULT_PATH

REPO = Path(__file__).resolve().parents[2]


def examples_dir() -> Path:
    """Where the shipped example configurations are (the one line to change when they move)."""
    return REPO / "slurmlink" / "examples"


def example_configs() -> list[Path]:
    """The services' example configurations (api-*.yaml, proxy.yaml, vk.yaml), not the pods'."""
    return sorted(path for path in examples_dir().glob("*.yaml") if service_of(path) is not None)


def service_of(path: Path) -> str | None:
    for service in MODELS:
        if path.stem == service or path.stem.startswith(f"{service}-"):
            return service
    return None


@dataclass
class Result:
    code: int
    lines: list[str]
    stderr: str

    def errors(self) -> list[str]:
        return [line for line in self.lines if line.startswith("error")]

    def line_of(self, text: str) -> str:
        """The one line that contains `text`."""
        found = [line for line in self.lines if text in line]
        assert len(found) == 1, f"{text!r} in {len(found)} lines of:\n" + "\n".join(self.lines)
        return found[0]


def check_config(service: str, config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    """`slurmlink check-config` as a process of its own, with no SLURMLINK_* variables but those in `env`."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURMLINK_")}
    environ.update(env or {})
    done = subprocess.run([sys.executable, "-m", "slurmlink.cli", "check-config", service, "-c", str(config), *args],
                          capture_output=True, text=True, env=environ, timeout=120)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr + done.stdout
    return Result(done.returncode, done.stdout.splitlines(), done.stderr)


def _write(path: Path, mode: int, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _directory(path: Path, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    path.chmod(mode)


def stage_site(root: Path, service: str, config_path: Path) -> None:
    """Under `root`, what the configuration names, made as a site would: secrets 0600, other files 0644, the
    job root with its mode, SLURM's commands on the services' PATH."""
    config: BaseModel = load_config(MODELS[service], config_path, {})
    for key, name, value in named_paths(config):
        target = root / value.lstrip("/")
        if name == "url" and value.startswith("sqlite:///"):  # the pool's database
            (root / value.removeprefix("sqlite:///").lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        elif name in SECRET_KEYS:
            _write(target, 0o600)
        elif name in STATE_FILE_KEYS:
            target.parent.mkdir(parents=True, exist_ok=True)
        elif name in PUBLIC_KEYS or name.endswith("_file") or key.endswith(".static.path"):
            _write(target, 0o644, "")
        elif name == "bin_dir":
            target.mkdir(parents=True, exist_ok=True)
    if isinstance(config, ApiConfig) and config.backend == "cli":
        _directory(root / config.job_root.lstrip("/"), 0o711)
        bin_dir = config.cli.bin_dir or DEFAULT_PATH.split(":")[1]
        for command in COMMANDS:
            _write(root / bin_dir.lstrip("/") / command, 0o755, "#!/bin/sh\n")
        _write(root / CliConfig(job_root="/").runuser.lstrip("/"), 0o755, "#!/bin/sh\n")
    if isinstance(config, ProxyConfig):
        if config.files is not None:
            _directory(root / config.files.job_root.lstrip("/"), 0o1733)
        if config.signals is not None:
            _write(root / DEFAULT_PATH.split(":")[1].lstrip("/") / config.signals.scancel, 0o755, "#!/bin/sh\n")
