"""The `identity:` section's environment, for the API (mode 2) and the proxy: the static maps (who runs as whom,
so nobody but the site may write them), the pool's database and accounts. Secret files are checked with every
other `*_file` key (files.py)."""

from __future__ import annotations

import os
import pwd
import stat

from slurmlink.checks.files import Fs, readable_file
from slurmlink.checks.report import Report
from slurmlink.identity.config import IdentityConfig
from slurmlink.identity.mapping import MappingError
from slurmlink.identity.mapping.pool import PoolOptions, pool_accounts
from slurmlink.identity.mapping.static import StaticOptions


def check_identity(report: Report, identity: IdentityConfig, key: str, fs: Fs) -> None:
    for i, step in enumerate(identity.mapping):
        here = f"{key}.mapping.{i}.{step.kind}"
        if isinstance(step, StaticOptions):
            _static_map(report, f"{here}.path", step, fs)
        elif isinstance(step, PoolOptions) and fs.root is None:
            _pool_accounts(report, here, step)  # its database's directory is state (check_state)


def _static_map(report: Report, key: str, step: StaticOptions, fs: Fs) -> None:
    path = fs.path(step.path)
    try:
        info = os.stat(path)
    except OSError:
        readable_file(report, key, step.path, fs)  # says what is wrong
        return
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        report.error(key, f"{fs.show(step.path)} decides who runs as whom and is writable by others "
                          f"(mode {stat.S_IMODE(info.st_mode):04o})")
        return
    try:
        step.model_copy(update={"path": str(path)}).build()  # parsed as the service will
    except (MappingError, OSError) as exc:
        report.error(key, str(exc))
        return
    report.ok(key, f"{fs.show(step.path)} is a valid map")


def _pool_accounts(report: Report, key: str, step: PoolOptions) -> None:
    try:
        names = pool_accounts(step.prefix, step.digits, step.first, step.last)
    except ValueError as exc:
        report.error(key, str(exc))
        return
    existing = [name for name in names if _exists(name)]
    if not existing:
        report.error(key, f"none of the pool's accounts ({names[0]}..{names[-1]}) exists on this host")
    elif len(existing) < len(names):
        report.warning(key, f"{len(existing)} of the pool's {len(names)} accounts exist on this host; "
                            "the others are skipped")
    else:
        report.ok(key, f"all {len(names)} pool accounts exist")


def _exists(account: str) -> bool:
    try:
        pwd.getpwnam(account)
    except KeyError:
        return False
    return True
