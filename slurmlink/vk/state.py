"""What the vk knows about each pod bound to its node (memory only: on restart it is rebuilt from Kubernetes
and the interLink API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slurmlink.vk.podstatus import TERMINAL
from slurmlink.wire.interlink import PodStatus

Obj = dict[str, Any]


@dataclass
class PodState:
    uid: str
    namespace: str
    name: str
    pod: Obj
    gone: bool = False  # deleted from Kubernetes (watch DELETED, or missing from a relist)
    submitted: bool = False  # the API has the pod: we created it, or /status said so at adoption
    job_id: str = ""
    remote: PodStatus | None = None  # the API's last answer about the pod
    remote_changed: bool = False  # `remote` differs from what was last turned into a patch
    fed: int = 0  # the change feed's answer that last told about the pod (StatusRounds.feed_answers), 0: none
    rounded: int = 0  # the round's change that last changed `remote` (StatusRounds.round_changes), 0: none
    last_patch: str = ""  # fingerprint of the status last sent
    phase: str = ""  # the phase Kubernetes shows (ours once patched), for transition events
    finished: bool = False  # terminal: no more status rounds
    send_full: bool = True  # the next /status carries the whole pod (the API may not know its spec)
    waiting_since: float | None = None  # when a missing reference first held the pod back
    last_warning: str = ""  # the last warning event, not repeated while it stays the same
    retries: int = 0  # consecutive failed attempts of the current step, for backoff
    authorizer_retries: int = 0  # quiet retries of reads the Node authorizer refused (controller.py)
    delete_sent: bool = False
    notes_seen: dict[str, int] = field(default_factory=dict)  # per container: the newest probe/hook note told
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, pod: Obj) -> PodState:
        meta = pod["metadata"]
        phase = str((pod.get("status") or {}).get("phase") or "")
        return cls(uid=str(meta["uid"]), namespace=str(meta["namespace"]), name=str(meta["name"]), pod=pod,
                   phase=phase, finished=phase in TERMINAL)

    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def backoff(self, base: float = 1.0, cap: float = 30.0) -> float:
        self.retries += 1
        return min(cap, base * 2 ** min(self.retries - 1, 8))

    def ref(self) -> Obj:
        """What a batched /status sends: the whole pod when the API may need its spec, else its identity."""
        if self.send_full:
            return self.pod
        meta = self.pod["metadata"]
        return {"metadata": {k: meta[k] for k in ("name", "namespace", "uid") if k in meta}}
