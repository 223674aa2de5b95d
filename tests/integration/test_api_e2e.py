"""Pods end to end through `slurmlink api` (HTTP) on the real local SLURM, in both modes: mode 2 (sbatch at
the site) and mode 1 (the REST backend through `slurmlink proxy` with each pod's Check-in token). The same
pods must give the same statuses and logs either way."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.translate.env import expand
from tests.harness.pods import Client, exit_codes, make_pod, squeue_jobs, terminated
from tests.harness.services import ApiProcess
from tests.harness.waiting import wait_until

HOSTILE = ["quote ' and \"double\"", "new\nline", "$(touch /tmp/slurmlink-pwned)", "`id`", "a; id",
           "ünïcödé ✓ 中文", "$HOME ${PATH} $$ \\n", "--", ""]


@pytest.fixture(scope="module", params=["mode2", "mode1"])
def client(request: pytest.FixtureRequest) -> Client:
    if request.param == "mode2":
        return Client(request.getfixturevalue("api").url)
    return request.getfixturevalue("mode1").client()


def sh(script: str, name: str = "main", **extra: object) -> dict[str, object]:
    return {"name": name, "command": ["sh", "-c", script], **extra}


def test_hello_world(client: Client) -> None:
    pod = make_pod([sh("echo hello from $(hostname)")])
    assert client.submit(pod).isdigit()
    phase, status = client.finish(pod)
    assert phase.phase == "Succeeded"
    assert exit_codes(status) == {"main": 0}
    assert terminated(status, "main")["reason"] == "Completed"
    assert client.logs(pod, "main") == f"hello from {pod['metadata']['name']}\n".encode()


def test_hostile_env_values_and_args_reach_the_program_exactly(client: Client) -> None:
    env = [{"name": f"V{i}", "value": v} for i, v in enumerate(HOSTILE)]
    program = "import os, sys; sys.stdout.write(repr([sys.argv[1:], [os.environ[f'V{i}'] for i in range(%d)]]))"
    pod = make_pod([{"name": "main", "command": ["python3", "-c", program % len(HOSTILE)], "args": HOSTILE,
                     "env": env}])
    client.submit(pod)
    phase, _ = client.finish(pod)
    assert phase.phase == "Succeeded"
    # Kubernetes' own `$(VAR)` / `$$` expansion applies; nothing else touches the strings.
    expected = [expand(v, {}) for v in HOSTILE]
    assert client.logs(pod, "main").decode() == repr([expected, expected])
    assert not os.path.exists("/tmp/slurmlink-pwned")


def test_configmap_and_secret_volumes(client: Client) -> None:
    pod = make_pod([sh("cat /etc/cfg/greeting /run/secret/token; stat -c '%a' /run/secret/token; "
                       "cat /etc/cfg/sub/file", volumeMounts=[
                           {"name": "cfg", "mountPath": "/etc/cfg"},
                           {"name": "secret", "mountPath": "/run/secret", "readOnly": True}])],
                   volumes=[{"name": "cfg", "configMap": {"name": "settings", "items": [
                       {"key": "greeting", "path": "greeting"}, {"key": "other", "path": "sub/file"}]}},
                            {"name": "secret", "secret": {"secretName": "creds"}}])
    configmap = {"metadata": {"name": "settings", "namespace": "default"},
                 "data": {"greeting": "hello ' $(x)\n", "other": "nested\n"}}
    secret = {"metadata": {"name": "creds", "namespace": "default"}, "type": "Opaque",
              "data": {"token": base64.b64encode(b"s3cr3t\n").decode()}}
    client.submit(pod, configmaps=[configmap], secrets=[secret])
    phase, _ = client.finish(pod)
    assert phase.phase == "Succeeded", phase
    assert client.logs(pod, "main") == b"hello ' $(x)\ns3cr3t\n600\nnested\n"


def test_a_volume_below_a_symlinked_directory_of_the_image(client: Client) -> None:
    # Every Kubernetes pod has one: the ServiceAccount token at /var/run/secrets/..., and /var/run is a
    # symlink to /run in Debian's root (the bwrap image of these tests).
    mount = "/var/run/secrets/kubernetes.io/serviceaccount"
    pod = make_pod([sh(f"cat {mount}/token", volumeMounts=[{"name": "sa", "mountPath": mount, "readOnly": True}])],
                   volumes=[{"name": "sa", "secret": {"secretName": "sa-token"}}])
    secret = {"metadata": {"name": "sa-token", "namespace": "default"},
              "data": {"token": base64.b64encode(b"eyJhbGciOi...").decode()}}
    client.submit(pod, secrets=[secret])
    phase, _ = client.finish(pod)
    assert phase.phase == "Succeeded", phase
    assert client.logs(pod, "main") == b"eyJhbGciOi..."


def test_empty_dir_shared_by_two_parallel_containers(client: Client) -> None:
    # Each waits for the other's file: both must run at the same time and share the directory.
    mount = [{"name": "shared", "mountPath": "/shared"}]
    wait_for = "for i in $(seq 100); do [ -e /shared/{0} ] && break; sleep 0.1; done; cat /shared/{0}"
    pod = make_pod([sh("echo a > /shared/a; " + wait_for.format("b"), "a", volumeMounts=mount),
                    sh("echo b > /shared/b; " + wait_for.format("a"), "b", volumeMounts=mount)],
                   volumes=[{"name": "shared", "emptyDir": {}}])
    client.submit(pod)
    phase, status = client.finish(pod)
    assert phase.phase == "Succeeded"
    assert (client.logs(pod, "a"), client.logs(pod, "b")) == (b"b\n", b"a\n")
    assert exit_codes(status) == {"a": 0, "b": 0}


def test_init_containers_run_in_order(client: Client) -> None:
    mount = [{"name": "work", "mountPath": "/work"}]
    pod = make_pod([sh("cat /work/order", volumeMounts=mount)],
                   initContainers=[sh("echo first >> /work/order", "one", volumeMounts=mount),
                                   sh("echo second >> /work/order", "two", volumeMounts=mount)],
                   volumes=[{"name": "work", "emptyDir": {}}])
    client.submit(pod)
    phase, status = client.finish(pod)
    assert phase.phase == "Succeeded"
    assert client.logs(pod, "main") == b"first\nsecond\n"
    assert exit_codes(status) == {"one": 0, "two": 0, "main": 0}


def test_failing_init_container_stops_the_pod(client: Client) -> None:
    pod = make_pod([sh("echo never")], initContainers=[sh("echo broken; exit 5", "setup"), sh("true", "later")])
    client.submit(pod)
    phase, status = client.finish(pod)
    assert phase.phase == "Failed"
    assert terminated(status, "setup")["exitCode"] == 5
    assert client.logs(pod, "setup") == b"broken\n"
    # The pod is Failed as soon as the init container failed; once the job has ended, the app container
    # that never ran says so (so that any virtual kubelet sees every container ended).
    main = wait_until(lambda: terminated(client.status(pod), "main"), 30, "the job to end")
    assert "before this container ran" in main["message"]
    assert client.logs(pod, "main") == b""


def test_exit_code_of_a_failing_container(client: Client) -> None:
    pod = make_pod([sh("echo ok", "fine"), sh("echo bad >&2; exit 3", "broken")])
    client.submit(pod)
    phase, status = client.finish(pod)
    assert phase.phase == "Failed"
    assert exit_codes(status) == {"fine": 0, "broken": 3}
    assert terminated(status, "broken")["reason"] == "Error"
    assert client.logs(pod, "broken") == b"bad\n"


def test_pod_over_its_deadline(client: Client) -> None:
    pod = make_pod([sh("echo started; sleep 120")], activeDeadlineSeconds=2, terminationGracePeriodSeconds=2)
    client.submit(pod)
    phase, status = client.finish(pod, timeout=60)
    assert phase.phase == "Failed" and phase.reason == "DeadlineExceeded"
    assert terminated(status, "main")["reason"] == "DeadlineExceeded"


def test_delete_running_pod_cancels_job_and_leaves_no_process(client: Client, slurm_cluster: DevCluster) -> None:
    marker = f"slurmlink-delete-{os.getpid()}"
    pod = make_pod([sh(f"echo running; exec sleep 300 # {marker}")], terminationGracePeriodSeconds=3)
    job_id = client.submit(pod)
    client.wait_phase(pod, ("Running",))
    wait_until(lambda: client.logs(pod, "main") == b"running\n", 30, "the container to start")
    client.delete(pod)  # ApiCallError unless the API answered 200
    env = {**os.environ, **slurm_cluster.env}
    # SIGTERM, then the job script ends itself after its containers stopped (or after the grace period).
    wait_until(lambda: [(j, s in ("FAILED", "CANCELLED"), u) for j, s, u in
                        squeue_jobs(env, f"slurmlink-{pod['metadata']['uid']}")] ==
               [(job_id, True, slurm_cluster.users[0])], 30, "the job to end")
    wait_until(lambda: subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1, 30,
               "no process of the pod to be left")
    phase, status = client.finish(pod)
    assert phase.phase == "Failed"
    assert terminated(status, "main")["reason"] == "Killed"
    assert terminated(status, "main")["exitCode"] == 143  # SIGTERM, as Kubernetes reports it


def test_slurm_rejection_fails_the_pod_with_slurms_message(client: Client) -> None:
    pod = make_pod([sh("true")])
    pod["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--partition=no-such-partition"}
    assert client.submit(pod) == ""
    phase, status = client.finish(pod, timeout=10)
    assert phase.phase == "Failed"
    assert phase.reason == "SlurmRejected"
    assert "invalid partition" in phase.message.lower()


def test_policy_rejection_fails_the_pod_with_the_reason(client: Client) -> None:
    pod = make_pod([sh("true")])
    pod["metadata"]["annotations"] = {"slurm-job.vk.io/flags": "--uid=0"}
    client.submit(pod)
    phase, _ = client.finish(pod, timeout=10)
    assert (phase.phase, phase.reason) == ("Failed", "FlagNotAllowed")
    assert "--uid is not allowed" in phase.message


def test_malformed_requests_get_400_naming_the_field(client: Client) -> None:
    response = client.http.post("/create", content=b'{"pod": {"metadata": {"name": "x"}}}')
    assert response.status_code == 400
    assert "pod.metadata" in response.text
    assert client.http.post("/create", content=b"not json").status_code == 400


def test_same_pod_twice_is_one_job(client: Client, slurm_cluster: DevCluster) -> None:
    pod = make_pod([sh("sleep 1")])
    first, second = client.submit(pod), client.submit(pod)
    assert first == second
    env = {**os.environ, **slurm_cluster.env}
    assert len(squeue_jobs(env, f"slurmlink-{pod['metadata']['uid']}")) == 1


def test_namespace_maps_to_its_user(client: Client, slurm_cluster: DevCluster) -> None:
    pod = make_pod([sh("id -un")], namespace="team-b")
    client.submit(pod)
    phase, _ = client.finish(pod)
    assert phase.phase == "Succeeded"
    assert client.logs(pod, "main") == f"{slurm_cluster.users[1]}\n".encode()


def test_logs_tail_limit_and_follow(client: Client) -> None:
    pod = make_pod([sh("for i in 1 2 3 4 5; do echo line$i; sleep 0.3; done")])
    client.submit(pod)
    client.wait_phase(pod, ("Running", "Succeeded"))
    followed = client.logs(pod, "main", Follow=True)  # returns once the container ended
    assert followed == b"".join(f"line{i}\n".encode() for i in range(1, 6))
    assert client.logs(pod, "main", Tail=2) == b"line4\nline5\n"
    assert client.logs(pod, "main", Bytes=7) == b"line1\nl"


def test_ping_reports_real_capacity(client: Client) -> None:
    body = client.http.post("/pinglink").json()
    assert int(body["resources"]["cpu"]) > 0
    assert body["resources"]["memory"].endswith("Mi") and int(body["resources"]["memory"][:-2]) > 0


def test_on_failure_restarts_a_failing_container_inside_the_job(client: Client) -> None:
    mount = [{"name": "state", "mountPath": "/state"}]
    # Fails on its first run, succeeds on its second.
    script = "if [ -e /state/tried ]; then echo second; else touch /state/tried; echo first; exit 1; fi"
    pod = make_pod([sh(script, volumeMounts=mount)], restartPolicy="OnFailure",
                   volumes=[{"name": "state", "emptyDir": {}}])
    client.submit(pod)
    phase, status = client.finish(pod)
    assert phase.phase == "Succeeded"
    assert status.containers[0]["restartCount"] == 1
    assert status.containers[0]["lastState"]["terminated"]["exitCode"] == 1
    # as with the kubelet: the log is the current instance's, --previous the one before the restart
    assert client.logs(pod, "main") == b"second\n"
    assert client.logs(pod, "main", Previous=True) == b"first\n"


def test_slurmlink_run_command(api: ApiProcess, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: cli-run}\n"
        "spec:\n  restartPolicy: Never\n  containers:\n"
        "  - {name: main, image: debian, command: [sh, -c, 'echo from the cli; cat /c/k'],\n"
        "     volumeMounts: [{name: c, mountPath: /c}]}\n"
        "  volumes: [{name: c, configMap: {name: cm}}]\n"
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: value}\n")
    done = subprocess.run([sys.executable, "-m", "slurmlink.cli", "run", str(manifest), "--api", api.url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "from the cli\nvalue" in done.stdout
    assert "Succeeded" in done.stderr


def test_sigterm_reaches_the_container_on_delete(client: Client) -> None:
    script = "trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.1; done"
    pod = make_pod([sh(script)], terminationGracePeriodSeconds=10)
    client.submit(pod)
    wait_until(lambda: client.logs(pod, "main") == b"ready\n", 60, "the container to start")
    client.delete(pod)
    phase, status = client.finish(pod, timeout=60)
    assert client.logs(pod, "main") == b"ready\ngot TERM\n"
    assert terminated(status, "main")["exitCode"] == 0


def test_grace_period_ends_with_sigkill(client: Client) -> None:
    pod = make_pod([sh("trap '' TERM; echo ready; while :; do sleep 0.1; done")], terminationGracePeriodSeconds=2)
    client.submit(pod)
    wait_until(lambda: client.logs(pod, "main") == b"ready\n", 60, "the container to start")
    client.delete(pod)
    phase, status = client.finish(pod, timeout=60)
    assert terminated(status, "main")["exitCode"] == 137  # SIGKILL after the grace period


def test_request_over_the_site_limit_fails_with_slurms_message(client: Client) -> None:
    pod = make_pod([sh("true", resources={"limits": {"memory": "4000Ti"}})])
    client.submit(pod)
    phase, _ = client.finish(pod, timeout=30)
    assert (phase.phase, phase.reason) == ("Failed", "SlurmRejected")
    # SLURM's own words, which depend on the door: sbatch's and slurmrestd's checks differ.
    assert any(said in phase.message.lower() for said in ("memory specification", "requested node configuration"))
