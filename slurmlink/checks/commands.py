"""SLURM's commands where a service will look for them: `bin_dir`, or the fixed PATH the services give their
commands (slurmlink.slurm.runner.DEFAULT_PATH, never the caller's own PATH)."""

from __future__ import annotations

import os

from slurmlink.checks.files import Fs
from slurmlink.checks.report import Report
from slurmlink.slurm.runner import DEFAULT_PATH


def locate(name: str, bin_dir: str | None, fs: Fs) -> str | None:
    """The path the service would run for `name`, if it is an executable file there."""
    if "/" in name:
        candidates = [name]
    elif bin_dir:
        candidates = [os.path.join(bin_dir, name)]
    else:
        candidates = [os.path.join(directory, name) for directory in DEFAULT_PATH.split(":")]
    for candidate in candidates:
        path = fs.path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return candidate
    return None


def check_commands(report: Report, key: str, names: tuple[str, ...], bin_dir: str | None, fs: Fs) -> None:
    where = fs.show(bin_dir if bin_dir else DEFAULT_PATH)
    where = where if bin_dir else f"PATH {where}"
    missing = [name for name in names if locate(name, bin_dir, fs) is None]
    if missing:
        report.error(key, f"{', '.join(missing)} not found in {where}")
    else:
        report.ok(key, f"{', '.join(names)} found in {where}")
