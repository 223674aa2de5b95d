"""In-memory object storage with one global resourceVersion counter, a bounded event history and watchers.

Like etcd behind the apiserver: every write takes the next revision; a watch may start from any revision still
in the history window of its type (the real watch cache keeps a window per resource), older ones are "too old".
Thread-safe: the server's event loop and test helpers in other threads share it.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


@dataclass(frozen=True)
class Change:
    rv: int
    type: str  # ADDED MODIFIED DELETED
    store_key: str
    obj: dict[str, Any]  # never mutated after it is stored
    old: dict[str, Any] | None


@dataclass(frozen=True)
class Bookmark:
    rv: int


class TooOld(Exception):
    def __init__(self, requested: int, oldest: int) -> None:
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested, self.oldest = requested, oldest


@dataclass(eq=False)  # identity equality: watchers live in a set
class Watcher:
    store_key: str
    namespace: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Change | Bookmark | str] = field(default_factory=asyncio.Queue)

    def deliver(self, item: Change | Bookmark | str) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


def _meta(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.setdefault("metadata", {})


class Store:
    def __init__(self, history_limit: int = 500, first_rv: int = 1000) -> None:
        self._lock = threading.RLock()
        self._rv = first_rv
        # Revisions before the first are "compacted" from the start: watching from, say, "1" is 410 as on a real
        # cluster, whose early revisions etcd compacted long ago.
        self._first_rv = first_rv
        self._objects: dict[str, dict[Key, dict[str, Any]]] = {}
        self._history_limit = history_limit
        self._history: dict[str, deque[Change]] = {}
        self._compacted: dict[str, int] = {}  # per type: changes at or below this revision are forgotten
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []

    # --- reads -------------------------------------------------------------------------------------------------
    @property
    def rv(self) -> int:
        with self._lock:
            return self._rv

    def get(self, store_key: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._objects.get(store_key, {}).get((namespace, name))

    def snapshot(self, store_key: str, namespace: str = "") -> tuple[list[dict[str, Any]], int]:
        """Objects sorted by (namespace, name) as etcd keys sort, with the revision of the snapshot."""
        with self._lock:
            objects = self._objects.get(store_key, {})
            items = [obj for key, obj in sorted(objects.items()) if not namespace or key[0] == namespace]
            return items, self._rv

    # --- writes ------------------------------------------------------------------------------------------------
    def _commit(self, store_key: str, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        self._rv += 1
        _meta(obj)["resourceVersion"] = str(self._rv)
        change = Change(self._rv, kind, store_key, obj, old)
        history = self._history.setdefault(store_key, deque())
        history.append(change)
        while len(history) > self._history_limit:
            self._compacted[store_key] = history.popleft().rv
        for watcher in list(self._watchers):
            if watcher.store_key == store_key and (not watcher.namespace or
                                                   watcher.namespace == _meta(obj).get("namespace", "")):
                watcher.deliver(change)
        for listener in self._listeners:
            listener(change)
        return obj

    def create(self, store_key: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Store a new object; None if one with that name exists."""
        meta = _meta(obj)
        key = (meta.get("namespace", ""), meta["name"])
        with self._lock:
            objects = self._objects.setdefault(store_key, {})
            if key in objects:
                return None
            objects[key] = obj
            return self._commit(store_key, "ADDED", obj, None)

    def replace(self, store_key: str, obj: dict[str, Any], expected_rv: str) -> dict[str, Any] | None:
        """Compare-and-swap on resourceVersion; None if the stored object moved on (or is gone)."""
        meta = _meta(obj)
        key = (meta.get("namespace", ""), meta["name"])
        with self._lock:
            current = self._objects.get(store_key, {}).get(key)
            if current is None or current["metadata"]["resourceVersion"] != expected_rv:
                return None
            self._objects[store_key][key] = obj
            return self._commit(store_key, "MODIFIED", obj, current)

    def remove(self, store_key: str, namespace: str, name: str, expected_rv: str | None = None
               ) -> dict[str, Any] | None:
        with self._lock:
            objects = self._objects.get(store_key, {})
            current = objects.get((namespace, name))
            if current is None or (expected_rv is not None and current["metadata"]["resourceVersion"] != expected_rv):
                return None
            del objects[(namespace, name)]
            gone = {**current, "metadata": dict(current["metadata"])}
            return self._commit(store_key, "DELETED", gone, current)

    # --- watching ----------------------------------------------------------------------------------------------
    def watch(self, store_key: str, namespace: str, since: int | None, loop: asyncio.AbstractEventLoop
              ) -> tuple[Watcher, list[Change], int]:
        """Register a watcher and return what it must send first, with the revision it starts at.

        kubernetes.md: a watch from a list's RV resumes there; one from a forgotten RV answers 410 Gone.

        since=None: the current objects as ADDED (the "get state and start at most recent" watch);
        since=N: the changes after N, or TooOld when the history no longer reaches back that far.
        """
        with self._lock:
            if since is None:
                items = self.snapshot(store_key, namespace)[0]
                backlog = [Change(int(obj["metadata"]["resourceVersion"]), "ADDED", store_key, obj, None)
                           for obj in items]
            else:
                oldest = self._compacted.get(store_key, self._first_rv)
                if since < oldest:
                    raise TooOld(since, oldest + 1)
                backlog = [change for change in self._history.get(store_key, ())
                           if change.rv > since and (not namespace or
                                                     change.obj["metadata"].get("namespace", "") == namespace)]
            watcher = Watcher(store_key, namespace, loop)
            self._watchers.add(watcher)
            return watcher, backlog, self._rv if since is None else since

    def bookmark(self, watcher: Watcher) -> None:
        """Queue a bookmark at the current revision behind every change already queued for this watcher."""
        with self._lock:
            watcher.deliver(Bookmark(self._rv))

    def unwatch(self, watcher: Watcher) -> None:
        with self._lock:
            self._watchers.discard(watcher)

    def end_watches(self, how: str) -> int:
        """Tell every open watch to end (`how` is "close" or "abort"); returns how many there were."""
        with self._lock:
            watchers = list(self._watchers)
        for watcher in watchers:
            watcher.deliver(how)
        return len(watchers)

    def compact(self) -> None:
        """Forget all history, as an etcd compaction does: every watch from an older revision gets 410."""
        with self._lock:
            for store_key in set(self._history) | set(self._objects):
                self._history[store_key] = deque()
                self._compacted[store_key] = self._rv

    def add_listener(self, listener: Callable[[Change], None]) -> None:
        self._listeners.append(listener)
