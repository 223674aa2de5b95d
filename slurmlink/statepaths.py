"""State that must outlive a restart, for every service in one place; made ready when a service starts, with a
warning when it sits where it will not survive (a tmpfs, a container's writable layer).

    service  what                                     where (default)                  lost without it
    api      pool database (pool mapping steps)       <state_dir>/pool.sqlite          who holds which pool account
    proxy    submission ledger                        <state_dir>/submissions.jsonl    what service identities may do
    proxy    pool database (pool mapping steps)       <state_dir>/pool.sqlite          who holds which pool account
    vk       kubelet serving certificate (tls: csr)   <state_dir>/kubelet-serving.pem  the approval of its CSR

A directory that does not exist is made (mode 0700; its parents as the umask says) at start; one that cannot be
made or written is a configuration error naming the key.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.engine import make_url

from slurmlink.api.config import ApiConfig
from slurmlink.config import ConfigError
from slurmlink.identity.config import IdentityConfig
from slurmlink.identity.mapping import PoolOptions
from slurmlink.identity.mapping.pool import default_url
from slurmlink.proxy.config import ProxyConfig
from slurmlink.vk.config import CSR_STATE_FILE, VkConfig

log = logging.getLogger(__name__)

MOUNTINFO = "/proc/self/mountinfo"
# Filesystems whose contents end with the machine's memory or with the container.
VOLATILE = {
    "tmpfs": "a tmpfs (memory): it is gone at the next reboot",
    "ramfs": "a ramfs (memory): it is gone at the next reboot",
    "overlay": "a container's writable layer (overlay): it is gone with the container; mount a volume there",
    "aufs": "a container's writable layer (aufs): it is gone with the container; mount a volume there",
}


@dataclass(frozen=True)
class StatePath:
    key: str  # the configuration key that decides where it is
    directory: str
    what: str


def api_state(config: ApiConfig) -> list[StatePath]:
    return _pool_state(config.identity, config.state_dir) if config.identity is not None else []


def proxy_state(config: ProxyConfig) -> list[StatePath]:
    return [StatePath("state_dir", config.state_dir, "submission ledger"),
            *_pool_state(config.identity, config.state_dir)]


def vk_state(config: VkConfig) -> list[StatePath]:
    state_file = config.kubelet.csr.state_file
    if config.kubelet.tls != "csr" or state_file is None:
        return []
    default = state_file == os.path.join(config.state_dir, CSR_STATE_FILE)
    return [StatePath("state_dir" if default else "kubelet.csr.state_file", os.path.dirname(state_file) or ".",
                      "kubelet serving certificate")]


def _pool_state(identity: IdentityConfig, state_dir: str) -> list[StatePath]:
    """The SQLite files of pool steps (a database server keeps its own state)."""
    found = []
    for i, step in enumerate(identity.mapping):
        if not isinstance(step, PoolOptions) or step.url is None:
            continue
        url = make_url(step.url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            continue
        key = "state_dir" if step.url == default_url(state_dir) else f"identity.mapping.{i}.pool.url"
        found.append(StatePath(key, os.path.dirname(url.database) or ".", "pool database"))
    return found


def prepare(paths: Iterable[StatePath], mountinfo: str | None = None) -> None:
    """Make each directory (0700) if missing, check that it can be written, and warn once for each one that
    will not survive. `mountinfo`: the text of /proc/self/mountinfo (read here when None)."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for path in paths:
        grouped.setdefault((path.key, path.directory), []).append(path.what)
    if not grouped:
        return
    mounts = parse_mountinfo(_read(MOUNTINFO) if mountinfo is None else mountinfo)
    for (key, directory), what in grouped.items():
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{key}: cannot make the directory {directory} ({', '.join(what)}): "
                              f"{exc.strerror}") from exc
        if not os.access(directory, os.W_OK | os.X_OK):
            raise ConfigError(f"{key}: {directory} ({', '.join(what)}) cannot be written by this user")
        reason = volatile(directory, mounts)
        if reason is not None:
            log.warning("%s: %s (%s) is on %s", key, directory, ", ".join(what), reason,
                        extra={"key": key, "path": directory})


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str


def parse_mountinfo(text: str) -> list[Mount]:
    """Mount points and filesystem types from /proc/<pid>/mountinfo, in mount order (see proc(5))."""
    mounts = []
    for line in text.splitlines():
        before, separator, after = line.partition(" - ")
        fields = before.split(" ")
        if not separator or len(fields) < 5 or not after:
            continue
        mounts.append(Mount(_unescape(fields[4]), after.split(" ")[0]))
    return mounts


def volatile(path: str, mounts: list[Mount]) -> str | None:
    """Why `path` will not survive, if its filesystem is one that does not; None otherwise (or if unknown)."""
    resolved = os.path.realpath(path)
    best: Mount | None = None
    for mount in mounts:  # the longest mount point that holds the path; of equals, the last (mounted on top)
        point = mount.point.rstrip("/")
        if (resolved == mount.point or resolved.startswith(point + "/")) and (
                best is None or len(point) >= len(best.point.rstrip("/"))):
            best = mount
    return VOLATILE.get(best.fstype) if best is not None else None


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (`\\040`)."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def _read(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError:
        return ""  # not Linux, or no /proc: no warning rather than no start
