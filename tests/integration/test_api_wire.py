"""The API over HTTP in the exact shapes upstream interLink components send and expect."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from tests.harness.pods import Client, make_pod
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, api_config

STATUS_KEYS = {"name", "UID", "namespace", "JID", "containers", "initContainers"}


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> Client:
    return Client(api.url)


def test_vk_create_with_go_nulls(client: Client) -> None:
    pod = make_pod([{"name": "main", "command": ["true"]}])
    body = {"pod": pod, "configmaps": None, "secrets": None, "projectedvolumesmaps": None, "jobscriptURL": ""}
    response = client.http.post("/create", content=json.dumps(body), headers={"InterLink-Http-Session": "x"})
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"PodUID", "PodJID"}
    assert response.json()["PodUID"] == pod["metadata"]["uid"]


def test_plugin_create_object_and_pre_05_list(client: Client) -> None:
    for wrap in (lambda d: d, lambda d: [d]):
        pod = make_pod([{"name": "main", "command": ["cat", "/cfg/k"],
                         "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}]}],
                       volumes=[{"name": "cfg", "configMap": {"name": "cm"}}])
        data = {"pod": pod, "container": [{"name": "main", "configMaps": [{"metadata": {"name": "cm"},
                                                                           "data": {"k": "v"}}],
                                           "secrets": None, "projectedvolumemaps": None, "emptyDirs": None}]}
        response = client.http.post("/create", content=json.dumps(wrap(data)))
        assert response.status_code == 200, response.text
        phase, _ = client.finish(pod)
        assert phase.phase == "Succeeded"
        assert client.logs(pod, "main") == b"v"


def test_status_get_with_body_and_post_exact_keys(client: Client) -> None:
    pod = make_pod([{"name": "main", "command": ["true"]}])
    client.submit(pod)
    for method in ("GET", "POST"):
        response = client.http.request(method, "/status", content=json.dumps([pod]))
        assert response.status_code == 200
        [status] = response.json()
        assert set(status) == STATUS_KEYS
        assert status["initContainers"] is None  # Go's nil slice
        assert status["UID"] == pod["metadata"]["uid"] and status["JID"].isdigit()


def test_status_of_many_pods_in_one_call(client: Client) -> None:
    pods = [make_pod([{"name": "main", "command": ["true"]}]) for _ in range(5)]
    for pod in pods:
        client.submit(pod)
    response = client.http.request("GET", "/status", content=json.dumps(pods))
    assert [s["UID"] for s in response.json()] == [p["metadata"]["uid"] for p in pods]


def test_ping_through_status_with_empty_list(client: Client) -> None:
    for body in (b"[]", b"null", b""):
        response = client.http.request("GET", "/status", content=body)
        assert response.status_code == 200
        assert int(response.json()["resources"]["cpu"]) > 0


def test_get_logs_case_insensitive_keys_and_post(client: Client) -> None:
    pod = make_pod([{"name": "main", "command": ["echo", "hi"]}])
    client.submit(pod)
    client.finish(pod)
    meta = pod["metadata"]
    body = {"namespace": meta["namespace"], "poduid": meta["uid"], "PODNAME": meta["name"], "containerName": "main",
            "opts": {"tail": 0, "bytes": 0, "SinceTime": "0001-01-01T00:00:00Z"}}
    for method in ("GET", "POST"):
        response = client.http.request(method, "/getLogs", content=json.dumps(body))
        assert (response.status_code, response.content) == (200, b"hi\n")


def test_bad_log_requests(client: Client) -> None:
    pod = make_pod([{"name": "main", "command": ["true"]}])
    client.submit(pod)
    meta = pod["metadata"]
    base = {"Namespace": meta["namespace"], "PodUID": meta["uid"], "PodName": meta["name"]}
    both = {**base, "ContainerName": "main", "Opts": {"Tail": 1, "Bytes": 1}}
    assert client.http.request("GET", "/getLogs", content=json.dumps(both)).status_code == 400
    missing = {**base, "ContainerName": "nope"}
    assert client.http.request("GET", "/getLogs", content=json.dumps(missing)).status_code == 404


def test_delete_with_delete_and_post(client: Client) -> None:
    for method in ("DELETE", "POST"):
        pod = make_pod([{"name": "main", "command": ["sleep", "60"]}])
        client.submit(pod)
        assert client.http.request(method, "/delete", content=json.dumps(pod)).status_code == 200
        phase, _ = client.finish(pod, timeout=60)
        assert phase.phase == "Failed"


def test_update_cache_health_and_metrics(client: Client) -> None:
    pod = make_pod([{"name": "main", "command": ["true"]}])
    assert client.http.post("/updateCache", content=json.dumps(pod)).text == "Updated cache"
    assert client.http.get("/healthz").json()["recovered"] is True
    assert "slurmlink_api_requests_total" in client.http.get("/metrics").text


@pytest.fixture()
def guarded_api(slurm_cluster: DevCluster, tmp_path: Path) -> Iterator[ApiProcess]:
    token_file = tmp_path / "token"
    token_file.write_text("vk-secret-token\n")
    process = ApiProcess(api_config(slurm_cluster, free_port(), auth={"bearer_token_file": str(token_file)}),
                         tmp_path)
    process.start()
    yield process
    process.stop()


def test_callers_must_present_the_bearer_token(guarded_api: ApiProcess) -> None:
    url = guarded_api.url
    assert httpx.post(f"{url}/pinglink").status_code == 401
    assert httpx.post(f"{url}/pinglink", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{url}/pinglink", headers={"Authorization": "Bearer vk-secret-token"}).status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200  # probes need no token


def test_refuses_to_serve_without_a_token_unless_asked(tmp_path: Path) -> None:
    config = tmp_path / "api.yaml"
    config.write_text("job_root: /tmp\nusers: {default: sltest1}\n")
    done = subprocess.run([sys.executable, "-m", "slurmlink.cli", "api", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "auth.bearer_token_file is not set" in done.stderr


# --- the HTTP edge (slurmlink/edge.py, shared with the proxy) ------------------------------------------------

def _raw_exchange(port: int, data: bytes) -> bytes:
    """Send `data` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def test_malformed_http_gets_the_apis_text_refusal_and_the_connection_closes(api: ApiProcess) -> None:
    """The API's edge is the proxy's (llhttp, strict), its refusals in the API's shape: a line of text."""
    answer = _raw_exchange(api.port, b"POST /create HTTP/1.1\nHost: a\n\n")  # bare LF line ends
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and b"content-type: text/plain" in head.lower(), answer
    assert body.startswith(b"the request is not valid HTTP/1.1") and body.endswith(b"\n"), answer
    answer = _raw_exchange(api.port, b"GET /pinglink HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ") and b"exceed 16384 bytes" in answer, answer[:300]


def test_pipelined_requests_are_answered_in_order_on_one_connection(api: ApiProcess) -> None:
    request = b"POST /pinglink HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"
    answer = _raw_exchange(api.port, request * 3 + b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert answer.count(b"HTTP/1.1 200 ") == 4, answer[:600]
    assert b'"status"' in answer[answer.rindex(b"HTTP/1.1 200 "):], answer[-300:]  # /healthz's answer comes last
