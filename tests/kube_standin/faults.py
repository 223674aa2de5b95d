"""Faults tests switch on: latency on every request, and watches that answer "too old" (410)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency: float = 0.0  # seconds added before every API request is answered
    _expire_next_watches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expire_next_watches(self, count: int) -> None:
        """The next `count` watch requests get 410 Expired, whatever resourceVersion they ask for."""
        with self._lock:
            self._expire_next_watches = count

    def take_watch_expiry(self) -> bool:
        with self._lock:
            if self._expire_next_watches <= 0:
                return False
            self._expire_next_watches -= 1
            return True

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._expire_next_watches = 0
