"""The vk's serving certificate through a CertificateSigningRequest: the CSR body, reading its status, the
renewal timing, the config, and the whole request → approve → serve → renew cycle against an in-memory signer
and a real TLS listener."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import ssl
import stat
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from slurmlink.vk import csr as csrmod
from slurmlink.vk import csrspec
from slurmlink.vk.config import CsrConfig, KubeletConfig
from slurmlink.vk.tls import ServingContext, new_key, self_signed_pem

UTC = dt.UTC
T0 = dt.datetime(2030, 1, 1, tzinfo=UTC)


def _der(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


# --- config -----------------------------------------------------------------------------------------------------

def test_tls_mode_defaults_keep_the_old_behaviour() -> None:
    assert KubeletConfig().tls == "self-signed"
    assert KubeletConfig(cert_file="/c", key_file="/k").tls == "files"
    assert KubeletConfig(tls="csr").csr.renew_fraction == 0.8
    with pytest.raises(ValidationError, match="needs kubelet.cert_file"):
        KubeletConfig(tls="files")
    with pytest.raises(ValidationError, match="does not use"):
        KubeletConfig(tls="csr", cert_file="/c", key_file="/k")
    with pytest.raises(ValidationError):
        CsrConfig(expiration_seconds=300)  # Kubernetes refuses less than 600 s
    with pytest.raises(ValidationError):
        CsrConfig(renew_fraction=1.0)


# --- the request ------------------------------------------------------------------------------------------------

def test_csr_body_asks_the_kubelet_serving_signer_for_the_node() -> None:
    key = new_key()
    hosts = csrspec.serving_hosts("10.0.0.15", "hpc-a.example.org")
    body = csrspec.csr_object("hpc-a", csrspec.request_pem(key, "hpc-a", hosts), 3600)
    assert body["apiVersion"] == "certificates.k8s.io/v1" and body["kind"] == "CertificateSigningRequest"
    assert body["metadata"] == {"generateName": "hpc-a-serving-"}
    spec = body["spec"]
    assert spec["signerName"] == "kubernetes.io/kubelet-serving"
    assert spec["usages"] == ["digital signature", "key encipherment", "server auth"]
    assert spec["expirationSeconds"] == 3600
    request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
    assert request.is_signature_valid
    assert request.subject.rfc4514_string() == "CN=system:node:hpc-a,O=system:nodes"
    sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.15")]
    assert sans.get_values_for_type(x509.DNSName) == ["hpc-a.example.org"]
    assert _der(request.public_key()) == _der(key.public_key())


def test_csr_body_without_hostname_or_expiry() -> None:
    assert csrspec.serving_hosts("10.0.0.15", None) == ["10.0.0.15"]
    body = csrspec.csr_object("n", csrspec.request_pem(new_key(), "n", ["10.0.0.15"]))
    assert "expirationSeconds" not in body["spec"]
    request = x509.load_pem_x509_csr(base64.b64decode(body["spec"]["request"]))
    sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == []


def _condition(kind: str, **extra: str) -> dict[str, str]:
    return {"type": kind, "status": "True", **extra}


def test_reading_a_csr_status() -> None:
    assert csrspec.read_status({}).phase == "pending"
    approved = csrspec.read_status({"status": {"conditions": [_condition("Approved")]}})
    assert approved.phase == "pending" and "signer" in approved.detail
    issued = csrspec.read_status({"status": {"conditions": [_condition("Approved")],
                                             "certificate": base64.b64encode(b"PEM").decode()}})
    assert issued == csrspec.CsrState("issued", certificate=b"PEM")
    denied = csrspec.read_status({"status": {"conditions": [_condition("Denied", reason="NotOurs",
                                                                        message="unknown node")]}})
    assert denied.phase == "denied" and denied.detail == "NotOurs: unknown node"
    failed = csrspec.read_status({"status": {"conditions": [_condition("Failed", reason="SignerValidationFailure")],
                                             "certificate": ""}})
    assert failed.phase == "failed" and failed.detail == "SignerValidationFailure"
    assert csrspec.read_status({"status": {"certificate": "%%%"}}).phase == "failed"


# --- renewal timing ---------------------------------------------------------------------------------------------

def test_renewal_at_eighty_percent_of_the_lifetime() -> None:
    not_after = T0 + dt.timedelta(days=10)
    assert csrspec.renewal_delay(T0, not_after, T0, 0.8) == 8 * 86400
    assert csrspec.renewal_delay(T0, not_after, T0 + dt.timedelta(days=3), 0.8) == 5 * 86400
    assert csrspec.renewal_delay(T0, not_after, T0, 0.5) == 5 * 86400


def test_a_certificate_already_due_is_renewed_soon_but_without_a_loop() -> None:
    not_after = T0 + dt.timedelta(days=10)
    assert csrspec.renewal_delay(T0, not_after, T0 + dt.timedelta(days=9), 0.8) == csrspec.MIN_RENEW_PAUSE
    # a few seconds left: half of them, so the new certificate arrives in time
    assert csrspec.renewal_delay(T0, not_after, not_after - dt.timedelta(seconds=10), 0.8) == 5
    assert csrspec.renewal_delay(T0, not_after, not_after + dt.timedelta(seconds=1), 0.8) == 0


# --- an in-memory signer ----------------------------------------------------------------------------------------

class Signer:
    """A CA, and the CSR API as the vk sees it: CSRs wait until `approve` (or `deny`) is called."""

    def __init__(self, lifetime: float = 3600) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key()).serial_number(1)
                     .not_valid_before(dt.datetime.now(UTC) - dt.timedelta(hours=1))
                     .not_valid_after(dt.datetime.now(UTC) + dt.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.lifetime = lifetime
        self.csrs: dict[str, dict[str, Any]] = {}
        self.auto_approve = False

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        name = f"{body['metadata']['generateName']}{len(self.csrs)}"
        self.csrs[name] = {**body, "metadata": {"name": name}, "status": {}}
        if self.auto_approve:
            self.approve(name)
        return self.csrs[name]

    async def get(self, name: str) -> dict[str, Any]:
        return self.csrs[name]

    def approve(self, name: str) -> None:
        request = x509.load_pem_x509_csr(base64.b64decode(self.csrs[name]["spec"]["request"]))
        now = dt.datetime.now(UTC)
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cert = (x509.CertificateBuilder().subject_name(request.subject).issuer_name(self.cert.subject)
                .public_key(request.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now).not_valid_after(now + dt.timedelta(seconds=self.lifetime))
                .add_extension(sans, critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(self.key, hashes.SHA256()))
        self.csrs[name]["status"] = {"conditions": [_condition("Approved")], "certificate": base64.b64encode(
            cert.public_bytes(serialization.Encoding.PEM)).decode()}

    def deny(self, name: str) -> None:
        self.csrs[name]["status"] = {"conditions": [_condition("Denied", reason="NotTrusted")]}

    def pending(self) -> list[str]:
        return [n for n, c in self.csrs.items() if not c["status"]]


async def _presented(port: int) -> x509.Certificate:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    return x509.load_der_x509_certificate(der)


async def _until(check: Any, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if value := check():
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {check}")


class Harness:
    """A TLS listener serving a self-signed certificate, and ServingCertificates in front of a Signer."""

    def __init__(self, tmp_path: Path, signer: Signer, **csr: Any) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self_signed_pem("n1", ["127.0.0.1"])
        scratch = tmp_path / "scratch"
        scratch.mkdir(exist_ok=True)
        ServingContext(context, scratch).install(cert, key)
        self.serving = ServingContext(context, scratch)
        self.conditions: list[tuple[str, str, str]] = []
        self.certs = csrmod.ServingCertificates("n1", ["127.0.0.1", "n1.example.org"], CsrConfig(**csr), signer,
                                                self.serving, lambda *c: self.conditions.append(c))
        self.context = context


async def _serve(context: ssl.SSLContext) -> asyncio.Server:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(100)
        writer.write(data)
        await writer.drain()
        writer.close()
    return await asyncio.start_server(echo, "127.0.0.1", 0, ssl=context)


@pytest.fixture(autouse=True)
def _fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(csrmod, "POLL_SECONDS", 0.05)
    monkeypatch.setattr(csrmod, "RETRY_PAUSES", (0.1, 0.2))


def test_self_signed_until_approved_then_the_signers_certificate_then_renewed(tmp_path: Path) -> None:
    signer = Signer(lifetime=3)  # renewal due after 2.4 s

    async def scenario() -> None:
        harness = Harness(tmp_path, signer, state_file=str(tmp_path / "state" / "serving.pem"))
        server = await _serve(harness.context)
        port = server.sockets[0].getsockname()[1]
        task = asyncio.create_task(harness.certs.run())
        try:
            [name] = await _until(signer.pending)
            assert csrspec.is_self_signed(await _presented(port))
            status, reason, message = harness.conditions[-1]
            assert (status, reason) == ("False", "WaitingForApproval")
            assert name in message and "self-signed" in message and "kubectl certificate approve" in message

            # a connection opened before the swap stays usable after it
            client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)

            signer.approve(name)
            first = await _until(lambda: harness.certs.issued)
            presented = await _presented(port)
            assert presented == first and presented.issuer == signer.cert.subject
            presented.verify_directly_issued_by(signer.cert)
            assert harness.conditions[-1][:2] == ("True", "Issued")
            state = tmp_path / "state" / "serving.pem"
            assert stat.S_IMODE(state.stat().st_mode) == 0o600
            writer.write(b"still here")
            assert await reader.read(100) == b"still here"
            writer.close()

            # at 80 % of its 3 s a renewal CSR appears; the current certificate is served meanwhile
            [renewal] = await _until(signer.pending, timeout=5)
            assert renewal != name
            assert harness.conditions[-1][:2] == ("True", "RenewalWaitingForApproval")
            assert await _presented(port) == first
            signer.approve(renewal)
            second = await _until(lambda: harness.certs.issued != first and harness.certs.issued)
            assert await _presented(port) == second and second.serial_number != first.serial_number
            assert _der(second.public_key()) != _der(first.public_key())  # a fresh key
        finally:
            task.cancel()
            server.close()

    asyncio.run(scenario())


def test_a_denied_csr_is_followed_by_a_new_one(tmp_path: Path) -> None:
    signer = Signer()

    async def scenario() -> None:
        harness = Harness(tmp_path, signer)
        task = asyncio.create_task(harness.certs.run())
        try:
            [first] = await _until(signer.pending)
            signer.deny(first)
            await _until(lambda: any(c[1] == "Failed" and "NotTrusted" in c[2] for c in harness.conditions))
            assert harness.conditions[-1][0] == "False"
            [second] = await _until(signer.pending)
            assert second != first
            signer.approve(second)
            await _until(lambda: harness.certs.issued)
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_a_csr_not_approved_in_time_is_given_up(tmp_path: Path) -> None:
    signer = Signer()

    async def scenario() -> None:
        harness = Harness(tmp_path, signer, approval_timeout_seconds=0.3)
        task = asyncio.create_task(harness.certs.run())
        try:
            await _until(lambda: len(signer.csrs) >= 2)
            assert any("not signed within" in c[2] for c in harness.conditions)
        finally:
            task.cancel()

    asyncio.run(scenario())


def test_the_state_file_is_reused_if_it_fits(tmp_path: Path) -> None:
    signer = Signer()
    signer.auto_approve = True
    state = tmp_path / "serving.pem"

    async def obtain() -> x509.Certificate:
        harness = Harness(tmp_path, signer, state_file=str(state))
        assert not harness.certs.restore()
        await harness.certs.obtain()
        assert harness.certs.issued is not None
        return harness.certs.issued

    issued = asyncio.run(obtain())
    again = Harness(tmp_path, signer, state_file=str(state))
    assert again.certs.restore() and again.certs.issued == issued and again.serving.certificate == issued
    assert again.conditions[-1][:2] == ("True", "Issued")
    # another node name (or address) does not fit: a new CSR is asked for instead
    other = csrmod.ServingCertificates("n2", ["127.0.0.1"], CsrConfig(state_file=str(state)), signer,
                                       again.serving, lambda *c: None)
    assert not other.restore()
    state.write_bytes(b"garbage")
    assert not Harness(tmp_path, signer, state_file=str(state)).certs.restore()


def test_problems_with_an_issued_certificate(tmp_path: Path) -> None:
    signer = Signer()
    signer.auto_approve = True
    key = new_key()

    async def issue(hosts: list[str]) -> x509.Certificate:
        created = await signer.create(csrspec.csr_object("n1", csrspec.request_pem(key, "n1", hosts)))
        state = csrspec.read_status(await signer.get(created["metadata"]["name"]))
        return x509.load_pem_x509_certificate(state.certificate)

    cert = asyncio.run(issue(["127.0.0.1"]))
    now = dt.datetime.now(UTC)
    assert csrspec.problem_with(cert, key, "n1", ["127.0.0.1"], now) == ""
    assert "private key" in csrspec.problem_with(cert, new_key(), "n1", ["127.0.0.1"], now)
    assert "system:node:n2" in csrspec.problem_with(cert, key, "n2", ["127.0.0.1"], now)
    assert "SANs" in csrspec.problem_with(cert, key, "n1", ["127.0.0.1", "n1.example.org"], now)
    assert "expired" in csrspec.problem_with(cert, key, "n1", ["127.0.0.1"], now + dt.timedelta(days=2))
