"""Noticing what a job writes in its pod's `status/` directory (translate/layout.py) between SLURM queries.

Where the job root is a directory of this host: the API in mode 2, the proxy for mode 1 (proxy/filewatch.py). Each running pod's directory is watched for `status/` to
appear, and `status/` for its files to be replaced (the job script writes them with a rename, prelude.sh's
`sl_put`); the pods whose files changed are handed to `on_change` (StatusPoller.refresh: their records are read
again, no SLURM query). Either with inotify (Linux, through libc: no extra package), or, where the job root is
on a shared filesystem whose writes from other hosts inotify does not see, with one `lstat` of each watched
pod's `status/` directory every `stat_interval` seconds (a rename changes the directory's mtime).

What is seen only triggers a read: the read itself walks from the job root as before (slurm/podfiles.py), so a
user's symlink in place of `status/` cannot make the API read elsewhere; a missed event costs only time, as
SLURM's poll still reads the records of every running pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from slurmlink.translate.layout import STATUS_DIR

log = logging.getLogger(__name__)

# <sys/inotify.h>
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW = 0x01000000, 0x02000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
POD_DIR_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_DONT_FOLLOW  # status/ appearing
STATUS_DIR_MASK = (IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF
                   | IN_ONLYDIR | IN_DONT_FOLLOW)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
SETTLE_SECONDS = 0.02  # events of one write (several files) are read together
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "glusterfs", "9p", "afs",
    "ncpfs", "panfs", "pvfs2", "orangefs", "wekafs", "virtiofs", "fuse.glusterfs", "fuse.sshfs", "fuse.cephfs",
    "fuse.beegfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.juicefs",
})

OnChange = Callable[[set[str]], Awaitable[None]]


def filesystem_of(path: str, mounts: str = "/proc/self/mounts") -> str:
    """The type of the filesystem `path` is on ("" when unknown): the longest mount point that holds it."""
    real = os.path.realpath(path)
    best, kind = "", ""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return ""
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def choose_method(setting: str, job_root: str) -> str:
    """`inotify`, `stat` or `off`, for the `watch_files` setting (see ApiConfig)."""
    if setting != "auto":
        return setting
    if filesystem_of(job_root) in NETWORK_FILESYSTEMS:
        return "stat"
    return "inotify" if _libc_inotify() is not None else "stat"


def _libc_inotify() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "inotify_init1") and hasattr(libc, "inotify_add_watch") else None


class StatusWatch:
    """Watches the pods `track` names: {uid: pod directory}."""

    def __init__(self, on_change: OnChange) -> None:
        self.on_change = on_change
        self.watched: dict[str, str] = {}
        self._changed: set[str] = set()
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def track(self, pods: Mapping[str, str]) -> None:
        """Watch exactly these pods from now on."""
        for uid in set(self.watched) - set(pods):
            self._unwatch(uid)
            del self.watched[uid]
        for uid, workdir in pods.items():
            if self.watched.get(uid) != workdir:
                self.watched[uid] = workdir
                self._watch(uid, workdir)

    def changed(self, uids: set[str]) -> None:
        self._changed |= uids
        self._pending.set()

    async def run(self) -> None:
        """Hand the changed pods to on_change, a batch at a time."""
        while True:
            await self._pending.wait()
            await asyncio.sleep(SETTLE_SECONDS)
            self._pending.clear()
            batch, self._changed = self._changed, set()
            try:
                await self.on_change(batch)
            except Exception:  # a read that failed is tried again by the next poll
                log.exception("reading the records of %d pod(s) failed", len(batch))

    def _watch(self, uid: str, workdir: str) -> None:
        """Start watching a pod (its files may have changed before: read them once)."""
        self.changed({uid})

    def _unwatch(self, uid: str) -> None:
        pass

    def close(self) -> None:
        pass


class StatWatch(StatusWatch):
    """One `lstat` of each watched pod's `status/` directory every `interval` seconds."""

    def __init__(self, on_change: OnChange, interval: float) -> None:
        super().__init__(on_change)
        self.interval = interval
        self._seen: dict[str, tuple[int, int, int] | None] = {}
        self._settling: set[str] = set()  # changed at the last look: looked at once more (same mtime tick)

    def _unwatch(self, uid: str) -> None:
        self._seen.pop(uid, None)
        self._settling.discard(uid)

    async def run(self) -> None:
        looks = asyncio.create_task(self._look_forever())
        try:
            await super().run()
        finally:
            looks.cancel()

    async def _look_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            signatures = await asyncio.to_thread(_signatures, dict(self.watched))
            # a pod looked at for the first time may have changed since its first read (StatusWatch._watch)
            changed = {uid for uid, sig in signatures.items() if uid not in self._seen or self._seen[uid] != sig}
            for uid, sig in signatures.items():
                if uid in self.watched:
                    self._seen[uid] = sig
            tell = (changed | self._settling) & set(self.watched)
            if tell:
                self.changed(tell)
            self._settling = changed


