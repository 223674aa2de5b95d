"""Reading (and creating) a pod's directory below the job root without trusting what users put there.

Used by the cli backend (runs as root at the site) and by `slurmlink proxy` (reads users' files for mode 1).
Every path is walked component by component from a descriptor of the job root, never following a symlink,
and only regular files owned by the user are opened (O_NONBLOCK: a FIFO in place of a file cannot hang
the reader). A user's symlink or hard link can therefore never make a privileged reader read elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pwd
import secrets
import stat
from collections.abc import Iterator

from slurmlink.core.errors import SlurmlinkError
from slurmlink.slurm.base import SlurmError
from slurmlink.translate import layout

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
READ_SIZE = 1024 * 1024  # one pread at a time, so a large limit does not mean one large allocation
# What the kernel answers when a component is a symlink (O_NOFOLLOW) or not a directory.
_UNSAFE_ERRNOS = frozenset({errno.ELOOP, errno.ENOTDIR})


class UnsafePodFile(SlurmError):
    """A path below the job root is a symlink, not a directory/regular file, or belongs to someone else."""


class NotTheUsersFile(SlurmlinkError, PermissionError):
    """A file that is not a regular file of the user (a FIFO, a device, a hard link to another's file)."""


def check_container_name(container: str) -> None:
    """A container's name becomes a file name: never a path, never hidden."""
    if not container or "/" in container or container.startswith(".") or "\0" in container:
        raise SlurmError(f"not a container name: {container!r}")


class PodFiles:
    """Pod directories below `job_root` (an absolute path the site configures)."""

    def __init__(self, job_root: str, *, max_status_file_bytes: int = 4096) -> None:
        self.job_root = job_root
        self.configured_root = os.path.normpath(os.path.abspath(job_root))
        self.root = os.path.realpath(job_root)
        self.max_status_file_bytes = max_status_file_bytes

    def is_pod_dir(self, workdir: str) -> bool:
        """Whether `workdir` names a direct child of the job root (as configured or resolved)."""
        if not os.path.isabs(workdir):
            return False
        parent = os.path.dirname(os.path.normpath(workdir))
        return parent in (self.configured_root, self.root) and os.path.basename(workdir) not in ("", ".", "..")

    def parts(self, path: str) -> list[str]:
        """`path`'s components below the job root; SlurmError unless it is strictly inside it."""
        if not os.path.isabs(path):
            raise SlurmError(f"working directory {path!r} is not an absolute path")
        norm = os.path.normpath(path)
        for root in (self.configured_root, self.root):
            if root != "/" and norm.startswith(root + "/"):
                return norm[len(root) + 1 :].split("/")
        raise SlurmError(f"working directory {path!r} is not inside the job root {self.job_root}")

    @contextlib.contextmanager
    def directory(self, path: str, *, create_for: pwd.struct_passwd | None = None,
                  owner_uid: int | None = None) -> Iterator[int]:
        """A descriptor of `path`, walked from the job root. With `create_for`, missing directories are created
        for that account (mode 0700); with `owner_uid`, every directory below the root must belong to that uid."""
        fd = os.open(self.root, _DIR_FLAGS)
        try:
            for part in self.parts(path):
                created = False
                if create_for is not None:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o700, dir_fd=fd)
                        created = True
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
                if created and create_for is not None:
                    os.fchown(fd, create_for.pw_uid, create_for.pw_gid)
                    os.fchmod(fd, 0o700)  # whatever the umask
                if owner_uid is not None and os.fstat(fd).st_uid != owner_uid:
                    raise UnsafePodFile(f"{part} in {path} does not belong to the job's user")
            yield fd
        finally:
            os.close(fd)

    @staticmethod
    def open_owned(dir_fd: int, name: str, uid: int) -> int:
        """Open a regular file `uid` owns (not a link to someone else's file, not a FIFO)."""
        fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != uid:
            os.close(fd)
            raise NotTheUsersFile(f"{name} is not a regular file of uid {uid}")
        return fd

    # ---- the layout's files ---------------------------------------------------------------------------------

    def read_status(self, workdir: str, uid: int, *, owned_dirs: bool = False) -> dict[str, str]:
        """The status/ files ({"c1.exit": "0\\n", ...}); {} before the job made the directory. Files that are
        not the user's regular files are skipped. With `owned_dirs`, the directories must be the user's too."""
        files: dict[str, str] = {}
        try:
            with self.directory(os.path.join(workdir, layout.STATUS_DIR),
                                owner_uid=uid if owned_dirs else None) as fd:
                for name in os.listdir(fd):
                    if name.startswith(".") or name.rpartition(".")[2] not in layout.STATUS_SUFFIXES:
                        continue
                    with contextlib.suppress(OSError):
                        f = self.open_owned(fd, name, uid)
                        with os.fdopen(f, "rb") as fh:
                            files[name] = fh.read(self.max_status_file_bytes).decode("utf-8", "replace")
        except FileNotFoundError:
            return {}  # the job has not started yet
        except OSError as exc:
            raise _error(exc, f"cannot read the status of {workdir}") from exc
        return files

    def has_status_file(self, workdir: str, uid: int, name: str, *, owned_dirs: bool = False) -> bool:
        """Whether status/<name> is there as the user's regular file (e.g. `<container>.exit`)."""
        try:
            with self.directory(os.path.join(workdir, layout.STATUS_DIR),
                                owner_uid=uid if owned_dirs else None) as fd:
                os.close(self.open_owned(fd, name, uid))
                return True
        except OSError:
            return False

    @contextlib.contextmanager
    def open_log(self, workdir: str, uid: int, container: str, *, owned_dirs: bool = False,
                 previous: bool = False) -> Iterator[int | None]:
        """A descriptor of logs/<container>.log (with `previous`, the log of the instance before the last
        restart), or None when there is none."""
        check_container_name(container)
        try:
            with self.directory(os.path.join(workdir, layout.LOGS_DIR),
                                owner_uid=uid if owned_dirs else None) as dir_fd:
                fd = self.open_owned(dir_fd, layout.log_name(container, previous), uid)
        except FileNotFoundError:
            yield None
            return
        except OSError as exc:
            raise _error(exc, f"cannot read the log of {container}") from exc
        try:
            yield fd
        finally:
            os.close(fd)

    def read_log(self, workdir: str, uid: int, container: str, offset: int, limit: int, *,
                 owned_dirs: bool = False, previous: bool = False) -> bytes:
        """Up to `limit` bytes of the container's log from `offset` (b"" when there is none yet)."""
        with self.open_log(workdir, uid, container, owned_dirs=owned_dirs, previous=previous) as fd:
            if fd is None:
                return b""
            try:
                return pread_all(fd, limit, offset)
            except OSError as exc:
                raise _error(exc, f"cannot read the log of {container}") from exc


    # ---- writing (projected token refresh) --------------------------------------------------------------------

    def replace_file(self, workdir: str, relative: str, uid: int, gid: int, mode: int, data: bytes) -> None:
        """Atomically replace `relative` (below `workdir`), an existing regular file of `uid`, by `data`.

        Every directory from the pod's down must belong to `uid` (a user's directory, never one of the
        service's), the old file must be the user's regular file, and the new one is written under a fresh
        name with O_EXCL|O_NOFOLLOW in that same directory, then renamed over the old: a reader opens either
        the old or the new content, and a bind-mounted directory shows the new file at once."""
        parent, _, name = relative.rpartition("/")
        if uid == 0:
            raise UnsafePodFile("slurmlink never writes pod files as root")
        if not name or name.startswith(".") or any(p in ("", ".", "..") for p in relative.split("/")):
            raise SlurmError(f"not a file of the pod: {relative!r}")
        target = os.path.join(workdir, parent) if parent else workdir
        try:
            with self.directory(target, owner_uid=uid) as fd:
                old = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISREG(old.st_mode) or old.st_uid != uid:
                    raise NotTheUsersFile(f"{name} is not a regular file of uid {uid}")
                temp = f".{name}.{secrets.token_hex(6)}"
                new = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd)
                try:
                    with os.fdopen(new, "wb") as fh:
                        os.fchown(new, uid, gid)
                        os.fchmod(new, mode)  # whatever the umask
                        fh.write(data)
                        fh.flush()
                        os.fsync(new)
                    os.rename(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        os.unlink(temp, dir_fd=fd)
                    raise
        except FileNotFoundError as exc:
            raise SlurmError(f"cannot replace {relative} of {workdir}: it does not exist (yet)") from exc
        except OSError as exc:
            raise _error(exc, f"cannot replace {relative} of {workdir}") from exc


def _error(exc: OSError, what: str) -> SlurmError:
    kind = UnsafePodFile if isinstance(exc, NotTheUsersFile) or exc.errno in _UNSAFE_ERRNOS else SlurmError
    return kind(f"{what}: {exc.strerror or exc}")


def pread_all(fd: int, limit: int, offset: int) -> bytes:
    """Up to `limit` bytes from `offset`, fewer at the end of the file."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.pread(fd, min(limit - size, READ_SIZE), offset + size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def tail_offset(fd: int, lines: int, size: int, window: int) -> int:
    """Where the last `lines` lines of the first `size` bytes begin, looking back at most `window` bytes
    (a longer tail is cut at the window). A final newline ends the last line rather than starting another."""
    if lines <= 0:
        return size
    end = size - 1 if size and os.pread(fd, 1, size - 1) == b"\n" else size
    floor = max(0, size - window)
    found = 0
    while end > floor:
        start = max(floor, end - 64 * 1024)
        chunk = os.pread(fd, end - start, start)
        index = len(chunk)
        while (index := chunk.rfind(b"\n", 0, index)) >= 0:
            found += 1
            if found == lines:
                return start + index + 1
        end = start
    return floor
