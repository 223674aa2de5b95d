"""The job root: where pod directories are, with the owner and mode each mode needs (docs/configuration.md,
docs/mode1.md, docs/proxy.md).

- Mode 2 (`slurmlink api`, `backend: cli`): the API (root) creates `<job_root>/<namespace>-<uid>` for the job's
  user. Only the service may create directories there (that is how it tells a pod's job from an impostor's), and
  the users' jobs must pass through it: owned by root, not writable by others, searchable by all (`0711`).
- Mode 1 (`slurmlink proxy`, `files.job_root`): each job makes its own directory: root-owned, sticky, writable
  and searchable by all, not listable (`1733`, like /tmp without read).
"""

from __future__ import annotations

import os
import stat

from slurmlink.checks.files import Fs, existing_directory
from slurmlink.checks.report import Report


def _directory(report: Report, key: str, name: str, fs: Fs) -> os.stat_result | None:
    if not name.startswith("/"):
        report.error(key, f"{name} is not an absolute path")
        return None
    return existing_directory(report, key, name, fs)


def check_mode2(report: Report, key: str, name: str, fs: Fs) -> None:
    info = _directory(report, key, name, fs)
    if info is None:
        return
    mode = stat.S_IMODE(info.st_mode)
    problems = []
    if info.st_uid != 0:
        problems.append(("warning", f"is owned by uid {info.st_uid}, not root: the API acts for several users "
                                    "only as root"))
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        problems.append(("error", f"is writable by others (mode {mode:04o}): only the API may create pod "
                                  "directories there (it tells a pod's job by them); use 0711"))
    if not mode & stat.S_IXOTH:
        problems.append(("error", f"is not searchable by others (mode {mode:04o}): the users' jobs cannot reach "
                                  "their pod directories; use 0711"))
    if mode & stat.S_IROTH:
        problems.append(("warning", f"is listable by everyone (mode {mode:04o}): users see each other's pods; "
                                    "0711 is enough"))
    if not os.access(fs.path(name), os.W_OK | os.X_OK):
        problems.append(("error", "is not writable by this user: run check-config as the API's user (root)"))
    _conclude(report, key, fs.show(name), mode, problems)


def check_mode1(report: Report, key: str, name: str, fs: Fs) -> None:
    info = _directory(report, key, name, fs)
    if info is None:
        return
    mode = stat.S_IMODE(info.st_mode)
    problems = []
    if info.st_uid != 0:
        problems.append(("warning", f"is owned by uid {info.st_uid}, not root (its owner could remove "
                                    "anyone's pod directory)"))
    if (mode & (stat.S_IWOTH | stat.S_IXOTH)) != (stat.S_IWOTH | stat.S_IXOTH):
        problems.append(("error", f"mode {mode:04o}: jobs make their own pod directories there, so it must be "
                                  "writable and searchable by all; use 1733"))
    elif not mode & stat.S_ISVTX:
        problems.append(("error", f"mode {mode:04o} without the sticky bit: users could remove each other's pod "
                                  "directories; use 1733"))
    if mode & stat.S_IROTH:
        problems.append(("warning", f"is listable by everyone (mode {mode:04o}); 1733 is enough"))
    _conclude(report, key, fs.show(name), mode, problems)


def _conclude(report: Report, key: str, shown: str, mode: int, problems: list[tuple[str, str]]) -> None:
    for level, problem in problems:
        (report.error if level == "error" else report.warning)(key, f"{shown} {problem}")
    if not problems:
        report.ok(key, f"{shown} has a suitable owner and mode ({mode:04o})")


def check_agreement(report: Report, api_root: str, proxy_root: str | None, proxy_source: str) -> None:
    """Mode 1: the API names pod directories below its `job_root`; the proxy reads only below its own."""
    if proxy_root is None:
        report.error("job_root", f"{proxy_source} has no files.job_root: the proxy answers no status or log "
                                 "request of the API (404)")
    elif os.path.normpath(api_root) != os.path.normpath(proxy_root):
        report.error("job_root", f"{api_root} differs from files.job_root {proxy_root} in {proxy_source}: every "
                                 "status and log read would be refused (403)")
    else:
        report.ok("job_root", f"the same as files.job_root in {proxy_source}")
