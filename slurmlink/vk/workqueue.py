"""A work queue keyed by pod: a key is queued at most once and handled by one worker at a time; a key added
while it is being handled is handled again afterwards (so no change is lost and no pod runs twice at once).

Keys added with `soon=True` (a status to patch, a deletion to confirm) are handled before the others (creates,
retries), as a kubelet's status manager runs apart from its pod workers: a burst of creates must not hold back
the status of the pods already running."""

from __future__ import annotations

import asyncio
from collections import deque

SOON, LATER = 0, 1  # the lanes, in the order they are served


class WorkQueue:
    def __init__(self) -> None:
        self._lanes: tuple[deque[str], deque[str]] = (deque(), deque())
        self._queued: dict[str, int] = {}  # key -> the lane it waits in (an entry left in another lane is stale)
        self._nonempty = asyncio.Event()
        self._active: set[str] = set()
        self._again: dict[str, bool] = {}  # added while active -> whether soon
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str, *, soon: bool = False) -> None:
        if key in self._active:
            self._again[key] = soon or self._again.get(key, False)
            return
        lane = SOON if soon else LATER
        if self._queued.get(key, LATER + 1) <= lane:
            return  # already waiting, as soon or sooner
        self._queued[key] = lane
        self._lanes[lane].append(key)
        self._nonempty.set()

    def add_after(self, key: str, delay: float) -> None:
        """Retry later; an earlier retry already planned for the key wins."""
        if key in self._timers:
            return

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def get(self) -> str:
        while True:
            for lane, keys in enumerate(self._lanes):
                while keys:
                    key = keys.popleft()
                    if self._queued.get(key) == lane:
                        del self._queued[key]
                        self._active.add(key)
                        return key
            self._nonempty.clear()
            await self._nonempty.wait()

    def done(self, key: str) -> None:
        self._active.discard(key)
        if key in self._again:
            self.add(key, soon=self._again.pop(key))

    def __len__(self) -> int:
        return len(self._queued)
