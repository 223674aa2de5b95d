"""The change feed behind `GET /slurmlink/v1/changes` (wire/changes.py): which pods' status changed since a cursor.

A cursor is `<epoch>:<revision>`. The epoch is drawn at each start of the API, so a cursor of an earlier process
is told apart; the revision grows by one for every change of what `/status` would answer for a pod, and for
every pod the registry forgets. Only the newest revision of each pod is kept (a caller gets a pod once, with its
status as it is now, however often it changed), plus a bounded list of removals: a cursor older than the
oldest removal dropped from it is answered with a reset and a snapshot.

`ChangeLog` is plain data (tested as such in tests/unit/test_change_feed.py); `ChangeFeed` adds the waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from slurmlink.api.errors import BadRequest
from slurmlink.translate.podspec import PodRef

MAX_REMOVALS = 10_000  # removals remembered; an older cursor gets a reset


class BadCursor(BadRequest):
    """`since` is not a cursor this API hands out (400)."""


@dataclass(frozen=True)
class Delta:
    """What a caller is told: the pods to send (their status now), the removals, the cursor to come back with."""

    cursor: str
    reset: bool
    uids: list[str]  # on a reset: every known pod
    removed: list[PodRef]


def parse_cursor(text: str) -> tuple[str, int]:
    epoch, sep, revision = text.partition(":")
    if not sep or not epoch or not revision.isdigit():
        raise BadCursor(f"since: {text!r} is not a cursor (<epoch>:<revision>)")
    return epoch, int(revision)


class ChangeLog:
    def __init__(self, epoch: str | None = None, max_removals: int = MAX_REMOVALS) -> None:
        self.epoch = epoch or secrets.token_hex(8)
        self.revision = 0
        self.max_removals = max_removals
        self._fingerprints: dict[str, str] = {}
        self._changed: OrderedDict[str, int] = OrderedDict()  # uid -> revision of its last change, oldest first
        self._removed: OrderedDict[str, tuple[int, PodRef]] = OrderedDict()
        self._floor = 0  # a cursor below this may have missed a removal that was dropped

    @property
    def cursor(self) -> str:
        return f"{self.epoch}:{self.revision}"

    def record(self, uid: str, fingerprint: str) -> bool:
        """The pod's status now has `fingerprint`; True (and a new revision) when it differs from the last one."""
        if self._fingerprints.get(uid) == fingerprint:
            return False
        self._fingerprints[uid] = fingerprint
        self._removed.pop(uid, None)
        self._bump(uid)
        return True

    def remove(self, removal: PodRef) -> None:
        """The registry forgot the pod."""
        if self._fingerprints.pop(removal.uid, None) is None:
            return  # never reported: nobody can have heard of it from us
        self._changed.pop(removal.uid, None)
        self.revision += 1
        self._removed[removal.uid] = (self.revision, removal)
        self._removed.move_to_end(removal.uid)
        while len(self._removed) > self.max_removals:
            _, (dropped, _) = self._removed.popitem(last=False)
            self._floor = dropped

    def _bump(self, uid: str) -> None:
        self.revision += 1
        self._changed[uid] = self.revision
        self._changed.move_to_end(uid)

    def since(self, since: str | None) -> Delta | None:
        """What changed after `since` (None/"": everything, as a reset); None when nothing did yet.
        BadCursor when `since` is malformed."""
        if not since:
            return self.snapshot()
        epoch, revision = parse_cursor(since)
        if epoch != self.epoch or revision > self.revision or revision < self._floor:
            return self.snapshot()
        if revision == self.revision:
            return None
        return Delta(self.cursor, False, _newer(self._changed, revision),
                     [removal for at, removal in _newer_values(self._removed, revision)])

    def snapshot(self) -> Delta:
        return Delta(self.cursor, True, list(self._fingerprints), [])


def _newer(changed: OrderedDict[str, int], revision: int) -> list[str]:
    """The uids changed after `revision`, oldest change first (the dict is in revision order)."""
    newer = []
    for uid in reversed(changed):
        if changed[uid] <= revision:
            break
        newer.append(uid)
    return newer[::-1]


def _newer_values(removed: OrderedDict[str, tuple[int, PodRef]], revision: int) -> list[tuple[int, PodRef]]:
    newer = []
    for uid in reversed(removed):
        if removed[uid][0] <= revision:
            break
        newer.append(removed[uid])
    return newer[::-1]


class ChangeFeed(ChangeLog):
    """A ChangeLog whose callers may wait for the next change (the long poll)."""

    def __init__(self, epoch: str | None = None, max_removals: int = MAX_REMOVALS) -> None:
        super().__init__(epoch, max_removals)
        self._next = asyncio.Event()  # set, and replaced, at every new revision
        self.closed = False

    def _bump(self, uid: str) -> None:
        super()._bump(uid)
        self._wake()

    def remove(self, removal: PodRef) -> None:
        before = self.revision
        super().remove(removal)
        if self.revision != before:
            self._wake()

    def _wake(self) -> None:
        self._next.set()
        self._next = asyncio.Event()

    def close(self) -> None:
        """The API is stopping: every long poll answers now (its server waits for the answers to end)."""
        self.closed = True
        self._next.set()

    async def wait(self, since: str | None, timeout: float) -> Delta:
        """The changes after `since`, waiting up to `timeout` seconds for one; on timeout an empty Delta with
        the same cursor."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            delta = self.since(since)
            if delta is not None:
                return delta
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed:
                return Delta(since or self.cursor, False, [], [])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._next.wait(), remaining)
