"""The API's guard (slurmlink/api/app.py, a plain ASGI middleware since issue 14): the bearer token, the open
paths, one 500 for what a route did not expect, the request metric."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from slurmlink.api.app import create_app
from slurmlink.api.config import ApiConfig
from slurmlink.core.records import Capacity
from tests.harness.memory_slurm import MemorySlurm


class _Broken(MemorySlurm):
    async def capacity(self) -> Capacity:
        raise RuntimeError("a bug")


def _requests(route: str, status: int) -> float:
    return REGISTRY.get_sample_value("slurmlink_api_requests_total", {"route": route, "status": str(status)}) or 0.0


def test_the_guard_asks_for_the_token_keeps_healthz_open_and_answers_a_bug_with_one_500(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cret\n")
    config = ApiConfig.model_validate({"auth": {"bearer_token_file": str(tmp_path / "token")},
                                       "users": {"default": "nobody"}, "job_root": str(tmp_path)})
    client = TestClient(create_app(config, _Broken()), raise_server_exceptions=False)
    good = {"Authorization": "Bearer s3cret"}

    refused_before = _requests("/pinglink", 401)
    for headers in ({}, {"Authorization": "Bearer s3cre"}, {"Authorization": "bearer s3cret"}):
        answer = client.post("/pinglink", headers=headers)
        assert (answer.status_code, answer.headers["WWW-Authenticate"]) == (401, "Bearer")
    assert _requests("/pinglink", 401) == refused_before + 3
    assert client.get("/metrics").status_code == 200  # open here: no admin listener to move it to

    # /healthz is open, but tells SLURM's state and the pods only to a caller with the token
    assert set(client.get("/healthz").json()) == {"status"}
    assert {"status", "pods", "last_error"} <= set(client.get("/healthz", headers=good).json())

    failed_before = _requests("/pinglink", 500)
    answer = client.post("/pinglink", headers=good)
    assert (answer.status_code, answer.text) == (500, "internal error\n")
    assert _requests("/pinglink", 500) == failed_before + 1
    assert client.post("/nowhere", headers=good).status_code == 404 and _requests("other", 404) >= 1
