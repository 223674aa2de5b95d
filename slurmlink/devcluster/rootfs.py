"""Another SLURM release than the machine's own, from a Debian root filesystem that
scripts/build-slurm-root.sh builds once and caches (24.11: Debian 13's packages).

- Daemons run from the root: each in a private mount namespace (`unshare -m`, so nothing stays mounted
  on the host) with the host's /proc, /sys and /dev, the state directory, /home and /tmp bind-mounted at
  the same paths, and the host's /etc/passwd, group, shadow and gshadow over the root's (the users are
  the host's, uids included; slurmd's `su -` for the user's login environment needs the shadow entry);
  the root becomes the namespace's `/` (pivot_root) and `chroot --userspec` takes the daemon's user on.
  Every step execs, so the recorded PID is the daemon's. Jobs run there too: slurmd starts them inside.
- Client commands (sbatch, squeue, ...) run on the host as the root's binaries started with the root's
  own loader and libraries: wrapper scripts in the cluster's `bin` directory, which callers reach
  through PATH or the cli backend's `bin_dir`. slurm.conf names the root's plugin directory by its host
  path; inside the root that path leads back to the root itself (a symlink), so one slurm.conf serves both.
"""

from __future__ import annotations

import os
from pathlib import Path

from slurmlink.core.errors import SlurmlinkError

CACHE = Path("/var/cache/slurmlink")
RELEASES = ("24.11",)  # releases a root can be built for (scripts/build-slurm-root.sh)
CLIENT_COMMANDS = ("sbatch", "squeue", "scancel", "sinfo", "scontrol", "sacct", "sacctmgr", "srun", "sdiag", "sprio")
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu/slurm-wlm")
HOST_FILES = ("/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow", "/etc/hosts")

# Positional: the root, then paths to bind at the same place until "--", then the command (chroot ...).
# Only paths of our own making reach it, and as arguments, never inside the script text. pivot_root, not
# chroot alone: in a chroot the kernel refuses user namespaces, and the jobs' bwrap needs them.
_MOUNT_AND_EXEC = """set -eu
root=$1; shift
mount --rbind "$root" "$root"
for fs in proc sys dev; do mount --rbind "/$fs" "$root/$fs"; done
while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mkdir -p "$root$1"; else touch "$root$1"; fi
  mount --bind "$1" "$root$1"; shift
done
shift
mkdir -p "$root/.host"
cd "$root"
pivot_root . .host
umount -l /.host
exec "$@"
"""


class RootMissing(SlurmlinkError, RuntimeError):
    pass


def find_root(release: str) -> Path:
    """The built root for `release` (the cache's stable link, resolved)."""
    link = CACHE / f"slurm-{release}"
    root = link.resolve()
    if not (root / ".slurmlink-complete").exists():
        raise RootMissing(f"no SLURM {release} root at {link}: build it once with "
                          f"`scripts/build-slurm-root.sh {release}` (or SLURMLINK_SLURM_VERSIONS=22.05,{release} "
                          "bash scripts/install.sh)")
    return root


def link_back(root: Path) -> None:
    """Inside the root, the root's host path leads to the root itself, so host paths into it work in both."""
    inside = root / str(root).lstrip("/")
    inside.parent.mkdir(parents=True, exist_ok=True)
    if not inside.is_symlink():
        inside.symlink_to("/")


def daemon_argv(root: Path, argv: list[str], binds: list[Path], uid: int, gid: int, groups: list[int]) -> list[str]:
    """`argv` run from the root as uid:gid (root only; see the module's docstring)."""
    chroot = ["chroot", f"--userspec={uid}:{gid}"]  # the root's chroot, into / (now the root): to drop to uid
    if groups:
        chroot.append("--groups=" + ",".join(str(g) for g in groups))
    paths = [str(p) for p in binds] + [f for f in HOST_FILES if os.path.exists(f)]
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", _MOUNT_AND_EXEC, "sh", str(root),
            *paths, "--", *chroot, "/", *argv]


def write_client_wrappers(root: Path, bin_dir: Path) -> None:
    """One script per client command in `bin_dir`, running the root's binary with the root's libraries."""
    bin_dir.mkdir(exist_ok=True)
    bin_dir.chmod(0o755)
    loader = root / "lib64" / "ld-linux-x86-64.so.2"
    libraries = ":".join(str(root / d) for d in LIBRARY_DIRS)
    for name in CLIENT_COMMANDS:
        binary = root / "usr" / "bin" / name
        text = (f"#!/bin/sh\n# SLURM's {name} from {root}, with that root's loader and libraries.\n"
                f"exec '{loader}' --library-path '{libraries}' '{binary}' \"$@\"\n")
        path = bin_dir / name
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(path)
