"""Where `slurmlink api` listens: HTTPS requiring client certificates (the vk reaching it with `api.ca_file` and
a client certificate), a unix socket whose permissions are the access control (as upstream interLink reaches
its plugin), and the plain admin listener; the vk's admin listener beside its kubelet port, whose `tls: files`
certificate is reloaded when the files are rotated. Certificates come from a CA made here (cryptography)."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography import x509

from slurmlink.devcluster import DevCluster
from slurmlink.wire.client import ApiCallError, InterlinkClient, tls_context
from standins.kube import KubeStandin
from standins.kube.pki import CertificateAuthority
from tests.harness.pods import NODE, Client, make_pod, pod_manifest
from tests.harness.ports import free_port
from tests.harness.services import ApiProcess, VkProcess, api_config, node_kubeconfig, vk_config
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import Chain

pytestmark = pytest.mark.timeout(180)
TOKEN = "vk-secret-token"  # noqa: S105 - the test API's own token


@dataclass
class Pki:
    """The CA's certificate, the API's serving pair, the vk's client pair, and a client pair of another CA."""

    ca: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    foreign: tuple[Path, Path]
    ca_authority: CertificateAuthority
    directory: Path

    def server_pair(self, name: str, hosts: list[str]) -> tuple[Path, Path]:
        return _pair(self.ca_authority, self.directory, name, self.ca_authority.issue_server(hosts))


def _pair(ca: CertificateAuthority, directory: Path, name: str, issued: Any) -> tuple[Path, Path]:
    cert, key = ca.write(directory, name, issued)
    assert key is not None
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca, other = CertificateAuthority("slurmlink-test-ca"), CertificateAuthority("someone-else")
    ca_path, _ = ca.write(directory, "ca")
    return Pki(ca_path, _pair(ca, directory, "api", ca.issue_server(["127.0.0.1", "localhost"])),
               _pair(ca, directory, "vk", ca.issue_client("slurmlink-vk")),
               _pair(other, directory, "foreign", other.issue_client("slurmlink-vk")), ca, directory)


@pytest.fixture(scope="module")
def tls_api(slurm_cluster: DevCluster, pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    work = tmp_path_factory.mktemp("tls-api")
    (work / "token").write_text(TOKEN + "\n")
    (work / "token").chmod(0o600)  # as check-config wants a secret
    tls = {"cert_file": str(pki.server[0]), "key_file": str(pki.server[1]), "client_ca_file": str(pki.ca)}
    config = api_config(slurm_cluster, free_port(), auth={"bearer_token_file": str(work / "token")},
                        admin={"port": free_port()})
    config["listen"]["tls"] = tls
    process = ApiProcess(config, work, tls_context(str(pki.ca), str(pki.client[0]), str(pki.client[1])))
    process.start()  # ready once the admin listener's /healthz answers 200
    yield process
    process.stop()


def _ping(url: str, verify: Any, token: str | None = TOKEN) -> str:
    async def go() -> str:
        async with InterlinkClient(url, token=token, verify=verify, timeout=10) as client:
            return (await client.ping())[1]
    return asyncio.run(go())


def test_https_api_requires_a_client_certificate_of_its_ca(tls_api: ApiProcess, pki: Pki) -> None:
    assert tls_api.url.startswith("https://")
    assert _ping(tls_api.url, tls_context(str(pki.ca), str(pki.client[0]), str(pki.client[1])))
    for refused in (tls_context(str(pki.ca)), tls_context(str(pki.ca), str(pki.foreign[0]), str(pki.foreign[1]))):
        with pytest.raises(ApiCallError) as failure:  # no certificate, or one of another CA: no TLS session
            _ping(tls_api.url, refused)
        assert failure.value.status == 0
    with pytest.raises(ApiCallError) as unknown_ca:  # and the vk checks the API's certificate too
        _ping(tls_api.url, tls_context(None, str(pki.client[0]), str(pki.client[1])))
    assert "CERTIFICATE_VERIFY_FAILED" in str(unknown_ca.value)
    with pytest.raises(ApiCallError) as no_token:  # over TCP the bearer token is still needed
        _ping(tls_api.url, tls_context(str(pki.ca), str(pki.client[0]), str(pki.client[1])), token=None)
    assert no_token.value.status == 401


def test_the_cli_runs_a_pod_through_the_https_api(tls_api: ApiProcess, pki: Pki, tmp_path: Path) -> None:
    """`slurmlink run`, `get` and `logs` with --ca-file and a client certificate (and a missing key refused)."""
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump(make_pod([{"name": "main", "command": ["sh", "-c", "echo over https"]}])))
    tls = ["--api", tls_api.url, "--token-file", str(tls_api.config["auth"]["bearer_token_file"]),
           "--ca-file", str(pki.ca), "--cert-file", str(pki.client[0]), "--key-file", str(pki.client[1])]
    cli = [sys.executable, "-m", "slurmlink.cli"]
    ran = subprocess.run([*cli, "run", str(manifest), *tls, "--timeout", "120"], capture_output=True, text=True,
                         timeout=150, check=False)
    assert ran.returncode == 0, ran.stderr
    assert "over https" in ran.stdout
    half = subprocess.run([*cli, "get", "some-uid", *tls[:-2]], capture_output=True, text=True, timeout=60,
                          check=False)
    assert half.returncode == 2 and "--cert-file and --key-file go together" in half.stderr


