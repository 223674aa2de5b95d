"""The vk's pure parts: config, node capacity and conditions, pod status translation, references, log query."""

from __future__ import annotations

from pathlib import Path

import pytest

from slurmlink import examples
from slurmlink.config import ConfigError, load_config
from slurmlink.vk import nodespec, podstatus
from slurmlink.vk.config import VkConfig
from slurmlink.vk.kubelet import BadQuery, log_options
from slurmlink.vk.references import references
from slurmlink.vk.times import micro_time
from slurmlink.vk.workqueue import WorkQueue
from slurmlink.wire.interlink import PingResponse, PodStatus, parse_ping
from standins.kube.patches import strategic_merge
from tests.harness.pods import make_pod

NOW = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T00:01:00Z"


def _pod(*names: str, inits: tuple[str, ...] = (), status: dict | None = None) -> dict:
    pod = make_pod([{"name": n, "image": f"img-{n}"} for n in names], name="p", namespace="ns", uid="u1",
                   restart_policy=None, initContainers=[{"name": n, "image": "init"} for n in inits])
    return {**pod, "status": status or {"phase": "Pending"}}


def _running(name: str) -> dict:
    return {"name": name, "state": {"running": {"startedAt": NOW}}, "ready": True}


def _terminated(name: str, code: int, reason: str = "") -> dict:
    return {"name": name, "state": {"terminated": {"exitCode": code, "reason": reason or ("Completed" if code == 0
                                                   else "Error"), "startedAt": NOW, "finishedAt": LATER}}}


def _waiting(name: str, reason: str = "Pending") -> dict:
    return {"name": name, "state": {"waiting": {"reason": reason}}}


# --- config -----------------------------------------------------------------------------------------------------

def test_config_defaults_and_env_override(tmp_path: Path) -> None:
    path = tmp_path / "vk.yaml"
    path.write_text("node: {name: site-a, labels: {zone: hpc}}\napi: {url: 'http://api:3000'}\n")
    config = load_config(VkConfig, path, {"SLURMLINK_API__BATCH_STATUS": "false", "SLURMLINK_WORKERS": "3"})
    assert config.node.name == "site-a" and config.api.batch_status is False and config.workers == 3
    assert config.lease_renew_interval == config.lease_duration_seconds / 4


@pytest.mark.parametrize("yaml_text, key", [
    ("node: {labels: {node-role.kubernetes.io/worker: ''}}", "node.labels"),
    ("kubelet: {cert_file: /x}", "kubelet"),
    ("statuss_interval: 3", "statuss_interval"),
    ("node: {taints: [{key: a, effect: Sometimes}]}", "node.taints.0.effect"),
])
def test_config_errors_name_the_key(tmp_path: Path, yaml_text: str, key: str) -> None:
    path = tmp_path / "vk.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as error:
        load_config(VkConfig, path, {})
    assert key in str(error.value)


def test_example_config_loads() -> None:
    assert load_config(VkConfig, examples.config_path("vk"), {}).node.name


# --- node -------------------------------------------------------------------------------------------------------

GOOD = {"cpu": "8", "memory": "16Gi", "pods": "80"}


def test_capacity_from_a_ping() -> None:
    ping = parse_ping('{"status": "ok", "resources": {"cpu": "4", "memory": "2000Mi", "pods": "40", '
                      '"accelerators": [{"resourceType": "nvidia.com/gpu", "available": "2"}]}}')
    verdict = nodespec.judge_capacity(ping, "", GOOD)
    assert verdict.capacity == {"cpu": "4", "memory": "2000Mi", "pods": "40", "nvidia.com/gpu": "2"}
    assert verdict.problems == []


@pytest.mark.parametrize("cpu", ["0", "-1", "lots", "0m"])
def test_zero_or_garbage_capacity_keeps_the_last_good_value(cpu: str) -> None:
    ping = PingResponse.from_wire({"resources": {"cpu": cpu, "memory": "1Gi"}})
    verdict = nodespec.judge_capacity(ping, "", GOOD)
    assert verdict.capacity["cpu"] == "8" and verdict.capacity["memory"] == "1Gi"
    assert "keeping cpu=8" in verdict.problems[0]


