"""Status rounds: every interval, the API is asked about every pod still running, in one batched `/status`
call (slurmlink's API), or one call per pod (upstream interLink). Answers are handed to the workers.

Adoption at start is the same call over every unfinished pod of the node: the pods the API already has are
marked submitted, so a restarted vk never creates a job twice.

With slurmlink's API, the change feed (changefeed.py) hands its answers to `take_changes`, the same path; a
round's answer is then the safety net. The two are ordered per pod: a round's answer is not taken over what the
feed told while the round was asked (the feed's word is the newer one; a change the round saw first, the feed
brings too), nor a feed answer over what a round changed while the feed's call was on its way (either may be
the newer one: the feed is then asked for a snapshot, which is newer than both).
"""

from __future__ import annotations

import asyncio
import logging
import time

from slurmlink.vk import metrics, podstatus
from slurmlink.vk.config import VkConfig
from slurmlink.vk.controller import PodController
from slurmlink.vk.state import PodState
from slurmlink.wire.changes import Changes
from slurmlink.wire.client import ApiCallError, InterlinkClient
from slurmlink.wire.interlink import PodStatus

log = logging.getLogger(__name__)
PER_POD_CONCURRENCY = 8  # upstream mode: calls in flight at once


class StatusRounds:
    def __init__(self, config: VkConfig, api: InterlinkClient, controller: PodController) -> None:
        self.config, self.api, self.controller = config, api, controller
        self.last_error = ""
        self.feed_answers = 0  # change feed answers taken so far; PodState.fed says which one told about a pod
        self.round_changes = 0  # pods a round's answer changed so far; PodState.rounded says which change

    async def _ask(self, states: list[PodState]) -> dict[str, PodStatus]:
        if self.config.api.batch_status:
            answers = await self.api.statuses([s.ref() for s in states])
            metrics.API_CALLS.labels("/status", "ok").inc()
        else:
            gate = asyncio.Semaphore(PER_POD_CONCURRENCY)

            async def one(state: PodState) -> list[PodStatus]:
                async with gate:
                    result = await self.api.statuses([state.pod])  # upstream needs the whole pod
                    metrics.API_CALLS.labels("/status", "ok").inc()
                    return result
            answers = [s for part in await asyncio.gather(*(one(s) for s in states)) for s in part]
        return {a.uid: a for a in answers}

    async def adopt(self) -> None:
        """Learn which of the node's pods the API already has; retried until the API answers."""
        delay = 1.0
        while True:
            candidates = [s for s in self.controller.pods.values() if not s.gone and not s.finished]
            for state in candidates:
                state.send_full = True
            try:
                answers = await self._ask(candidates) if candidates else {}
                break
            except ApiCallError as exc:
                metrics.API_CALLS.labels("/status", "error").inc()
                log.warning("cannot ask the API which pods it has (%s); retrying in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)
        adopted = 0
        for state in candidates:
            remote = answers.get(state.uid)
            if podstatus.known_to_api(remote):
                assert remote is not None
                state.submitted, state.job_id = True, remote.jid
                state.notes_seen = podstatus.notes_seen(remote)  # told before this vk started
                self._take(state, remote)
                adopted += 1
        log.info("adopted %d of %d unfinished pods the API already has", adopted, len(candidates))
        self.controller.adopted.set()

    def _take(self, state: PodState, remote: PodStatus) -> bool:
        """Whether the answer changed what the vk knows of the pod."""
        if not podstatus.matches_spec(state.pod, remote):
            state.send_full = True  # the API lost the spec (e.g. restarted): send it, trust the next answer
            return False
        state.send_full = False
        if remote.jid:
            state.job_id = remote.jid
        if state.remote is None or state.remote.to_wire() != remote.to_wire():
            state.remote, state.remote_changed = remote, True
            self.controller.queue.add(state.uid, soon=True)
            return True
        if state.deleting:
            self.controller.queue.add(state.uid, soon=True)
        return False

    async def round(self) -> None:
        states = [s for s in self.controller.pods.values() if s.submitted and not s.gone and not s.finished]
        if not states:
            return
        started = time.monotonic()
        asked = self.feed_answers
        try:
            answers = await self._ask(states)
        except ApiCallError as exc:
            metrics.API_CALLS.labels("/status", "error").inc()
            if str(exc) != self.last_error:
                log.warning("status round failed: %s", exc)
            self.last_error = str(exc)
            return
        self.last_error = ""
        for state in states:
            remote = answers.get(state.uid)
            if state.fed > asked:
                continue  # the feed told about the pod after this round asked: its answer is not older
            if remote is not None:
                if self._take(state, remote):
                    self.round_changes += 1
                    state.rounded = self.round_changes
            elif state.deleting:  # upstream forgets a deleted pod: nothing more to wait for
                state.remote = None
                self.controller.queue.add(state.uid, soon=True)
        metrics.STATUS_ROUND.observe(time.monotonic() - started)

    def take_changes(self, changes: Changes, asked: int) -> bool:
        """One answer of the change feed, asked when `round_changes` was `asked`: the pods it lists take their
        status as a round's answer would (after a reset too: the snapshot is the whole truth for the pods it
        lists; the rounds see to the rest). False when a round changed one of them meanwhile: that pod is left
        as the round set it, and the feed must ask for a snapshot."""
        self.feed_answers += 1
        in_order = True
        for remote in changes.pods:
            state = self.controller.pods.get(remote.uid)
            if state is None or state.gone or state.finished:
                continue  # not ours, or over: the watch decides
            if state.rounded > asked:
                in_order = False
                continue
            state.fed = self.feed_answers
            if not state.submitted:  # told before our /create returned: patched once it has (controller)
                state.remote, state.remote_changed = remote, True
                continue
            self._take(state, remote)
        for removed in changes.removed:
            state = self.controller.pods.get(removed.uid)
            if state is not None and state.deleting and not state.gone:
                state.fed, state.remote = self.feed_answers, None  # the API let go of it: nothing to wait for
                self.controller.queue.add(state.uid, soon=True)
        return in_order

    async def run(self) -> None:
        await self.controller.adopted.wait()
        while True:
            await asyncio.sleep(self.config.status_interval)
            await self.round()
