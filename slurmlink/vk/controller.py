"""The pod controller: one reconcile per pod at a time, by several workers.

A reconcile looks at what Kubernetes wants (the pod, its deletionTimestamp) and what the API reports (set by
the status rounds) and does the one next step: submit, patch status, cancel, or confirm deletion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from lightkube import ApiError, AsyncClient

from slurmlink.translate import flags
from slurmlink.vk import metrics, podstatus
from slurmlink.vk.config import VkConfig
from slurmlink.vk.events import EventRecorder
from slurmlink.vk.kube import Pod, confirm_pod_deletion, status_code
from slurmlink.vk.resolve import MissingReference, Resolver
from slurmlink.vk.servicerelay import ServiceRelay
from slurmlink.vk.state import PodState
from slurmlink.vk.times import k8s_time
from slurmlink.vk.workqueue import WorkQueue
from slurmlink.wire.client import ApiCallError, InterlinkClient

log = logging.getLogger(__name__)
Obj = dict[str, Any]
GONE_DELETE_ATTEMPTS = 5  # cancel attempts for a pod Kubernetes no longer has (force-deleted)
# Right after a pod is bound, a real apiserver's Node authorizer may not know the binding yet and refuse the
# pod's ConfigMaps, Secrets and TokenRequests (403) for a moment: retried quietly (3 s in all) before the pod
# is told anything.
AUTHORIZER_BACKOFF = (0.2, 0.4, 0.8, 1.6)
SERVICE_RETRY_SECONDS = 15.0  # a pod without its address or a listener asks again (another pod may have ended)


class PodController:
    def __init__(self, config: VkConfig, kube: AsyncClient, api: InterlinkClient, events: EventRecorder,
                 services: ServiceRelay | None = None) -> None:
        self.config = config
        self.services = services  # pods' ports served as Services (vk `services`), None when off
        self.kube = kube
        self.api = api
        self.events = events
        self.resolver = Resolver(kube, config.token_expiration_seconds)
        self.queue = WorkQueue()
        self.pods: dict[str, PodState] = {}
        self.by_name: dict[tuple[str, str], str] = {}
        self.adopted = asyncio.Event()  # the API has told us which pods it already has

    # --- fed by the watch ----------------------------------------------------------------------------

    def observe(self, pod: Obj) -> None:
        uid = str(pod["metadata"]["uid"])
        state = self.pods.get(uid)
        if state is None:
            state = self.pods[uid] = PodState.of(pod)
            self.by_name[(state.namespace, state.name)] = uid
            metrics.PODS_TRACKED.set(len(self.pods))
        state.pod = pod
        if self.services is not None:
            self.services.observe(pod)
        self.queue.add(uid)

    def vanish(self, uid: str) -> None:
        state = self.pods.get(uid)
        if state is not None and not state.gone:
            state.gone = True
            self.queue.add(uid)

    def known(self) -> set[str]:
        return {uid for uid, state in self.pods.items() if not state.gone}

    def lookup(self, namespace: str, name: str) -> PodState | None:
        uid = self.by_name.get((namespace, name))
        return self.pods.get(uid) if uid else None

    def _forget(self, state: PodState) -> None:
        self.pods.pop(state.uid, None)
        if self.by_name.get((state.namespace, state.name)) == state.uid:
            del self.by_name[(state.namespace, state.name)]
        metrics.PODS_TRACKED.set(len(self.pods))

    # --- workers -------------------------------------------------------------------------------------

    async def worker(self) -> None:
        await self.adopted.wait()
        while True:
            uid = await self.queue.get()
            metrics.QUEUE_DEPTH.set(len(self.queue))
            try:
                await self.reconcile(uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kubernetes or the API away: retry this pod later, keep the others going
                state = self.pods.get(uid)
                delay = state.backoff() if state else 5.0
                log.warning("pod %s: %s; retrying in %.0fs", _name(state, uid), exc or type(exc).__name__, delay)
                self.queue.add_after(uid, delay)
            finally:
                self.queue.done(uid)

    async def reconcile(self, uid: str) -> None:
        state = self.pods.get(uid)
        if state is None:
            return
        if state.gone:
            await self._cancel_vanished(state)
        elif state.deleting:
            await self._delete(state)
        elif state.finished:
            return
        elif not state.submitted:
            await self._submit(state)
        elif state.remote is not None and state.remote_changed:
            # Cleared before the patch: an answer taken while it is on its way (the feed's, a round's) sets it
            # again and queues the pod, which is then patched once more; cleared after, that answer was lost.
            remote, state.remote_changed = state.remote, False
            try:
                desired = podstatus.from_remote(state.pod, remote, self._host_ip(), k8s_time())
                if self.services is not None:
                    desired = await self._with_address(state, desired)
                await self._patch(state, desired)
            except Exception:
                state.remote_changed = True  # not patched: the retry patches the newest answer
                raise
            for note in podstatus.container_events(remote, state.notes_seen):
                await self.events.emit(state.pod, note.reason, note.message, note.type)

    async def _with_address(self, state: PodState, desired: podstatus.Desired) -> podstatus.Desired:
        """The status with the pod's address (listeners opened before it is shown); a pod that could not get
        its address or a listener says why and is looked at again later."""
        assert self.services is not None
        if str((state.pod.get("status") or {}).get("phase") or "") in podstatus.TERMINAL:
            await self._unserve(state)  # finished by someone else: _patch leaves it so, and nothing is served
            return desired
        pod_ip, warnings = await self.services.place(state.pod, desired.phase.phase)
        for reason, message in warnings:
            await self._warn(state, reason, message)
        if any(reason != "ServicePortUnsupported" for reason, _ in warnings):
            state.remote_changed = True
            self.queue.add_after(state.uid, SERVICE_RETRY_SECONDS)
        return podstatus.with_pod_ip(desired, pod_ip) if pod_ip else desired

    async def _unserve(self, state: PodState) -> None:
        """The pod finished or is gone: no listeners, and its address is free."""
        if self.services is not None:
            await self.services.release(state.uid)

    def _host_ip(self) -> str:
        return self.config.node.internal_ip

    async def _warn(self, state: PodState, reason: str, message: str) -> None:
        """A Warning event, once per distinct message (a retry loop must not flood the namespace)."""
        if state.last_warning != f"{reason}:{message}":
            state.last_warning = f"{reason}:{message}"
            await self.events.emit(state.pod, reason, message, "Warning")

    # --- create --------------------------------------------------------------------------------------

    async def _submit(self, state: PodState) -> None:
        try:
            body = await self.resolver.create_body(state.pod)
        except MissingReference as exc:
            if exc.forbidden and state.authorizer_retries < len(AUTHORIZER_BACKOFF):
                delay = AUTHORIZER_BACKOFF[state.authorizer_retries]
                state.authorizer_retries += 1
                log.info("pod %s/%s: %s; retrying in %.1fs (the Node authorizer may not know the binding yet)",
                         state.namespace, state.name, exc, delay)
                self.queue.add_after(state.uid, delay)
                return
            await self._hold(state, str(exc))
            return
        try:
            created = await self.api.create(body)
        except ApiCallError as exc:
            metrics.API_CALLS.labels("/create", "error").inc()
            if exc.transient:
                delay = state.backoff(2.0, 30.0)
                await self._warn(state, "SubmitRetrying", f"the interLink API cannot take the pod yet "
                                 f"({exc}); retrying")
                self.queue.add_after(state.uid, delay)
                return
            await self._fail(state, "ProviderFailed", f"the interLink API refused the pod: {exc.message}")
            return
        metrics.API_CALLS.labels("/create", "ok").inc()
        state.submitted, state.job_id, state.waiting_since = True, created.pod_jid, None
        state.send_full, state.retries = True, 0
        log.info("pod %s/%s submitted: job %s", state.namespace, state.name, created.pod_jid or "none")
        if state.remote_changed:  # the change feed told about the pod before /create returned
            self.queue.add(state.uid)
        if created.pod_jid:
            placed = f" ({created.placement})" if created.placement else ""  # the site policy's VO/account/partition
            await self.events.emit(state.pod, "Submitted", f"Submitted to SLURM as job {created.pod_jid}{placed}")
        dropped = flags.owned_only(created.dropped_flags)  # names slurmlink owns only: another process's word
        if dropped:  # options slurmlink sets itself: the pod runs, and is told they were ignored
            await self._warn(state, flags.DROPPED_REASON, flags.dropped_message(dropped))

    async def _hold(self, state: PodState, message: str) -> None:
        """A required ConfigMap/Secret is missing: the pod waits, says why, and fails after the timeout."""
        now = time.monotonic()
        state.waiting_since = state.waiting_since or now
        waited = now - state.waiting_since
        if waited >= self.config.missing_reference_timeout:
            limit = self.config.missing_reference_timeout
            await self._fail(state, "CreateContainerConfigError", f"{message} (gave up after {limit:.0f}s)")
            return
        await self._patch(state, podstatus.waiting(state.pod, "CreateContainerConfigError", message,
                                                    self._host_ip(), k8s_time()))
        await self._warn(state, "Failed", f"Error: {message}")
        left = self.config.missing_reference_timeout - waited
        self.queue.add_after(state.uid, max(0.1, min(state.backoff(1.0, 10.0), left)))

    async def _fail(self, state: PodState, reason: str, message: str) -> None:
        await self._patch(state, podstatus.failed(state.pod, reason, message, self._host_ip(), k8s_time()))
        state.finished = True

    # --- status --------------------------------------------------------------------------------------

    async def _patch(self, state: PodState, desired: podstatus.Desired) -> None:
        shown = str((state.pod.get("status") or {}).get("phase") or "")
        if podstatus.stays_finished(shown, desired):
            log.warning("pod %s/%s shows %s, set by someone else: not patching it to %s", state.namespace,
                        state.name, shown, desired.phase.phase)
            state.finished = desired.phase.phase in podstatus.TERMINAL  # the job is over too: nothing more to say
            return
        fingerprint = podstatus.fingerprint(desired.status)
        if fingerprint in (state.last_patch, podstatus.fingerprint(state.pod.get("status") or {})):
            state.last_patch = fingerprint
        else:
            try:
                await self.kube.patch(Pod.Status, state.name, podstatus.patch_body(desired.status),
                                      namespace=state.namespace)
            except ApiError as exc:
                if status_code(exc) == 404:
                    return  # deleted meanwhile: the watch will say so
                raise
            state.last_patch = fingerprint
            metrics.STATUS_PATCHES.inc()
        for note in podstatus.transition_events(state.phase, desired, state.job_id):
            await self.events.emit(state.pod, note.reason, note.message, note.type)
        state.phase = desired.phase.phase
        if desired.phase.phase in podstatus.TERMINAL:
            state.finished = True

    # --- delete --------------------------------------------------------------------------------------

    async def _delete(self, state: PodState) -> None:
        """Graceful deletion: cancel the job, then confirm once the API says it is over (or never had it)."""
        # A terminating pod is served until its job ends (its grace period, as on a kubelet), and keeps its address
        # until its object is gone: the EndpointSlice controller still lists it, as terminating.
        if state.submitted and not state.delete_sent and not state.finished:
            try:
                await self.api.delete(state.pod)
            except ApiCallError as exc:
                metrics.API_CALLS.labels("/delete", "error").inc()
                await self._warn(state, "CancelFailed", f"cannot cancel SLURM job {state.job_id or '?'}: "
                                 f"{exc}; the pod stays Terminating and this is retried")
                self.queue.add_after(state.uid, state.backoff(2.0, 30.0))
                return
            metrics.API_CALLS.labels("/delete", "ok").inc()
            state.delete_sent, state.retries = True, 0
            if state.job_id:
                await self.events.emit(state.pod, "Killing", f"Cancelling SLURM job {state.job_id}")
            return  # the next status round tells when the job is over
        if state.submitted and not state.finished and not self._over(state):
            return
        if self.services is not None:
            await self.services.stop_serving(state.uid)  # the job has ended
        try:
            await confirm_pod_deletion(self.kube, state.namespace, state.name, state.uid)
        except ApiError as exc:
            if status_code(exc) not in (404, 409):  # gone already, or a new pod of the same name
                raise
        log.info("pod %s/%s deleted", state.namespace, state.name)
        await self._unserve(state)
        self._forget(state)

    def _over(self, state: PodState) -> bool:
        """The job has ended (every container terminated) or the API does not have it."""
        remote = state.remote
        if remote is None or not podstatus.known_to_api(remote):
            return state.delete_sent
        statuses = remote.containers + remote.init_containers
        apps = remote.containers
        ended = bool(apps) and all("terminated" in (s.get("state") or {}) for s in apps)
        failed_init = any(((s.get("state") or {}).get("terminated") or {}).get("exitCode", 0) != 0
                          for s in remote.init_containers)
        return bool(statuses) and (ended or failed_init)

    async def _cancel_vanished(self, state: PodState) -> None:
        """Kubernetes no longer has the pod (force delete, or gone in a watch gap): its job must not live on."""
        await self._unserve(state)
        if state.submitted and not state.finished and not state.delete_sent:
            try:
                await self.api.delete(state.pod)
            except ApiCallError as exc:
                if state.retries < GONE_DELETE_ATTEMPTS:
                    log.warning("pod %s/%s is gone; cancelling its job failed (%s), retrying", state.namespace,
                                state.name, exc)
                    self.queue.add_after(state.uid, state.backoff(2.0, 30.0))
                    return
                log.error("pod %s/%s is gone; giving up cancelling job %s: %s", state.namespace, state.name,
                          state.job_id, exc)
        self._forget(state)


def _name(state: PodState | None, uid: str) -> str:
    return f"{state.namespace}/{state.name}" if state else uid