def test_ping_without_numbers_keeps_everything() -> None:
    assert nodespec.judge_capacity(None, "[]", GOOD) == nodespec.CapacityVerdict(GOOD)
    unreadable = nodespec.judge_capacity(None, '{"resources": 5}', GOOD)
    assert unreadable.capacity == GOOD and unreadable.problems


def test_node_conditions_follow_health_and_keep_transition_times() -> None:
    up = nodespec.conditions(nodespec.Health(True, ""), [], NOW)
    assert {c["type"]: c["status"] for c in up} == {"Ready": "True", nodespec.REACHABLE: "True"}
    still = nodespec.conditions(nodespec.Health(True, "", ("the API reported cpu='0'",)), up, LATER)
    assert still[0]["lastTransitionTime"] == NOW and still[0]["lastHeartbeatTime"] == LATER
    assert still[1]["reason"] == "CapacityKept" and "cpu='0'" in still[1]["message"]
    down = nodespec.conditions(nodespec.Health(False, "connection refused"), still, LATER)
    assert down[0]["status"] == "False" and down[0]["lastTransitionTime"] == LATER
    assert "connection refused" in down[0]["message"]


def test_node_body_has_the_upstream_taint_once() -> None:
    config = VkConfig.model_validate({"node": {"name": "n", "taints": [
        {"key": "virtual-node.interlink/no-schedule", "value": "true"}, {"key": "site", "value": "x"}]}})
    body = nodespec.node_body(config, nodespec.node_status(config, GOOD, [], 10250))
    assert [t["key"] for t in body["spec"]["taints"]] == ["virtual-node.interlink/no-schedule", "site"]
    assert body["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
    assert body["metadata"]["labels"]["kubernetes.io/hostname"] == "n"


def test_micro_time_keeps_six_digits_at_microsecond_zero() -> None:
    from datetime import UTC, datetime
    assert micro_time(datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=UTC)) == "2026-01-02T03:04:05.000000Z"


# --- pod status -------------------------------------------------------------------------------------------------

def test_running_pod() -> None:
    pod = _pod("a", "b")
    desired = podstatus.desired(pod, [_running("a"), _running("b")], [], "42", "10.0.0.1", NOW)
    status = desired.status
    assert status["phase"] == "Running"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True" and conditions["Initialized"]["status"] == "True"
    assert conditions[podstatus.JOB_CONDITION]["message"] == "SLURM job 42"
    assert status["containerStatuses"][0]["image"] == "img-a"  # filled from the spec
    assert status["hostIP"] == "10.0.0.1" and status["startTime"] == NOW


def test_init_containers_pending_and_failed() -> None:
    pod = _pod("app", inits=("setup",))
    waiting = podstatus.desired(pod, [_waiting("app", "PodInitializing")], [_running("setup")], "1", "h", NOW)
    conditions = {c["type"]: c for c in waiting.status["conditions"]}
    assert waiting.phase.phase == "Pending" and conditions["Initialized"]["status"] == "False"
    assert "setup" in conditions["Initialized"]["message"]
    failed = podstatus.desired(pod, [_waiting("app")], [_terminated("setup", 2)], "1", "h", NOW)
    assert failed.phase.phase == "Failed" and failed.status["reason"] == "Error"


