"""Probes, lifecycle hooks and `logs --previous` end to end through `slurmlink api` on the real local SLURM, in
both modes (mode 2: sbatch at the site; mode 1: the REST backend through `slurmlink proxy`, which reads the
job's status files and logs for it). The probes run inside the job, beside the container (bwrap runtime).

The test drives readiness by creating and removing a file in the pod's emptyDir, as root on this machine,
so each flip happens when the test says, never by a race with a sleep."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from slurmlink.translate.status import NOTES_KEY
from tests.harness.pods import Client, make_pod, terminated
from tests.harness.ports import free_port
from tests.harness.waiting import wait_until

FAST = {"periodSeconds": 1, "timeoutSeconds": 5}


@dataclass
class Site:
    client: Client
    job_root: Path

    def volume(self, pod: dict[str, Any], name: str) -> Path:
        meta = pod["metadata"]
        return self.job_root / f"{meta['namespace']}-{meta['uid']}" / "volumes" / name


@pytest.fixture(scope="module", params=["mode2", "mode1"])
def site(request: pytest.FixtureRequest) -> Site:
    if request.param == "mode2":
        return Site(Client(request.getfixturevalue("api").url), request.getfixturevalue("slurm_cluster").job_root)
    mode1 = request.getfixturevalue("mode1")
    return Site(mode1.client(), mode1.job_root)


def sh(script: str, name: str = "main", **extra: object) -> dict[str, object]:
    return {"name": name, "command": ["sh", "-c", script], **extra}


def container(site: Site, pod: dict[str, Any], name: str = "main") -> dict[str, Any]:
    return next(c for c in site.client.status(pod).containers if c["name"] == name)


def wait_container(site: Site, pod: dict[str, Any], what: str, check: Any, name: str = "main",
                   timeout: float = 90) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        c = container(site, pod, name)
        return c if check(c) else None

    return wait_until(found, timeout, f"{name} of {pod['metadata']['name']}: {what}")


def running(c: dict[str, Any]) -> bool:
    return "running" in c["state"]


def notes(c: dict[str, Any]) -> list[tuple[str, str]]:
    return [(n["reason"], n["message"]) for n in c.get(NOTES_KEY) or []]


STATE = {"volumeMounts": [{"name": "state", "mountPath": "/state"}]}
STATE_VOLUME = [{"name": "state", "emptyDir": {}}]
SLEEPER = "trap 'exit 0' TERM; while :; do sleep 0.2; done"


def test_readiness_exec_probe_flips_ready_both_ways(site: Site) -> None:
    probe = {"exec": {"command": ["test", "-e", "/state/ready"]}, "failureThreshold": 1, **FAST}
    pod = make_pod([sh(SLEEPER, readinessProbe=probe, **STATE)], volumes=STATE_VOLUME,
                   terminationGracePeriodSeconds=2)
    site.client.submit(pod)
    first = wait_container(site, pod, "running, not ready", lambda c: running(c) and not c["ready"])
    assert first["started"] is True  # no startup probe: started once running
    ready = site.volume(pod, "state") / "ready"
    ready.touch()
    wait_container(site, pod, "ready", lambda c: c["ready"])
    ready.unlink()
    unready = wait_container(site, pod, "not ready again", lambda c: running(c) and not c["ready"])
    assert ("Unhealthy", "Readiness probe failed: ") in notes(unready)
    # never restarted: there is no previous log, and the API says so in the kubelet's words
    answer = _logs(site, pod, "main", Previous=True)
    assert answer.status_code == 400
    assert f'previous terminated container "main" in pod "{pod["metadata"]["name"]}" not found' in answer.text
    site.client.delete(pod)
    site.client.finish(pod, timeout=60)


def test_liveness_failure_restarts_the_container_and_keeps_the_previous_log(site: Site) -> None:
    # The first instance removes the file its liveness probe checks; the second keeps it and ends well.
    script = ("n=$(cat /state/runs 2>/dev/null || echo 0); echo $((n + 1)) > /state/runs; echo run $n; "
              "if [ $n = 0 ]; then " + SLEEPER + "; fi; touch /state/alive; sleep 2; echo done")
    probe = {"exec": {"command": ["test", "-e", "/state/alive"]}, "failureThreshold": 2, "initialDelaySeconds": 1,
             **FAST}
    pod = make_pod([sh(script, livenessProbe=probe, **STATE)], volumes=STATE_VOLUME, restartPolicy="Always",
                   terminationGracePeriodSeconds=3)
    site.client.submit(pod)
    phase, status = site.client.finish(pod, timeout=120)
    [main] = status.containers
    assert phase.phase == "Succeeded", main
    assert main["restartCount"] == 1
    last = main["lastState"]["terminated"]
    assert last["exitCode"] == 0  # the script's TERM trap exits 0: a liveness kill restarts it anyway
    assert last["startedAt"] and last["finishedAt"]
    assert ("Killing", "Container main failed liveness probe, will be restarted") in notes(main)
    assert ("Unhealthy", "Liveness probe failed: ") in notes(main)
    assert site.client.logs(pod, "main", Previous=True) == b"run 0\n"
    assert site.client.logs(pod, "main") == b"run 1\ndone\n"


def test_liveness_failure_with_restart_policy_never_ends_the_container(site: Site) -> None:
    # the delay lets the shell ignore SIGTERM before the first check fails
    probe = {"tcpSocket": {"port": free_port()}, "failureThreshold": 1, "initialDelaySeconds": 2, **FAST}
    pod = make_pod([sh("trap '' TERM; while :; do sleep 0.2; done", livenessProbe=probe)],
                   terminationGracePeriodSeconds=1)
    site.client.submit(pod)
    phase, status = site.client.finish(pod, timeout=90)
    [main] = status.containers
    assert phase.phase == "Failed"
    assert terminated(status, "main")["exitCode"] == 137  # TERM ignored: SIGKILL after the grace period
    assert main["restartCount"] == 0
    assert ("Killing", "Container main failed liveness probe") in notes(main)
    assert any(m.startswith("Liveness probe failed: dial tcp 127.0.0.1:") for _, m in notes(main))


def test_http_and_tcp_probes_with_a_server_that_starts_late_and_an_unsupported_grpc_probe(site: Site) -> None:
    port = free_port()
    server = f"sleep 3; exec python3 -m http.server {port} --bind 127.0.0.1"
    web = sh(server, "web", ports=[{"name": "http", "containerPort": port}],
             startupProbe={"tcpSocket": {"port": "http"}, "failureThreshold": 60, **FAST},
             readinessProbe={"httpGet": {"port": "http", "path": "/", "httpHeaders": [{"name": "X-A", "value": "b"}]},
                             **FAST},
             livenessProbe={"httpGet": {"port": port, "path": "/"}, **FAST})
    grpc = sh(SLEEPER, "grpc", readinessProbe={"grpc": {"port": free_port()}, **FAST})
    pod = make_pod([web, grpc], terminationGracePeriodSeconds=2)
    site.client.submit(pod)
    early = wait_container(site, pod, "running, not started", lambda c: running(c), name="web")
    if not early["started"]:
        assert early["ready"] is False
    late = wait_container(site, pod, "started and ready", lambda c: c["started"] and c["ready"], name="web")
    assert any(m.startswith("Startup probe failed: dial tcp 127.0.0.1:") for _, m in notes(late)) or early["started"]
    # No grpc_health_probe on this node: the probe errors, and an errored probe keeps its result (not ready)
    unsupported = wait_container(site, pod, "the grpc probe's note", lambda c: notes(c), name="grpc")
    assert unsupported["ready"] is False and running(unsupported)
    assert notes(unsupported)[0][0] == "Unhealthy"
    assert "grpc_health_probe" in notes(unsupported)[0][1]
    assert notes(unsupported)[0][1].startswith("Readiness probe errored: ")
    site.client.delete(pod)
    site.client.finish(pod, timeout=60)


def test_post_start_and_pre_stop_hooks(site: Site) -> None:
    main = sh("trap 'echo TERM >> /state/order; exit 0' TERM; echo main >> /state/order; "
              "while :; do sleep 0.1; done", **STATE,
              lifecycle={"postStart": {"exec": {"command": ["sh", "-c", "sleep 1; echo postStart >> /state/order"]}},
                         "preStop": {"exec": {"command": ["sh", "-c", "echo preStop >> /state/order; sleep 1"]}}})
    pod = make_pod([main], volumes=STATE_VOLUME, terminationGracePeriodSeconds=10)
    site.client.submit(pod)
    wait_container(site, pod, "running", running)
    order = site.volume(pod, "state") / "order"
    # the container is running (and started) only once its postStart hook has completed
    assert "postStart" in order.read_text().split()
    site.client.delete(pod)
    phase, status = site.client.finish(pod, timeout=60)
    assert order.read_text().split()[-2:] == ["preStop", "TERM"]  # preStop before SIGTERM
    assert terminated(status, "main")["exitCode"] == 0


def test_a_failed_post_start_hook_kills_the_container(site: Site) -> None:
    hook = {"postStart": {"httpGet": {"port": free_port(), "path": "/warm"}}}
    pod = make_pod([sh("trap '' TERM; while :; do sleep 0.2; done", lifecycle=hook)],
                   terminationGracePeriodSeconds=1)
    site.client.submit(pod)
    phase, status = site.client.finish(pod, timeout=60)
    [main] = status.containers
    assert phase.phase == "Failed"
    # killed: SIGTERM (the hook may fail before the shell ignores it) or SIGKILL after the grace period
    assert main["restartCount"] == 0 and terminated(status, "main")["exitCode"] in (137, 143)
    [(reason, message)] = notes(main)
    assert reason == "FailedPostStartHook"
    assert message.startswith('HTTP lifecycle hook (/warm) for Container "main" failed - error: Get '
                              '"http://127.0.0.1:')


def _logs(site: Site, pod: dict[str, Any], container: str, **opts: Any) -> Any:
    meta = pod["metadata"]
    body = {"Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"],
            "ContainerName": container, "Opts": opts}
    return site.client.http.request("GET", "/getLogs", content=json.dumps(body))
