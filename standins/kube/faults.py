"""Faults tests switch on: latency on every request, watches that answer "too old" (410), and the Node
authorizer's lag after a binding."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    latency: float = 0.0  # seconds added before every API request is answered
    _expire_next_watches: int = 0
    _expire_resource: str | None = None
    _refuse_node_reads: int = 0
    node_reads_refused: int = 0  # how many node reads were refused so far
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def expire_next_watches(self, count: int, resource: str | None = None) -> None:
        """The next `count` watch requests (of `resource`, e.g. "pods", or of any) get 410 Expired, whatever
        resourceVersion they ask for."""
        with self._lock:
            self._expire_next_watches = count
            self._expire_resource = resource

    def take_watch_expiry(self, resource: str = "") -> bool:
        with self._lock:
            if self._expire_next_watches <= 0 or self._expire_resource not in (None, resource):
                return False
            self._expire_next_watches -= 1
            return True

    def refuse_node_reads(self, count: int) -> None:
        """The next `count` reads of ConfigMaps and Secrets and TokenRequests by a node (system:node:<name>) are
        refused (403 "no relationship found"), as a real Node authorizer does for a moment after a pod is bound,
        before its informer has seen the binding (kubernetes.md)."""
        with self._lock:
            self._refuse_node_reads = count

    def take_node_read_refusal(self) -> bool:
        with self._lock:
            if self._refuse_node_reads <= 0:
                return False
            self._refuse_node_reads -= 1
            self.node_reads_refused += 1
            return True

    def clear(self) -> None:
        with self._lock:
            self.latency = 0.0
            self._expire_next_watches = 0
            self._refuse_node_reads = 0