def test_succeeded_and_failed_pods_are_not_ready() -> None:
    done = podstatus.desired(_pod("a"), [_terminated("a", 0)], [], "7", "h", NOW)
    assert done.phase.phase == "Succeeded"
    ready = next(c for c in done.status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    failed = podstatus.desired(_pod("a", "b"), [_terminated("a", 0), _terminated("b", 137, "OOMKilled")], [], "7",
                               "h", NOW)
    assert failed.phase.phase == "Failed" and failed.status["reason"] == "OOMKilled"


def test_condition_times_move_only_on_change() -> None:
    first = podstatus.desired(_pod("a"), [_running("a")], [], "1", "h", NOW)
    pod = _pod("a", status=first.status)
    again = podstatus.desired(pod, [_running("a")], [], "1", "h", LATER)
    assert [c["lastTransitionTime"] for c in again.status["conditions"]] == [NOW] * len(again.status["conditions"])
    ended = podstatus.desired(pod, [_terminated("a", 0)], [], "1", "h", LATER)
    ready = next(c for c in ended.status["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == LATER


def test_patch_body_sends_complete_container_lists() -> None:
    # The apiserver replaces these lists whole: every container, each with only its current state.
    body = podstatus.patch_body(podstatus.desired(_pod("a", "b", inits=("i",)), [_terminated("a", 0), _running("b")],
                                                  [_terminated("i", 0)], "1", "h", NOW).status)["status"]
    assert [(s["name"], list(s["state"])) for s in body["containerStatuses"]] == [("a", ["terminated"]),
                                                                                  ("b", ["running"])]
    assert [(s["name"], list(s["state"])) for s in body["initContainerStatuses"]] == [("i", ["terminated"])]
    assert body["hostIPs"] == [{"ip": "h"}, {"$patch": "replace"}]  # merged by ip otherwise
    assert body["reason"] is None  # a Failed pod's reason must not outlive a retry


def test_ready_turning_true_deletes_the_reason_it_had_while_false() -> None:
    # Conditions merge by type, so a True condition must send null for the reason and message stored while False
    # (the stand-in's strategic merge deletes a null field as the apiserver does).
    pod = _pod("a", status=podstatus.desired(_pod("a"), [_waiting("a")], [], "1", "h", NOW).status)
    assert next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")["reason"] == "ContainersNotReady"
    body = podstatus.patch_body(podstatus.desired(pod, [_running("a")], [], "1", "h", LATER).status)
    stored = strategic_merge(pod, body)
    ready = next(c for c in stored["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and "reason" not in ready and "message" not in ready


def test_a_finished_pod_keeps_its_phase() -> None:
    running = podstatus.desired(_pod("a"), [_running("a")], [], "1", "h", NOW)
    done = podstatus.desired(_pod("a"), [_terminated("a", 0)], [], "1", "h", NOW)
    assert podstatus.stays_finished("Failed", running) and podstatus.stays_finished("Succeeded", running)
    assert podstatus.stays_finished("Failed", done)  # finished by someone else: not ours to change
    assert not podstatus.stays_finished("Succeeded", done) and not podstatus.stays_finished("Running", running)
    assert not podstatus.stays_finished("", running) and not podstatus.stays_finished("Pending", done)


def test_fingerprint_ignores_times_but_not_states() -> None:
    a = podstatus.desired(_pod("a"), [_running("a")], [], "1", "h", NOW).status
    b = podstatus.desired(_pod("a"), [_running("a")], [], "1", "h", LATER).status
    c = podstatus.desired(_pod("a"), [_terminated("a", 0)], [], "1", "h", NOW).status
    assert podstatus.fingerprint(a) == podstatus.fingerprint(b) != podstatus.fingerprint(c)
    with_nulls = podstatus.patch_body(a)["status"]
    assert podstatus.fingerprint(with_nulls) == podstatus.fingerprint(a)


def test_failed_and_waiting_pods_before_any_job() -> None:
    failed = podstatus.failed(_pod("a"), "ProviderFailed", "refused: bad pod", "h", NOW)
    assert failed.phase.phase == "Failed" and failed.status["message"] == "refused: bad pod"
    waiting = podstatus.waiting(_pod("a"), "CreateContainerConfigError", 'configmap "x" not found', "h", NOW)
    assert waiting.phase.phase == "Pending"
    assert waiting.status["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"


def test_known_to_api_and_spec_matching() -> None:
    assert not podstatus.known_to_api(None)
    assert not podstatus.known_to_api(PodStatus(uid="u1"))
    assert not podstatus.known_to_api(PodStatus(uid="u1", containers=[_waiting("a", "JobNotFound")]))
    assert podstatus.known_to_api(PodStatus(uid="u1", jid="5"))
    assert podstatus.known_to_api(PodStatus(uid="u1", containers=[_terminated("a", 1, "SlurmRejected")]))
    assert podstatus.matches_spec(_pod("a", "b"), PodStatus(containers=[_running("b"), _running("a")]))
    assert not podstatus.matches_spec(_pod("a", "b"), PodStatus(containers=[_running("main")]))


def test_transition_events() -> None:
    running = podstatus.desired(_pod("a"), [_running("a")], [], "9", "h", NOW)
    assert [e.reason for e in podstatus.transition_events("Pending", running, "9")] == ["Started"]
    assert podstatus.transition_events("Running", running, "9") == []
    done = podstatus.desired(_pod("a"), [_terminated("a", 0)], [], "9", "h", NOW)
    assert [e.reason for e in podstatus.transition_events("Pending", done, "9")] == ["Started", "Finished"]
    failed = podstatus.desired(_pod("a"), [_terminated("a", 3)], [], "9", "h", NOW)
    [note] = podstatus.transition_events("Running", failed, "9")
    assert note.type == "Warning" and "SLURM job 9 failed" in note.message


# --- references, log query, queue -------------------------------------------------------------------------------

def test_references_of_a_pod() -> None:
    pod = {"metadata": {"annotations": {"slurmlink.io/token-secret": "tok"}}, "spec": {
        "volumes": [{"name": "c", "configMap": {"name": "cm1"}}, {"name": "s", "secret": {"secretName": "s1",
                                                                                           "optional": True}}],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "s2"}}]}],
        "containers": [{"name": "m", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm2",
                                                                                             "key": "k"}}},
                                             {"name": "B", "value": "plain"}]}]}}
    refs = references(pod)
    assert refs.required == {("ConfigMap", "cm1"), ("ConfigMap", "cm2"), ("Secret", "s2"), ("Secret", "tok")}
    assert refs.optional == {("Secret", "s1")}


