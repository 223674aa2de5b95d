"""A work queue keyed by pod: a key is queued at most once and handled by one worker at a time; a key added
while it is being handled is handled again afterwards (so no change is lost and no pod runs twice at once)."""

from __future__ import annotations

import asyncio


class WorkQueue:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._active: set[str] = set()
        self._again: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def add(self, key: str) -> None:
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: str, delay: float) -> None:
        """Retry later; an earlier retry already planned for the key wins."""
        if key in self._timers:
            return

        def fire() -> None:
            self._timers.pop(key, None)
            self.add(key)
        self._timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    async def get(self) -> str:
        key = await self._queue.get()
        self._queued.discard(key)
        self._active.add(key)
        return key

    def done(self, key: str) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._queued)
