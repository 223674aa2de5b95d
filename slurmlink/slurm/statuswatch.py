"""Noticing what a job writes in its pod's `status/` directory (translate/layout.py) between SLURM queries.

Where the job root is a directory of this host: the API's in mode 2, the proxy's for mode 1 (proxy/filewatch.py).
Each running pod's directory is watched for `status/` to appear, and `status/` for its files to be replaced (the
job script writes them with a rename, prelude.sh's `sl_put`); the pods whose files changed are handed to
`on_change` (the API's StatusPoller.refresh: their records are read again, no SLURM query). Either with inotify
(Linux, through libc: no extra package), or, where the job root is on a shared filesystem whose writes from other
hosts inotify does not see, with one look (`fstatat`) at each watched pod's `status/` directory every
`stat_interval` seconds (a rename changes the directory's mtime).

What is seen only triggers a read: the read itself walks from the job root as before (slurm/podfiles.py); a missed
event costs only time, as SLURM's poll still reads the records of every running pod. Even so, a watch never
follows a symlink in place of a pod's directory or of its `status/`, and with `owners` it watches only a directory
of that account: what the proxy tells a user must be about that user's own directories. A pod directory that does
not exist yet (mode 1: the job makes it when it starts) is waited for with a watch on its parent.
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
from errno import EINVAL, ENOENT, ENOSPC, ENOTDIR
from pathlib import Path

from slurmlink.core.records import PodDirectory
from slurmlink.translate.layout import STATUS_DIR

log = logging.getLogger(__name__)

# <sys/inotify.h>
IN_MODIFY, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO = 0x2, 0x8, 0x40, 0x80
IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF = 0x100, 0x200, 0x400, 0x800
IN_Q_OVERFLOW, IN_IGNORED = 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW = 0x01000000, 0x02000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
POD_DIR_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR  # status/ appearing (added through /proc/self/fd: followed)
PARENT_MASK = IN_CREATE | IN_MOVED_TO | IN_ONLYDIR  # a pod directory appearing in the job root
STATUS_DIR_MASK = (IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM | IN_DELETE_SELF | IN_MOVE_SELF
                   | IN_ONLYDIR | IN_DONT_FOLLOW)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
SETTLE_SECONDS = 0.02  # events of one write (several files) are read together
# Filesystems of this host's own disks or memory: their metadata calls do not go to another machine. Any other
# (NFS, Lustre, GPFS, BeeGFS, CephFS, autofs, FUSE, ...) may be shared, or wait for a server.
LOCAL_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "tmpfs", "overlay"})

OnChange = Callable[[set[str]], Awaitable[None]]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_pod_dir(workdir: str, owner: int | None = None) -> int:
    """A descriptor of the pod directory itself (a symlink in its place is refused: ELOOP), which must belong to
    `owner` when one is given (EPERM otherwise). OSError when it cannot be opened."""
    fd = os.open(workdir, _DIR_FLAGS)
    if owner is not None and os.fstat(fd).st_uid != owner:
        os.close(fd)
        raise PermissionError(1, f"{workdir} does not belong to uid {owner}")
    return fd


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


def on_local_filesystem(path: str, mounts: str = "/proc/self/mounts") -> bool:
    """Whether `path` is known to be on a local disk or memory filesystem (not autofs, FUSE, or anything unknown)."""
    return filesystem_of(path, mounts) in LOCAL_FILESYSTEMS


def choose_method(setting: str, job_root: str) -> str:
    """`inotify`, `stat` or `off`, for the `watch_files` setting (see ApiConfig)."""
    if setting != "auto":
        return setting
    # Anywhere else inotify may miss what other hosts write, and the watch's calls would wait on the event loop.
    return "inotify" if on_local_filesystem(job_root) and _libc_inotify() is not None else "stat"


def _libc_inotify() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "inotify_init1") and hasattr(libc, "inotify_add_watch") else None


class StatusWatch:
    """Watches the pods `track` names: {uid (or any key): pod directory}."""

    @property
    def immediate(self) -> bool:
        """Whether every watched pod's writes show here as they happen (the kernel's inotify on a local
        filesystem), not after a look that comes every so often or that a shared filesystem's caches may answer
        for seconds."""
        return False

    def __init__(self, on_change: OnChange) -> None:
        self.on_change = on_change
        self.watched: dict[str, str] = {}
        self.owners: dict[str, int] = {}  # uid -> the account the directory must belong to (where one is given)
        self._changed: set[str] = set()
        self._pending = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def track(self, pods: Mapping[str, str], owners: Mapping[str, int] | None = None) -> None:
        """Watch exactly these pods from now on; with `owners`, only directories of those accounts (by uid)."""
        for uid in set(self.watched) - set(pods):
            self._unwatch(uid)
            del self.watched[uid]
            self.owners.pop(uid, None)
        self._track_each(pods, owners)

    def _track_each(self, pods: Mapping[str, str], owners: Mapping[str, int] | None) -> None:
        for uid, workdir in pods.items():
            owner = owners.get(uid) if owners is not None else None
            if self.watched.get(uid) != workdir or self.owners.get(uid) != owner:
                if uid in self.watched:
                    self._unwatch(uid)
                self.watched[uid] = workdir
                if owner is None:
                    self.owners.pop(uid, None)
                else:
                    self.owners[uid] = owner
                self._watch(uid, workdir)

    def track_pods(self, pods: Mapping[str, PodDirectory]) -> None:
        """`track` for the API's pods (a watch that asks the site for them needs more than the directory)."""
        self.track({uid: pod.workdir for uid, pod in pods.items()})

    def add_pods(self, pods: Mapping[str, PodDirectory]) -> None:
        """Watch these pods too (a new submission), leaving the others as they are: the cost of a create does
        not grow with the number of pods watched."""
        self._track_each({uid: pod.workdir for uid, pod in pods.items()}, None)

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
    """One look at each watched pod's `status/` directory every `interval` seconds."""

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
            signatures = await asyncio.to_thread(_signatures, dict(self.watched), dict(self.owners))
            # a pod looked at for the first time may have changed since its first read (StatusWatch._watch),
            # unless it has no status/ (yet) that may be looked at
            changed = {uid for uid, sig in signatures.items()
                       if (uid not in self._seen and sig is not None) or (uid in self._seen and self._seen[uid] != sig)}
            for uid, sig in signatures.items():
                if uid in self.watched:
                    self._seen[uid] = sig
            tell = (changed | self._settling) & set(self.watched)
            if tell:
                self.changed(tell)
            self._settling = changed


