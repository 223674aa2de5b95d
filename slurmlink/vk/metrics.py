"""Prometheus metrics of the vk, served on the kubelet endpoint's /metrics."""

from prometheus_client import Counter, Gauge, Histogram

API_CALLS = Counter("slurmlink_vk_api_calls_total", "Calls to the interLink API", ["route", "outcome"])
API_REACHABLE = Gauge("slurmlink_vk_api_reachable", "1 when the last ping of the interLink API succeeded")
LEASE_RENEWALS = Counter("slurmlink_vk_lease_renewals_total", "Node lease renewals")
PODS_TRACKED = Gauge("slurmlink_vk_pods", "Pods bound to this node that the vk tracks")
STATUS_PATCHES = Counter("slurmlink_vk_pod_status_patches_total", "Pod status patches sent")
STATUS_ROUND = Histogram("slurmlink_vk_status_round_seconds", "Duration of one status round (all pods)")
WATCH_RESTARTS = Counter("slurmlink_vk_watch_restarts_total", "Pod watch restarts", ["why"])
QUEUE_DEPTH = Gauge("slurmlink_vk_queue_depth", "Pods waiting for a worker")
KUBELET_REFUSED = Counter("slurmlink_vk_kubelet_refused_total", "Kubelet endpoint requests refused", ["code"])
SERVICE_CONNECTIONS_TURNED_AWAY = Counter(
    "slurmlink_vk_service_connections_turned_away_total",
    "Connections to a pod's address closed at once: the pod had services.max_connections_per_pod in flight")
