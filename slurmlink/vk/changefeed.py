"""The change feed: one long poll of slurmlink's API at a time (`/slurmlink/v1/changes`), whose answers go to
the status rounds' own path (StatusRounds.take_changes), so a pod's status reaches Kubernetes as soon as the
API knows it instead of at the next round.

The cursor carries over reconnects, so a dropped connection loses nothing; a restarted API answers with a
reset (a snapshot). An API without the feed (upstream interLink) is left to the periodic rounds.
"""

from __future__ import annotations

import asyncio
import logging
import time

from slurmlink.vk import metrics
from slurmlink.vk.statusround import StatusRounds
from slurmlink.wire import names
from slurmlink.wire.client import ApiCallError, InterlinkClient, RouteUnsupported

log = logging.getLogger(__name__)
UNSUPPORTED_RETRY_SECONDS = 300.0  # an API without the feed may be upgraded: asked again this often
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0  # after a failed poll
QUICK_ANSWER_SECONDS = 0.2  # an empty answer sooner than this (a broken server) is not asked again at once


class ChangeFeed:
    def __init__(self, api: InterlinkClient, rounds: StatusRounds, wait: float) -> None:
        self.api, self.rounds, self.wait = api, rounds, wait
        self.cursor = ""  # empty: the next answer is a snapshot
        self.live = False  # the last poll was answered

    async def poll(self) -> None:
        """One long poll, its answer taken; raises ApiCallError (RouteUnsupported: no feed there)."""
        started, asked = time.monotonic(), self.rounds.round_changes
        try:
            changes = await self.api.changes(self.cursor, self.wait)
        except ApiCallError:
            self.live = False
            raise
        self.live = True
        if changes.reset and self.cursor:
            log.info("change feed: reset (the API restarted or the cursor is too old); a snapshot of %d pods",
                     len(changes.pods))
        in_order = self.rounds.take_changes(changes, asked)
        quiet = not changes.pods and not changes.removed and changes.cursor == self.cursor
        self.cursor = changes.cursor if in_order else ""  # a round overtook this answer: a snapshot next
        if quiet and time.monotonic() - started < QUICK_ANSWER_SECONDS:
            await asyncio.sleep(QUICK_ANSWER_SECONDS)

    async def run(self) -> None:
        await self.rounds.controller.adopted.wait()
        delay, last_error = BACKOFF_FIRST, ""
        while True:
            try:
                await self.poll()
                metrics.API_CALLS.labels(names.CHANGES_ROUTE, "ok").inc()
                delay, last_error = BACKOFF_FIRST, ""
            except RouteUnsupported as exc:
                metrics.API_CALLS.labels(names.CHANGES_ROUTE, "unsupported").inc()
                self.cursor = ""
                log.info("the API has no change feed (%s): pod status comes from the status rounds only; asking "
                         "again in %.0fs", exc, UNSUPPORTED_RETRY_SECONDS)
                await asyncio.sleep(UNSUPPORTED_RETRY_SECONDS)
            except ApiCallError as exc:
                metrics.API_CALLS.labels(names.CHANGES_ROUTE, "error").inc()
                if str(exc) != last_error:
                    log.warning("change feed: %s; reconnecting from cursor %r with backoff (the status rounds go "
                                "on meanwhile)", exc, self.cursor)
                last_error = str(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX)
