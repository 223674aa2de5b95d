"""The listeners' parts that need no service: the unix socket's creation (mode, stale and live sockets, files in
the way), uvicorn's TLS options, the configuration keys, and the rotation of `kubelet.tls: files` against a
real TLS context."""

from __future__ import annotations

import socket
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from pydantic import ValidationError

from slurmlink.api.config import ApiConfig
from slurmlink.checks.api import check_api
from slurmlink.checks.files import Fs
from slurmlink.checks.report import Report
from slurmlink.config import ConfigError
from slurmlink.listeners import bind_unix, tls_options
from slurmlink.vk.certfiles import CertificateFiles
from slurmlink.vk.config import VkConfig
from slurmlink.vk.tls import ServingContext, self_signed_pem


def test_unix_socket_is_0660_and_replaces_only_a_stale_one(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    live = bind_unix(str(path))
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        live.listen()
        with pytest.raises(ConfigError, match="another server is listening"):
            bind_unix(str(path))
        assert path.exists()  # the live server's socket was left alone
    finally:
        live.close()
    other = tmp_path / "not-a-socket"
    other.write_text("data")
    with pytest.raises(ConfigError, match="exists and is not a socket"):
        bind_unix(str(other))
    assert other.read_text() == "data"


def test_tls_options_require_client_certificates_only_with_a_ca() -> None:
    assert tls_options("c", "k") == {"ssl_certfile": "c", "ssl_keyfile": "k"}
    required = tls_options("c", "k", "ca")
    assert required["ssl_ca_certs"] == "ca" and required["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_listener_keys() -> None:
    config = ApiConfig.model_validate({"listen": {"socket": "/run/s.sock"}, "admin": {"port": 9090}})
    assert (config.listen.socket, config.admin.host, config.admin.port) == ("/run/s.sock", "127.0.0.1", 9090)
    assert ApiConfig.model_validate({}).admin.port is None
    with pytest.raises(ValidationError, match="exclude each other"):
        ApiConfig.model_validate({"listen": {"socket": "/s", "tls": {"cert_file": "c", "key_file": "k"}}})
    with pytest.raises(ValidationError, match="go together"):
        VkConfig.model_validate({"api": {"cert_file": "c"}})


def _write(directory: Path, name: str) -> tuple[Path, Path, int]:
    cert_pem, key_pem = self_signed_pem(name, ["127.0.0.1"])
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    cert.write_bytes(cert_pem)
    key.write_bytes(key_pem)
    return cert, key, x509.load_pem_x509_certificate(cert_pem).serial_number


def test_rotated_files_are_installed_and_a_mismatched_pair_is_not(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    cert, key, _ = _write(tmp_path, "one")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    serving = ServingContext(context, scratch)
    files = CertificateFiles(str(cert), str(key), serving, interval=1)
    assert files.check() is False  # nothing changed since the start
    new_cert, new_key, serial = _write(tmp_path, "two")
    cert.write_bytes(new_cert.read_bytes())  # the certificate first: it does not fit the old key
    assert files.check() is False and serving.certificate is None
    key.write_bytes(new_key.read_bytes())
    assert files.check() is True
    assert serving.certificate is not None and serving.certificate.serial_number == serial
    assert files.check() is False  # seen
    assert list(scratch.iterdir()) == []  # the copies for `ssl` are gone once loaded


def test_check_config_takes_a_socket_without_a_token(tmp_path: Path) -> None:
    """As the API starts: on a socket no token is needed; on TCP without one it refuses."""
    def auth_findings(listen: dict[str, object]) -> list[str]:
        report = Report("api.yaml", {})
        check_api(report, ApiConfig.model_validate({"listen": listen, "job_root": str(tmp_path)}), Fs())
        return [f.level for f in report.findings if f.key == "auth.bearer_token_file" or "token" in f.message]

    assert auth_findings({"socket": str(tmp_path / "api.sock")}) == ["ok"]
    assert auth_findings({}) == ["error"]
