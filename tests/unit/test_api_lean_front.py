"""The API's lean front (slurmlink/api/app.py): /create and /status skip FastAPI's middleware and routing, and must
answer every request exactly as the FastAPI routes do: the guard's 401 and 500, each refusal's status, text and
headers, the request metric, and whatever they leave to FastAPI (other methods, a trailing slash)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from slurmlink.api.app import create_app, lean_front
from slurmlink.api.config import ApiConfig
from slurmlink.slurm.base import SlurmError
from slurmlink.translate.job import BatchJob
from tests.harness.memory_slurm import MemorySlurm

GOOD = {"Authorization": "Bearer s3cret"}


class _Backend(MemorySlurm):
    async def submit(self, job: BatchJob, user: str) -> str:
        if job.name.endswith("-bug"):
            raise RuntimeError("a bug")
        return await super().submit(job, user)


def _pod(uid: str, **spec: Any) -> dict[str, Any]:
    containers = [{"name": "main", "image": "busybox", "command": ["true"]}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{uid}", "namespace": "default", "uid": uid},
            "spec": {"restartPolicy": "Never", "containers": containers, **spec}}


def _config(tmp_path: Path, job_root: Path) -> ApiConfig:
    (tmp_path / "token").write_text("s3cret\n")
    return ApiConfig.model_validate({"auth": {"bearer_token_file": str(tmp_path / "token")},
                                     "users": {"default": "nobody"}, "site": {"runtime": "host"},
                                     "job_root": str(job_root)})


def _create(pod: dict[str, Any]) -> str:
    return json.dumps({"pod": pod, "configmaps": [], "secrets": [], "projectedvolumesmaps": [], "jobscriptURL": ""})


def _requests(route: str, status: int) -> float:
    return REGISTRY.get_sample_value("slurmlink_api_requests_total", {"route": route, "status": str(status)}) or 0.0


# (method, path, body, headers, what the backend fails with next)
CALLS: list[tuple[str, str, str, dict[str, str], SlurmError | None]] = [
    ("POST", "/create", _create(_pod("u1")), {}, None),
    ("POST", "/create", _create(_pod("u1")), {"Authorization": "Bearer s3cre"}, None),
    ("POST", "/status", "[]", {}, None),
    ("POST", "/create", "", GOOD, None),
    ("POST", "/create", "{", GOOD, None),
    ("POST", "/create", "[1]", GOOD, None),
    ("POST", "/create", _create(_pod("u1")), GOOD, None),
    ("GET", "/create", _create(_pod("u1")), GOOD, None),  # the same pod again: the same job
    ("PUT", "/create", _create(_pod("u2", containers=[])), GOOD, None),
    ("POST", "/create", _create(_pod("u3")), GOOD, SlurmError("Unable to contact slurm controller", transient=True)),
    ("POST", "/create", _create(_pod("u4")), GOOD, SlurmError("Invalid partition name specified")),
    ("POST", "/create", _create(_pod("u5")), GOOD, None),
    ("DELETE", "/status", json.dumps([_pod("u1"), _pod("u5")]), GOOD, None),
    ("GET", "/status", "", GOOD, None),
    ("GET", "/status", json.dumps([_pod("nobody-knows")]), GOOD, None),
    ("POST", "/status", "{}", GOOD, None),
    ("PATCH", "/create", _create(_pod("u6")), GOOD, None),
    ("HEAD", "/status", "", GOOD, None),
    ("POST", "/create/", _create(_pod("u7")), GOOD, None),
]


def _answers(served: str, tmp_path: Path) -> list[tuple[int, str, dict[str, str]]]:
    config = _config(tmp_path, tmp_path / served)
    backend = _Backend()
    app = create_app(config, backend)
    answers = []
    with TestClient(lean_front(app) if served == "lean" else app, raise_server_exceptions=False,
                    follow_redirects=False) as client:
        client.post("/pinglink", headers=GOOD)  # the lifespan's recovery has run
        for method, path, body, headers, failure in CALLS:
            if failure is not None:
                backend.fail_next("submit", failure)
            answer = client.request(method, path, content=body, headers=headers)
            kept = {k: v for k, v in answer.headers.items() if k not in ("date", "content-length")}
            answers.append((answer.status_code, answer.text, kept))
    return answers


def test_the_lean_front_answers_as_fastapi_does(tmp_path: Path) -> None:
    before = {(route, status): _requests(route, status) for route in ("/create", "/status", "other")
              for status in (200, 400, 401, 405, 307)}
    through_fastapi = _answers("fastapi", tmp_path)
    counted_by_fastapi = {key: _requests(*key) - n for key, n in before.items()}
    through_lean = _answers("lean", tmp_path)
    counted_by_lean = {key: _requests(*key) - counted_by_fastapi[key] - n for key, n in before.items()}
    for call, fastapi_answer, lean_answer in zip(CALLS, through_fastapi, through_lean, strict=True):
        assert lean_answer == fastapi_answer, call[:2]
    assert counted_by_lean == counted_by_fastapi
    statuses = [status for status, _, _ in through_lean]
    # The calls do reach each kind of answer: 401, 400, 200, 503, 405, 307.
    assert statuses[:6] == [401, 401, 401, 400, 400, 400]
    assert {200, 503, 405, 307} <= set(statuses)
    assert through_lean[9][2].get("retry-after") == "5"


@pytest.mark.parametrize("served", ["fastapi", "lean"])
def test_a_bug_is_one_500_counted_once(served: str, tmp_path: Path) -> None:
    app = create_app(_config(tmp_path, tmp_path), _Backend())
    pod = _pod("u9")
    pod["metadata"]["uid"] = "u9-bug"
    before = _requests("/create", 500)
    with TestClient(lean_front(app) if served == "lean" else app, raise_server_exceptions=False) as client:
        client.post("/pinglink", headers=GOOD)
        answer = client.post("/create", content=_create(pod), headers=GOOD)
    assert (answer.status_code, answer.text) == (500, "internal error\n")
    assert _requests("/create", 500) == before + 1
