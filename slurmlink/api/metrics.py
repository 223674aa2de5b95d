"""Prometheus metrics of the API."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("slurmlink_api_requests_total", "API requests", ["route", "status"])
PODS = Gauge("slurmlink_api_pods", "Pods the API tracks")
SUBMITS = Counter("slurmlink_api_submits_total", "Job submissions", ["result"])
POLL_SECONDS = Histogram("slurmlink_api_poll_seconds", "Duration of one batched status poll")
LONG_POLLS = Gauge("slurmlink_api_long_polls", "Requests to the change feed in progress (connected vks)")