def test_log_query() -> None:
    opts, limit = log_options({"tailLines": "10", "limitBytes": "100", "follow": "true", "timestamps": "true"})
    assert (opts.tail, opts.limit_bytes, limit, opts.follow, opts.timestamps) == (10, 0, 100, True, True)
    opts, limit = log_options({"limitBytes": "5", "sinceTime": "2026-01-01T00:00:00Z"})
    assert opts.limit_bytes == 5 and limit == 0 and opts.since_time is not None
    for bad in ({"tailLines": "x"}, {"limitBytes": "0"}, {"sinceSeconds": "5", "sinceTime": NOW},
                {"sinceTime": "yesterday"}):
        with pytest.raises(BadQuery):
            log_options(bad)


async def _queue_run() -> list[str]:
    queue = WorkQueue()
    queue.add("a")
    queue.add("a")  # once
    queue.add("b")
    first = await queue.get()
    queue.add(first)  # while active: handled again after done, not twice at once
    second = await queue.get()
    seen = [first, second]
    queue.done(first)
    seen.append(await queue.get())
    return seen


def test_work_queue_serialises_each_key() -> None:
    import asyncio
    assert asyncio.run(_queue_run()) == ["a", "b", "a"]


async def _soon_run() -> list[str]:
    queue = WorkQueue()
    for key in ("create-1", "create-2", "status", "create-3"):
        queue.add(key)
    queue.add("status", soon=True)  # a status told while its pod waits behind creates moves ahead
    queue.add("late-status", soon=True)
    queue.add("late-status")  # a later plain add does not move it back
    first = await queue.get()
    queue.add(first, soon=True)  # while active: handled again soon after done
    seen = [first, await queue.get()]
    queue.done(first)
    seen += [await queue.get() for _ in range(4)]
    return seen + [str(len(queue))]


def test_work_queue_serves_status_before_creates() -> None:
    import asyncio
    assert asyncio.run(_soon_run()) == ["status", "late-status", "status", "create-1", "create-2", "create-3", "0"]
