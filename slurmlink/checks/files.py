"""Checks of the files and directories a configuration names, shared by the three services.

Every `*_file` key is found by walking the loaded model, so a key added later is checked without a change here:
secrets (keys, tokens, client secrets, kubeconfigs) must be readable and not world-readable (group-readable is
a warning: systemd credentials and Kubernetes' fsGroup make such files on purpose); public files (certificates,
CA bundles, slurm.conf) must be readable. Nothing named may be world-writable. `Fs.root` checks a tree as it
will be seen from elsewhere (an unpacked container image, a staged configuration tree).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from slurmlink.checks.report import Report
from slurmlink.statepaths import StatePath

# Keys whose files hold secrets, and keys whose files may be read by anyone; other `*_file` keys: readable.
SECRET_KEYS = frozenset({"key_file", "token_file", "jwt_key_file", "bearer_token_file", "service_token_file",
                         "client_secret_file", "apikey_file", "kubeconfig"})
PUBLIC_KEYS = frozenset({"cert_file", "ca_file", "client_ca_file", "slurm_conf"})
DIRECTORY_KEYS = frozenset({"bin_dir"})
SOCKET_KEYS = frozenset({"socket"})  # a unix socket the service binds: its directory must be there
# State the service keeps (made by it, 0700, when missing): checked from slurmlink.statepaths' list, which says
# which of it is in use (a CSR state file only with tls: csr), not by this walk.
STATE_FILE_KEYS = frozenset({"state_file"})
STATE_DIRECTORY_KEYS = frozenset({"state_dir"})


@dataclass(frozen=True)
class Fs:
    """Where paths are looked up: `/` (the default), or a tree standing in for it."""

    root: Path | None = None

    def path(self, name: str) -> Path:
        if self.root is None:
            return Path(name)
        return self.root / name.lstrip("/")

    def show(self, name: str) -> str:
        return name if self.root is None else f"{name} (under {self.root})"


def named_paths(model: BaseModel, key: str = "") -> Iterator[tuple[str, str, str]]:
    """(key, field name, value) of every string field in `model`, recursively (lists by index; a mapping step
    by its strategy: `identity.mapping.0.static.path`)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        here = f"{key}.{name}" if key else name
        yield from _walk(value, here, name)


