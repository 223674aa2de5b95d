# ruff: noqa: F811 - the `chain` fixture is opened here with its own vk configuration
"""Refreshed ServiceAccount tokens of running pods: the API's own route (what it writes, what it refuses) and
the vk refreshing a pod's projected token while the pod reads it."""

from __future__ import annotations

import base64
import json
import os
import pwd
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from slurmlink.devcluster import DevCluster
from slurmlink.wire.names import PROJECTED_ROUTE as ROUTE
from slurmlink.wire.names import UNKNOWN_POD_HEADER
from tests.harness.pods import Client, make_pod, pod_manifest
from tests.harness.services import ApiProcess
from tests.integration.vk_harness import Chain, open_chain

pytestmark = pytest.mark.timeout(150)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write(api: ApiProcess, uid: str, *files: tuple[str, str, str]) -> httpx.Response:
    body = {"pod_uid": uid, "files": [{"volume": v, "path": p, "data": _b64(d)} for v, p, d in files]}
    return httpx.post(api.url + ROUTE, content=json.dumps(body), timeout=30)


def _create(client: Client, pod: dict[str, Any], projected: dict[str, dict[str, str]]) -> None:
    maps = [{"metadata": {"name": name}, "data": data} for name, data in projected.items()]
    body = {"pod": pod, "configmaps": None, "secrets": None, "projectedvolumesmaps": maps, "jobscriptURL": ""}
    response = client.http.post("/create", content=json.dumps(body))
    assert response.status_code == 200, response.text


def test_api_replaces_only_token_files_of_projected_volumes(api: ApiProcess, slurm_cluster: DevCluster) -> None:
    client = Client(api.url)
    volumes = [{"name": "sa", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}},
        {"name": "scratch", "emptyDir": {}}]
    container = {"name": "main", "command": ["sh", "-c", "sleep 60"],
                 "volumeMounts": [{"name": "sa", "mountPath": "/run/sa", "readOnly": True},
                                  {"name": "scratch", "mountPath": "/scratch"}]}
    pod = make_pod([container], volumes=volumes, terminationGracePeriodSeconds=1)
    uid = pod["metadata"]["uid"]
    _create(client, pod, {"sa": {"token": "first", "ca.crt": "CA"}})
    client.wait_phase(pod, ("Running",))
    volume = Path(slurm_cluster.job_root) / f"default-{uid}" / "volumes" / "sa"
    try:
        for bad in ([("sa", "ca.crt", "x")], [("scratch", "token", "x")], [("sa", "../sa/token", "x")],
                    [("sa", "/etc/passwd", "x")], [("..", "token", "x")], [("sa", "token", "ok"), ("sa", "ca", "x")]):
            response = _write(api, uid, *bad)
            assert response.status_code == 400, (bad, response.status_code, response.text)
        assert (volume / "token").read_text() == "first"
        assert (volume / "ca.crt").read_text() == "CA"
        assert not (volume.parent / "scratch" / "token").exists()
        assert httpx.post(api.url + ROUTE, content="not json", timeout=10).status_code == 400

        missing = _write(api, "no-such-uid", ("sa", "token", "x"))
        assert missing.status_code == 404 and UNKNOWN_POD_HEADER in missing.headers

        response = _write(api, uid, ("sa", "token", "second"))
        assert response.status_code == 200, response.text
        info = (volume / "token").stat()
        assert (volume / "token").read_text() == "second"
        assert stat.S_IMODE(info.st_mode) == 0o600  # 0644 & 0700, as the job wrote it
        assert pwd.getpwuid(info.st_uid).pw_name == slurm_cluster.users[0]
        assert [n for n in os.listdir(volume) if n.startswith(".")] == []  # no temporary file left
    finally:
        client.http.request("POST", "/delete", content=json.dumps([pod]))
    client.wait_phase(pod, ("Succeeded", "Failed"))
    assert _write(api, uid, ("sa", "token", "third")).status_code == 409
    assert (volume / "token").read_text() == "second"


@pytest.fixture(scope="module")
def refresh_chain(slurm_cluster: DevCluster, api: ApiProcess, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Chain]:
    with open_chain(slurm_cluster, api, tmp_path_factory.mktemp("vk-refresh"),
                    projected_token_refresh_seconds=3) as opened:
        yield opened


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def _valid(chain: Chain, token: str) -> bool:
    verify: Any = ssl.create_default_context(cafile=str(chain.standin.ca_path)) if chain.standin.tls else False
    response = httpx.get(f"{chain.standin.url}/api/v1/namespaces/default/pods", verify=verify, timeout=10,
                         headers={"Authorization": f"Bearer {token}"})
    return response.status_code == 200


def test_vk_refreshes_the_token_a_running_pod_reads(refresh_chain: Chain) -> None:
    chain = refresh_chain
    script = "for i in $(seq 12); do cat /run/sa/token; echo; sleep 1; done"
    container = {"name": "main", "image": "debian", "command": ["sh", "-c", script],
                 "volumeMounts": [{"name": "sa", "mountPath": "/run/sa", "readOnly": True}]}
    volume = {"name": "sa", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    chain.apply(pod_manifest("refreshed", "", containers=[container], volumes=[volume]))
    pod = chain.wait_phase("refreshed", ("Succeeded", "Failed"), timeout=90)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    lines = [line for line in chain.kubectl("logs", "refreshed").stdout.splitlines() if line]
    tokens = list(dict.fromkeys(lines))  # distinct, in the order the pod saw them
    assert len(tokens) >= 2, lines
    assert all(_valid(chain, token) for token in tokens)
    first, second = _claims(tokens[0]), _claims(tokens[1])
    assert second["iat"] > first["iat"] and second["jti"] != first["jti"]  # the stand-in's newer token
    assert second["kubernetes.io"]["pod"]["uid"] == pod["metadata"]["uid"]
