# ruff: noqa: F811 - the `chain` fixture is imported and then named as a parameter
"""Probes as Kubernetes shows them through the vk: the pod's Ready condition follows the readiness probe,
probe failures and the liveness kill are Events, and `kubectl logs --previous` reads the instance before
the restart (kubectl → stand-in apiserver → vk's kubelet endpoint → API → the job's files)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.harness.pods import pod_manifest
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain

pytestmark = pytest.mark.timeout(180)


def _condition(pod: dict[str, Any] | None, kind: str) -> dict[str, Any]:
    return next((c for c in ((pod or {}).get("status") or {}).get("conditions") or [] if c["type"] == kind), {})


def _main(pod: dict[str, Any] | None) -> dict[str, Any]:
    return (((pod or {}).get("status") or {}).get("containerStatuses") or [{}])[0]


def _events(chain: Chain, name: str) -> list[tuple[str, str, str]]:
    out = chain.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json").stdout
    return [(e["type"], e["reason"], e["message"]) for e in json.loads(out)["items"]]


def test_readiness_drives_ready_and_liveness_restarts_with_events_and_previous_logs(chain: Chain) -> None:
    script = ("n=$(cat /state/runs 2>/dev/null || echo 0); echo $((n + 1)) > /state/runs; echo run $n; "
              "touch /state/alive; trap 'exit 0' TERM; while :; do sleep 0.2; done")
    container = {"name": "main", "image": "debian", "command": ["sh", "-c", script],
                 "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                 "readinessProbe": {"exec": {"command": ["test", "-e", "/state/ready"]}, "periodSeconds": 1,
                                    "failureThreshold": 1, "timeoutSeconds": 5},
                 "livenessProbe": {"exec": {"command": ["test", "-e", "/state/alive"]}, "periodSeconds": 1,
                                   "failureThreshold": 1, "initialDelaySeconds": 2, "timeoutSeconds": 5}}
    chain.apply(pod_manifest("probed", "", containers=[container], restartPolicy="Always",
                             volumes=[{"name": "state", "emptyDir": {}}], terminationGracePeriodSeconds=2))
    pod = chain.wait_phase("probed", ("Running",))
    state = Path(chain.cluster.job_root) / f"default-{pod['metadata']['uid']}" / "volumes" / "state"

    unready = wait_until(lambda: (p := chain.pod("probed")) and "running" in _main(p).get("state", {})
                         and _condition(p, "Ready").get("status") == "False" and p, 60, "running but not Ready")
    assert _condition(unready, "Ready")["reason"] == "ContainersNotReady"
    assert _condition(unready, "ContainersReady")["status"] == "False"
    previous = chain.kubectl("logs", "probed", "--previous", check=False)
    assert previous.returncode != 0
    assert 'previous terminated container "main" in pod "probed" not found' in previous.stderr

    (state / "ready").touch()
    wait_until(lambda: _condition(chain.pod("probed"), "Ready").get("status") == "True", 30, "Ready")
    assert _condition(chain.pod("probed"), "ContainersReady")["status"] == "True"
    (state / "ready").unlink()
    wait_until(lambda: _condition(chain.pod("probed"), "Ready").get("status") == "False", 30, "not Ready again")
    wait_until(lambda: ("Warning", "Unhealthy", "Readiness probe failed: ") in _events(chain, "probed"), 30,
               "the readiness failure's Event")

    (state / "alive").unlink()  # the liveness probe fails: the container is killed and started again
    restarted = wait_until(lambda: (p := chain.pod("probed")) and _main(p).get("restartCount") == 1
                           and "running" in _main(p).get("state", {}) and p, 60, "the restart")
    assert "terminated" in _main(restarted)["lastState"]
    wait_until(lambda: ("Normal", "Killing", "Container main failed liveness probe, will be restarted")
               in _events(chain, "probed"), 30, "the Killing Event")
    assert ("Warning", "Unhealthy", "Liveness probe failed: ") in _events(chain, "probed")
    assert chain.kubectl("logs", "probed", "--previous").stdout == "run 0\n"
    assert chain.kubectl("logs", "probed").stdout == "run 1\n"
    assert pod["status"]["phase"] == "Running"
    chain.kubectl("delete", "pod", "probed", "--wait=false")
    chain.wait_gone("probed")
