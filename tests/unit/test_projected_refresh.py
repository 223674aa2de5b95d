"""Refreshing projected ServiceAccount tokens: the pure parts (timing, the API's body and what it may write),
the safe replacement of a file in a pod directory, and mode 1's clean refusal."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slurmlink.api.app import create_app
from slurmlink.api.config import ApiConfig
from slurmlink.api.projected import allowed_files, token_files
from slurmlink.api.registry import PodEntry
from slurmlink.core.records import JobInfo, PodDirectory, VolumeFile
from slurmlink.slurm.base import SlurmError, Unsupported
from slurmlink.slurm.podfiles import PodFiles, UnsafePodFile
from slurmlink.slurm.rest import RestBackend, RestConfig
from slurmlink.vk.config import VkConfig
from slurmlink.vk.state import PodState
from slurmlink.vk.tokenrefresh import TokenRefresher
from slurmlink.vk.tokentiming import DAY, expires_at, refresh_due, retry_delay, token_sources
from slurmlink.wire.gojson import WireError
from slurmlink.wire.interlink import PodStatus
from slurmlink.wire.names import PROJECTED_ROUTE as ROUTE
from slurmlink.wire.names import UNKNOWN_POD_HEADER
from slurmlink.wire.projected import parse_body
from tests.harness.pods import make_pod

NOBODY = 65534


def _pod(uid: str = "u1", default_mode: int | None = None) -> dict[str, Any]:
    projected: dict[str, Any] = {"sources": [
        {"serviceAccountToken": {"path": "token", "audience": "vault"}},
        {"serviceAccountToken": {"path": "nested/other"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}
    if default_mode is not None:
        projected["defaultMode"] = default_mode
    return make_pod([{"name": "main"}], name="p", uid=uid, restart_policy=None,
                    volumes=[{"name": "sa", "projected": projected}, {"name": "scratch", "emptyDir": {}}])


def _body(*files: tuple[Any, Any, Any], uid: Any = "u1") -> dict[str, Any]:
    return {"pod_uid": uid, "files": [{"volume": v, "path": p, "data": d} for v, p, d in files]}


B64 = base64.b64encode(b"jwt").decode()

# --- timing --------------------------------------------------------------------------------------------------


def test_refresh_at_the_fraction_of_the_lifetime() -> None:
    assert refresh_due(1000.0, 1000.0 + 3600, 0.8, None) == pytest.approx(1000 + 2880)


def test_refresh_at_least_daily_and_never_in_a_loop() -> None:
    assert refresh_due(0.0, 10 * DAY, 0.8, None) == DAY
    assert refresh_due(1000.0, 900.0, 0.8, None) == pytest.approx(1000 + 48)  # skewed clock: a minimum lifetime


def test_override_is_a_fixed_period() -> None:
    assert refresh_due(1000.0, 1000.0 + 86400, 0.8, 3.0) == 1003.0


def test_expiry_from_the_token_request_answer() -> None:
    answer = {"status": {"token": "t", "expirationTimestamp": "1970-01-01T01:00:00Z"}}
    assert expires_at(answer, 0.0, 600) == 3600.0
    assert expires_at({"status": {}}, 50.0, 600) == 650.0


def test_retry_backoff_grows_and_is_capped() -> None:
    assert [retry_delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert retry_delay(50) == 300.0


def test_token_sources_of_a_pod() -> None:
    assert [(s.volume, s.path, s.audience) for s in token_sources(_pod())] == [
        ("sa", "token", "vault"), ("sa", "nested/other", None)]
    assert token_sources({"spec": {}}) == []


# --- the API's body and what it may write ---------------------------------------------------------------------


def test_a_good_body() -> None:
    parsed = parse_body(_body(("sa", "token", B64)))
    assert parsed.pod_uid == "u1" and parsed.files == [("sa", "token", b"jwt")]
    assert allowed_files(_pod(), parsed) == [VolumeFile("volumes/sa/token", 0o600, b"jwt")]


@pytest.mark.parametrize("body", [
    [], {"files": [{"volume": "sa", "path": "token", "data": B64}]}, _body(uid=""), _body(),
    _body(("sa", "../token", B64)), _body(("sa", "/token", B64)), _body(("sa", "a//b", B64)),
    _body(("sa", "./token", B64)), _body(("sa", ".hidden", B64)), _body(("../sa", "token", B64)),
    _body(("SA", "token", B64)), _body(("sa", "token", "not base64!")), _body(("sa", "token", 5)),
    _body(("sa", 5, B64)), {"pod_uid": "u1", "files": ["x"]},
])
def test_malformed_bodies_are_refused(body: Any) -> None:
    with pytest.raises(WireError):
        parse_body(body)


@pytest.mark.parametrize("volume,path", [("sa", "ca.crt"), ("scratch", "token"), ("sa", "nested"), ("x", "token")])
def test_only_token_files_of_projected_volumes_may_be_written(volume: str, path: str) -> None:
    request = parse_body(_body(("sa", "token", B64), (volume, path, B64)))
    with pytest.raises(WireError):
        allowed_files(_pod(), request)  # one bad file: nothing is written


def test_mode_is_the_one_the_job_used() -> None:
    assert token_files(_pod(default_mode=0o440)) == {("sa", "token"): 0o400, ("sa", "nested/other"): 0o400}
    assert token_files(_pod())[("sa", "token")] == 0o600


# --- replacing a file in a pod directory ----------------------------------------------------------------------


def _tree(tmp_path: Path) -> tuple[PodFiles, str, Path]:
    root = tmp_path / "jobs"
    volume = root / "default-u1" / "volumes" / "sa"
    volume.mkdir(parents=True)
    for path in (root / "default-u1", root / "default-u1" / "volumes", volume):
        os.chown(path, NOBODY, NOBODY)
    (volume / "token").write_text("old")
    os.chown(volume / "token", NOBODY, NOBODY)
    return PodFiles(str(root)), str(root / "default-u1"), volume


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user")
def test_replace_is_atomic_and_keeps_owner_and_mode(tmp_path: Path) -> None:
    files, workdir, volume = _tree(tmp_path)
    files.replace_file(workdir, "volumes/sa/token", NOBODY, NOBODY, 0o600, b"new")
    info = (volume / "token").stat()
    assert (volume / "token").read_bytes() == b"new"
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o600)
    assert os.listdir(volume) == ["token"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give files to another user")
def test_replace_refuses_symlinks_and_foreign_files(tmp_path: Path) -> None:
    files, workdir, volume = _tree(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "token").write_text("precious")
    os.chown(outside, NOBODY, NOBODY)
    (volume / "token").unlink()
    (volume / "token").symlink_to(outside / "token")
    with pytest.raises(UnsafePodFile):
        files.replace_file(workdir, "volumes/sa/token", NOBODY, NOBODY, 0o600, b"x")
    (volume / "token").unlink()
    os.rename(volume, tmp_path / "moved")
    os.symlink(outside, volume)  # the volume directory itself a symlink
    with pytest.raises(SlurmError):
        files.replace_file(workdir, "volumes/sa/token", NOBODY, NOBODY, 0o600, b"x")
    assert (outside / "token").read_text() == "precious"
    os.unlink(volume)
    os.rename(tmp_path / "moved", volume)
    (volume / "token").write_text("root's")  # owned by root, not the user
    with pytest.raises(UnsafePodFile):
        files.replace_file(workdir, "volumes/sa/token", NOBODY, NOBODY, 0o600, b"x")
    with pytest.raises(SlurmError):
        files.replace_file(workdir, "volumes/sa/../../x", NOBODY, NOBODY, 0o600, b"x")
    with pytest.raises(UnsafePodFile):
        files.replace_file(workdir, "volumes/sa/token", 0, 0, 0o600, b"x")
    assert (volume / "token").read_text() == "root's"


# --- mode 1 and the route's answers ---------------------------------------------------------------------------


def test_mode1_backend_cannot_refresh() -> None:
    backend = RestBackend(RestConfig(url="http://127.0.0.1:9"))
    with pytest.raises(Unsupported, match="mode 1"):
        asyncio.run(backend.write_volume_files(PodDirectory("/w", "u", ""), []))


class _Backend(RestBackend):
    written: list[VolumeFile]

    async def write_volume_files(self, pod: PodDirectory, files: list[VolumeFile]) -> None:
        if pod.workdir == "/mode1":
            await super().write_volume_files(pod, files)
        self.written = files


def _app(state: str = "RUNNING", workdir: str = "/jobs/default-u1") -> tuple[TestClient, _Backend]:
    backend = _Backend(RestConfig(url="http://127.0.0.1:9"))
    backend.written = []
    app = create_app(ApiConfig.model_validate({"auth": {"allow_unauthenticated": True}}), backend)
    entry = PodEntry(uid="u1", namespace="default", name="p", pod=_pod(), user="u", workdir=workdir, job_id="7",
                     job=JobInfo(job_id="7", name="slurmlink-u1", user="u", state=state))
    app.state.service.registry.entries["u1"] = entry
    return TestClient(app), backend


def test_route_answers() -> None:
    client, backend = _app()
    assert client.post(ROUTE, json=_body(("sa", "token", B64))).status_code == 200
    assert backend.written == [VolumeFile("volumes/sa/token", 0o600, b"jwt")]
    assert client.post(ROUTE, json=_body(("sa", "ca.crt", B64))).status_code == 400
    missing = client.post(ROUTE, json=_body(("sa", "token", B64), uid="nope"))
    assert missing.status_code == 404 and UNKNOWN_POD_HEADER in missing.headers
    assert _app("PENDING")[0].post(ROUTE, json=_body(("sa", "token", B64))).status_code == 409
    unsupported = _app(workdir="/mode1")[0].post(ROUTE, json=_body(("sa", "token", B64)))
    assert unsupported.status_code == 501 and "mode 1" in unsupported.text


# --- the vk's choice of pods ----------------------------------------------------------------------------------


def _state(uid: str, running: bool) -> PodState:
    state = PodState.of(_pod(uid))
    state.submitted = True
    container = {"name": "main", "state": {"running": {}} if running else {"waiting": {}}}
    state.remote = PodStatus(name="p", uid=uid, namespace="default", containers=[container])
    return state


def test_refresher_picks_running_pods_whose_tokens_are_due() -> None:
    resolver = SimpleNamespace(issued={"fresh": (1000.0, 1000.0 + 3600)})
    pods = {uid: _state(uid, running) for uid, running in
            (("fresh", True), ("adopted", True), ("pending", False))}
    controller = SimpleNamespace(pods=pods, resolver=resolver)
    refresher = TokenRefresher(VkConfig(), controller)  # type: ignore[arg-type]
    assert {s.uid for s in refresher.tick(now=1100.0)} == {"adopted"}  # unknown age: at once
    assert refresher.schedules["fresh"].due == pytest.approx(1000 + 2880)
    assert {s.uid for s in refresher.tick(now=4000.0)} == {"fresh", "adopted"}
    del pods["fresh"]
    refresher.tick(now=4000.0)
    assert "fresh" not in refresher.schedules