def _signatures(watched: Mapping[str, str], owners: Mapping[str, int]
                ) -> dict[str, tuple[int, int, int] | None]:
    return {uid: _signature(workdir, owners.get(uid)) for uid, workdir in watched.items()}


def _signature(workdir: str, owner: int | None) -> tuple[int, int, int] | None:
    try:
        fd = open_pod_dir(workdir, owner)
    except OSError:
        return None
    try:
        info = os.stat(STATUS_DIR, dir_fd=fd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(fd)
    return info.st_ino, info.st_mtime_ns, info.st_size


class InotifyWatch(StatusWatch):
    """inotify on each watched pod's directory (for `status/` to appear) and on its `status/` directory; on the
    parent of a pod directory that does not exist yet (for it to appear)."""

    @property
    def immediate(self) -> bool:
        return not self._full  # past the watch limit, pods beyond it are seen at SLURM's polls only

    def __init__(self, on_change: OnChange, libc: ctypes.CDLL) -> None:
        super().__init__(on_change)
        self.libc = libc
        self.fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1: " + os.strerror(ctypes.get_errno()))
        self._by_wd: dict[int, tuple[str, bool]] = {}  # wd -> (uid, is the status/ directory)
        self._wds: dict[str, list[int]] = {}
        self._parents: dict[str, int] = {}  # a directory where pod directories are awaited -> its wd
        self._awaited: dict[int, dict[str, str]] = {}  # that wd -> {name of the pod directory: uid}
        self._awaiting: dict[str, set[tuple[int, str]]] = {}  # uid -> its (wd, name) in _awaited
        self._reader = False
        self._full = False  # warned that the watch limit was reached

    def _add(self, path: str, mask: int) -> int:
        """The watch descriptor, or minus the errno when `path` cannot be watched."""
        wd = int(self.libc.inotify_add_watch(self.fd, os.fsencode(path), mask))
        if wd < 0:
            errno = ctypes.get_errno()
            if errno == ENOSPC and not self._full:  # the user's inotify watches are used up
                self._full = True
                log.warning("inotify: fs.inotify.max_user_watches reached; pods beyond it are seen at SLURM's "
                            "polls only (raise the limit, or set watch_files: stat)")
            elif errno not in (ENOENT, ENOTDIR, ENOSPC):  # not there yet, not a directory, or warned of above
                log.debug("cannot watch %s: %s", path, os.strerror(errno))
            return -(errno or EINVAL)
        return wd

    def _watch(self, uid: str, workdir: str) -> None:
        """Start watching a pod; its files are read once unless it has no `status/` yet (a new submission's
        directory): then there is nothing to read, and the making of `status/` shows through the pod
        directory's watch, added before `status/` is looked for."""
        self._ensure_reader()
        self._forget_wds(uid)
        self._await_dir(uid, workdir)  # before looking: a directory made meanwhile is not missed
        try:
            fd = open_pod_dir(workdir, self.owners.get(uid))
        except FileNotFoundError:
            pass
        except OSError as exc:  # a symlink, another account's directory: not watched (the read refuses it too)
            log.debug("not watching %s: %s", workdir, exc)
            self._stop_awaiting(uid)
        else:
            self._stop_awaiting(uid)
            try:
                # Through the descriptor: the directory checked is the one watched, whatever is renamed meanwhile.
                pod_wd = self._add(f"/proc/self/fd/{fd}", POD_DIR_MASK)
                status_wd = self._add(f"/proc/self/fd/{fd}/{STATUS_DIR}", STATUS_DIR_MASK)
            finally:
                os.close(fd)
            self._wds[uid] = []
            for wd, is_status in ((pod_wd, False), (status_wd, True)):
                if wd >= 0:
                    self._by_wd[wd] = (uid, is_status)
                    self._wds[uid].append(wd)
            if pod_wd >= 0 and status_wd == -ENOENT:
                return  # a read per create would cost a worker thread's hand-over each, in a burst of creates
        super()._watch(uid, workdir)  # what was written before the watch began

    def _forget_wds(self, uid: str) -> None:
        for wd in self._wds.pop(uid, []):
            if self._by_wd.pop(wd, None) is not None:
                self.libc.inotify_rm_watch(self.fd, wd)

    def _await_dir(self, uid: str, workdir: str) -> None:
        parent, name = os.path.split(os.path.normpath(workdir))
        wd = self._parents.get(parent)
        if wd is None:
            wd = self._add(parent, PARENT_MASK)
            if wd < 0:
                return
            self._parents[parent] = wd
        self._awaited.setdefault(wd, {})[name] = uid
        self._awaiting.setdefault(uid, set()).add((wd, name))

    def _stop_awaiting(self, uid: str) -> None:
        # Through the index: a pod's create must not cost a look at every other awaited pod. The parent's
        # watch stays when no pod is awaited there any more (there is one parent, job_root): removing it takes
        # the kernel milliseconds (inotify_rm_watch waits for a grace period), and the next create adds it back.
        for wd, name in self._awaiting.pop(uid, ()):
            names = self._awaited.get(wd)
            if names is not None and names.get(name) == uid:
                del names[name]

    def _unwatch(self, uid: str) -> None:
        self._forget_wds(uid)
        self._stop_awaiting(uid)

    def _ensure_reader(self) -> None:
        if not self._reader:
            asyncio.get_running_loop().add_reader(self.fd, self._read_events)
            self._reader = True

    def _read_events(self) -> None:
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        self._handle(data)

    def _handle(self, data: bytes) -> None:
        """What a read of the inotify descriptor gave: some events."""
        changed: set[str] = set()
        appeared: set[str] = set()
        overflowed = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if mask & IN_Q_OVERFLOW:
                overflowed = True
                continue
            if mask & IN_IGNORED:
                self._by_wd.pop(wd, None)
                if self._awaited.pop(wd, None) is not None:
                    self._parents = {p: w for p, w in self._parents.items() if w != wd}
                continue
            if wd in self._awaited:  # a pod directory appeared in a parent
                uid = self._awaited[wd].get(os.fsdecode(name))
                if uid is not None:
                    appeared.add(uid)
                continue
            where = self._by_wd.get(wd)
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
        if overflowed:
            # Events were lost: every watched pod is read, and its status/ watched again (the same watch where
            # it was: its IN_IGNORED may have been lost too). A call or three per pod, on a rare path.
            changed |= set(self.watched)
            appeared |= {uid for names in self._awaited.values() for uid in names.values()}
            for uid in set(self.watched) - appeared:
                self._watch_status(uid)
        for uid in appeared:
            if uid in self.watched:
                self._watch(uid, self.watched[uid])
        if changed:
            self.changed(changed)

    def _watch_status(self, uid: str) -> None:
        workdir = self.watched.get(uid)
        if workdir is None:
            return
        try:
            fd = open_pod_dir(workdir, self.owners.get(uid))
        except OSError:
            return
        try:
            wd = self._add(f"/proc/self/fd/{fd}/{STATUS_DIR}", STATUS_DIR_MASK)
        finally:
            os.close(fd)
        if wd >= 0:
            self._by_wd[wd] = (uid, True)
            wds = self._wds.setdefault(uid, [])
            if wd not in wds:  # watched already: the kernel gave the same descriptor
                wds.append(wd)
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
