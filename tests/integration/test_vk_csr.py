"""`kubelet.tls: csr` end to end: the stand-in apiserver (verifying kubelet certificates with its CA, as with
--kubelet-certificate-authority) → `slurmlink vk` → a fake interLink API (no SLURM needed: only the certificate
path is under test). The vk asks for a kubelet-serving certificate, serves a self-signed one until the CSR is
approved, then the signer's one — without a restart — and `kubectl logs` works through the apiserver."""

from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from standins.kube import KubeStandin
from tests.harness.fake_interlink import LOG_TEXT, serve_fake_interlink
from tests.harness.pods import NODE, pod_manifest
from tests.harness.services import VkProcess, node_kubeconfig, vk_config
from tests.harness.waiting import wait_until
from tests.integration.vk_harness import KUBECTL

pytestmark = pytest.mark.timeout(120)
CSRS = "/apis/certificates.k8s.io/v1/certificatesigningrequests"


@pytest.fixture
def fake_api() -> Iterator[str]:
    with serve_fake_interlink() as url:
        yield url


# --- the vk's endpoint, seen with the apiserver's client certificate -----------------------------------------

def _client_context(client: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.load_cert_chain(str(client[0]), str(client[1]))
    return context


def presented(port: int, client: tuple[Path, Path]) -> x509.Certificate:
    """The certificate the endpoint shows a new connection, unverified."""
    context = _client_context(client)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
            context.wrap_socket(sock, server_hostname="127.0.0.1") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def verified_by(ca: Path, port: int, client: tuple[Path, Path]) -> bool:
    """Whether the endpoint's certificate chains to `ca` and names 127.0.0.1 (what a verifying apiserver checks)."""
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(client[0]), str(client[1]))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                context.wrap_socket(sock, server_hostname="127.0.0.1"):
            return True
    except ssl.SSLCertVerificationError:
        return False


def csrs(standin: KubeStandin) -> list[dict[str, Any]]:
    answer = httpx.get(f"{standin.url}{CSRS}", verify=ssl.create_default_context(cafile=str(standin.ca_path)),
                       headers={"Authorization": f"Bearer {standin.admin_token}"}, timeout=5)
    answer.raise_for_status()
    return list(answer.json()["items"])


def serving_condition(standin: KubeStandin) -> dict[str, Any]:
    node = standin.get("nodes", NODE) or {}
    return next((c for c in (node.get("status") or {}).get("conditions") or []
                 if c["type"] == "KubeletServingCertificate"), {})


def kubectl(standin: KubeStandin, workdir: Path, *args: str, input: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(standin.kubeconfig), "KUBECACHEDIR": str(workdir / "kubecache")}
    return subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True, env=env, timeout=30)


def test_serving_certificate_through_a_csr(tmp_path: Path, fake_api: str) -> None:
    standin_dir = tmp_path / "standin"
    # The stand-in verifies kubelet certificates with its own CA, the one that signs CSRs.
    with KubeStandin(standin_dir, kubelet_ca=standin_dir / "pki" / "ca.crt") as standin:
        kubeconfig = node_kubeconfig(standin, tmp_path / "node.kubeconfig", NODE)
        client = standin.issue_client_cert("kube-apiserver-kubelet-client")
        state = tmp_path / "vk-state" / "serving.pem"
        config = vk_config(standin, kubeconfig, fake_api)
        del config["kubelet"]["authentication"]  # the former key below must keep working
        config["kubelet"].update(tls="csr", client_ca_file=str(standin.ca_path),
                                 csr={"state_file": str(state), "expiration_seconds": 3600})
        vk = VkProcess(config, tmp_path, client)
        started = time.monotonic()
        try:
            vk.start()  # /healthz answers before any approval: a self-signed certificate meanwhile
            assert vk.process is not None
            pid = vk.process.pid

            # --- the CSR, as the node asked for it
            [csr] = wait_until(lambda: csrs(standin), 10, "the vk's CSR")
            name, spec = csr["metadata"]["name"], csr["spec"]
            assert spec["signerName"] == "kubernetes.io/kubelet-serving"
            assert spec["usages"] == ["digital signature", "key encipherment", "server auth"]
            assert spec["expirationSeconds"] == 3600
            assert spec["username"] == f"system:node:{NODE}" and "system:nodes" in spec["groups"]
            request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
            assert request.subject.rfc4514_string() == f"CN=system:node:{NODE},O=system:nodes"
            self_signed = presented(vk.port, client)
            assert self_signed.issuer == self_signed.subject
            assert not verified_by(standin.ca_path, vk.port, client)
            waiting = wait_until(lambda: serving_condition(standin).get("reason") == "WaitingForApproval"
                                 and serving_condition(standin), 10, "the node to say it waits for approval")
            assert waiting["status"] == "False" and name in waiting["message"]
            assert f"CSR {name}" in vk.log_text() and "awaits approval" in vk.log_text()

            # --- a pod on the node; its log cannot be read while the certificate is not the CA's
            result = kubectl(standin, tmp_path, "apply", "-f", "-", input=json.dumps(pod_manifest("csr-pod", "true")))
            assert result.returncode == 0, result.stderr
            wait_until(lambda: ((standin.get("pods", "csr-pod", "default") or {}).get("status") or {})
                       .get("phase") == "Running", 20, "the pod to run")
            refused = kubectl(standin, tmp_path, "logs", "csr-pod")
            assert refused.returncode != 0 and "certificate" in refused.stderr.lower(), refused.stderr

            # --- approved: the signer's certificate is served, by the same process
            standin.approve_csr(name)
            wait_until(lambda: verified_by(standin.ca_path, vk.port, client), 15, "the CA's certificate served")
            issued = presented(vk.port, client)
            issued.verify_directly_issued_by(x509.load_pem_x509_certificate(standin.ca_path.read_bytes()))
            sans = issued.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
            assert issued.subject.rfc4514_string() == f"CN=system:node:{NODE},O=system:nodes"
            assert vk.process.poll() is None and vk.process.pid == pid
            condition = wait_until(lambda: serving_condition(standin).get("status") == "True"
                                   and serving_condition(standin), 10, "the node to say the certificate is issued")
            assert condition["reason"] == "Issued"
            assert stat.S_IMODE(state.stat().st_mode) == 0o600
            logs = kubectl(standin, tmp_path, "logs", "csr-pod")
            assert logs.returncode == 0 and logs.stdout == LOG_TEXT, logs.stderr
            print(f"\nCSR route: vk start → CA certificate served in {time.monotonic() - started:.1f}s")

            # --- a restart serves the stored certificate at once, without a new CSR
            vk.stop()
            vk.start()
            assert verified_by(standin.ca_path, vk.port, client)
            assert presented(vk.port, client) == issued
            assert len(csrs(standin)) == 1
            logs = kubectl(standin, tmp_path, "logs", "csr-pod")
            assert logs.returncode == 0 and logs.stdout == LOG_TEXT, logs.stderr
        finally:
            vk.stop()