def _signatures(watched: Mapping[str, str]) -> dict[str, tuple[int, int, int] | None]:
    return {uid: _signature(workdir) for uid, workdir in watched.items()}


def _signature(workdir: str) -> tuple[int, int, int] | None:
    try:
        info = os.lstat(os.path.join(workdir, STATUS_DIR))
    except OSError:
        return None
    return info.st_ino, info.st_mtime_ns, info.st_size


class InotifyWatch(StatusWatch):
    """inotify on each watched pod's directory (for `status/` to appear) and on its `status/` directory."""

    def __init__(self, on_change: OnChange, libc: ctypes.CDLL) -> None:
        super().__init__(on_change)
        self.libc = libc
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self._by_wd: dict[int, tuple[str, bool]] = {}  # wd -> (uid, is the status/ directory)
        self._wds: dict[str, list[int]] = {}
        self._reader = False
        self._full = False  # warned that the watch limit was reached

    def _add(self, path: str, mask: int) -> int:
        wd = int(self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            errno = ctypes.get_errno()
            if errno == 28 and not self._full:  # ENOSPC: the user's inotify watches are used up
                self._full = True
                log.warning("inotify: fs.inotify.max_user_watches reached; pods beyond it are seen at SLURM's "
                            "polls only (raise the limit, or set watch_files: stat)")
            elif errno not in (2, 20, 28):  # ENOENT, ENOTDIR: not there yet, or not a directory
                log.debug("cannot watch %s: %s", path, os.strerror(errno))
        return wd

    def _watch(self, uid: str, workdir: str) -> None:
        self._ensure_reader()
        for wd in self._wds.pop(uid, []):
            self._by_wd.pop(wd, None)
        wds = []
        pod_wd = self._add(workdir, POD_DIR_MASK)
        if pod_wd >= 0:
            self._by_wd[pod_wd] = (uid, False)
            wds.append(pod_wd)
        status_wd = self._add(os.path.join(workdir, STATUS_DIR), STATUS_DIR_MASK)
        if status_wd >= 0:
            self._by_wd[status_wd] = (uid, True)
            wds.append(status_wd)
        self._wds[uid] = wds
        super()._watch(uid, workdir)  # what was written before the watch began

    def _unwatch(self, uid: str) -> None:
        for wd in self._wds.pop(uid, []):
            if self._by_wd.pop(wd, None) is not None:
                self.libc.inotify_rm_watch(self.fd, wd)

    def _ensure_reader(self) -> None:
        if not self._reader:
            asyncio.get_running_loop().add_reader(self.fd, self._read_events)
            self._reader = True

    def _read_events(self) -> None:
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        changed: set[str] = set()
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                changed |= set(self.watched)  # events were lost: read every watched pod
                continue
            where = self._by_wd.get(wd)
            if mask & IN_IGNORED:
                self._by_wd.pop(wd, None)
                continue
            if where is None:
                continue
            uid, is_status = where
            if not is_status:
                if name == STATUS_DIR.encode():  # status/ appeared (or came back): watch it
                    self._watch_status(uid)
                continue
            if name.startswith(b"."):
                continue  # the job script's temporary files; the rename that follows is what counts
            changed.add(uid)
        if changed:
            self.changed(changed)

    def _watch_status(self, uid: str) -> None:
        workdir = self.watched.get(uid)
        if workdir is None:
            return
        wd = self._add(os.path.join(workdir, STATUS_DIR), STATUS_DIR_MASK)
        if wd >= 0:
            self._by_wd[wd] = (uid, True)
            self._wds.setdefault(uid, []).append(wd)
        self.changed({uid})

    def close(self) -> None:
        if self._reader:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.fd)
        with contextlib.suppress(OSError):
            os.close(self.fd)


def make_watch(method: str, on_change: OnChange, stat_interval: float) -> StatusWatch | None:
    """The watch for `method` (choose_method's answer); None for `off`. inotify that cannot start falls back
    to stat."""
    if method == "off":
        return None
    if method == "inotify":
        libc = _libc_inotify()
        if libc is not None:
            try:
                return InotifyWatch(on_change, libc)
            except OSError as exc:
                log.warning("inotify is not available (%s): the job files are looked at every %.2g s instead",
                            exc, stat_interval)
    return StatWatch(on_change, stat_interval)