def test_api_admin_listener_and_what_the_main_port_tells_strangers(tls_api: ApiProcess) -> None:
    admin = f"http://127.0.0.1:{tls_api.admin_port}"
    health = httpx.get(f"{admin}/healthz", timeout=10)
    assert health.status_code == 200 and health.json()["recovered"] is True
    assert "slurmlink_api_requests_total" in httpx.get(f"{admin}/metrics", timeout=10).text
    with tls_api.http() as client:  # a client certificate but no token: ok, nothing more; /metrics is refused
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/metrics").status_code == 401
        full = client.get("/healthz", headers={"Authorization": f"Bearer {TOKEN}"}).json()
        assert full["recovered"] is True and "last_error" in full


@pytest.fixture(scope="module")
def https_chain(slurm_cluster: DevCluster, tls_api: ApiProcess, pki: Pki,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """The vk in front of the HTTPS API (api.ca_file, a client certificate, the token), with an admin listener
    and a kubelet certificate from files (`tls: files`) that the tests rotate."""
    work = tmp_path_factory.mktemp("https-chain")
    kubelet_cert, kubelet_key = pki.server_pair("kubelet-1", ["127.0.0.1", NODE])
    with KubeStandin(work / "standin", bookmark_interval=1.0) as standin:
        kubeconfig = node_kubeconfig(standin, work / "node.kubeconfig", NODE)
        kubeconfig.chmod(0o600)
        api = {"url": tls_api.url, "ca_file": str(pki.ca), "cert_file": str(pki.client[0]),
               "key_file": str(pki.client[1]), "token_file": str(tls_api.config["auth"]["bearer_token_file"])}
        config = vk_config(standin, kubeconfig, tls_api.url, api=api, admin={"port": free_port()})
        config["kubelet"].update(cert_file=str(kubelet_cert), key_file=str(kubelet_key), cert_reload_seconds=0.2)
        vk = VkProcess(config, work, standin.kubelet_client_cert)
        vk.start()
        try:
            yield Chain(standin, vk, tls_api, slurm_cluster, work)
        finally:
            vk.stop()


def test_vk_runs_a_pod_through_the_https_api(https_chain: Chain) -> None:
    https_chain.apply(pod_manifest("over-https", "echo hello over TLS"))
    pod = https_chain.wait_phase("over-https", ("Succeeded", "Failed"), timeout=90)
    assert pod["status"]["phase"] == "Succeeded", pod["status"]
    assert https_chain.kubectl("logs", "over-https").stdout == "hello over TLS\n"


def test_check_config_online_reaches_the_https_api_as_the_vk_does(https_chain: Chain) -> None:
    done = subprocess.run([sys.executable, "-m", "slurmlink.cli", "check-config", "vk", "-c",
                           str(https_chain.vk.config_path), "--online"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "answers /pinglink" in done.stdout + done.stderr


def test_vk_probes_on_the_admin_port_while_the_kubelet_port_wants_certificates(https_chain: Chain) -> None:
    vk = https_chain.vk
    admin = f"http://127.0.0.1:{vk.admin_port}"
    assert httpx.get(f"{admin}/healthz", timeout=10).text == "ok"
    assert "slurmlink_vk_" in httpx.get(f"{admin}/metrics", timeout=10).text
    assert vk.get("/metrics", client=None).status_code == 401  # no client certificate, no token
    assert vk.get("/metrics").status_code == 200  # the apiserver's kubelet-client certificate
    assert vk.get("/healthz", client=None).status_code == 200  # as before, for probes that speak TLS


def _served_serial(port: int) -> int:
    pem = ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
    return x509.load_pem_x509_certificate(pem.encode()).serial_number


def _replace(target: Path, source: Path) -> None:
    """Swap a file in one step, as a renewal tool (or a Secret volume's symlink swap) does."""
    temporary = target.with_name(f".{target.name}.new")
    temporary.write_bytes(source.read_bytes())
    os.replace(temporary, target)


def test_rotated_kubelet_certificate_files_are_served(https_chain: Chain, pki: Pki) -> None:
    vk = https_chain.vk
    cert_file, key_file = Path(vk.config["kubelet"]["cert_file"]), Path(vk.config["kubelet"]["key_file"])
    first = x509.load_pem_x509_certificate(cert_file.read_bytes()).serial_number
    assert _served_serial(vk.port) == first
    new_cert, new_key = pki.server_pair("kubelet-2", ["127.0.0.1", NODE])
    second = x509.load_pem_x509_certificate(new_cert.read_bytes()).serial_number
    _replace(cert_file, new_cert)  # the certificate first: it does not fit the old key, so nothing changes yet
    wait_until(lambda: "do not make a certificate and its key" in vk.log_text(), 15,
               "the vk to look at the half-rotated pair")
    assert _served_serial(vk.port) == first
    _replace(key_file, new_key)
    wait_until(lambda: _served_serial(vk.port) == second, 15, "the rotated certificate to be served")
    assert vk.get("/metrics").status_code == 200  # client certificates are still checked after the swap


# --- the unix socket -----------------------------------------------------------------------------------------

def test_api_on_a_unix_socket_needs_no_token_and_no_tcp_port(slurm_cluster: DevCluster, tmp_path: Path) -> None:
    """As upstream interLink's plugin: no Authorization header, no TCP port, the socket's mode decides who calls.
    A stale socket left by a killed API is replaced; the socket is removed when the API stops."""
    path = tmp_path / "run" / "api.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens: what a killed process leaves
    port = free_port()
    config = api_config(slurm_cluster, port, auth={}, admin={"port": free_port()})
    config["listen"]["socket"] = str(path)
    process = ApiProcess(config, tmp_path)
    process.start()
    try:
        assert process.url == f"unix://{path}"
        assert stat.S_ISSOCK(path.stat().st_mode) and stat.S_IMODE(path.stat().st_mode) == 0o660
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)  # the socket replaces the TCP port
        with process.http() as raw:  # httpx over the socket, no token: what interLink sends
            assert raw.post("/pinglink").status_code == 200
            assert raw.get("/healthz").json()["recovered"] is True  # callers on the socket are trusted
        client = Client(process.url)  # the product's client, with a unix:// URL
        pod = make_pod([{"name": "main", "command": ["sh", "-c", "echo via the socket"]}])
        client.submit(pod)
        phase, _ = client.finish(pod)
        assert phase.phase == "Succeeded"
        assert client.logs(pod, "main") == b"via the socket\n"
    finally:
        process.stop()
    assert process.process is not None and process.process.returncode == 0
    assert not path.exists()
