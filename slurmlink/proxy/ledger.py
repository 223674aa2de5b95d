"""The submission ledger: which slurmlink jobs were submitted through this proxy, by whom, in which directory.

It is what lets a service identity act for a job's owner (read its files, cancel it) without being able to
act for anyone on anything else. One JSON object per line in `<state_dir>/submissions.jsonl`, appended and
fsynced (0600), loaded at start; a torn last line (a crash mid-write) is skipped, and entries older than
`MAX_AGE_SECONDS` are dropped (the file is then rewritten without them, atomically).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

log = logging.getLogger("slurmlink.proxy.ledger")

FILE_NAME = "submissions.jsonl"
MAX_AGE_SECONDS = 30 * 24 * 3600
_FIELDS = ("job_id", "user", "name", "workdir", "submitted_at")


@dataclass(frozen=True)
class LedgerEntry:
    job_id: str
    user: str
    name: str
    workdir: str
    submitted_at: float  # seconds since the epoch


def _parse(line: bytes) -> LedgerEntry | None:
    try:
        data = json.loads(line)
        if not isinstance(data, dict) or not set(_FIELDS) <= set(data):
            return None
        entry = LedgerEntry(str(data["job_id"]), str(data["user"]), str(data["name"]), str(data["workdir"]),
                            float(data["submitted_at"]))
    except (ValueError, TypeError):
        return None
    return entry if entry.job_id.isdigit() and entry.user else None


def _line(entry: LedgerEntry) -> bytes:
    return json.dumps(asdict(entry), separators=(",", ":")).encode() + b"\n"


class Ledger:
    def __init__(self, state_dir: str, *, clock: Callable[[], float] = time.time) -> None:
        self.state_dir = state_dir
        self.path = os.path.join(state_dir, FILE_NAME)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, LedgerEntry] = {}
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self._load()

    def get(self, job_id: str) -> LedgerEntry | None:
        with self._lock:
            return self._entries.get(job_id)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def record(self, job_id: str, user: str, name: str, workdir: str) -> LedgerEntry:
        """Append one submission, durably (blocking: call it from a thread in async code)."""
        entry = LedgerEntry(job_id, user, name, workdir, self._clock())
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, _line(entry))  # one write of a short line: appended whole or not at all
                os.fsync(fd)
            finally:
                os.close(fd)
            self._entries[job_id] = entry
        return entry

    def _load(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        with os.fdopen(fd, "rb") as fh:
            raw = fh.read()
        cutoff = self._clock() - MAX_AGE_SECONDS
        kept: dict[str, LedgerEntry] = {}
        skipped = 0
        for line in raw.splitlines():
            entry = _parse(line) if line.strip() else None
            if entry is None:
                skipped += bool(line.strip())
            elif entry.submitted_at >= cutoff:
                kept[entry.job_id] = entry  # a later line for the same id wins (SLURM reused it)
        self._entries = kept
        dropped = sum(1 for line in raw.splitlines() if line.strip()) - skipped - len(kept)
        if skipped:
            log.warning("ledger %s: skipped %d unreadable line(s) (a torn write?)", self.path, skipped)
        # Rewrite when anything was dropped, and after a torn last line: the next append must start a new line.
        if skipped or dropped or (raw and not raw.endswith(b"\n")):
            self._rewrite()

    def _rewrite(self) -> None:
        tmp = self.path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(b"".join(_line(e) for e in self._entries.values()))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)  # the rename itself survives a crash
        finally:
            os.close(dir_fd)
