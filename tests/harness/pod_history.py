"""What a user watching `kubectl get pods -w` sees: every status a pod showed, from a watch on the Kubernetes
stand-in, as (phase, first container's state, Ready) with repeats of the same view folded together."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx

from standins.kube import KubeStandin

View = tuple[str, str, str]


def view(pod: dict[str, Any]) -> View:
    status = pod.get("status") or {}
    containers = status.get("containerStatuses") or [{}]
    state = next(iter(containers[0].get("state") or {}), "")
    ready = next((c.get("status", "") for c in status.get("conditions") or [] if c.get("type") == "Ready"), "")
    return str(status.get("phase") or ""), state, ready


class PodHistory:
    """Watches the pods of `namespace` from now on (start it before the pods are applied)."""

    def __init__(self, standin: KubeStandin, namespace: str = "default") -> None:
        self.standin, self.namespace = standin, namespace
        self.views: dict[str, list[View]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="pod-history")

    def __enter__(self) -> PodHistory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def of(self, name: str) -> list[View]:
        """What the pod showed once its node reported on it (before, the apiserver's bare Pending)."""
        with self._lock:
            return [v for v in self.views.get(name, []) if v[1]]

    def _record(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"]
        seen = view(pod)
        with self._lock:
            views = self.views.setdefault(name, [])
            if not views or views[-1] != seen:
                views.append(seen)

    def _run(self) -> None:
        revision = ""
        with self.standin.client() as client:
            while not self._stop.is_set():
                params = {"watch": "true", "timeoutSeconds": "60", "allowWatchBookmarks": "true",
                          **({"resourceVersion": revision} if revision else {})}
                try:
                    with client.stream("GET", f"/api/v1/namespaces/{self.namespace}/pods", params=params,
                                       timeout=httpx.Timeout(10, read=90)) as response:
                        for line in response.iter_lines():
                            if self._stop.is_set():
                                return
                            if not line:
                                continue
                            event = json.loads(line)
                            obj = event.get("object") or {}
                            revision = str((obj.get("metadata") or {}).get("resourceVersion") or revision)
                            if event.get("type") == "ERROR":  # 410: the revision is too old; start over
                                revision = ""
                                break
                            if event.get("type") in ("ADDED", "MODIFIED"):
                                self._record(obj)
                except httpx.HTTPError:
                    continue
