"""The checks of `slurmlink check-config` on files made here: modes, job roots, commands, the keys they name.
The command itself, the shipped examples and --online are in tests/deploy/test_check_config.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from slurmlink.api.config import ApiConfig
from slurmlink.checks.commands import check_commands
from slurmlink.checks.files import Fs, check_named_files, named_paths, secret_file, state_file
from slurmlink.checks.jobroot import check_agreement, check_mode1, check_mode2
from slurmlink.checks.report import Report, variable_for
from slurmlink.checks.run import check
from slurmlink.vk.config import VkConfig

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="job roots are root's")


def _levels(report: Report) -> list[tuple[str, str]]:
    return [(finding.level, finding.key) for finding in report.findings]


def _file(path: Path, mode: int, text: str = "secret") -> str:
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.mark.parametrize(("mode", "level"), [(0o600, "ok"), (0o400, "ok"), (0o640, "warning"), (0o644, "error"),
                                             (0o602, "error")])
def test_secret_files_must_not_be_readable_by_others(tmp_path: Path, mode: int, level: str) -> None:
    report = Report("api.yaml", {})
    secret_file(report, "auth.bearer_token_file", _file(tmp_path / "token", mode), Fs())
    assert _levels(report) == [(level, "auth.bearer_token_file")]


def test_a_missing_or_empty_secret_is_an_error(tmp_path: Path) -> None:
    report = Report("api.yaml", {})
    secret_file(report, "a", str(tmp_path / "absent"), Fs())
    secret_file(report, "b", _file(tmp_path / "empty", 0o600, ""), Fs())
    assert _levels(report) == [("error", "a"), ("error", "b")]
    assert "does not exist" in report.findings[0].message and "empty" in report.findings[1].message


def test_every_file_key_is_found_by_its_name(tmp_path: Path) -> None:
    config = VkConfig.model_validate({
        "kube": {"kubeconfig": "/k"}, "api": {"token_file": "/t", "ca_file": "/ca"},
        "kubelet": {"cert_file": "/c", "key_file": "/key", "client_ca_file": "/ca2"}})
    keys = {key for key, name, _ in named_paths(config) if name.endswith("_file") or name == "kubeconfig"}
    assert {"kube.kubeconfig", "api.token_file", "api.ca_file", "kubelet.cert_file", "kubelet.key_file",
            "kubelet.authentication.x509.client_ca_file"} <= keys
    report = Report("vk.yaml", {})
    check_named_files(report, config, Fs(tmp_path))  # nothing exists under tmp_path
    assert {f.key for f in report.findings if f.level == "error"} >= {"kube.kubeconfig", "api.token_file",
                                                                       "kubelet.key_file"}
    assert len([f for f in report.findings if "/ca2" in f.message]) == 1  # the same file is checked once


def test_mapping_steps_are_named_by_their_strategy() -> None:
    config = ApiConfig.model_validate({"auth": {"allow_unauthenticated": True}, "identity": {
        "issuers": [{"preset": "egi-production"}], "policy": {"vos": ["vo.example.org"]},
        "mapping": [{"static": {"path": "/m"}}, {"alise": {"url": "https://a", "site": "s", "apikey_file": "/a"}}]}})
    keys = {key for key, _, _ in named_paths(config)}
    assert {"identity.mapping.0.static.path", "identity.mapping.1.alise.apikey_file"} <= keys


def test_state_files_need_a_writable_directory_and_privacy(tmp_path: Path) -> None:
    report = Report("vk.yaml", {})
    state_file(report, "kubelet.csr.state_file", str(tmp_path / "new.pem"), Fs())
    state_file(report, "kubelet.csr.state_file", str(tmp_path / "nodir" / "x.pem"), Fs())
    state_file(report, "kubelet.csr.state_file", _file(tmp_path / "old.pem", 0o644), Fs())
    assert [f.level for f in report.findings] == ["ok", "error", "error"]


@needs_root
@pytest.mark.parametrize(("mode", "levels"), [(0o711, ["ok"]), (0o755, ["warning"]), (0o1733, ["error"]),
                                              (0o700, ["error"]), (0o777, ["error", "warning"])])
def test_mode2_job_root(tmp_path: Path, mode: int, levels: list[str]) -> None:
    root = tmp_path / "jobs"
    root.mkdir()
    root.chmod(mode)
    report = Report("api.yaml", {})
    check_mode2(report, "job_root", str(root), Fs())
    assert [f.level for f in report.findings] == levels


@needs_root
@pytest.mark.parametrize(("mode", "levels"), [(0o1733, ["ok"]), (0o1777, ["warning"]), (0o733, ["error"]),
                                              (0o711, ["error"])])
def test_mode1_job_root(tmp_path: Path, mode: int, levels: list[str]) -> None:
    root = tmp_path / "jobs"
    root.mkdir()
    root.chmod(mode)
    report = Report("proxy.yaml", {})
    check_mode1(report, "files.job_root", str(root), Fs())
    assert [f.level for f in report.findings] == levels


def test_job_root_agreement() -> None:
    report = Report("api.yaml", {})
    check_agreement(report, "/scratch/slurmlink/", "/scratch/slurmlink", "proxy.yaml")
    check_agreement(report, "/scratch/slurmlink/jobs", "/scratch/slurmlink", "proxy.yaml")
    check_agreement(report, "/scratch/slurmlink", None, "proxy.yaml")
    assert [f.level for f in report.findings] == ["ok", "error", "error"]
    assert "differs from files.job_root /scratch/slurmlink in proxy.yaml" in report.findings[1].message


def test_commands_are_looked_for_in_bin_dir_or_the_services_path(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    _file(tmp_path / "bin" / "sbatch", 0o755, "#!/bin/sh\n")
    _file(tmp_path / "bin" / "squeue", 0o644, "#!/bin/sh\n")  # not executable
    report = Report("api.yaml", {})
    check_commands(report, "cli.bin_dir", ("sbatch", "squeue"), str(tmp_path / "bin"), Fs())
    assert _levels(report) == [("error", "cli.bin_dir")]
    assert report.findings[0].message.startswith("squeue not found")


def test_the_variable_that_set_a_key_is_named() -> None:
    environ = {"SLURMLINK_AUTH__BEARER_TOKEN_FILE": "/x", "SLURMLINK_SITE": "{partition: a}"}
    assert variable_for("auth.bearer_token_file", environ) == "SLURMLINK_AUTH__BEARER_TOKEN_FILE"
    assert variable_for("site.partition", environ) == "SLURMLINK_SITE"
    assert variable_for("job_root", environ) is None
    report = Report("api.yaml", environ)
    report.error("auth.bearer_token_file", "/x does not exist")
    assert report.lines() == ["error   api.yaml: SLURMLINK_AUTH__BEARER_TOKEN_FILE (auth.bearer_token_file): "
                              "/x does not exist"]


def test_a_config_that_does_not_load_is_one_error_and_exit_code_2(tmp_path: Path) -> None:
    path = tmp_path / "api.yaml"
    path.write_text("listne: {port: 3000}\n")
    reports, code = check("api", path, environ={})
    assert code == 2
    [line] = reports[0].lines()
    assert line.startswith(f"error   {path}: listne: ")
    reports, code = check("api", path, environ={"SLURMLINK_POLL_INTERVAL": "-1"})
    assert "SLURMLINK_POLL_INTERVAL (poll_interval)" in reports[0].lines()[0]


def test_online_checks_wait_for_the_offline_ones(tmp_path: Path) -> None:
    path = tmp_path / "vk.yaml"
    path.write_text(f"api: {{token_file: {tmp_path / 'absent'}}}\n")
    reports, code = check("vk", path, online=True, environ={})
    assert code == 2
    assert reports[0].findings[-1].message == "--online checks skipped: fix the errors above first"


def test_a_unix_socket_needs_its_directory(tmp_path: Path) -> None:
    from pydantic import BaseModel

    class Listen(BaseModel):  # the shape of a listener with a socket (ApiConfig's listen.socket)
        socket: str | None = None

    report = Report("api.yaml", {})
    check_named_files(report, Listen(socket=str(tmp_path / "api.sock")), Fs())
    check_named_files(report, Listen(socket=str(tmp_path / "absent" / "api.sock")), Fs())
    assert [f.level for f in report.findings] == ["ok", "error"]


def test_interactive_steps_need_setpriv_and_srun(tmp_path: Path) -> None:
    from slurmlink.checks.proxy import check_proxy
    from slurmlink.proxy.config import ProxyConfig

    config = ProxyConfig.model_validate({
        "identity": {"issuers": [{"issuer": "https://aai.example.org"}], "policy": {"vos": ["vo.example.org"]},
                     "mapping": [{"static": {"path": "/users.txt"}}]},
        "jwt_key_file": "/jwt.key", "state_dir": "/state",
        "interactive": {"enabled": True, "srun": str(tmp_path / "srun"), "setpriv": str(tmp_path / "setpriv")}})
    _file(tmp_path / "setpriv", 0o755, "#!/bin/sh\n")
    report = Report("proxy.yaml", {})
    check_proxy(report, config, Fs())
    [finding] = [f for f in report.findings if f.key == "interactive"]
    assert finding.level == "error" and finding.message.startswith(f"{tmp_path / 'srun'} not found"), finding
    _file(tmp_path / "srun", 0o755, "#!/bin/sh\n")
    report = Report("proxy.yaml", {})
    check_proxy(report, config, Fs())
    assert [f.level for f in report.findings if f.key == "interactive"] == ["ok"]
