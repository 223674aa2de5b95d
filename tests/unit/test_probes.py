"""Probes and lifecycle hooks, the pure parts: pod spec -> `sl_run` words (defaults, validation), the job's
status files -> records -> container statuses, and the notes the vk turns into Events."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from slurmlink.core.errors import PodRejected
from slurmlink.core.records import ContainerRecord, JobInfo, LastTermination
from slurmlink.proxy.errors import Refusal
from slurmlink.proxy.logstream import parse_query
from slurmlink.translate import layout
from slurmlink.translate.probes import container_words
from slurmlink.translate.script import build_job
from slurmlink.translate.site import SiteConfig
from slurmlink.translate.status import NOTES_KEY, container_statuses, pod_phase
from slurmlink.vk import podstatus
from slurmlink.wire.interlink import PodStatus


def run_as(cmd: list[str]) -> list[str]:
    return ["RUNTIME", *cmd]


def words(container: dict[str, Any], env: dict[str, str] | None = None, grace: int = 30) -> list[str]:
    return container_words({"name": "c", **container}, env or {}, grace, run_as)


def test_kubernetes_defaults() -> None:
    assert words({"livenessProbe": {"exec": {"command": ["check", "x"]}}}) == [
        "probe", "liveness", "exec", "0", "10", "1", "1", "3", "30", "3", "RUNTIME", "check", "x"]


def test_zero_means_default_as_the_apiserver_defaults_it() -> None:
    probe = {"tcpSocket": {"port": 80}, "initialDelaySeconds": 5, "periodSeconds": 0, "timeoutSeconds": 0,
             "successThreshold": 0, "failureThreshold": 0}
    assert words({"readinessProbe": probe}) == ["probe", "readiness", "tcp", "5", "10", "1", "1", "3", "30",
                                                "3", "sl_tcp", "127.0.0.1", "80"]


def test_every_probe_kind_and_handler() -> None:
    container = {
        "ports": [{"name": "web", "containerPort": 8080}],
        "startupProbe": {"grpc": {"port": 9090, "service": "health"}, "periodSeconds": 2, "failureThreshold": 30},
        "readinessProbe": {"httpGet": {"path": "ready", "port": "web", "scheme": "https",
                                       "httpHeaders": [{"name": "X-Token", "value": "a b"}]},
                           "successThreshold": 2},
        "livenessProbe": {"tcpSocket": {"port": "8080", "host": "::1"}, "terminationGracePeriodSeconds": 5},
    }
    assert words(container) == [
        "probe", "startup", "grpc", "0", "2", "1", "1", "30", "30", "3", "sl_grpc", "9090", "health",
        "probe", "liveness", "tcp", "0", "10", "1", "1", "3", "5", "3", "sl_tcp", "::1", "8080",
        "probe", "readiness", "http", "0", "10", "1", "2", "3", "30",
        "8", "sl_http", "HTTPS", "127.0.0.1", "8080", "/ready", "1", "X-Token", "a b"]


def test_hooks() -> None:
    lifecycle = {"postStart": {"httpGet": {"port": 80, "path": "/warm"}}, "preStop": {"sleep": {"seconds": 3}}}
    assert words({"lifecycle": lifecycle}) == [
        "hook", "poststart", "http", "/warm", "6", "sl_http", "HTTP", "127.0.0.1", "80", "/warm", "0",
        "hook", "prestop", "sleep", "3", "2", "sleep", "3"]
    exec_hook = words({"lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo bye"]}}}})
    assert exec_hook == ["hook", "prestop", "exec", "[sh -c echo bye]", "4", "RUNTIME", "sh", "-c", "echo bye"]


def test_probe_commands_expand_variables_and_hook_commands_do_not() -> None:
    env = {"FILE": "/tmp/ok"}
    probe = words({"livenessProbe": {"exec": {"command": ["test", "-e", "$(FILE)"]}}}, env)
    hook = words({"lifecycle": {"preStop": {"exec": {"command": ["rm", "$(FILE)"]}}}}, env)
    assert probe[-3:] == ["test", "-e", "/tmp/ok"]
    assert hook[-2:] == ["rm", "$(FILE)"]


def test_http_paths_are_percent_encoded_so_the_request_line_stays_one_line() -> None:
    path = words({"readinessProbe": {"httpGet": {"port": 1, "path": "/a b\r\nX: y?q=$(id)"}}})[14]
    assert path == "/a%20b%0D%0AX:%20y?q=$(id)"


@pytest.mark.parametrize(("container", "message"), [
    ({"livenessProbe": {"exec": {"command": ["x"]}, "successThreshold": 2}}, "successThreshold must be 1"),
    ({"startupProbe": {"exec": {"command": ["x"]}, "successThreshold": 3}}, "successThreshold must be 1"),
    ({"readinessProbe": {}}, "must specify a handler type"),
    ({"readinessProbe": {"exec": {"command": ["x"]}, "tcpSocket": {"port": 1}}}, "more than 1 handler"),
    ({"readinessProbe": {"exec": {"command": []}}}, "exec.command must not be empty"),
    ({"readinessProbe": {"tcpSocket": {"port": 70000}}}, "between 1 and 65535"),
    ({"readinessProbe": {"tcpSocket": {"port": "metrics"}}}, "no port named 'metrics'"),
    ({"readinessProbe": {"tcpSocket": {"port": 1, "host": "a/../../etc"}}}, "not a host name"),
    ({"readinessProbe": {"httpGet": {"port": 1, "scheme": "FTP"}}}, "HTTP or HTTPS"),
    ({"readinessProbe": {"httpGet": {"port": 1, "httpHeaders": [{"name": "X", "value": "a\r\nB: c"}]}}},
     "must not contain line breaks"),
    ({"readinessProbe": {"httpGet": {"port": 1, "httpHeaders": [{"name": "X Y", "value": "v"}]}}},
     "not an HTTP header name"),
    ({"readinessProbe": {"grpc": {"port": "named"}}}, "no port named"),
    ({"readinessProbe": {"exec": {"command": ["x"]}, "periodSeconds": -1}}, "non-negative integer"),
    ({"readinessProbe": {"exec": {"command": ["x"]}, "terminationGracePeriodSeconds": 3}},
     "must not be set for readiness"),
    ({"lifecycle": {"postStart": {"tcpSocket": {"port": 1}}}}, "tcpSocket is not supported"),
    ({"lifecycle": {"preStop": {"sleep": {"seconds": "3"}}}}, "sleep.seconds"),
])
def test_invalid_probes_and_hooks_are_refused_with_the_reason(container: dict[str, Any], message: str) -> None:
    with pytest.raises(PodRejected, match=message) as caught:
        words(container)
    assert caught.value.reason == "InvalidProbe"


def test_init_containers_may_not_have_probes_or_hooks() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
           "spec": {"initContainers": [{"name": "i", "command": ["true"],
                                        "readinessProbe": {"exec": {"command": ["true"]}}}],
                    "containers": [{"name": "c", "command": ["true"]}]}}
    with pytest.raises(PodRejected, match="not allowed for init containers"):
        build_job(pod, workdir="/jobs/x", site=SiteConfig())


def test_the_script_passes_probes_through_the_container_runtime() -> None:
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
           "spec": {"terminationGracePeriodSeconds": 7,
                    "containers": [{"name": "c", "image": "img", "command": ["serve"],
                                    "livenessProbe": {"exec": {"command": ["check"]}}}]}}
    script = build_job(pod, workdir="/jobs/x", site=SiteConfig(runtime="bwrap")).script
    line = next(x for x in script.splitlines() if x.startswith("[ \"$sl_stopping\" = 0 ] || exit 143; sl_run"))
    assert "probe liveness exec 0 10 1 1 3 7 " in line
    assert line.count("sl_bwrap") == 2 and "-- check -- sl_bwrap" in line
    assert line.endswith("-- serve & sl_children+=($!)")


# --- the job's files -> records ----------------------------------------------------------------------------

def test_records_of_probes_restarts_and_notes() -> None:
    files = {
        "c.started": "2026-01-01T00:00:10.000001Z\n", "c.restarts": "1\n", "c.ready": "false\n",
        "c.startup": "true\n", "c.last": "143 2026-01-01T00:00:00.5Z 2026-01-01T00:00:09Z\n",
        "c.events": "1\tWarning\tUnhealthy\tLiveness probe failed: no\tfile\n2\tNormal\tKilling\tContainer c failed "
                    "liveness probe, will be restarted\nbad line\n3\tWarning\tUnhea",
    }
    record = layout.container_records(files)["c"]
    assert (record.ready, record.startup, record.restarts) == (False, True, 1)
    assert record.last == LastTermination(143, datetime(2026, 1, 1, 0, 0, 0, 500000, UTC),
                                          datetime(2026, 1, 1, 0, 0, 9, tzinfo=UTC))
    assert [(n.seq, n.type, n.reason, n.message) for n in record.notes] == [
        (1, "Warning", "Unhealthy", "Liveness probe failed: no\tfile"),
        (2, "Normal", "Killing", "Container c failed liveness probe, will be restarted")]
    assert layout.container_records({"c.ready": "maybe"})["c"].ready is None


def _pod(*names: str) -> dict[str, Any]:
    return {"spec": {"containers": [{"name": n, "image": "img"} for n in names]}}


RUNNING = JobInfo(job_id="7", name="slurmlink-u", user="u", state="RUNNING")
STARTED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("record", "ready", "started"), [
    (ContainerRecord("c", started_at=STARTED), True, True),  # no probes: running is ready
    (ContainerRecord("c", started_at=STARTED, ready=False), False, True),
    (ContainerRecord("c", started_at=STARTED, ready=True), True, True),
    (ContainerRecord("c", started_at=STARTED, startup=False, ready=False), False, False),
    (ContainerRecord("c", started_at=STARTED, startup=True, ready=True), True, True),
])
def test_ready_and_started_follow_the_probes(record: ContainerRecord, ready: bool, started: bool) -> None:
    [status], _ = container_statuses(_pod("c"), RUNNING, {"c": record})
    assert "running" in status["state"]
    assert (status["ready"], status["started"]) == (ready, started)


def test_a_restarting_container_waits_in_back_off_with_its_last_state_and_the_pod_stays_running() -> None:
    last = LastTermination(143, STARTED, STARTED)
    [status], _ = container_statuses(_pod("c"), RUNNING, {"c": ContainerRecord("c", restarts=1, last=last)})
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["lastState"] == {"terminated": {"exitCode": 143, "reason": "Error", "startedAt":
                                                  "2026-01-01T00:00:00Z", "finishedAt": "2026-01-01T00:00:00Z"}}
    assert status["restartCount"] == 1 and status["ready"] is False
    assert pod_phase([status], []).phase == "Running"


def test_notes_travel_in_the_container_status_and_never_reach_kubernetes() -> None:
    record = layout.container_records({"c.started": "2026-01-01T00:00:00Z", "c.events": "4\tWarning\tUnhealthy\tx\n"})
    [status], _ = container_statuses(_pod("c"), RUNNING, record)
    assert status[NOTES_KEY] == [{"seq": 4, "type": "Warning", "reason": "Unhealthy", "message": "x"}]
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u"}, **_pod("c")}
    desired = podstatus.desired(pod, [status], [], "7", "10.0.0.1", "2026-01-01T00:00:00Z")
    assert NOTES_KEY not in desired.status["containerStatuses"][0]


# --- the vk: notes -> Events -------------------------------------------------------------------------------

def _remote(*notes: tuple[int, str, str, str], name: str = "c") -> PodStatus:
    return PodStatus(uid="u", containers=[{"name": name, "state": {"running": {}}, NOTES_KEY: [
        {"seq": s, "type": t, "reason": r, "message": m} for s, t, r, m in notes]}])


def test_each_new_note_becomes_one_event_once() -> None:
    seen: dict[str, int] = {}
    first = _remote((1, "Warning", "Unhealthy", "Readiness probe failed: 503"),
                    (2, "Warning", "Unhealthy", "Readiness probe failed: 503"))
    assert podstatus.container_events(first, seen) == [
        podstatus.EventNote("Unhealthy", "Readiness probe failed: 503", "Warning")]
    assert podstatus.container_events(first, seen) == []
    later = _remote((2, "Warning", "Unhealthy", "Readiness probe failed: 503"),
                    (3, "Normal", "Killing", "Container c failed liveness probe, will be restarted"))
    assert podstatus.container_events(later, seen) == [
        podstatus.EventNote("Killing", "Container c failed liveness probe, will be restarted", "Normal")]
    assert seen == {"c": 3}


def test_a_restarted_vk_does_not_repeat_old_notes() -> None:
    remote = _remote((5, "Warning", "Unhealthy", "x"))
    seen = podstatus.notes_seen(remote)
    assert podstatus.container_events(remote, seen) == []


# --- logs --previous through the proxy ---------------------------------------------------------------------

def test_proxy_log_query_takes_previous() -> None:
    assert parse_query("previous=true&offset=3").previous is True
    assert parse_query("").previous is False
    for bad in ("previous=yes", "previous=true&follow=true"):
        with pytest.raises(Refusal):
            parse_query(bad)


def test_previous_log_name_never_collides_with_a_container() -> None:
    assert layout.log_name("c", previous=True) == "c.previous.log"
    assert copy.copy(layout.log_path("/w", "c")) == "/w/logs/c.log"