def _walk(value: Any, key: str, name: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(value, BaseModel):
        kind = getattr(value, "kind", None)
        yield from named_paths(value, f"{key}.{kind}" if isinstance(kind, str) else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{key}.{i}", name)
    elif isinstance(value, str):
        yield key, name, value


def check_named_files(report: Report, model: BaseModel, fs: Fs) -> None:
    """Every file and directory key of `model` (see the module's docstring); each path once."""
    seen: set[str] = set()
    for key, name, value in named_paths(model):
        if not value or value in seen:
            continue
        if name in SECRET_KEYS:
            secret_file(report, key, value, fs)
        elif name in STATE_FILE_KEYS or name in STATE_DIRECTORY_KEYS:
            continue  # state: checked from slurmlink.statepaths' list (check_state), as the service prepares it
        elif name in PUBLIC_KEYS or name.endswith("_file"):
            readable_file(report, key, value, fs)
        elif name in SOCKET_KEYS:
            socket_path(report, key, value, fs)
        elif name in DIRECTORY_KEYS:
            directory(report, key, value, fs)
        else:
            continue
        seen.add(value)


def _stat(report: Report, key: str, name: str, fs: Fs) -> os.stat_result | None:
    try:
        return os.stat(fs.path(name))
    except FileNotFoundError:
        report.error(key, f"{fs.show(name)} does not exist")
    except OSError as exc:
        report.error(key, f"cannot look at {fs.show(name)}: {exc.strerror}")
    return None


def _readable(report: Report, key: str, name: str, fs: Fs) -> os.stat_result | None:
    """The file's stat if it is a readable regular file; an error naming `key` otherwise."""
    info = _stat(report, key, name, fs)
    if info is None:
        return None
    if not stat.S_ISREG(info.st_mode):
        report.error(key, f"{fs.show(name)} is not a regular file")
        return None
    try:
        with open(fs.path(name), "rb") as handle:
            handle.read(1)
    except OSError as exc:
        report.error(key, f"cannot read {fs.show(name)}: {exc.strerror} (run check-config as the service's user)")
        return None
    if info.st_mode & stat.S_IWOTH:
        report.error(key, f"{fs.show(name)} is world-writable (mode {_mode(info)}): anyone could replace it")
        return None
    return info


def readable_file(report: Report, key: str, name: str, fs: Fs) -> None:
    info = _readable(report, key, name, fs)
    if info is not None:
        report.ok(key, f"{fs.show(name)} is readable")


def secret_file(report: Report, key: str, name: str, fs: Fs) -> None:
    info = _readable(report, key, name, fs)
    if info is None:
        return
    if info.st_mode & stat.S_IROTH:
        report.error(key, f"{fs.show(name)} holds a secret and is world-readable (mode {_mode(info)}): chmod 600")
    elif info.st_mode & stat.S_IRGRP:
        report.warning(key, f"{fs.show(name)} holds a secret and is readable by its group (mode {_mode(info)})")
    elif info.st_size == 0:
        report.error(key, f"{fs.show(name)} is empty")
    else:
        report.ok(key, f"{fs.show(name)} is readable and private (mode {_mode(info)})")


def state_file(report: Report, key: str, name: str, fs: Fs) -> None:
    """A file the service writes (a key and certificate): its directory must let it, an old one be private."""
    path = fs.path(name)
    if not os.path.lexists(path):
        parent = path.parent
        if not parent.is_dir():
            report.error(key, f"the directory of {fs.show(name)} does not exist")
        elif not os.access(parent, os.W_OK):
            report.error(key, f"cannot create {fs.show(name)}: its directory is not writable")
        else:
            report.ok(key, f"{fs.show(name)} will be created (its directory is writable)")
        return
    info = _readable(report, key, name, fs)
    if info is None:
        return
    if info.st_mode & (stat.S_IRGRP | stat.S_IROTH):
        report.error(key, f"{fs.show(name)} holds a private key and is readable by others (mode {_mode(info)})")
    elif not os.access(path, os.W_OK):
        report.error(key, f"{fs.show(name)} is not writable: the service renews it")
    else:
        report.ok(key, f"{fs.show(name)} is private and writable")


def socket_path(report: Report, key: str, name: str, fs: Fs) -> None:
    parent = fs.path(name).parent
    if not parent.is_dir():
        report.error(key, f"the directory of {fs.show(name)} does not exist")
    elif not os.access(parent, os.W_OK | os.X_OK):
        report.error(key, f"cannot create {fs.show(name)}: its directory is not writable")
    else:
        report.ok(key, f"{fs.show(name)} can be created")


def existing_directory(report: Report, key: str, name: str, fs: Fs) -> os.stat_result | None:
    """The directory's stat; an error naming `key` when it is missing or not a directory."""
    info = _stat(report, key, name, fs)
    if info is not None and not stat.S_ISDIR(info.st_mode):
        report.error(key, f"{fs.show(name)} is not a directory")
        return None
    return info


def directory(report: Report, key: str, name: str, fs: Fs) -> None:
    if existing_directory(report, key, name, fs) is not None:
        report.ok(key, f"{fs.show(name)} is a directory")


def state_directory(report: Report, key: str, name: str, fs: Fs) -> None:
    """State that must persist (pool, ledger, CSR state): the service makes the directory (0700) if missing."""
    path = fs.path(name)
    if not path.exists():
        ancestor = path.parent
        while not ancestor.exists():
            ancestor = ancestor.parent
        if not os.access(ancestor, os.W_OK):
            report.error(key, f"{fs.show(name)} does not exist and cannot be created ({ancestor} is not writable)")
        else:
            report.warning(key, f"{fs.show(name)} does not exist yet; the service creates it (it must persist)")
        return
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        report.error(key, f"{fs.show(name)} is not a directory")
    elif not os.access(path, os.W_OK | os.X_OK):
        report.error(key, f"{fs.show(name)} is not writable")
    elif info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        report.warning(key, f"{fs.show(name)} is open to others (mode {_mode(info)}); 0700 is enough")
    else:
        report.ok(key, f"{fs.show(name)} is a private, writable directory")


def check_state(report: Report, paths: Iterable[StatePath], fs: Fs) -> None:
    """The directories of the state the service keeps (slurmlink.statepaths), each once."""
    for key, directory in dict.fromkeys((p.key, p.directory) for p in paths):
        state_directory(report, key, directory, fs)


def _mode(info: os.stat_result) -> str:
    return f"{stat.S_IMODE(info.st_mode):04o}"
