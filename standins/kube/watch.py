"""Watch: a chunked stream of `{"type", "object"}` JSON lines, with the real apiserver's start and end rules.

- resourceVersion unset or "0": the current objects as ADDED first; "N": the changes after N; too old → one ERROR
  event carrying a 410 Expired Status (the real watch cache answers 200 and puts the error in the stream).
- a change that makes an object match the selectors is ADDED, one that makes it stop matching is DELETED.
- allowWatchBookmarks: BOOKMARK events carrying only the resourceVersion, every `bookmark_interval` seconds.
- sendInitialEvents=true: the initial ADDED events end with a bookmark annotated k8s.io/initial-events-end.
- timeoutSeconds ends the stream cleanly; without it the real one picks 30-60 min, here 30 min.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from .errors import StatusError, bad_request, expired, invalid
from .events import field_label_to_core
from .faults import Faults
from .registry import Registry
from .resources import ResourceType
from .selectors import Matcher, field_matcher, label_matcher
from .store import Bookmark, Change, TooOld

DEFAULT_TIMEOUT = 1800.0
Shape = Callable[[dict[str, Any]], dict[str, Any]]


class WatchAborted(Exception):
    """Raised inside a response to cut the connection mid-stream, as a crashed apiserver or proxy would."""


def _line(event_type: str, obj: dict[str, Any]) -> bytes:
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _classify(change: Change, matches: Matcher) -> str | None:
    if change.type == "ADDED":
        return "ADDED" if matches(change.obj) else None
    if change.type == "DELETED":
        return "DELETED" if matches(change.old or change.obj) else None
    now_in, was_in = matches(change.obj), change.old is not None and matches(change.old)
    if now_in:
        return "MODIFIED" if was_in else "ADDED"
    return "DELETED" if was_in else None


def _start(params: dict[str, str]) -> int | None:
    requested = params.get("resourceVersion", "")
    if requested in ("", "0"):
        return None
    if not requested.isdigit():
        raise bad_request(f"invalid resource version: {requested}")
    return int(requested)


def _error_stream(error: StatusError) -> AsyncIterator[bytes]:
    async def one() -> AsyncIterator[bytes]:
        yield _line("ERROR", error.status())
    return one()


def open_watch(registry: Registry, rtype: ResourceType, namespace: str, params: dict[str, str], faults: Faults,
               shape: Shape, bookmark_interval: float) -> AsyncIterator[bytes]:
    """Check the request, register the watcher now (so no change is missed), and return the stream to send."""
    translate = field_label_to_core if rtype.group == "events.k8s.io" else (lambda label: label)
    label_match = label_matcher(params.get("labelSelector"))
    field_match = field_matcher(params.get("fieldSelector"), rtype, translate)

    def matches(obj: dict[str, Any]) -> bool:
        return label_match(obj) and field_match(obj)

    bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
    initial_events = params.get("sendInitialEvents") in ("true", "1")
    if initial_events and not bookmarks:
        raise invalid("ListOptions", "meta.k8s.io", "", [("allowWatchBookmarks", "Forbidden: sendInitialEvents "
                                                         "requires setting allowWatchBookmarks=true")])
    timeout = float(params.get("timeoutSeconds") or DEFAULT_TIMEOUT)
    since = _start(params)
    if initial_events:
        since = None  # stream the current state first, then changes
    if faults.take_watch_expiry(rtype.plural):
        return _error_stream(expired(f"too old resource version: {since or 0} ({registry.store.rv})"))
    loop = asyncio.get_running_loop()
    try:
        watcher, backlog, start_rv = registry.store.watch(rtype.store_key, namespace if rtype.namespaced else "",
                                                          since, loop)
    except TooOld as exc:
        return _error_stream(expired(str(exc)))

    async def stream() -> AsyncIterator[bytes]:
        deadline = loop.time() + timeout
        try:
            for change in backlog:
                kind = _classify(change, matches)
                if kind:
                    yield _line(kind, shape(change.obj))
            if initial_events:
                yield _line("BOOKMARK", _bookmark(rtype, start_rv, initial_end=True))
            # The real watch cache sends a bookmark every interval and one ~2 s before the timeout ends the watch.
            pre_timeout = deadline - 2.0
            while (remaining := deadline - loop.time()) > 0:
                wait = min(remaining, bookmark_interval) if bookmarks else remaining
                if bookmarks and loop.time() < pre_timeout:
                    wait = min(wait, pre_timeout - loop.time())
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), wait)
                except TimeoutError:
                    if bookmarks and loop.time() < deadline:
                        registry.store.bookmark(watcher)
                    continue
                if item == "close":
                    return
                if item == "abort":
                    raise WatchAborted("watch aborted by fault injection")
                if isinstance(item, Bookmark):
                    yield _line("BOOKMARK", _bookmark(rtype, item.rv))
                elif isinstance(item, Change) and (kind := _classify(item, matches)):
                    yield _line(kind, shape(item.obj))
        finally:
            registry.store.unwatch(watcher)

    return stream()


def _bookmark(rtype: ResourceType, rv: int, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": meta}
